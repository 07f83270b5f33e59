"""Hand-computed references for derived summary columns and the births projection.

Each expected value is computed here, independently, from the documented definition (README
"Scenario files" and "Outputs"), using only the numbers a run reports in its own tables (births,
deaths and IMRs by row) -- never by calling the code path that produced the column under test.
Every test is written so that a plausible slip in the implementation makes it fail: a flipped
sign in the births projection, the wrong reference race or another state's white rate, the
highest instead of the lowest state IMR, a different share for ``gap_closed_pct``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.config.scenario import parse_scenario

ALL = "ALL"
WHITE = "nh_white"
RTOL = 1e-9

# Four states with different NH white rates, none of them the state with the lowest IMR (so a
# minimum taken over the run's own states, instead of all 51 jurisdictions, is caught).
STATES_ = ["AL", "CA", "GA", "MS"]
# Strategies that change white and non-white deaths by different amounts (so using the
# scenario arm instead of the baseline for the white rate is caught).
SPEC = {
    "name": "references",
    "years": [2026, 2028],
    "states": STATES_,
    "strategies": {
        "safe_sleep": {"coverage": 0.5, "reach": {"nh_white": 0.2}},
        "smoking_cessation": {"coverage": 0.4},
        "risk_appropriate_care": {"coverage": 0.9},
    },
}


def _run(spec: dict, engine: str = "expected", seed: int = 0, replicates: int = 1):
    return imsim.run(parse_scenario(spec), engine=engine, seed=seed, replicates=replicates)


def _row(df: pd.DataFrame, state: str, race: str, **extra) -> pd.Series:
    mask = (df.state == state) & (df.race == race)
    for k, v in extra.items():
        mask &= df[k] == v
    rows = df[mask]
    assert len(rows) == 1, (state, race, extra, len(rows))
    return rows.iloc[0]


@pytest.fixture(scope="module")
def national():
    """All 51 jurisdictions, 2013-2015, no strategies: the observed-period baseline."""
    return _run({"name": "national", "years": [2013, 2015], "states": "all"}).summary


@pytest.fixture(scope="module", params=["expected", "microsim"])
def scenario_summary(request):
    """The summary of SPEC (microsim: a fixed seed, one draw)."""
    return _run(SPEC, engine=request.param, seed=3).summary


# ---------------------------------------------------------------------------------------------
# births_change_per_year
# ---------------------------------------------------------------------------------------------

GROWTH_STATES = ["GA", "VT"]
GROWTH_SPEC = {"name": "growth", "years": [2022, 2028], "states": GROWTH_STATES}


@pytest.fixture(scope="module")
def births_held():
    """By-year table with births held at the latest data year, 2023 (g = 0)."""
    return _run({**GROWTH_SPEC, "births_change_per_year": 0.0}).table("by_year")


def test_births_are_held_at_2023_level_with_zero_change(births_held):
    by = births_held
    for st in GROWTH_STATES:
        for race in ["nh_white", "nh_black", "hispanic", ALL]:
            b2023 = _row(by, st, race, year=2023).births
            assert b2023 > 0
            for y in (2024, 2026, 2028):
                assert _row(by, st, race, year=y).births == b2023, (st, race, y)
    # 2022 is a data year of its own, not the 2023 level.
    assert _row(by, "GA", ALL, year=2022).births != _row(by, "GA", ALL, year=2023).births


@pytest.mark.parametrize("g", [-0.02, 0.03])
def test_births_change_per_year_compounds_after_2023(births_held, g):
    """Births in year y > 2023 = round(births_2023 x (1 + g) ** (y - 2023)) per cell."""
    by = _run({**GROWTH_SPEC, "births_change_per_year": g}).table("by_year")
    races = ["nh_white", "nh_black", "hispanic", "nh_api", "nh_aian"]
    for st in GROWTH_STATES:
        for y in (2022, 2023, 2024, 2026, 2028):
            total = 0
            for race in races:
                base = int(_row(births_held, st, race, year=min(y, 2023)).births)
                expected = round(base * (1.0 + g) ** max(y - 2023, 0))
                got = int(_row(by, st, race, year=y).births)
                assert got == expected, (st, race, y, g, got, expected)
                total += expected
                # Rates do not depend on the number of births.
                np.testing.assert_allclose(
                    _row(by, st, race, year=y).imr_baseline,
                    _row(births_held, st, race, year=y).imr_baseline, rtol=1e-9)
            assert int(_row(by, st, ALL, year=y).births) == total, (st, y, g)
    # The direction is the documented one: a decline shrinks, growth grows (by ~g per year).
    ga_2028 = _row(by, "GA", ALL, year=2028).births / _row(births_held, "GA", ALL, year=2028).births
    np.testing.assert_allclose(ga_2028, (1 + g) ** 5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# deaths_at_white_rate
# ---------------------------------------------------------------------------------------------

def _white_imr(summary: pd.DataFrame, state: str) -> float:
    """The NH white baseline IMR (per 1,000) of one state over the horizon, from its row."""
    w = _row(summary, state, WHITE)
    return 1000.0 * w.deaths_baseline / w.births


def test_deaths_at_white_rate_uses_same_state_nh_white_baseline_rate(scenario_summary):
    s = scenario_summary
    white = {st: _white_imr(s, st) for st in STATES_}
    # The references differ between states (otherwise the same-state rule is not tested).
    assert max(white.values()) / min(white.values()) > 1.1
    races = [r for r in s.race.unique() if r != ALL]
    assert WHITE in races and len(races) == 5
    for st in STATES_:
        for race in races:
            row = _row(s, st, race)
            expected = row.births * white[st] / 1000.0
            np.testing.assert_allclose(row.deaths_at_white_rate, expected, rtol=RTOL,
                                       err_msg=f"{st} {race}")
        # NH white births at their own rate: exactly their baseline deaths.
        w = _row(s, st, WHITE)
        np.testing.assert_allclose(w.deaths_at_white_rate, w.deaths_baseline, rtol=RTOL)
        # The state total: its births at its own white rate.
        np.testing.assert_allclose(_row(s, st, ALL).deaths_at_white_rate,
                                   _row(s, st, ALL).births * white[st] / 1000.0, rtol=RTOL)
    # National rows (state=ALL): each state's births at that state's white rate, summed --
    # not the births at the national white rate.
    for race in races + [ALL]:
        expected = sum(_row(s, st, race).births * white[st] / 1000.0 for st in STATES_)
        np.testing.assert_allclose(_row(s, ALL, race).deaths_at_white_rate, expected,
                                   rtol=RTOL, err_msg=f"ALL {race}")
    national_rate = sum(_row(s, st, race).births * white[st] / 1000.0 for st in STATES_
                        for race in races)
    naive = _row(s, ALL, ALL).births * _white_imr(s, ALL) / 1000.0
    assert abs(national_rate - naive) > 1.0   # the two definitions differ for these states


# ---------------------------------------------------------------------------------------------
# deaths_at_best_state_rate
# ---------------------------------------------------------------------------------------------

def _best_state_imr(national: pd.DataFrame) -> float:
    """The lowest all-race baseline IMR (per 1,000) of the 51 jurisdictions of a national run."""
    states = national[(national.state != ALL) & (national.race == ALL)]
    assert len(states) == 51
    imr = 1000.0 * states.deaths_baseline / states.births
    return float(imr.min())


def test_deaths_at_best_state_rate_in_national_run(national):
    best = _best_state_imr(national)
    states = national[(national.state != ALL) & (national.race == ALL)]
    assert best < states.imr_baseline.max() - 3.0      # min and max are far apart
    np.testing.assert_allclose(national.deaths_at_best_state_rate,
                               national.births * best / 1000.0, rtol=RTOL)


@pytest.fixture(scope="module")
def national_spec_years():
    """All 51 jurisdictions over SPEC's years, no strategies."""
    return _run({"name": "national", "years": SPEC["years"], "states": "all"}).summary


def test_deaths_at_best_state_rate_is_lowest_of_all_states_not_of_the_run(national_spec_years,
                                                                          scenario_summary):
    """The reference is the lowest state IMR of all 51 jurisdictions in the run's years (rates
    move with time), the same whatever the run's states, strategies or engine."""
    best = _best_state_imr(national_spec_years)
    s = scenario_summary
    own = s[(s.state != ALL) & (s.race == ALL)]
    assert (1000.0 * own.deaths_baseline / own.births).min() > best * 1.001
    np.testing.assert_allclose(s.deaths_at_best_state_rate, s.births * best / 1000.0,
                               rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# gap_closed_pct
# ---------------------------------------------------------------------------------------------

def expected_gap_closed_pct(summary: pd.DataFrame) -> pd.Series:
    """The documented ``gap_closed_pct`` of every summary row, computed from its own columns.

    Definition (README "Outputs"): the share of the baseline rate difference to the NH white
    rate that the scenario closes, ``100 * (RD_baseline - RD_scenario) / RD_baseline``, where
    ``RD_arm = IMR_arm(group) - IMR_arm(NH white)`` per 1,000 live births, each IMR being
    ``1000 * deaths_<arm> / births`` of a summary row; the NH white row is the same state's (for
    ``state=ALL`` rows the national NH white row, ``ALL / nh_white``), so a scenario that lowers
    the NH white rate too closes less of the gap. NaN where ``RD_baseline <= 0`` (no gap to
    close) and on NH white rows.
    """
    white = summary[summary.race == WHITE].set_index("state")
    imr_b = 1000.0 * summary.deaths_baseline / summary.births
    imr_s = 1000.0 * summary.deaths_scenario / summary.births
    rd_b = imr_b - summary.state.map(1000.0 * white.deaths_baseline / white.births)
    rd_s = imr_s - summary.state.map(1000.0 * white.deaths_scenario / white.births)
    pct = 100.0 * (rd_b - rd_s) / rd_b
    return pct.where((rd_b > 0) & (summary.race != WHITE), np.nan)


def test_gap_closed_pct_matches_definition(scenario_summary):
    s = scenario_summary
    expected = expected_gap_closed_pct(s)
    np.testing.assert_allclose(s.gap_closed_pct.to_numpy(float), expected.to_numpy(float),
                               rtol=RTOL, atol=1e-9, equal_nan=True)
    # Something is actually compared: finite shares in most non-white groups, the rows with no
    # gap (NH white) are NaN, and the definition is not the old "deaths averted over the
    # excess deaths" (which ignores that the NH white rate falls too).
    finite = s[np.isfinite(s.gap_closed_pct)]
    assert len(finite) >= 12 and (finite.gap_closed_pct != 0).all()
    assert s[s.race == WHITE].gap_closed_pct.isna().all()
    old = 100.0 * s.deaths_averted / (s.deaths_baseline - s.deaths_at_white_rate)
    assert np.nanmax(np.abs(old[finite.index] - finite.gap_closed_pct)) > 1.0


def test_gap_closed_pct_intervals_and_disparities_table():
    """Paired-draw intervals bracket the point; disparities.csv carries the same share."""
    r = _run(SPEC, seed=4, replicates=20)
    s = r.summary
    np.testing.assert_allclose(s.gap_closed_pct.to_numpy(float),
                               expected_gap_closed_pct(s).to_numpy(float),
                               rtol=RTOL, atol=1e-9, equal_nan=True)
    fin = s[np.isfinite(s.gap_closed_pct)]
    assert len(fin) >= 12
    assert (fin.gap_closed_pct_lo < fin.gap_closed_pct_hi).all()
    assert s[s.race == WHITE][["gap_closed_pct_lo", "gap_closed_pct_hi"]].isna().all().all()
    d = r.table("disparities")
    for row in d.itertuples():
        srow = _row(s, row.state, row.race)
        np.testing.assert_allclose([row.gap_closed_pct, row.gap_closed_pct_lo,
                                    row.gap_closed_pct_hi],
                                   [srow.gap_closed_pct, srow.gap_closed_pct_lo,
                                    srow.gap_closed_pct_hi], rtol=1e-12, equal_nan=True)
        # The same share from the table's own rate differences.
        if row.rate_difference_baseline > 0:
            np.testing.assert_allclose(
                row.gap_closed_pct, 100.0 * -row.rate_difference_change
                / row.rate_difference_baseline, rtol=1e-9)
        else:
            assert np.isnan(row.gap_closed_pct)


def test_gap_closed_pct_is_about_zero_when_the_rate_difference_barely_moves():
    """The CoIIN example: Hispanic deaths fall as much as NH white deaths, so the Hispanic - NH
    white rate difference hardly moves; the gap closed is ~0%, not the ~35% that "deaths averted
    over excess deaths" reported."""
    import imsim

    r = imsim.run(imsim.load_scenario("scenarios/coiin_portfolios.yaml"), replicates=1)
    s = r.summary
    h = _row(s, ALL, "hispanic")
    d = r.table("disparities")
    dh = d[(d.state == ALL) & (d.race == "hispanic")].iloc[0]
    # The premise: many Hispanic deaths averted, yet a rate difference that barely moves.
    assert h.deaths_averted > 20
    assert dh.rate_difference_baseline > 0
    # per 1,000 live births: under 3% of the 0.87 gap (0.018 since rates move with time)
    assert abs(dh.rate_difference_change) < 0.03
    old = 100.0 * h.deaths_averted / (h.deaths_baseline - h.deaths_at_white_rate)
    assert old > 10.0
    assert abs(h.gap_closed_pct) < 3.0
    np.testing.assert_allclose(h.gap_closed_pct, expected_gap_closed_pct(s)[h.name], rtol=1e-9)
