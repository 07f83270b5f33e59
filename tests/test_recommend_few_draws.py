"""Honest headlines in ``imsim recommend``: below MIN_INTERVAL_DRAWS draws no 95% interval is
shown and the outputs say that intervals and EVPPI are unreliable; at or above it they are shown."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from imsim.analysis.results import MIN_INTERVAL_DRAWS
from imsim.output.recommendation import main

PLAN = {"name": "few", "states": ["VT"], "years": [2026, 2026], "max_strategies": 1,
        "strategies": {"safe_sleep": {"coverage": 0.5}, "preterm_prevention": {"coverage": 0.5}},
        "seed": 6}


def _run(tmp_path, capsys, draws):
    p = tmp_path / f"plan{draws}.yaml"
    p.write_text(yaml.safe_dump({**PLAN, "draws": draws}, sort_keys=False))
    out = tmp_path / f"out{draws}"
    assert main([str(p), "--out", str(out)]) == 0
    printed = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("few:")]
    return out, printed[0]


def test_few_draws_show_no_interval_and_say_why(tmp_path, capsys):
    out, line = _run(tmp_path, capsys, 5)
    assert "95% interval " not in line.replace("no 95% interval", "")
    assert f"fewer than {MIN_INTERVAL_DRAWS} draws" in line and "mean of 5 draws" in line
    s = json.loads((out / "allocation_summary.json").read_text())
    assert s["draws"] == 5 and s["interval_reliable"] is False
    rec = pd.read_csv(out / "recommendations.csv", keep_default_na=False)
    assert rec.draws_note.str.contains("unreliable").all()
    brief = (out / "briefs" / "VT.html").read_text()
    box = brief.split("<h2>")[0].replace("no 95% interval", "")   # the recommendation box
    assert "95% interval" not in box
    assert "Not estimated" in brief and "robust to the evidence" not in brief
    index = (out / "index.html").read_text()
    assert "mean of 5 draws" in index


@pytest.mark.parametrize("draws", [MIN_INTERVAL_DRAWS])
def test_enough_draws_show_the_interval(tmp_path, capsys, draws):
    out, line = _run(tmp_path, capsys, draws)
    assert "95% interval" in line and "fewer than" not in line
    s = json.loads((out / "allocation_summary.json").read_text())
    assert s["draws"] == draws and s["interval_reliable"] is True
    rec = pd.read_csv(out / "recommendations.csv", keep_default_na=False)
    assert (rec.draws_note == "").all()
    assert "95% interval" in (out / "briefs" / "VT.html").read_text()
