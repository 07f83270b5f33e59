"""Regression: fixed-seed outputs against the committed baseline in ``tests/regression/``.

Each case (scenario, engine, seed, replicates; defined once, in ``scripts/refresh_regression.py``)
is rerun and its ``summary`` table compared with the committed CSV: births (and, for the
microsim, whole death and preterm counts) exactly, every other column within a relative 1e-9,
NaN where the baseline has NaN. New columns may be added; none may disappear.

The baseline is refreshed only on purpose, with ``python scripts/refresh_regression.py``.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGRESSION = ROOT / "tests" / "regression"
SCRIPT = ROOT / "scripts" / "refresh_regression.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("refresh_regression", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


refresh = _load_script()

HOW_TO_REFRESH = (
    "\n\nThe committed files record what imsim produced for a fixed scenario, engine, seed and "
    "number of replicates, so a difference means a change moved the numbers. If it was not "
    "meant to, this is a regression: find and fix it. If it was meant to (a model fix, new data, "
    "a new way of making random draws), refresh the baseline on purpose with\n"
    "    python scripts/refresh_regression.py\n"
    "and commit tests/regression/ with a message that says why the numbers moved."
)


def test_manifest_matches_cases():
    """The committed files were made with the cases the script defines now."""
    manifest = json.loads((REGRESSION / refresh.MANIFEST).read_text(encoding="utf-8"))
    assert manifest["command"] == refresh.COMMAND
    assert manifest["imsim_version"] and manifest["created"]
    assert set(manifest["files"]) == set(refresh.CASES), (
        "tests/regression/ does not hold the files scripts/refresh_regression.py defines"
        + HOW_TO_REFRESH)
    for name, case in refresh.CASES.items():
        recorded = {k: manifest["files"][name][k] for k in case}
        assert recorded == case, f"{name} was made with {recorded}, the script now says {case}" \
            + HOW_TO_REFRESH
        assert (REGRESSION / name).is_file(), name


@pytest.mark.parametrize("name", list(refresh.CASES))
def test_summary_matches_committed_baseline(name):
    case = refresh.CASES[name]
    committed = refresh.read_baseline(REGRESSION / name)
    assert len(committed) > 10 and "births" in committed.columns
    fresh = refresh.run_case(name)
    problems = refresh.compare(committed, fresh, exact=case["exact"])
    assert not problems, (
        f"tests/regression/{name} ({case['scenario']}, engine {case['engine']}, seed "
        f"{case['seed']}, replicates {case['replicates']}) differs from a fresh run:\n  "
        + "\n  ".join(problems) + HOW_TO_REFRESH)


def test_compare_catches_differences():
    """The comparison itself: equal tables pass; a changed birth, a float moved beyond the
    tolerance, a NaN appearing and a dropped column are all reported."""
    import numpy as np
    import pandas as pd

    base = pd.DataFrame({"state": ["AL", "ALL"], "race": ["nh_black", "ALL"],
                         "births": [1000, 2000], "deaths_baseline": [10.0, 20.0],
                         "deaths_averted": [1.5, 3.0], "preterm_baseline": [9e5, 1.8e6],
                         "preterm_averted": [0.0, 0.0], "gap_closed_pct": [np.nan, 12.5]})
    assert refresh.compare(base, base.copy()) == []
    near = base.assign(deaths_averted=base.deaths_averted * (1 + 1e-12),
                       preterm_averted=[2e-10, -1e-12],      # rounding noise of a difference
                       extra_column=[0.0, 1.0])
    assert refresh.compare(base, near) == []
    assert refresh.compare(base, base.assign(births=[1000, 2001]))
    assert refresh.compare(base, base.assign(deaths_averted=[1.5, 3.0 * (1 + 1e-7)]))
    assert refresh.compare(base, base.assign(deaths_baseline=[10.0, 20.0 * (1 + 1e-8)]))
    assert refresh.compare(base, base.assign(preterm_averted=[0.0, 0.01]))
    assert refresh.compare(base, base.assign(gap_closed_pct=[np.nan, np.nan]))
    assert refresh.compare(base, base.assign(gap_closed_pct=[1.0, 12.5]))
    assert refresh.compare(base, base.drop(columns="gap_closed_pct"))
    assert refresh.compare(base, base.iloc[::-1].reset_index(drop=True))
