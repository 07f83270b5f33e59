"""`imsim recommend`: portfolios, Pareto fronts, recommendations, allocation, outputs, bad plans."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.core.constants import STRATEGIES
from imsim.analysis.portfolio import enumerate_portfolios, portfolio_id
from imsim.analysis.recommend import (
    choose,
    p_best,
    pareto_front,
    parse_plan,
    random_allocations,
    recommend,
    solve_allocation,
)
from imsim.output.recommendation import main

COVERAGE = {
    "safe_sleep": {"coverage": {2026: 0.3, 2028: 0.6}},
    "smoking_cessation": {"coverage": 0.3},
    "preterm_prevention": {"coverage": 0.5},
    "preconception_care": {"coverage": 0.4},
    "risk_appropriate_care": {"coverage": 0.5},
    "social_determinants": {"coverage": 0.3},
}


def small_plan(**over) -> dict:
    plan = {"name": "t", "states": ["AL", "GA", "VT"], "years": [2026, 2028],
            "strategies": COVERAGE, "draws": 30, "seed": 3,
            "costs": {"safe_sleep": 20, "smoking_cessation": 600, "preterm_prevention": 150,
                      "preconception_care": 400, "risk_appropriate_care": 2500,
                      "social_determinants": 1500},
            "objective": {"deaths_averted": 1.0, "disparity_reduction": 0.5}}
    plan.update(over)
    return plan


def write_plan(tmp_path, data, name="plan.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, sort_keys=False) if isinstance(data, dict) else data)
    return p


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rec")
    plan = write_plan(tmp, small_plan(budget={"national": 3_000_000}))
    out = tmp / "out"
    code = main([str(plan), "--out", str(out), "--quiet"])
    assert code == 0
    return out


# -- enumeration ----------------------------------------------------------------------------

@pytest.mark.parametrize("k,n", [(1, 6), (2, 21), (3, 41), (6, 63)])
def test_enumeration_complete_and_unique(k, n):
    ports = enumerate_portfolios(STRATEGIES, k)
    assert len(ports) == n
    assert len(set(ports)) == n
    expect = {frozenset(c) for r in range(1, k + 1) for c in itertools.combinations(STRATEGIES, r)}
    assert {frozenset(p) for p in ports} == expect
    order = {s: i for i, s in enumerate(STRATEGIES)}
    for p in ports:                        # canonical order inside each portfolio
        assert list(p) == sorted(p, key=order.__getitem__)
        assert portfolio_id(reversed(p)) == "+".join(p)


def test_enumeration_of_a_subset_of_candidates():
    ports = enumerate_portfolios(["social_determinants", "safe_sleep"], 3)
    assert ports == [("safe_sleep",), ("social_determinants",),
                     ("safe_sleep", "social_determinants")]


# -- Pareto, p_best, ties -------------------------------------------------------------------

def test_dominated_points_are_never_on_the_front():
    pts = np.array([[10, 5, 100],     # 0 front
                    [9, 5, 100],      # 1 dominated by 0 (fewer deaths)
                    [10, 4, 100],     # 2 dominated by 0 (less disparity reduction)
                    [10, 5, 120],     # 3 dominated by 0 (costlier)
                    [12, 1, 300],     # 4 front (most deaths)
                    [1, 9, 50],       # 5 front
                    [10, 5, 100]])    # 6 equal to 0: not dominated
    front = pareto_front(pts, maximise=[True, True, False])
    assert front.tolist() == [True, False, False, False, True, True, True]


def test_pareto_matches_brute_force_on_random_points():
    rng = np.random.default_rng(1)
    for _ in range(20):
        pts = rng.integers(0, 6, size=(25, 3)).astype(float)
        front = pareto_front(pts, maximise=[True, True, False])
        for i in range(len(pts)):
            dominated = any(
                pts[j, 0] >= pts[i, 0] and pts[j, 1] >= pts[i, 1] and pts[j, 2] <= pts[i, 2]
                and (pts[j, 0] > pts[i, 0] or pts[j, 1] > pts[i, 1] or pts[j, 2] < pts[i, 2])
                for j in range(len(pts)))
            assert front[i] == (not dominated)


def test_pareto_without_costs_ignores_the_nan_column():
    pts = np.array([[1.0, 1.0, np.nan], [2.0, 2.0, np.nan]])
    assert pareto_front(pts, maximise=[True, True, False]).tolist() == [False, True]


def test_p_best_splits_ties_and_sums_to_one():
    u = np.array([[1.0, 1.0, 0.5], [0.0, 2.0, 2.0], [3.0, 1.0, 1.0]])
    pb = p_best(u, np.array([True, True, True]))
    assert np.allclose(pb, [(0.5 + 0 + 1) / 3, (0.5 + 0.5 + 0) / 3, (0 + 0.5 + 0) / 3])
    assert pb.sum() == pytest.approx(1.0)
    pb = p_best(u, np.array([True, False, True]))
    assert pb[1] == 0 and pb.sum() == pytest.approx(1.0)


def test_ties_go_to_the_cheaper_then_smaller_portfolio():
    eu = np.array([5.0, 5.0, 5.0 * (1 + 1e-12), 4.0])
    size = np.array([2, 1, 3, 1])
    feas = np.ones(4, dtype=bool)
    assert choose(eu, np.full(4, np.nan), size, feas) == 1
    assert choose(eu, np.array([10.0, 20.0, 30.0, 0.0]), size, feas) == 0
    assert choose(eu, np.full(4, np.nan), size, feas, exclude=[1]) == 0
    assert choose(eu, np.full(4, np.nan), size, np.zeros(4, dtype=bool)) is None


# -- allocation -----------------------------------------------------------------------------

def test_allocation_is_exact_on_a_small_instance():
    rng = np.random.default_rng(5)
    value = rng.uniform(-1, 10, size=(4, 3))
    cost = rng.uniform(1, 10, size=(4, 3))
    feas = np.ones((4, 3), dtype=bool)
    budget = 12.0
    choice, _ = solve_allocation(value, cost, feas, budget)
    best = 0.0
    for combo in itertools.product(range(-1, 4), repeat=3):
        c = sum(cost[p, s] for s, p in enumerate(combo) if p >= 0)
        v = sum(value[p, s] for s, p in enumerate(combo) if p >= 0)
        if c <= budget:
            best = max(best, v)
    got = sum(value[p, s] for s, p in enumerate(choice) if p >= 0)
    assert got == pytest.approx(best)
    assert sum(cost[p, s] for s, p in enumerate(choice) if p >= 0) <= budget + 1e-9


def test_random_allocations_respect_the_budget():
    rng = np.random.default_rng(2)
    cost = rng.uniform(1, 10, size=(5, 6))
    feas = np.ones((5, 6), dtype=bool)
    rnd = random_allocations(feas, cost, 15.0, 200, seed=0)
    for row in rnd:
        assert sum(cost[p, s] for s, p in enumerate(row) if p >= 0) <= 15.0 + 1e-9


# -- the model behind the shortcut ------------------------------------------------------------

def test_batched_evaluation_matches_runner_paired_draws():
    """Stacked arms + shared tables give exactly what `imsim run` gives, draw by draw."""
    import imsim
    from imsim.config.scenario import parse_scenario

    rp = parse_plan(small_plan(states=["GA"], draws=4, max_strategies=2))
    rec = recommend(rp)
    ev = rec.evaluation
    pid = ("safe_sleep", "social_determinants")
    p = ev.portfolios.index(pid)
    sc = parse_scenario({"name": "x", "states": ["GA"], "years": [2026, 2028],
                         "strategies": {k: COVERAGE[k] for k in pid}})
    res = imsim.run(sc, seed=3, replicates=4)
    db = res.arms.baseline[:, :, 6:24].sum(axis=(1, 2))
    ds = res.arms.scenario[:, :, 6:24].sum(axis=(1, 2))
    assert np.allclose(ev.deaths_baseline[:, 0], db, rtol=1e-10)
    assert np.allclose(ev.deaths_averted[:, p, 0], db - ds, rtol=1e-8, atol=1e-8)
    # Disparity: NH black - NH white rate difference change, as in disparities.csv (draw 0).
    dis = res.table("disparities")
    row = dis[(dis.state == "GA") & (dis.race == "nh_black")].iloc[0]
    assert ev.rd_change[0, p, 0] == pytest.approx(row.rate_difference_change, rel=1e-8)


# -- one ineffective strategy -----------------------------------------------------------------

@pytest.mark.parametrize("how", ["efficacy", "coverage"])
def test_an_ineffective_strategy_is_never_recommended(how):
    if how == "efficacy":
        plan = small_plan(effects={"safe_sleep_unsafe_reduction": 0.0}, costs=None,
                          states=["AL", "MS"], draws=12)
    else:
        strategies = dict(COVERAGE, safe_sleep={"coverage": 0.0})
        plan = small_plan(strategies=strategies, costs=None, states=["AL", "MS"], draws=12)
    rec = recommend(parse_plan(plan))
    df, recs = rec.analysis.portfolios, rec.analysis.recommendations
    assert not recs.recommended.str.contains("safe_sleep").any()
    # It adds nothing: every portfolio with it ties with the same portfolio without it.
    for st in ("AL", "MS"):
        d = df[df.state == st].set_index("portfolio")
        for pid in d.index:
            if "safe_sleep" in pid and pid != "safe_sleep":
                rest = "+".join(x for x in pid.split("+") if x != "safe_sleep")
                assert d.loc[pid, "objective"] == pytest.approx(d.loc[rest, "objective"],
                                                                rel=1e-12)
        assert d.loc["safe_sleep", "deaths_averted"] == pytest.approx(0.0, abs=1e-9)
    alloc = rec.analysis.allocation
    assert not alloc.portfolio.str.contains("safe_sleep").any()


# -- end to end -----------------------------------------------------------------------------

DOCUMENTED = ["portfolios.csv", "recommendations.csv", "allocation.csv",
              "allocation_summary.json", "evppi.csv", "coverage.csv", "plan.resolved.yaml",
              "manifest.json", "index.html", "figures/tile_map.png",
              "figures/pareto_disparity.png", "figures/pareto_cost.png",
              "figures/states/AL.png", "figures/states/GA.png", "figures/states/VT.png",
              "briefs/AL.html", "briefs/GA.html", "briefs/VT.html"]


def test_end_to_end_writes_every_documented_file(e2e):
    for name in DOCUMENTED:
        assert (e2e / name).is_file(), name
    assert not any(p.name.startswith(".") for p in e2e.parent.iterdir() if p.name != "out")
    df = pd.read_csv(e2e / "portfolios.csv")
    assert list(df.columns[:9]) == ["state", "portfolio", "deaths_averted", "deaths_averted_lo",
                                    "deaths_averted_hi", "bw_rate_difference_change", "p_best",
                                    "cost", "pareto"]
    assert len(df) == 3 * 41
    assert df.groupby("state").portfolio.nunique().eq(41).all()
    assert (df.deaths_averted_lo <= df.deaths_averted + 1e-9).all()
    assert (df.deaths_averted <= df.deaths_averted_hi + 1e-9).all()
    rec = pd.read_csv(e2e / "recommendations.csv")
    for col in ("state", "recommended", "runner_up", "p_best", "key_input_1",
                "key_input_1_evppi"):
        assert col in rec.columns
    assert (rec.recommended != rec.runner_up).all()
    man = json.loads((e2e / "manifest.json").read_text())
    for key in ("seed", "draws", "plan", "data_hash", "timings"):
        assert key in man
    assert man["draws"] == 30 and man["seed"] == 3
    brief = (e2e / "briefs" / "GA.html").read_text()
    assert "data:image/png;base64," in brief and "Recommendation" in brief
    assert "src=\"http" not in brief and "src='http" not in brief
    index = (e2e / "index.html").read_text()
    assert all(f"briefs/{s}.html" in index for s in ("AL", "GA", "VT"))


def test_p_best_sums_to_one_per_state_and_pareto_is_consistent(e2e):
    df = pd.read_csv(e2e / "portfolios.csv")
    assert np.allclose(df.groupby("state").p_best.sum(), 1.0)
    for st, d in df.groupby("state"):
        front = pareto_front(d[["deaths_averted", "disparity_reduction", "cost"]].to_numpy(),
                             maximise=[True, True, False])
        assert (front == d.pareto.to_numpy()).all()
        assert d.pareto.any()
    # With a national budget the recommendation is the allocation's portfolio; the best
    # portfolio ignoring that budget is `best_without_budget` (tests/test_recommend_consistency.py).
    rec = pd.read_csv(e2e / "recommendations.csv").set_index("state")
    for st, d in df.groupby("state"):
        top = d[d.objective == d.objective.max()]
        assert rec.loc[st, "best_without_budget"] in set(top.portfolio)


def test_national_allocation_respects_constraints_and_beats_random(e2e):
    alloc = pd.read_csv(e2e / "allocation.csv")
    summary = json.loads((e2e / "allocation_summary.json").read_text())
    assert list(alloc.columns[:4]) == ["state", "portfolio", "deaths_averted", "cost"]
    assert alloc.state.is_unique and set(alloc.state) == {"AL", "GA", "VT"}
    chosen = alloc[alloc.portfolio != "none"]
    assert chosen.portfolio.str.split("+").str.len().max() <= 3
    assert alloc.cost.sum() <= 3_000_000 + 1e-6
    assert summary["cost"] <= 3_000_000 + 1e-6
    rnd = summary["random_allocations"]
    assert rnd["share_of_random_allocations_beaten"] == 1.0
    assert rnd["improvement_objective"] > 0
    assert summary["objective"] >= rnd["objective_best"] - 1e-9


def test_allocation_beats_random_on_the_same_draws():
    rec = recommend(parse_plan(small_plan(states=["AL", "MS"], draws=10,
                                          budget={"national": 1_000_000})))
    pd_ = rec.analysis.per_draw
    from imsim.analysis.decision import allocation_total

    opt = allocation_total(pd_["u"], pd_["choice"])[:, 0]
    rnd = allocation_total(pd_["u"], pd_["random"])
    assert opt.mean() >= rnd.mean(axis=0).max() - 1e-9
    costs = pd_["cost"]
    for row in pd_["random"]:
        assert sum(costs[p, s] for s, p in enumerate(row) if p >= 0) <= 1_000_000 + 1e-6


def test_per_state_budget_limits_the_recommendation():
    rec = recommend(parse_plan(small_plan(states=["AL", "VT"], draws=8,
                                          budget={"per_state": 3_000_000,
                                                  "by_state": {"VT": 1.0}})))
    df = rec.analysis.portfolios
    recs = rec.analysis.recommendations.set_index("state")
    al = df[df.state == "AL"]
    assert al.within_budget.any() and not al.within_budget.all()
    assert al.set_index("portfolio").loc[recs.loc["AL", "recommended"], "cost"] <= 3_000_000
    assert (al[~al.within_budget].p_best == 0).all()
    assert al.p_best.sum() == pytest.approx(1.0)
    # Nothing fits VT's budget of $1: no recommendation, and none in the allocation.
    assert recs.loc["VT", "recommended"] == "none"
    assert (df[df.state == "VT"].p_best == 0).all()
    alloc = rec.analysis.allocation.set_index("state")
    assert alloc.loc["VT", "portfolio"] == "none"


# -- bad plans ------------------------------------------------------------------------------

BAD = [
    (small_plan(max_strategys=3), "max_strategys", "did you mean 'max_strategies'"),
    (small_plan(max_strategies=7), "max_strategies", "out of range"),
    (small_plan(states=["AL", "XX"]), "states", "unknown state"),
    (small_plan(strategies={"safe_sleep": {}}), "strategies.safe_sleep.coverage", "required"),
    (small_plan(strategies={"safe_slep": {"coverage": 0.2}}), "strategies.safe_slep",
     "did you mean 'safe_sleep'"),
    (small_plan(strategies={"safe_sleep": {"coverage": 1.5}}), "strategies.safe_sleep.coverage",
     "outside [0, 1]"),
    (small_plan(costs={"safe_sleep": -1}), "costs.safe_sleep", ">= 0"),
    (small_plan(costs={"safe_sleep": 1}), "costs.smoking_cessation", "no cost"),
    (small_plan(costs=None, budget={"national": 10}), "budget", "needs costs"),
    (small_plan(budget={"by_state": {"TX": 5}}), "budget.by_state.TX", "not in states"),
    (small_plan(objective={"deaths_averted": 0, "disparity_reduction": 0}), "objective",
     "at least one"),
    (small_plan(objective={"death_averted": 1}), "objective.death_averted", "did you mean"),
    (small_plan(draws=0), "draws", "out of range"),
    (small_plan(years=[2030, 2026]), "years", "reversed"),
    (small_plan(effects={"nope_or": 1.0}), "effects.nope_or", "unknown effect"),
    (small_plan(collaborative={"start": 2026, "support_ends": 2027, "teams": {"AL": ["x"]}}),
     "collaborative.teams", "remove teams"),
    ("name: [unclosed\n", "line", "invalid YAML"),
    ("- a\n- b\n", "", "mapping"),
]


@pytest.mark.parametrize("data,where,msg", BAD)
def test_bad_plan_exits_2_and_writes_nothing(tmp_path, capsys, data, where, msg):
    plan = write_plan(tmp_path, data)
    out = tmp_path / "out"
    code = main([str(plan), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert where in err and msg in err, err
    assert str(plan) in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["plan.yaml"]


def test_existing_nonempty_out_is_refused(tmp_path, capsys):
    plan = write_plan(tmp_path, small_plan())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main([str(plan), "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_example_plans_validate():
    from imsim.analysis.recommend import load_plan

    root = Path(__file__).resolve().parents[1] / "plans"
    for f in sorted(root.glob("*.yaml")):
        rp = load_plan(f)
        assert rp.candidates


@pytest.mark.slow
def test_collaborative_plan_runs(tmp_path):
    plan = small_plan(strategies={"smoking_cessation": {"program": "incentives"},
                                  "safe_sleep": {}}, costs=None, states=["AL", "GA"], draws=5,
                      collaborative={"start": 2026, "support_ends": 2027})
    rec = recommend(parse_plan(plan))
    assert set(rec.coverage.strategy) == {"safe_sleep", "smoking_cessation"}
    assert rec.coverage.coverage.max() > 0
    assert len(rec.analysis.portfolios) == 2 * 3
