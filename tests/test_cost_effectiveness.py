"""Cost-effectiveness of portfolios (imsim.analysis.economics) and its outputs in `imsim recommend`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.analysis.economics import (
    CEAC_COLUMNS,
    PORTFOLIO_CE_COLUMNS,
    ceac,
    cost_effectiveness,
    discounted_life_expectancy,
    frontier,
)
from imsim.output.recommendation import main


def test_frontier_marks_strict_and_extended_dominance():
    # A (100, 10), B (200, 15), C (300, 30), D (250, 12), E (500, 31); comparator (0, 0).
    # ICERs: A 100/10 = 10; B vs A 100/5 = 20 > C vs B 100/15 -> B extended;
    # C vs A 200/20 = 10; E vs C 200/1 = 200; D costs more than B and gains less -> strict.
    dom, icer = frontier([100, 200, 300, 250, 500], [10, 15, 30, 12, 31])
    assert list(dom) == ["frontier", "extended", "frontier", "strict", "frontier"]
    assert icer[0] == pytest.approx(10) and icer[2] == pytest.approx(10)
    assert icer[4] == pytest.approx(200)
    assert np.isnan(icer[1]) and np.isnan(icer[3])


def test_an_option_that_gains_nothing_is_dominated_by_the_comparator():
    dom, icer = frontier([50, 10], [-1, 2])
    assert list(dom) == ["strict", "frontier"] and icer[1] == pytest.approx(5)


def test_icers_are_non_decreasing_along_the_frontier_on_random_options():
    rng = np.random.default_rng(5)
    for _ in range(50):
        c = rng.uniform(0, 1000, 8)
        e = rng.uniform(-5, 50, 8)
        dom, icer = frontier(c, e)
        on = dom == "frontier"
        order = np.argsort(c[on])
        assert np.all(np.diff(icer[on][order]) >= -1e-9)
        assert np.all(np.diff(e[on][order]) > 0)
        # nothing on the frontier is strictly dominated by another option
        for i in np.flatnonzero(on):
            assert not np.any((c <= c[i]) & (e >= e[i]) & ((c < c[i]) | (e > e[i])))


def test_discounted_life_expectancy_by_hand():
    assert discounted_life_expectancy(78.6, 0.0) == pytest.approx(78.6)
    v = 1 / 1.03
    hand = (1 - v ** 78) / (1 - v) + 0.6 * v ** 78        # geometric series + fractional year
    assert discounted_life_expectancy(78.6, 0.03) == pytest.approx(hand)
    assert 30 < hand < 31


def test_life_years_equal_deaths_averted_times_discounted_life_expectancy():
    da = np.array([[[2.0], [4.0]], [[4.0], [8.0]]])     # [R=2, P=2, S=1]
    per, table, cc = cost_effectiveness(["AL"], ["a", "b"], da, np.array([[300.0], [900.0]]),
                                        True)
    f3 = discounted_life_expectancy(78.6, 0.03)
    assert per.life_years_gained.tolist() == pytest.approx([3 * f3, 6 * f3])
    assert per.life_years_gained_0pct.tolist() == pytest.approx([3 * 78.6, 6 * 78.6])
    assert per.cost_per_death_averted.tolist() == pytest.approx([100, 150])
    nat = table[table.state == "national"]
    assert nat.life_years_gained.tolist() == pytest.approx([3 * f3, 6 * f3])


def test_ceac_sums_to_one_and_moves_from_none_to_the_most_effective():
    rng = np.random.default_rng(2)
    lyg = rng.normal([10, 20, 25], 1, size=(200, 3))   # P(3rd > 2nd) = Phi(5/sqrt 2) > 0.999
    prob = ceac(lyg, np.array([100.0, 300.0, 2000.0]), wtp=[0, 50, 1e4])
    assert np.allclose(prob.sum(axis=1), 1)
    assert prob[0, -1] == 1                       # at WTP 0 doing nothing is best
    assert prob[-1, 2] > 0.98                     # at a high WTP the most effective


def test_without_costs_nothing_cost_based_is_computed():
    da = np.ones((3, 2, 1))
    per, table, cc = cost_effectiveness(["AL"], ["a", "b"], da, np.full((2, 1), np.nan), False)
    assert per.icer.isna().all() and per.cost_per_death_averted.isna().all()
    assert (per.dominance == "").all() and len(cc) == 0
    assert per.cost_note.str.contains("no costs").all()
    assert per.life_years_gained.notna().all()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ce")
    plan = {"name": "ce", "states": ["AL", "VT"], "years": [2026, 2026], "max_strategies": 2,
            "strategies": {"safe_sleep": {"coverage": 0.5}, "preterm_prevention": {"coverage": 0.5},
                           "smoking_cessation": {"coverage": 0.3}},
            "costs": {"safe_sleep": 20, "preterm_prevention": 150, "smoking_cessation": 600},
            "draws": 8, "seed": 4}
    p = tmp / "plan.yaml"
    p.write_text(yaml.safe_dump(plan, sort_keys=False))
    out = tmp / "out"
    assert main([str(p), "--out", str(out), "--quiet"]) == 0
    return out


def test_recommend_writes_the_cost_effectiveness_columns_and_files(tiny):
    df = pd.read_csv(tiny / "portfolios.csv")
    cols = list(df.columns)
    assert cols[cols.index("rank") + 1: cols.index("rank") + 1 + len(PORTFOLIO_CE_COLUMNS)] \
        == PORTFOLIO_CE_COLUMNS
    assert set(df.dominance) <= {"frontier", "strict", "extended"}
    assert (df.groupby("state").dominance.apply(lambda d: (d == "frontier").any())).all()
    cc = pd.read_csv(tiny / "ceac.csv")
    assert list(cc.columns) == CEAC_COLUMNS
    assert set(cc.state) == {"AL", "VT", "national"}
    sums = cc.groupby(["state", "wtp_per_life_year"]).p_best.sum()
    assert np.allclose(sums, 1)
    assert (tiny / "figures" / "ceac.png").stat().st_size > 0
    ce = pd.read_csv(tiny / "cost_effectiveness.csv")
    assert "national" in set(ce.state)
    man = json.loads((tiny / "manifest.json").read_text())
    assert "ILLUSTRATIVE" in man["cost_effectiveness"]["costs"]["label"]
    assert man["cost_effectiveness"]["life_expectancy_at_birth"] == 78.6
