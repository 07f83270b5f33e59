"""``imsim compare RUN_A RUN_B``: differences of two run folders, paired intervals, bad input."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imsim.analysis.compare import QUANTITIES, compare_runs, per_draw
from imsim.analysis.runner import run
from imsim.cli import main
from imsim.config.scenario import parse_scenario
from imsim.output.runfolder import save_result

IMSIM = Path(sys.executable).parent / "imsim"


def _scenario(name, strategy, states=("MS", "NY"), seed=3):
    return parse_scenario({"name": name, "years": [2026, 2027], "states": list(states),
                           "seed": seed, "engine": "expected", "replicates": 20,
                           "strategies": {strategy: {"coverage": 0.5}}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for key, sc in {"a": _scenario("sleep", "safe_sleep"),
                    "b": _scenario("smoke", "smoking_cessation"),
                    "seed4": _scenario("sleep4", "safe_sleep", seed=4),
                    "ms": _scenario("ms", "safe_sleep", states=("MS",))}.items():
        res = run(sc)
        out[key] = (save_result(res, root / key, figures=False, report=False), res)
    return out


def test_self_compare_is_exactly_zero_with_zero_width_intervals(runs):
    path, _ = runs["a"]
    r = compare_runs(path, path)
    t = r.table
    assert r.paired and t["paired"].all() and (t["note"] == "").all()
    for q in QUANTITIES:
        d = t[f"{q}_diff"].to_numpy()
        defined = np.isfinite(d)
        assert defined.any(), q
        assert (d[defined] == 0).all(), q
        assert (t[f"{q}_diff_lo"].to_numpy()[defined] == 0).all(), q
        assert (t[f"{q}_diff_hi"].to_numpy()[defined] == 0).all(), q


def test_two_scenarios_give_the_differences_of_their_summaries(runs):
    (pa, ra), (pb, rb) = runs["a"], runs["b"]
    r = compare_runs(pa, pb)
    t = r.table.set_index(["state", "race"])
    sa = pd.read_csv(pa / "summary.csv").set_index(["state", "race"])
    sb = pd.read_csv(pb / "summary.csv").set_index(["state", "race"])
    for q in QUANTITIES[:-1]:
        np.testing.assert_array_equal(t[f"{q}_a"], sa.loc[t.index, q])
        np.testing.assert_array_equal(t[f"{q}_diff"], sb.loc[t.index, q] - sa.loc[t.index, q])
    da = pd.read_csv(pa / "disparities.csv").set_index(["state", "race"])
    db = pd.read_csv(pb / "disparities.csv").set_index(["state", "race"])
    idx = da.index
    np.testing.assert_array_equal(t.loc[idx, "rate_difference_change_diff"],
                                  db["rate_difference_change"] - da["rate_difference_change"])
    assert t.loc[("ALL", "ALL"), "rate_difference_change_diff"] != \
        t.loc[("ALL", "ALL"), "rate_difference_change_diff"]         # NaN on race=ALL
    # Paired: the interval of the national difference is the percentiles of the per-draw
    # differences of the two in-memory runs (same seed: same evidence draws).
    assert r.paired
    ka, va = per_draw(ra)
    g = next(i for i, k in enumerate(ka) if k["state"] == "ALL" and k["race"] == "ALL")
    diff = per_draw(rb)[1]["deaths_averted"][1:, g] - va["deaths_averted"][1:, g]
    row = t.loc[("ALL", "ALL")]
    assert row.deaths_averted_diff_lo == pytest.approx(np.percentile(diff, 2.5), rel=1e-12)
    assert row.deaths_averted_diff_hi == pytest.approx(np.percentile(diff, 97.5), rel=1e-12)
    assert row.deaths_averted_diff_lo < row.deaths_averted_diff_hi


def test_mismatched_draws_give_no_interval_and_a_note(runs):
    r = compare_runs(runs["a"][0], runs["seed4"][0])
    t = r.table
    assert not r.paired and not t["paired"].any()
    assert (t["note"].str.contains("seed 3 vs 4")).all()
    assert t.filter(regex="_diff_(lo|hi)$").isna().all().all()
    assert np.isfinite(t["deaths_averted_diff"]).all()


def test_a_rerun_that_does_not_reproduce_the_folder_gives_no_interval(runs, tmp_path):
    path = runs["a"][0]
    copy = tmp_path / "tampered"
    shutil.copytree(path, copy)
    s = pd.read_csv(copy / "summary.csv")
    s["deaths_baseline"] *= 1.01                   # as if the data had changed since the run
    s.to_csv(copy / "summary.csv", index=False)
    r = compare_runs(path, copy)
    assert not r.paired and "does not reproduce" in r.notes[0]
    assert r.table.filter(regex="_diff_(lo|hi)$").isna().all().all()


def _one_line(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_bad_input_exits_2_with_one_line(runs, tmp_path, capsys):
    a = str(runs["a"][0])
    assert "not found" in _one_line(capsys, ["compare", str(tmp_path / "nope"), a])
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "summary.csv").write_text("x\n1\n")
    assert "not a run folder" in _one_line(capsys, ["compare", a, str(junk)])
    assert "different states" in _one_line(capsys, ["compare", a, str(runs["ms"][0])])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "f").write_text("x")
    assert "already exists" in _one_line(capsys, ["compare", a, a, "--out", str(taken)])


@pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")
def test_console_command_writes_csv_and_self_contained_html(runs, tmp_path):
    out = tmp_path / "cmp"
    proc = subprocess.run([str(IMSIM), "compare", str(runs["a"][0]), str(runs["b"][0]),
                           "--out", str(out)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "95% paired interval" in proc.stdout
    t = pd.read_csv(out / "compare.csv")
    assert {"state", "race", "deaths_averted_diff", "deaths_averted_diff_lo", "note"} <= set(t)
    doc = (out / "compare.html").read_text(encoding="utf-8")
    srcs = re.findall(r"<img[^>]*\ssrc=['\"]([^'\"]+)", doc)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert doc.count("<img") == len(srcs)
    assert not re.search(r"(href|src)=['\"](https?:|file:|/)", doc)
    helptext = subprocess.run([str(IMSIM), "compare", "--help"], capture_output=True,
                              text=True, timeout=60, check=False).stdout
    assert "paired" in helptext and "RUN_A" in helptext


def test_manifests_record_what_pairing_needs(runs):
    m = json.loads((runs["a"][0] / "manifest.json").read_text())
    assert {"seed", "engine", "replicates", "calibration"} <= set(m)
