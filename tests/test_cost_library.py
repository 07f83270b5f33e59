"""The cost library (costs.csv) and its use by ``imsim recommend``: ``costs: library`` in plans,
keyed cost draws in the probabilistic analysis (CEAC), ``imsim data costs``, and the baseline
headline of ``imsim run`` without strategies."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.analysis.economics import (
    COST_LIBRARY_COLUMNS,
    ILLUSTRATIVE_NOTE,
    LIBRARY_NOTE,
    ceac,
    cost_effectiveness,
    library_cost_draws,
    library_costs,
    load_cost_library,
    priced_option_warnings,
    triangular_ppf,
)
from imsim.config.plan import parse_plan
from imsim.core.constants import STRATEGIES
from imsim.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
IMSIM = Path(sys.executable).parent / ("imsim.exe" if os.name == "nt" else "imsim")


def _build_data_module():
    spec = importlib.util.spec_from_file_location("build_data", REPO / "scripts" / "build_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------------- the table

def test_library_has_one_checked_row_per_strategy_with_a_source():
    lib = load_cost_library()
    assert list(lib.columns) == COST_LIBRARY_COLUMNS
    assert list(lib.strategy) == list(STRATEGIES)
    assert ((lib.low >= 0) & (lib.low <= lib.usd_per_birth_reached)
            & (lib.usd_per_birth_reached <= lib.high)).all()
    assert (lib.low < lib.high).all()                       # every cost has a real range
    for r in lib.itertuples(index=False):
        assert isinstance(r.source, str) and len(r.source) > 20, r.strategy
        assert isinstance(r.url, str) and r.url.startswith("http"), r.strategy
        assert isinstance(r.note, str) and r.note, r.strategy
        if r.status == "illustrative":
            # labelled as such, and no price year pretends to be data
            assert "ILLUSTRATIVE" in r.source and "ILLUSTRATIVE" in r.note
            assert r.price_year != r.price_year             # NaN
        else:
            assert 2000 <= r.price_year <= 2025, r.strategy
            assert isinstance(r.quote, str) and r.quote, r.strategy


@pytest.mark.parametrize("strategy, figures", [
    ("smoking_cessation", ["$112", "$24", "$368.78"]),
    ("preconception_care", ["$1,091", "$650"]),
    ("risk_appropriate_care", ["US$834", "US$22,922"]),
    ("social_determinants", ["$4,513"]),
])
def test_cited_figures_appear_in_the_quoted_source_text(strategy, figures):
    """The numbers a sourced/derived row rests on are in the quote taken from the source."""
    r = load_cost_library().set_index("strategy").loc[strategy]
    for f in figures:
        assert f in r.quote, (strategy, f)


def test_derived_values_follow_their_stated_arithmetic():
    lib = load_cost_library().set_index("strategy")
    rac = lib.loc["risk_appropriate_care"]
    assert rac.usd_per_birth_reached == round(0.9 * 834 + 0.1 * 22922)
    assert (rac.low, rac.high) == (834, 22922)
    sd = lib.loc["social_determinants"]
    assert (sd.low, sd.usd_per_birth_reached, sd.high) == (int(0.5 * 4513 + 0.5), 4513, 2 * 4513)  # half up
    pc = lib.loc["preconception_care"]
    assert pc.low == 1091 - 650 and pc.high == int(1.5 * 1091 + 0.5)


def test_packaged_costs_csv_is_what_build_data_writes(tmp_path):
    bd = _build_data_module()
    bd.write_csv(bd.build_costs(), tmp_path / "costs.csv", bd.COST_COLUMNS, ["strategy"])
    packaged = REPO / "src" / "imsim" / "inputs" / "data" / "costs.csv"
    assert (tmp_path / "costs.csv").read_bytes() == packaged.read_bytes()


def test_costs_are_not_in_the_data_hash():
    """Costs never feed the birth model, so they are not in tables.json (a cost edit must not
    make the calibration stale)."""
    from imsim.inputs.data import catalogue

    assert "costs.csv" not in {t["file"] for t in catalogue()}


# --------------------------------------------------------------------------------- the draws

def test_triangular_quantiles():
    a, c, b = 10.0, 30.0, 110.0
    u = np.linspace(0, 1, 1001)
    x = triangular_ppf(u, a, c, b)
    assert x[0] == pytest.approx(a) and x[-1] == pytest.approx(b)
    assert np.all(np.diff(x) >= 0)
    assert triangular_ppf([(c - a) / (b - a)], a, c, b)[0] == pytest.approx(c)
    # CDF check at a point left and right of the mode
    for xq in (20.0, 70.0):
        f = ((xq - a) ** 2 / ((b - a) * (c - a)) if xq <= c
             else 1 - (b - xq) ** 2 / ((b - a) * (b - c)))
        assert triangular_ppf([f], a, c, b)[0] == pytest.approx(xq)
    assert np.all(triangular_ppf(u, 5, 5, 5) == 5)


def test_cost_draws_are_keyed_point_first_and_have_the_triangular_mean():
    lib = load_cost_library().set_index("strategy")
    ks = ["safe_sleep", "risk_appropriate_care"]
    n = 4001
    d = library_cost_draws(ks, seed=9, n_draws=n)
    assert d.shape == (n, 2)
    assert list(d[0]) == [lib.loc[k, "usd_per_birth_reached"] for k in ks]   # draw 0 = value
    # prefix property and independence from the other candidates
    assert np.array_equal(library_cost_draws(ks, 9, 50), d[:50])
    assert np.array_equal(library_cost_draws(["risk_appropriate_care"], 9, n)[:, 0], d[:, 1])
    assert not np.array_equal(library_cost_draws(ks, 10, 50), d[:50])
    for j, k in enumerate(ks):
        a, c, b = lib.loc[k, ["low", "usd_per_birth_reached", "high"]].astype(float)
        x = d[1:, j]
        assert x.min() >= a and x.max() <= b
        mean = (a + b + c) / 3
        sd = np.sqrt((a * a + b * b + c * c - a * b - a * c - b * c) / 18)
        assert abs(x.mean() - mean) < 4 * sd / np.sqrt(x.size), k


def test_ceac_uses_the_per_draw_costs():
    """Two options with fixed effects: with fixed costs the cheaper-per-life-year one always wins at a
    WTP between the two ICERs; with drawn costs the probability follows the cost draws."""
    r = 2000
    lyg = np.tile([[10.0, 20.0]], (r, 1))
    fixed = np.array([100.0, 300.0])
    wtp = [15.0]                              # NMB: 150-100 = 50 vs 300-300 = 0 -> option 0
    assert ceac(lyg, fixed, wtp)[0].tolist() == [1.0, 0.0, 0.0]
    rng = np.random.default_rng(1)
    c1 = rng.uniform(100, 400, r)             # option 1 wins when 300 - c1 > 50, i.e. c1 < 250
    drawn = np.stack([np.full(r, 100.0), c1], axis=1)
    p = ceac(lyg, drawn, wtp)[0]
    expected = np.mean(c1 < 250)
    assert p[1] == pytest.approx(expected) and p.sum() == pytest.approx(1)


def test_cost_effectiveness_with_constant_draws_equals_fixed_costs():
    rng = np.random.default_rng(3)
    da = rng.gamma(5, 1, size=(30, 3, 2))
    cost = np.array([[1e5, 2e5], [3e5, 1e5], [4e5, 5e5]])
    a = cost_effectiveness(["AL", "VT"], ["p", "q", "r"], da, cost, True)
    b = cost_effectiveness(["AL", "VT"], ["p", "q", "r"], da, cost, True,
                           cost_draws=np.broadcast_to(cost, da.shape).copy())
    pd.testing.assert_frame_equal(a[2], b[2])
    assert (a[1].cost_note == ILLUSTRATIVE_NOTE).all() and (b[1].cost_note == LIBRARY_NOTE).all()
    # frontier and ICER use the point cost either way
    pd.testing.assert_series_equal(a[1].icer, b[1].icer)


# --------------------------------------------------------------------------------- plans

PLAN = {"name": "lib", "states": ["AL"], "years": [2026, 2026], "max_strategies": 2,
        "strategies": {"safe_sleep": {"coverage": 0.5},
                       "smoking_cessation": {"coverage": 0.3, "program": "incentives"},
                       "preterm_prevention": {"coverage": 0.5}},
        "draws": 6, "seed": 2}


def test_plan_costs_library_takes_every_candidate_from_the_library():
    rp = parse_plan({**PLAN, "costs": "library"})
    lib = library_costs()
    assert rp.library_costs == ("safe_sleep", "smoking_cessation", "preterm_prevention")
    for k in rp.library_costs:
        assert getattr(rp.plan.costs, k) == lib[k]
    assert rp.resolved()["costs_from_library"] == list(rp.library_costs)


def test_plan_costs_can_mix_own_values_and_library():
    rp = parse_plan({**PLAN, "costs": {"safe_sleep": 30, "smoking_cessation": 900,
                                       "preterm_prevention": "library"}})
    assert rp.library_costs == ("preterm_prevention",)
    assert rp.plan.costs.safe_sleep == 30 and rp.plan.costs.smoking_cessation == 900
    assert rp.plan.costs.preterm_prevention == library_costs()["preterm_prevention"]


def test_plans_with_their_own_costs_are_unchanged():
    costs = {"safe_sleep": 20, "smoking_cessation": 600, "preterm_prevention": 150}
    rp = parse_plan({**PLAN, "costs": costs})
    assert rp.library_costs == ()
    assert {k: v for k, v in rp.plan.costs.model_dump().items() if v is not None} == costs
    assert "costs_from_library" not in rp.resolved()


@pytest.mark.parametrize("costs, where, text", [
    ({"safe_sleep": "cheap", "smoking_cessation": 1, "preterm_prevention": 1}, "costs.safe_sleep",
     "library"),
    ({"safe_sleep": -5, "smoking_cessation": 1, "preterm_prevention": 1}, "costs.safe_sleep", ">= 0"),
    ({"safe_sleep": 5, "smoking_cessation": 1}, "costs.preterm_prevention", "library"),
])
def test_bad_costs_name_the_key_and_the_library(costs, where, text):
    with pytest.raises(InputError) as ei:
        parse_plan({**PLAN, "costs": costs}, file="p.yaml")
    msg = str(ei.value)
    assert where in msg and text in msg and "p.yaml" in msg


def test_a_budget_without_costs_points_to_the_library():
    with pytest.raises(InputError, match="costs: library"):
        parse_plan({**PLAN, "budget": {"national": 1e6}})


def test_priced_option_warnings():
    w = priced_option_warnings({"smoking_cessation": {"program": "incentives"},
                                "social_determinants": {"policy": "medicaid_expansion"},
                                "preterm_prevention": {"components": ["hard_stop",
                                                                      "vaginal_progesterone"]},
                                "safe_sleep": {}})
    assert len(w) == 1 and "program=counselling" in w[0] and "incentives" in w[0]
    w = priced_option_warnings({"preterm_prevention": {"components": ["ohpc"]}})
    assert len(w) == 1 and "components=ohpc" in w[0]


# --------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def library_run(tmp_path_factory):
    from imsim.output.recommendation import main

    tmp = tmp_path_factory.mktemp("libcost")
    plan = {**PLAN, "states": ["AL", "VT"], "costs": "library",
            "budget": {"national": 3_000_000}, "draws": 8}
    p = tmp / "plan.yaml"
    p.write_text(yaml.safe_dump(plan, sort_keys=False))
    out = tmp / "out"
    assert main([str(p), "--out", str(out), "--quiet"]) == 0
    return out


def test_recommend_with_library_costs_records_them_and_draws_them(library_run):
    man = json.loads((library_run / "manifest.json").read_text())
    c = man["cost_effectiveness"]["costs"]
    assert c["from_library"] == ["safe_sleep", "smoking_cessation", "preterm_prevention"]
    assert {r["strategy"] for r in c["library"]} == set(c["from_library"])
    assert all("triangular" in v for v in c["uncertainty"].values())
    assert any("program=counselling" in w for w in man["warnings"])
    ce = pd.read_csv(library_run / "cost_effectiveness.csv")
    assert (ce.cost_note == LIBRARY_NOTE).all()
    cc = pd.read_csv(library_run / "ceac.csv")
    assert np.allclose(cc.groupby(["state", "wtp_per_life_year"]).p_best.sum(), 1)
    # the portfolio cost is the library value x births reached (the point), within the budget
    pf = pd.read_csv(library_run / "portfolios.csv")
    assert pf.cost.gt(0).all()
    al = pd.read_csv(library_run / "allocation.csv")
    assert al.cost.sum() <= 3_000_000 * (1 + 1e-9)
    brief = next((library_run / "briefs").glob("*.html")).read_text()
    assert "cost library" in brief


def test_recommend_cost_draws_match_the_keyed_library_draws(library_run):
    """The per-draw costs behind the CEAC are the library draws x births reached, draw by draw."""
    from imsim.analysis.recommend import recommend

    plan = {**PLAN, "states": ["VT"], "costs": "library", "draws": 5}
    rec = recommend(parse_plan(plan))
    cd = rec.analysis.per_draw["cost_draws"]                      # [R, P, S]
    ev = rec.evaluation
    units = library_cost_draws(ev.strategies, plan["seed"], ev.deaths_averted.shape[0])[1:]
    single = [i for i, p in enumerate(ev.portfolios) if len(p) == 1]
    for i in single:
        k = ev.strategies.index(ev.portfolios[i][0])
        assert np.allclose(cd[:, i, 0], units[:, k] * ev.reached[0, k])
    assert np.allclose(rec.analysis.per_draw["cost"][single, 0],
                       [library_costs()[ev.portfolios[i][0]] * ev.reached[0, ev.strategies.index(
                           ev.portfolios[i][0])] for i in single])


pytestmark_cli = pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")


def _imsim(*args, cwd=REPO):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(IMSIM), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env, check=False)


@pytestmark_cli
def test_imsim_data_costs_lists_the_library_with_sources():
    p = _imsim("data", "costs")
    assert p.returncode == 0, p.stderr
    for k in STRATEGIES:
        assert f"\n{k}" in p.stdout
    assert p.stdout.count("source: ") == len(STRATEGIES)
    assert p.stdout.count("[ILLUSTRATIVE]") == int((load_cost_library().status
                                                     == "illustrative").sum())
    listing = _imsim("data")
    assert "imsim data costs" in listing.stdout


@pytestmark_cli
def test_run_without_strategies_prints_the_baseline_not_zero_averted(tmp_path):
    sc = tmp_path / "base.yaml"
    sc.write_text(yaml.safe_dump({"name": "base", "years": [2014, 2014], "states": ["VT", "MS"],
                                  "replicates": 1}))
    p = _imsim("run", sc, "--out", tmp_path / "out")
    assert p.returncode == 0, p.stderr
    line = p.stdout.splitlines()[0]
    assert "averted" not in line
    assert "no strategies" in line and "infant deaths" in line and "IMR" in line
    assert "Non-Hispanic black" in line and "NH black / NH white IMR ratio" in line
    s = pd.read_csv(tmp_path / "out" / "summary.csv")
    tot = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
    assert f"{tot.deaths_baseline:,.0f} infant deaths" in line
