"""`imsim recommend`: one answer per state everywhere, units named, readable briefs, sound fronts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.analysis.decision import pareto_front
from imsim.analysis.recommend import parse_plan, recommend
from imsim.output.briefs import _names, front_line
from imsim.output.recommendation import headline, main

STATES = ["AL", "GA", "VT"]


def plan(**over) -> dict:
    p = {"name": "c", "states": STATES, "years": [2026, 2028], "draws": 6, "seed": 5,
         "strategies": {"safe_sleep": {"coverage": {2026: 0.3, 2028: 0.6}},
                        "preterm_prevention": {"coverage": 0.5},
                        "preconception_care": {"coverage": 0.4},
                        "risk_appropriate_care": {"coverage": 0.5},
                        "social_determinants": {"coverage": 0.3}},
         "costs": {"safe_sleep": 20, "preterm_prevention": 150, "preconception_care": 400,
                   "risk_appropriate_care": 2500, "social_determinants": 1500},
         "objective": {"deaths_averted": 1.0, "disparity_reduction": 0.5}}
    p.update(over)
    return p


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cons")
    f = tmp / "plan.yaml"
    f.write_text(yaml.safe_dump(plan(budget={"national": 3_000_000}), sort_keys=False))
    assert main([str(f), "--out", str(tmp / "out"), "--quiet"]) == 0
    return tmp / "out"


def _text(path: Path) -> str:
    """The visible text of an HTML page (images and styles dropped)."""
    t = path.read_text(encoding="utf-8")
    t = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", t)
    return re.sub(r"<style>.*?</style>", "", t, flags=re.S)


def test_with_a_budget_every_output_recommends_the_allocation(budgeted):
    rec = pd.read_csv(budgeted / "recommendations.csv", keep_default_na=False).set_index("state")
    alloc = pd.read_csv(budgeted / "allocation.csv", keep_default_na=False).set_index("state")
    assert (rec.recommended == alloc.portfolio.loc[rec.index]).all()
    # The budget binds in this plan: some state's best without the budget is not allocated.
    assert (rec.best_without_budget != rec.recommended).any()
    index = _text(budgeted / "index.html")
    for st in STATES:
        port = alloc.loc[st, "portfolio"]
        row = re.search(rf"briefs/{st}\.html'>[^<]*</a></td><td>([^<]*)</td>", index).group(1)
        assert row == _names(port)
        brief = _text(budgeted / "briefs" / f"{st}.html")
        said = re.search(r"<b>Recommendation:</b> ([^<]*?)\.<br>", brief).group(1)
        assert said == _names(port)
        if rec.loc[st, "best_without_budget"] != port:
            assert "Best without the budget" in brief


def test_headline_gap_is_in_deaths(budgeted):
    s = json.loads((budgeted / "allocation_summary.json").read_text())
    alloc = pd.read_csv(budgeted / "allocation.csv")
    rnd = s["random_allocations"]
    assert alloc.deaths_averted.sum() == pytest.approx(s["deaths_averted"], rel=1e-5)
    assert rnd["improvement_deaths"] == pytest.approx(
        s["deaths_averted"] - rnd["deaths_averted_mean"], rel=1e-9, abs=1e-9)
    line = headline(s)
    assert f"{rnd['improvement_deaths']:,.0f} deaths more than random" in line
    assert f"objective = 1 x deaths averted + 0.5 x excess NH black deaths averted: " \
           f"{rnd['improvement_objective']:,.0f} more" in line
    index = _text(budgeted / "index.html")
    assert re.search(rf"averts {rnd['improvement_deaths']:,.0f} deaths more", index)


def test_html_has_no_nan_no_duplicate_ranges_no_backticks(budgeted):
    for page in [budgeted / "index.html", *sorted((budgeted / "briefs").glob("*.html"))]:
        t = _text(page)
        assert not re.search(r"\bnan\b", t, flags=re.I), page.name
        assert "`" not in t, page.name
        for a, b in re.findall(r"(\d[\d.,]*%?)\u2013(\d[\d.,]*%?)", t):
            assert a != b, (page.name, a, b)
        assert "see README" not in t
        assert not re.search(r"\d\.\d{5,}", t), page.name      # no 0.449495-style numbers
    brief = _text(budgeted / "briefs" / "AL.html")
    assert "SS = Safe sleep" in brief                          # the figure's key
    assert "Preterm prevention: 50% of" in brief               # a constant coverage, once


def test_without_costs_no_cost_column():
    rec = recommend(parse_plan(plan(states=["AL"], draws=2, costs=None)))
    from imsim.output.briefs import write_brief

    tmp = Path(__import__("tempfile").mkdtemp())
    fig = tmp / "f.png"
    fig.write_bytes(b"png")
    write_brief(rec.analysis, rec.plan, rec.evaluation, "AL", fig, tmp / "AL.html",
                rec.evidence, rec.coverage)
    t = _text(tmp / "AL.html")
    assert "cost, USD" not in t and "No costs were given" in t
    assert not re.search(r"\bnan\b", t, flags=re.I)


def test_without_a_budget_the_recommendation_is_the_best():
    rec = recommend(parse_plan(plan(states=["AL", "GA"], draws=4)))
    an = rec.analysis
    r = an.recommendations.set_index("state")
    for st, d in an.portfolios.groupby("state"):
        top = d[d.objective == d.objective.max()]
        assert r.loc[st, "recommended"] in set(top.portfolio)
        assert r.loc[st, "best_without_budget"] == r.loc[st, "recommended"]


@pytest.mark.parametrize("larger", [True, False])
def test_front_line_is_sorted_and_non_dominated(budgeted, larger):
    df = pd.read_csv(budgeted / "portfolios.csv")
    rng = np.random.default_rng(0)
    cases = [(d.cost.to_numpy() / 1e6, d.deaths_averted.to_numpy()) if not larger else
             (d.deaths_averted.to_numpy(), d.disparity_reduction.to_numpy())
             for _, d in df.groupby("state")]
    cases.append((rng.normal(size=60), rng.normal(size=60)))
    for x, y in cases:
        fx, fy = front_line(x, y, x_larger_better=larger)
        assert len(fx) >= 1
        assert np.all(np.diff(fx) >= 0)
        on = pareto_front(np.stack([x, y], axis=1), maximise=[larger, True])
        front = {(a, b) for a, b in zip(x[on], y[on])}
        assert {(a, b) for a, b in zip(fx, fy)} == front
        # Along the line, y moves in one direction only: no zig-zag.
        assert np.all(np.diff(fy) <= 0) if larger else np.all(np.diff(fy) >= 0)
