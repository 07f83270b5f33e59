"""Portfolio search's prefix tree of arms is the plain `apply` of every whole portfolio.

`imsim.analysis.portfolio.evaluate` applies each portfolio's last strategy to its parent
portfolio's rows (one stage per strategy), reuses the parent's outcomes where a node changes
nothing (Medicaid expansion in a state that had already expanded) and the parent's GA/death table
row where a node changes no GA or death parameter. Here every portfolio is recomputed the plain
way: `apply` of the whole portfolio on the baseline parameters of every (unmerged) cell, its own
tables, the expected engine; deaths must agree to 1e-12 of the baseline deaths.
"""
from __future__ import annotations

import numpy as np
import pytest

from imsim.analysis.draws import draw_plan
from imsim.analysis.portfolio import enumerate_portfolios, evaluate
from imsim.analysis.recommend import build_setup, parse_plan
from imsim.analysis.runner import get_calibration
from imsim.birth.engines import expected
from imsim.birth.params import build_tables
from imsim.birth.strategies import Levers, apply
from imsim.core.constants import STATES
from imsim.inputs.fit import fit_for

SEED = 5

STRATEGIES_ = {
    "safe_sleep": {"coverage": {2026: 0.3, 2028: 0.6}},
    "smoking_cessation": {"coverage": 0.3, "program": "incentives"},
    "preterm_prevention": {"coverage": 0.5,
                           "components": ["hard_stop", "vaginal_progesterone", "ohpc"],
                           "ohpc_effect": "meis"},
    "preconception_care": {"coverage": 0.4},
    "risk_appropriate_care": {"coverage": 0.5},
    "social_determinants": {"coverage": 0.3, "policy": "medicaid_expansion"},
}


def _plan(strategies):
    # AL and GA had not expanded Medicaid, VT had: the Medicaid nodes change nothing in VT.
    return {"name": "tree", "states": ["AL", "GA", "VT"], "years": [2026, 2028],
            "strategies": strategies, "draws": 3, "seed": SEED, "max_strategies": 3}


def _plain(setup, portfolios, draws, cal):
    """deaths_baseline [D, S] and deaths_averted [D, P, S] from the plain apply per portfolio."""
    baseline, cells = setup.baseline, setup.cells
    attrs = baseline.cell_attributes(cells)
    pos = {s: i for i, s in enumerate(setup.states)}
    state = np.array([pos[STATES[s]] for s in cells.s_idx])
    n_s = len(setup.states)
    deaths_b = np.zeros((len(draws), n_s))
    averted = np.zeros((len(draws), len(portfolios), n_s))
    for d, draw in enumerate(draws):
        fit = fit_for(baseline, draw.effects, cal, draw.calibration_draw)
        base = baseline.params(cells, draw.effects, fit)
        fb = baseline.births_factor(cells, SEED, draw.index) if d > 0 else np.ones(cells.n)

        def deaths(params):
            out = expected(build_tables(params)) * fb[:, None]
            return np.bincount(state, weights=out[:, 6:24].sum(axis=1), minlength=n_s)

        deaths_b[d] = deaths(base)
        for p, port in enumerate(portfolios):
            levers = Levers.uniform({k: setup.coverage[k] for k in port}, setup.options, attrs)
            averted[d, p] = deaths_b[d] - deaths(apply(base.copy(), levers, draw.effects))
    return deaths_b, averted


@pytest.mark.parametrize("policy", ["medicaid_expansion", "income_support"])
def test_tree_of_arms_equals_plain_apply_of_every_portfolio(policy):
    strategies = dict(STRATEGIES_, social_determinants={"coverage": 0.3, "policy": policy})
    rp = parse_plan(_plan(strategies))
    setup, evidence, _ = build_setup(rp)
    cal = get_calibration(rp.scenario.calibration)
    draws = draw_plan(evidence, cal, SEED, 3)
    portfolios = enumerate_portfolios(rp.candidates, 3)
    assert len(portfolios) == 41
    ev = evaluate(setup, portfolios, draws, calibration=cal, seed=SEED)
    deaths_b, averted = _plain(setup, portfolios, draws, cal)
    scale = deaths_b[:, None, :]
    assert np.all(np.abs(ev.deaths_baseline - deaths_b) <= 1e-12 * deaths_b)
    assert np.all(np.abs(ev.deaths_averted - averted) <= 1e-12 * scale)
    # The shortcuts were taken: with Medicaid expansion, VT's Medicaid nodes are not evaluated.
    t = ev.timings
    if policy == "medicaid_expansion":
        assert t["evaluated_rows_per_draw"] < t["arm_rows_per_draw"]
    # Progesterone changed something (its nodes are not all equal to their parents).
    pp = portfolios.index(("preterm_prevention",))
    assert np.all(ev.deaths_averted[:, pp, :] > 0)


def test_tree_handles_portfolios_in_any_order_and_repeated():
    rp = parse_plan(_plan(STRATEGIES_))
    setup, evidence, _ = build_setup(rp)
    cal = get_calibration(rp.scenario.calibration)
    draws = draw_plan(evidence, cal, SEED, 2)
    ports = [("social_determinants", "safe_sleep"), ("preterm_prevention",),
             ("preterm_prevention", "smoking_cessation", "safe_sleep"), ("preterm_prevention",)]
    ev = evaluate(setup, ports, draws, calibration=cal, seed=SEED)
    deaths_b, averted = _plain(setup, ports, draws, cal)
    assert np.all(np.abs(ev.deaths_averted - averted) <= 1e-12 * deaths_b[:, None, :])
    assert np.array_equal(ev.deaths_averted[:, 1], ev.deaths_averted[:, 3])
