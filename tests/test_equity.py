"""`imsim recommend`: deaths averted by race, the equity-impact plane, the objective's weights."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.analysis.decision import objective_text
from imsim.analysis.recommend import parse_plan, recommend
from imsim.core.constants import RACES
from imsim.output.recommendation import save

PLAN = {"name": "eq", "states": ["AL", "GA"], "years": [2026, 2027], "draws": 3, "seed": 11,
        "strategies": {"safe_sleep": {"coverage": 0.5},
                       "preterm_prevention": {"coverage": 0.5},
                       "social_determinants": {"coverage": 0.3}},
        "objective": {"deaths_averted": 1.0, "disparity_reduction": 0.5}}
TEXT = "1.0 x deaths averted + 0.5 x excess NH black deaths averted"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    rec = recommend(parse_plan(yaml.safe_load(yaml.safe_dump(PLAN))))
    path = save(rec, tmp_path_factory.mktemp("eq") / "out")
    return rec, path


def test_objective_text():
    assert objective_text(1, 0.5) == TEXT


def test_deaths_averted_by_race_sum_to_total(out):
    rec, path = out
    ev = rec.evaluation
    by_race = ev.deaths_averted_by_race
    assert by_race.shape == ev.deaths_averted.shape + (len(RACES),)
    # Every draw, portfolio and state.
    np.testing.assert_allclose(by_race.sum(axis=3), ev.deaths_averted, rtol=1e-9, atol=1e-9)
    # The strategies avert deaths in more than one group (the columns are not all zero).
    assert (np.abs(by_race[0]).sum(axis=(0, 1)) > 0).sum() >= 2
    df = pd.read_csv(path / "portfolios.csv")
    cols = [f"deaths_averted_{r}" for r in RACES]
    assert list(df.columns[-len(cols) - 1:]) == ["objective_weights"] + cols
    np.testing.assert_allclose(df[cols].sum(axis=1), df.deaths_averted, rtol=1e-5)


def test_equity_figure_written(out):
    _, path = out
    png = path / "figures" / "equity_impact.png"
    assert png.exists() and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_weights_in_every_output(out):
    _, path = out
    for name in ("portfolios.csv", "recommendations.csv"):
        df = pd.read_csv(path / name)
        assert (df.objective_weights == TEXT).all(), name
    m = json.loads((path / "manifest.json").read_text())
    assert m["objective_weights"] == {"deaths_averted": 1.0, "disparity_reduction": 0.5,
                                      "text": TEXT}
    assert TEXT in (path / "index.html").read_text(encoding="utf-8")
    for st in PLAN["states"]:
        assert TEXT in (path / "briefs" / f"{st}.html").read_text(encoding="utf-8")
