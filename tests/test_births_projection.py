"""Births 2018-2023 (CDC WONDER state totals, corrected to all ages and DC) and the projection after 2023.

The 2023 state totals and the pooled national race shares are recomputed here from the shared WONDER exports,
read with plain pandas (independent of scripts/build_data.py).
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imsim.analysis.runner import resolve_inputs
from imsim.config.scenario import parse_scenario
from imsim.core.constants import DATA_YEARS, RACES, STATES
from imsim.inputs.baseline import Baseline
from imsim.inputs.data import load_table

EXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "external"
needs_shared = pytest.mark.skipif(not EXT.is_dir(), reason="shared data not available")
#: NVSR final U.S. births 2013-2017 (as in tests/test_data_tables.py).
US_2013_2017 = 3932181 + 3988076 + 3978497 + 3945875 + 3855500
#: SHA-256 of births.csv rows 2013-2017 (state, race, year, births; sorted) as committed before 2018-2023 were added.
SHA_2013_2017 = "7b4188aaa892baefa0b86422037bbe588ae492892ffb638b71de5446c7c2d196"


def _wonder(name: str) -> pd.DataFrame:
    text = (EXT / name).read_text(encoding="utf-8")
    body = text[:text.index('"---"')]
    df = pd.read_csv(io.StringIO(body), sep="\t", dtype=str)
    return df[df["Notes"].isna()]


@pytest.fixture(scope="module")
def births() -> pd.DataFrame:
    return load_table("births")


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    return Baseline()


def test_data_years_run_through_2023(births):
    assert DATA_YEARS == tuple(range(2013, 2024))
    assert sorted(set(births.year)) == list(DATA_YEARS)


def test_2013_2017_rows_unchanged(births):
    key = births[births.year <= 2017][["state", "race", "year", "births"]].sort_values(["state", "race", "year"])
    assert hashlib.sha256(key.to_csv(index=False).encode()).hexdigest() == SHA_2013_2017


@needs_shared
def test_2023_state_totals_are_the_wonder_counts_corrected(births):
    tot = births.groupby(["state", "year"]).births.sum()
    # Hand computation: WONDER mothers 15-44 counts copied from natality_yearly_20072023.txt (2013-2017, 2023).
    wonder = {"TX": ([386193, 398680, 402494, 396955, 381087], 386746),
              "VT": ([5953, 6111, 5889, 5744, 5642], 5048)}
    for s, (w13_17, w23) in wonder.items():
        ratio = sum(tot[(s, y)] for y in range(2013, 2018)) / sum(w13_17)
        assert 1.0 < ratio < 1.01  # births to mothers under 15 or over 44
        assert tot[(s, 2023)] == round(w23 * ratio), s
    # DC: its 2013-2017 share of U.S. births times the corrected 50-state sum of 2023.
    w = _wonder("mchtrends__natality_yearly_20072023.txt")
    w["Births"] = w["Births"].astype(float)
    code = {s: c for s, c in zip(STATES, ("01 02 04 05 06 08 09 10 11 12 13 15 16 17 18 19 20 21 22 23 24 25 26 27 28 "
                                            "29 30 31 32 33 34 35 36 37 38 39 40 41 42 44 45 46 47 48 49 50 51 53 54 "
                                            "55 56").split())}
    by = w.set_index(["State Code", "Year"]).Births
    assert "11" not in set(w["State Code"])
    corrected = 0.0
    for s in STATES:
        if s == "DC":
            continue
        ratio = sum(tot[(s, y)] for y in range(2013, 2018)) / sum(by[(code[s], str(y))] for y in range(2013, 2018))
        corrected += by[(code[s], "2023")] * ratio
    p = sum(tot[("DC", y)] for y in range(2013, 2018)) / US_2013_2017
    assert tot[("DC", 2023)] == round(p / (1 - p) * corrected)
    # U.S. 2023 within 0.2% of the NVSR final count 3,596,017 (Osterman et al., NVSR 74-1, 2025) -- a check, not a fit.
    assert abs(tot.xs(2023, level="year").sum() / 3596017 - 1) < 0.002


@needs_shared
def test_national_race_totals_2020_2022_match_pooled_shares(births):
    d = _wonder("mchtrends__natality_race_20_22.txt")
    d["Births"] = d["Births"].astype(float)
    org, race = d["Mother's Hispanic Origin"], d["Mother's Single Race"]
    nh = d[org == "Not Hispanic or Latino"].set_index("Mother's Single Race").Births
    v = {"nh_white": nh["White"], "nh_black": nh["Black or African American"],
         "nh_api": nh["Asian"] + nh["Native Hawaiian or Other Pacific Islander"],
         "nh_aian": nh["American Indian or Alaska Native"]}
    s4 = sum(v.values())
    v = {r: x + nh["More than one race"] * x / s4 for r, x in v.items()}  # NH multiple race spread proportionally
    v["hispanic"] = d[org == "Hispanic or Latino"].Births.sum()
    assert set(race) >= {"White", "More than one race"}
    share = pd.Series(v)[list(RACES)] / sum(v.values())
    b = births[births.year.between(2020, 2022)]
    got = b.groupby("race").births.sum()[list(RACES)] / b.births.sum()
    # per year and race the raked cells are exact before rounding; rounding moves each total by < 51 births
    np.testing.assert_allclose(got.to_numpy(), share.to_numpy(), atol=3 * 51 / b.births.sum())
    for y in (2020, 2021, 2022):
        by = births[births.year == y]
        np.testing.assert_allclose((by.groupby("race").births.sum()[list(RACES)] / by.births.sum()).to_numpy(),
                                   share.to_numpy(), atol=51 / by.births.sum())


def test_projection_follows_fitted_trend(births, baseline):
    tr = load_table("births_trend").set_index("state")
    s, i = "VT", STATES.index("VT")
    tot = births[births.state == s].groupby("year").births.sum()
    years = np.arange(2014, 2024)
    slope, _ = np.polyfit(years - 2023, np.log(tot[years].to_numpy(float)), 1)
    assert abs(tr.at[s, "slope"] - slope) <= 5.01e-7  # written with 6 decimals
    resid = np.log(tot[years].to_numpy(float)) - np.polyval(np.polyfit(years, np.log(tot[years].to_numpy(float)), 1), years)
    se = np.sqrt(resid @ resid / 8 / ((years - years.mean()) ** 2).sum())
    assert abs(tr.at[s, "slope_se"] - se) <= 5.01e-7
    slope, se = tr.at[s, "slope"], tr.at[s, "slope_se"]  # the model uses the written values
    c = baseline.cells([2023, 2027], ["VT"])
    assert c.projected.tolist() == [False] * 5 + [True] * 5
    b23 = births[(births.state == s) & (births.year == 2023)].set_index("race").births[list(RACES)].to_numpy()
    np.testing.assert_array_equal(c.births[:5], b23)
    np.testing.assert_array_equal(c.births[5:], np.round(b23 * np.exp(slope * 4)).astype(int))
    lo = baseline.births_projection(2027, [i], z=-1.96).sum()
    hi = baseline.births_projection(2027, [i], z=1.96).sum()
    assert lo < c.births[5:].sum() < hi
    np.testing.assert_allclose(hi / lo, np.exp(2 * 1.96 * se * 4), rtol=1e-6)
    # U.S. births keep falling after 2023 (every state's trend is fitted to a decade of mostly falling births)
    us = [baseline.cells([y]).births.sum() for y in (2023, 2026, 2030)]
    assert us[0] > us[1] > us[2]
    # held: the latest data year's births
    np.testing.assert_array_equal(baseline.cells([2030], ["VT"], project=False).births, b23)


@pytest.mark.parametrize("g", [None, 0.0, -0.05])
def test_births_change_per_year_relative_to_2023(baseline, g):
    spec = {"name": "g", "years": [2022, 2026], "states": ["GA", "VT"]}
    if g is not None:
        spec["births_change_per_year"] = g
    cells = resolve_inputs(parse_scenario(spec), baseline).cells
    ref = baseline.cells([2022, 2023, 2024, 2025, 2026], ["GA", "VT"], project=g is None)
    h = np.maximum(ref.year - 2023, 0)
    want = ref.births if g is None else np.round(ref.births * (1 + g) ** h).astype(np.int64)
    np.testing.assert_array_equal(cells.births, want)
    if g is not None:  # 2022 and 2023 are data either way; after 2023 every cell moves by (1+g)^h from 2023
        held = baseline.cells([2023], ["GA", "VT"]).births
        np.testing.assert_array_equal(cells.births[cells.year == 2026], np.round(held * (1 + g) ** 3).astype(np.int64))
