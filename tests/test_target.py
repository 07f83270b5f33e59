"""``imsim target``: the coverage it reports meets the target when run; impossible targets are
unreachable; disparity and deaths-averted targets; gains that lapse; the command end to end."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.analysis.target import (
    COLUMNS,
    TOL,
    Target,
    lapse,
    solve_targets,
    solved_scenario,
)
from imsim.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SOUTH = REPO / "scenarios" / "safe_sleep_south.yaml"


@pytest.fixture(scope="module")
def south():
    return imsim.load_scenario(SOUTH)


def _by_year(scenario, state, race, year):
    r = imsim.run(scenario, engine="expected", replicates=1)
    t = r.table("by_year")
    return t[(t.year == year) & (t.state == state) & (t.race == race)].iloc[0], t


def _imr(t, year, state, race):
    return float(t[(t.year == year) & (t.state == state) & (t.race == race)].imr_scenario.iloc[0])


def test_reported_coverage_meets_an_imr_target_and_less_does_not(south):
    # A target between the baseline and the full portfolio, so the answer is interior.
    probe = solve_targets(south, Target("imr", 1.0, "AL"), replicates=0)
    det = probe.detail.set_index("strategy")
    assert not probe.table.reachable.any()          # 1 per 1,000 is out of reach
    lo_full = det.loc["portfolio", "metric_at_full"]
    T = 0.5 * (probe.baseline_metric + lo_full)
    res = solve_targets(south, Target("imr", T, "AL"), replicates=5)
    assert list(res.table.columns) == COLUMNS
    row = res.table.set_index("strategy").loc["portfolio"]
    assert row.reachable and 0 < row.coverage_needed < det.loc["portfolio", "full"]
    assert 0.0 <= row.p_reach <= 1.0 and res.draws == 5
    m = float(row.coverage_needed)
    tgt = res.target
    # Running the scenario with the reported coverage meets the target ...
    sc = solved_scenario(south, tgt, "portfolio", m)
    _, t = _by_year(sc, "AL", "ALL", tgt.year)
    assert _imr(t, tgt.year, "AL", "ALL") <= T
    # ... and agrees with the solver's own value at the solution (same model, same draw 0).
    v = res.detail.set_index("strategy").loc["portfolio", "metric_at_solution"]
    assert _imr(t, tgt.year, "AL", "ALL") == pytest.approx(v, rel=1e-9)
    # Coverage a solver tolerance lower misses it: the reported coverage is the smallest.
    sc_less = solved_scenario(south, tgt, "portfolio", m - 2 * TOL * det.loc["portfolio", "full"])
    _, t2 = _by_year(sc_less, "AL", "ALL", tgt.year)
    assert _imr(t2, tgt.year, "AL", "ALL") > T


def test_one_strategy_alone_meets_its_target_when_run(south):
    probe = solve_targets(south, Target("imr", 1.0, "MS", "nh_black"), replicates=0)
    det = probe.detail.set_index("strategy")
    k = "risk_appropriate_care"
    T = det.loc[k, "metric_at_zero"] - 0.437 * (det.loc[k, "metric_at_zero"]
                                              - det.loc[k, "metric_at_full"])
    res = solve_targets(south, Target("imr", T, "MS", "nh_black"), replicates=0)
    row = res.table.set_index("strategy").loc[k]
    assert row.reachable and 0 < row.coverage_needed < 1
    assert math.isnan(row.p_reach)                   # no draws asked for
    sc = solved_scenario(south, res.target, k, float(row.coverage_needed))
    assert list(sc.by_state["MS"].strategies.active()) == [k]
    assert sc.exposures is None and sc.by_state["MS"].exposures is None
    _, t = _by_year(sc, "MS", "nh_black", res.target.year)
    # Met (to floating-point rounding of the same computation in another order).
    assert _imr(t, res.target.year, "MS", "nh_black") <= T * (1 + 1e-12)


def test_impossible_target_is_unreachable_with_its_chance_at_full_coverage(south):
    res = solve_targets(south, Target("imr", 0.5), replicates=8)
    assert not res.table.reachable.any()
    assert res.table.coverage_needed.isna().all()
    assert (res.table.p_reach == 0).all()            # 0.5 per 1,000 in no draw
    assert set(res.table.strategy) == {"safe_sleep", "smoking_cessation", "preterm_prevention",
                                       "preconception_care", "risk_appropriate_care",
                                       "social_determinants", "portfolio"}


def test_a_target_met_already_needs_no_coverage(south):
    res = solve_targets(south, Target("imr", 50.0, "GA"), replicates=0)
    assert res.table.reachable.all() and (res.table.coverage_needed == 0).all()


def test_disparity_target_rate_ratio_is_met_when_run(south):
    probe = solve_targets(south, Target("rate_ratio", 0.01), replicates=0)
    det = probe.detail.set_index("strategy").loc["portfolio"]
    assert det.metric_at_full < det.metric_at_zero   # the portfolio narrows the ratio
    R = det.metric_at_zero - 0.5 * (det.metric_at_zero - det.metric_at_full)
    res = solve_targets(south, Target("rate_ratio", R), replicates=0)
    assert res.target.race == "nh_black"             # the default group of a disparity target
    row = res.table.set_index("strategy").loc["portfolio"]
    assert row.reachable
    sc = solved_scenario(south, res.target, "portfolio", float(row.coverage_needed))
    _, t = _by_year(sc, "ALL", "ALL", res.target.year)
    y = res.target.year
    ratio = _imr(t, y, "ALL", "nh_black") / _imr(t, y, "ALL", "nh_white")
    assert ratio <= R
    assert ratio == pytest.approx(res.detail.set_index("strategy")
                                  .loc["portfolio", "metric_at_solution"], rel=1e-9)


def test_deaths_averted_target_sums_the_years_up_to_the_target_year(south):
    res0 = solve_targets(south, Target("deaths_averted", 1e9, "MS", year=2028), replicates=0)
    full = res0.detail.set_index("strategy").loc["portfolio", "metric_at_full"]
    N = 0.5 * full
    res = solve_targets(south, Target("deaths_averted", N, "MS", year=2028), replicates=0)
    row = res.table.set_index("strategy").loc["portfolio"]
    sc = solved_scenario(south, res.target, "portfolio", float(row.coverage_needed))
    r = imsim.run(sc, engine="expected", replicates=1)
    s = r.summary
    averted = float(s[(s.state == "MS") & (s.race == "ALL")].deaths_averted.iloc[0])
    assert sc.years == (2026, 2028)
    assert averted >= N and averted == pytest.approx(N, rel=0.01)


def test_lapse_no_decay_loses_nothing_full_decay_loses_the_extra_years(south):
    # Coverage lapses; a counterfactual exposure change is not coverage and would stay.
    south = south.model_copy(update={"exposures": None})
    held = lapse(south, 2, 0.0, state="AL", replicates=0)
    tot = held[held.year == "TOTAL"].iloc[0]
    assert tot.deaths_lost == pytest.approx(0.0, abs=1e-9)
    full = lapse(south, 2, 1.0, state="AL", replicates=0)
    rows = full[full.year != "TOTAL"]
    after = rows[rows.year.astype(int) > south.years[1]]
    assert (after.deaths_averted_lapsed.abs() < 1e-9).all()
    assert np.allclose(after.deaths_lost, after.deaths_averted_held)
    assert (after.deaths_lost > 0).all()
    # Held coverage after support: the same deaths averted as the scenario's last year, up to
    # births and the trend (within 10%).
    last = float(rows[rows.year.astype(int) == south.years[1]].deaths_averted_held.iloc[0])
    assert np.allclose(after.deaths_averted_held, last, rtol=0.1)
    half = lapse(south, 2, 0.5, state="AL", replicates=0)
    t_half = half[half.year == "TOTAL"].iloc[0]
    assert 0 < t_half.deaths_lost < full[full.year == "TOTAL"].iloc[0].deaths_lost


@pytest.mark.parametrize("target, message", [
    (Target("imr", -1.0), "--imr -1 is out of range"),
    (Target("imr", 5.0, "TX"), "--state TX is not in the scenario's states"),
    (Target("imr", 5.0, race="white"), "--race white is unknown"),
    (Target("rate_ratio", 1.5, race="nh_white"), "compares a race with NH white"),
    (Target("imr", 5.0, year=2040), "--year 2040 is outside the scenario's years"),
])
def test_bad_targets_are_one_clear_line(south, target, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        solve_targets(south, target, replicates=0)


def test_command_writes_target_csv_and_refuses_bad_input(tmp_path, capsys):
    from imsim.cli import main

    out = tmp_path / "t"
    assert main(["target", str(SOUTH), "--imr", "7.8", "--state", "AL", "--replicates", "3",
                 "--lapse-years", "2", "--decay-per-year", "0.25", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "portfolio" in text and "deaths lost" in text
    t = pd.read_csv(out / "target.csv")
    assert list(t.columns) == COLUMNS
    assert set(t.strategy) >= {"portfolio"}
    for row in t[t.reachable].itertuples():
        assert (out / "solved" / f"{row.strategy}.yaml").is_file()
        imsim.load_scenario(out / "solved" / f"{row.strategy}.yaml")   # valid scenarios
    lap = pd.read_csv(out / "lapse.csv")
    assert lap.year.iloc[-1] == "TOTAL"
    assert main(["target", str(SOUTH), "--imr", "5", "--state", "TX"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--state TX" in err and "Traceback" not in err
    assert main(["target", str(SOUTH), "--lapse-years", "3"]) == 2
    assert "go together" in capsys.readouterr().err
