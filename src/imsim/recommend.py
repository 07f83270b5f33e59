"""``imsim recommend PLAN``: choose strategy portfolios for states, with equity, cost and uncertainty.

A *plan* (YAML, validated as strictly as a scenario) names the states, the horizon, the coverage
each strategy would reach if a state chose it (or a learning-collaborative block), the most
strategies per state, optional costs and budgets, the objective's weights and the number of
uncertainty draws. For every state, every portfolio of 1..k strategies is evaluated under the same
effect draws and baseline fits (common random numbers across portfolios and states; see
:mod:`imsim.portfolio`), and the results are turned into rankings, Pareto fronts, a recommendation
per state with the inputs whose uncertainty could overturn it (EVPPI), a national allocation
solved exactly as a multiple-choice knapsack, figures and one-page briefs. See docs/recommend.md.

Definitions (per state, summed over the horizon, per draw):

* ``deaths_averted`` = baseline deaths - portfolio deaths (all races).
* ``bw_rate_difference_change`` = change of (NH black - NH white) deaths per 1,000 live births;
  negative = the gap narrows.
* ``disparity_reduction`` = excess NH black deaths averted = - births_NH_black x
  bw_rate_difference_change / 1,000: the fall in deaths above what NH black births would have at
  the NH white rate. It is in deaths, so it can be weighed against deaths averted.
* ``objective`` = w_deaths x deaths_averted + w_disparity x disparity_reduction.
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import html
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .constants import STATE_NAMES, STATES, STRATEGIES
from .errors import InputError, did_you_mean
from .outdir import check_new
from .portfolio import ELIGIBLE, Evaluation, Setup, enumerate_portfolios, evaluate, portfolio_id
from .scenario import _short, _Strict, _to_input_error, parse_scenario, read_yaml

#: Short labels for figures.
ABBREV = {"safe_sleep": "SS", "smoking_cessation": "SC", "preterm_prevention": "PP",
          "preconception_care": "PC", "risk_appropriate_care": "RC", "social_determinants": "SD"}
LABELS = {"safe_sleep": "Safe sleep", "smoking_cessation": "Smoking cessation",
          "preterm_prevention": "Preterm prevention", "preconception_care": "Preconception care",
          "risk_appropriate_care": "Risk-appropriate care",
          "social_determinants": "Social determinants"}
NONE = "none"
#: Relative tolerance under which two objective values count as a tie.
TIE_RTOL = 1e-9
N_RANDOM_ALLOCATIONS = 1000

PORTFOLIO_COLUMNS = [
    "state", "portfolio", "deaths_averted", "deaths_averted_lo", "deaths_averted_hi",
    "bw_rate_difference_change", "p_best", "cost", "pareto",
    # extra columns (may be added to, never renamed)
    "n_strategies", "deaths_averted_point", "bw_rate_difference_change_lo",
    "bw_rate_difference_change_hi", "disparity_reduction", "disparity_reduction_lo",
    "disparity_reduction_hi", "objective", "objective_lo", "objective_hi", "within_budget", "rank",
]
RECOMMENDATION_COLUMNS = [
    "state", "recommended", "runner_up", "p_best", "key_input_1", "key_input_1_evppi",
    "key_input_2", "key_input_2_evppi", "key_input_3", "key_input_3_evppi",
    "deaths_averted", "deaths_averted_lo", "deaths_averted_hi", "bw_rate_difference_change",
    "disparity_reduction", "cost", "budget", "runner_up_deaths_averted", "runner_up_p_best",
    "evpi",
]
ALLOCATION_COLUMNS = ["state", "portfolio", "deaths_averted", "cost", "deaths_averted_lo",
                      "deaths_averted_hi", "disparity_reduction", "objective"]


# ---------------------------------------------------------------------------------------------
# The plan file
# ---------------------------------------------------------------------------------------------

def _money(v, what="a cost"):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PydanticCustomError("not_number", "expected {what} in US dollars (a number >= 0), "
                                  "got {value}", {"what": what, "value": _short(v)})
    if not (float(v) >= 0 and np.isfinite(float(v))):
        raise PydanticCustomError("out_of_range", "{what} must be a finite number >= 0, got "
                                  "{value}", {"what": what, "value": v})
    return float(v)


class PlanCosts(_Strict):
    """Cost per birth reached (USD) of each strategy: the user's inputs (imsim ships none)."""

    safe_sleep: float | None = None
    smoking_cessation: float | None = None
    preterm_prevention: float | None = None
    preconception_care: float | None = None
    risk_appropriate_care: float | None = None
    social_determinants: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _cost(cls, v):
        return None if v is None else _money(v, "a cost per birth reached")


class PlanBudget(_Strict):
    """Budgets (USD over the horizon): national (allocation), per state (recommendations)."""

    national: float | None = None
    per_state: float | None = None
    by_state: dict[str, float] | None = None

    @field_validator("national", "per_state", mode="before")
    @classmethod
    def _b(cls, v):
        return None if v is None else _money(v, "a budget")

    @field_validator("by_state", mode="before")
    @classmethod
    def _by_state(cls, v):
        if v is None:
            return v
        if not isinstance(v, dict):
            raise PydanticCustomError("not_mapping", "by_state must map USPS codes to budgets, "
                                      "got {value}", {"value": _short(v)})
        out = {}
        for k, x in v.items():
            if k not in STATES:
                raise PydanticCustomError("unknown_state", "unknown state '{key}'{hint}",
                                          {"key": k, "hint": did_you_mean(str(k).upper(), STATES),
                                           "bad_key": k})
            out[k] = _money(x, f"the budget of {k}")
        return out


class PlanObjective(_Strict):
    """Weights of the objective: w1 x deaths averted + w2 x excess NH black deaths averted."""

    deaths_averted: float = Field(default=1.0, ge=0, le=1e6)
    disparity_reduction: float = Field(default=0.0, ge=0, le=1e6)

    @model_validator(mode="after")
    def _some(self):
        if self.deaths_averted == 0 and self.disparity_reduction == 0:
            raise PydanticCustomError("objective", "at least one objective weight must be > 0",
                                      {})
        return self


class Plan(_Strict):
    """A validated plan (see docs/recommend.md). Scenario-like keys are checked as in scenarios."""

    name: str
    description: str = ""
    states: Any = "all"
    years: Any
    max_strategies: int = Field(default=3, ge=1, le=6)
    strategies: Any = None
    collaborative: dict[str, Any] | None = None
    costs: PlanCosts | None = None
    budget: PlanBudget | None = None
    objective: PlanObjective = Field(default_factory=PlanObjective)
    draws: int = Field(default=200, ge=1, le=5000)
    seed: int = Field(default=0, ge=0, lt=2**63)
    effects: Any = None
    births_change_per_year: Any = 0.0


@dataclass
class ResolvedPlan:
    plan: Plan
    scenario: Any                      # imsim.scenario.Scenario carrying the shared keys
    candidates: list[str]
    file: str | None = None

    @property
    def states(self) -> list[str]:
        return self.scenario.state_list

    def state_budget(self, state: str) -> float | None:
        b = self.plan.budget
        if b is None:
            return None
        if b.by_state and state in b.by_state:
            return b.by_state[state]
        return b.per_state

    def resolved(self) -> dict:
        out = self.plan.model_dump(mode="json", exclude_none=True)
        sc = self.scenario.resolved()
        for k in ("name", "description", "years", "states", "seed", "strategies", "effects",
                  "births_change_per_year"):
            if k in sc:
                out[k] = sc[k]
        out["candidates"] = list(self.candidates)
        return out


def parse_plan(data: Any, file: str | None = None) -> ResolvedPlan:
    """Validate a mapping as a plan; raise InputError naming the file and key path."""
    if not isinstance(data, dict):
        raise InputError("a plan must be a mapping of keys", file=file)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        raise _to_input_error(err, file) from None
    shared = {k: data[k] for k in ("name", "description", "years", "states", "seed", "strategies",
                                   "effects", "births_change_per_year") if k in data}
    scenario = parse_scenario(shared, file=file)
    active = scenario.strategies.active() if scenario.strategies is not None else {}
    collab = plan.collaborative
    if collab is None:
        if not active:
            raise InputError("give the coverage each strategy would reach if chosen, e.g. "
                             "strategies: {safe_sleep: {coverage: 0.5}} (or a collaborative "
                             "block)", file=file, where="strategies")
        for k, block in active.items():
            if block.coverage is None:
                raise InputError("required key is missing: the coverage this strategy would "
                                 "reach if chosen (a number or a {year: share} ramp)",
                                 file=file, where=f"strategies.{k}.coverage")
        candidates = [k for k in STRATEGIES if k in active]
    else:
        if "teams" in collab:
            raise InputError("recommend sets the teams itself (every plan state works on the "
                             "strategy being evaluated); remove teams", file=file,
                             where="collaborative.teams")
        for k, block in active.items():
            if block.coverage is not None:
                raise InputError("with a collaborative block coverage comes from the "
                                 "collaborative model; keep only options here (program, "
                                 "components, policy, reach)", file=file,
                                 where=f"strategies.{k}.coverage")
        from .collaborative import parse_collaborative

        parse_collaborative({**collab, "teams": {"AL": ["safe_sleep"]}}, file=file)
        candidates = [k for k in STRATEGIES if k in active] if active else list(STRATEGIES)
    if plan.costs is not None:
        for k in candidates:
            if getattr(plan.costs, k) is None:
                raise InputError(f"no cost given for candidate strategy {k}; give a cost per "
                                 "birth reached for every strategy in the plan (or no costs)",
                                 file=file, where=f"costs.{k}")
    if plan.budget is not None:
        if plan.costs is None:
            raise InputError("a budget needs costs per birth reached for the strategies",
                             file=file, where="budget")
        if plan.budget.by_state and scenario.states != "all":
            for s in plan.budget.by_state:
                if s not in scenario.states:
                    raise InputError(f"{s} is not in states {list(scenario.states)}", file=file,
                                     where=f"budget.by_state.{s}")
    return ResolvedPlan(plan, scenario, candidates, file)


def load_plan(path: str | Path) -> ResolvedPlan:
    """Read and validate a plan file."""
    data = read_yaml(path, what="plan")
    return parse_plan(data, file=str(path))


# ---------------------------------------------------------------------------------------------
# Setup: coverage per candidate strategy and cell
# ---------------------------------------------------------------------------------------------

def build_setup(rp: ResolvedPlan) -> tuple[Setup, Any, Any]:
    """Cells, coverage and options; returns (setup, evidence library, coverage table)."""
    from .runner import resolve_inputs

    sc = rp.scenario
    inputs = resolve_inputs(sc)
    cells = inputs.cells
    active = sc.strategies.active() if sc.strategies is not None else {}
    options = {}
    for k in rp.candidates:
        block = active.get(k)
        if block is None:
            from .scenario import STRATEGY_MODELS

            block = STRATEGY_MODELS[k]()
        options[k] = block.model_dump(exclude={"coverage", "reach"})
    coverage = {k: inputs.coverage[k].copy() for k in rp.candidates}
    if rp.plan.collaborative is not None:
        from .collaborative import annual_coverage, parse_collaborative, run_collaborative
        from .constants import RACES

        states = np.asarray(STATES)[cells.s_idx]
        races = np.asarray(RACES)[cells.r_idx]
        for k in rp.candidates:
            cfg = parse_collaborative({**rp.plan.collaborative,
                                       "teams": {s: [k] for s in sc.state_list}}, file=rp.file)
            annual = annual_coverage(run_collaborative(cfg, tuple(sc.years), sc.seed))
            lut = {(int(r.year), r.state): float(r.coverage) for r in annual.itertuples()}
            c = np.array([lut.get((int(y), s), 0.0) for y, s in zip(cells.year, states)])
            block = active.get(k)
            if block is not None and block.reach:
                c = c * np.array([block.reach.get(r, 1.0) for r in races])
            coverage[k] = c
    setup = Setup(inputs.baseline, cells, [s for s in STATES if s in set(sc.state_list)],
                  coverage, options)
    cov_rows = []
    st = np.asarray(STATES)[cells.s_idx]
    for k in rp.candidates:
        df = pd.DataFrame({"year": cells.year, "state": st, "coverage": coverage[k]})
        df = df.groupby(["year", "state"], as_index=False, sort=False)["coverage"].max()
        df["strategy"] = k
        cov_rows.append(df[["year", "state", "strategy", "coverage"]])
    return setup, inputs.evidence, pd.concat(cov_rows, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def pareto_front(points: np.ndarray, maximise=None) -> np.ndarray:
    """Boolean [n]: rows of ``points`` [n, m] not dominated by any other row.

    ``maximise`` [m] says per column whether larger is better (default: all). A row dominates
    another when it is at least as good in every column and better in one. NaN columns are
    ignored.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim == 1:
        pts = pts[:, None]
    keep = ~np.all(np.isnan(pts), axis=0)
    pts = pts[:, keep]
    mx = np.ones(pts.shape[1], dtype=bool) if maximise is None else \
        np.asarray(maximise, dtype=bool)[keep]
    sign = np.where(mx, 1.0, -1.0)
    g = pts * sign                                # larger is better everywhere
    ge = np.all(g[:, None, :] >= g[None, :, :], axis=2)     # [i, j]: i at least as good as j
    gt = np.any(g[:, None, :] > g[None, :, :], axis=2)
    dominated = np.any(ge & gt, axis=0)
    return ~dominated


def _tie_tol(x) -> float:
    return TIE_RTOL * max(1.0, float(np.nanmax(np.abs(x)))) if np.size(x) else 0.0


def p_best(u: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Share of draws in which each option has the highest value, ties split.

    ``u`` [R, P] per draw; ``feasible`` [P]. Sums to 1 when any option is feasible.
    """
    if not feasible.any():
        return np.zeros(u.shape[1])
    v = np.where(feasible[None, :], u, -np.inf)
    best = v.max(axis=1, keepdims=True)
    tol = TIE_RTOL * np.maximum(1.0, np.abs(best))
    win = (v >= best - tol) & feasible[None, :]
    share = win / win.sum(axis=1, keepdims=True)
    return share.mean(axis=0)


def choose(eu: np.ndarray, cost: np.ndarray, size: np.ndarray, feasible: np.ndarray,
           exclude=()) -> int | None:
    """The option with the highest expected value; ties -> lower cost, fewer strategies, order."""
    ok = feasible.copy()
    for e in exclude:
        ok[e] = False
    if not ok.any():
        return None
    best = np.max(eu[ok])
    tied = np.flatnonzero(ok & (eu >= best - _tie_tol(eu[ok])))
    c = np.nan_to_num(cost[tied], nan=0.0)
    order = np.lexsort((tied, size[tied], c))
    return int(tied[order[0]])


def evppi(u: np.ndarray, x: np.ndarray, feasible: np.ndarray, degree: int = 3) -> np.ndarray:
    """Expected value of partial perfect information about input ``x``, per state.

    Regression estimator (Strong, Oakley & Brennan 2014): for each option a, E[U_a | x] is
    estimated by least squares on a cubic polynomial of the standardised rank of x over the
    draws; EVPPI = mean over draws of max_a E[U_a | x] - max_a mean U_a. ``u`` [R, P, S],
    ``x`` [R], ``feasible`` [P, S]; returns [S] (>= 0, in the objective's units).
    """
    r, p, s = u.shape
    if r < degree + 3 or np.ptp(x) == 0:
        return np.zeros(s)
    z = np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(float)
    z = (z - z.mean()) / z.std()
    X = np.vander(z, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(X, u.reshape(r, p * s), rcond=None)
    g = (X @ coef).reshape(r, p, s)
    g = np.where(feasible[None], g, -np.inf)
    mean_u = np.where(feasible, u.mean(axis=0), -np.inf)
    with np.errstate(invalid="ignore"):
        val = g.max(axis=1).mean(axis=0) - mean_u.max(axis=0)
    val = np.where(feasible.any(axis=0), val, 0.0)
    return np.maximum(val, 0.0)


def evpi(u: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Expected value of perfect information per state ([R, P, S] -> [S])."""
    v = np.where(feasible[None], u, -np.inf)
    with np.errstate(invalid="ignore"):
        val = v.max(axis=1).mean(axis=0) - np.where(feasible, u.mean(axis=0), -np.inf).max(axis=0)
    return np.where(feasible.any(axis=0), np.maximum(val, 0.0), 0.0)


def solve_allocation(value: np.ndarray, cost: np.ndarray, feasible: np.ndarray,
                     budget: float | None):
    """Multiple-choice knapsack, solved exactly with ``scipy.optimize.milp``.

    ``value``, ``cost``, ``feasible``: [P, S]. Each state gets at most one portfolio (or none);
    total cost <= ``budget`` when given. Returns (choice [S] with -1 for none, status message).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    p_n, s_n = value.shape
    pairs = np.argwhere(feasible & (value > 0))         # options that could ever help
    choice = np.full(s_n, -1, dtype=np.int64)
    if pairs.size == 0:
        return choice, "nothing to allocate (no portfolio has a positive expected objective)"
    n = pairs.shape[0]
    c = -value[pairs[:, 0], pairs[:, 1]]
    a_state = np.zeros((s_n, n))
    a_state[pairs[:, 1], np.arange(n)] = 1.0
    cons = [LinearConstraint(a_state, -np.inf, 1.0)]
    if budget is not None:
        costs = np.nan_to_num(cost[pairs[:, 0], pairs[:, 1]], nan=0.0)
        cons.append(LinearConstraint(costs[None, :], -np.inf, float(budget)))
    with _quiet_stdout():       # HiGHS may print solver chatter straight to file descriptor 1
        res = milp(c, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, 1),
                   options={"mip_rel_gap": 0.0})
    if res.x is None:
        raise RuntimeError(f"allocation MILP failed: {res.message}")
    x = np.round(res.x).astype(bool)
    for j in np.flatnonzero(x):
        choice[pairs[j, 1]] = pairs[j, 0]
    return choice, str(res.message)


class _quiet_stdout:
    """Silence file descriptor 1 (C-level output) inside a ``with`` block."""

    def __enter__(self):
        try:
            sys.stdout.flush()
            self._saved = os.dup(1)
            self._null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(self._null, 1)
        except (OSError, ValueError, AttributeError):
            self._saved = None
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            os.dup2(self._saved, 1)
            os.close(self._saved)
            os.close(self._null)
        return False


def random_allocations(feasible: np.ndarray, cost: np.ndarray, budget: float | None,
                       n: int, seed: int) -> np.ndarray:
    """``n`` random allocations [n, S]: each state a uniformly random feasible portfolio, taken
    in random state order while the national budget lasts (else none, -1)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA110C]))
    p_n, s_n = feasible.shape
    out = np.full((n, s_n), -1, dtype=np.int64)
    opts = [np.flatnonzero(feasible[:, s]) for s in range(s_n)]
    for j in range(n):
        left = np.inf if budget is None else float(budget)
        for s in rng.permutation(s_n):
            if opts[s].size == 0:
                continue
            p = int(rng.choice(opts[s]))
            cst = 0.0 if np.isnan(cost[p, s]) else float(cost[p, s])
            if cst <= left:
                out[j, s] = p
                left -= cst
    return out


def _total(per_draw: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Sum over states of per_draw[:, choice[s], s] ([R, P, S], choice [S] or [J, S])."""
    ch = np.atleast_2d(choice)
    s_idx = np.arange(per_draw.shape[2])
    safe = np.where(ch >= 0, ch, 0)
    vals = per_draw[:, safe, s_idx[None, :]]            # [R, J, S]
    vals = np.where((ch >= 0)[None], vals, 0.0)
    return vals.sum(axis=2)                             # [R, J]


@dataclass
class Analysis:
    portfolios: pd.DataFrame
    recommendations: pd.DataFrame
    evppi: pd.DataFrame
    allocation: pd.DataFrame
    allocation_summary: dict
    per_draw: dict = field(default_factory=dict)


def _q(a, axis=0):
    return np.percentile(a, 2.5, axis=axis), np.percentile(a, 97.5, axis=axis)


def analyse(rp: ResolvedPlan, ev: Evaluation, evidence=None) -> Analysis:
    """Rankings, p_best, Pareto fronts, recommendations, EVPPI and the national allocation."""
    plan = rp.plan
    ports = ev.portfolios
    n_p, n_s = len(ports), len(ev.states)
    sl = slice(1, None) if ev.deaths_averted.shape[0] > 1 else slice(0, 1)
    da = ev.deaths_averted[sl]
    dr = ev.excess_averted[sl]
    rdc = ev.rd_change[sl]
    w1, w2 = plan.objective.deaths_averted, plan.objective.disparity_reduction
    u = w1 * da + w2 * dr
    size = np.array([len(p) for p in ports])
    ids = [portfolio_id(p) for p in ports]
    # Costs: sum over the portfolio's strategies of cost per birth reached x births reached.
    if plan.costs is not None:
        unit = np.array([getattr(plan.costs, k) for k in ev.strategies])
        per_strategy = ev.reached * unit[None, :]                        # [S, K]
        member = np.array([[k in p for k in ev.strategies] for p in ports], dtype=float)
        cost = member @ per_strategy.T                                   # [P, S]
    else:
        cost = np.full((n_p, n_s), np.nan)
    budgets = np.array([np.inf if rp.state_budget(s) is None else rp.state_budget(s)
                        for s in ev.states])
    feasible = np.nan_to_num(cost, nan=0.0) <= budgets[None, :] * (1 + 1e-12)
    eu, edr, eda = u.mean(axis=0), dr.mean(axis=0), da.mean(axis=0)
    da_lo, da_hi = _q(da)
    dr_lo, dr_hi = _q(dr)
    rd_lo, rd_hi = _q(rdc)
    u_lo, u_hi = _q(u)
    pb = np.zeros((n_p, n_s))
    pareto = np.zeros((n_p, n_s), dtype=bool)
    rank = np.zeros((n_p, n_s), dtype=int)
    rec, run = np.full(n_s, -1), np.full(n_s, -1)
    for s in range(n_s):
        pb[:, s] = p_best(u[:, :, s], feasible[:, s])
        pts = np.stack([eda[:, s], edr[:, s], cost[:, s]], axis=1)
        pareto[:, s] = pareto_front(pts, maximise=[True, True, False])
        order = np.lexsort((np.arange(n_p), size, np.nan_to_num(cost[:, s]),
                            -np.round(eu[:, s] / max(_tie_tol(eu[:, s]), 1e-300))))
        rank[order, s] = np.arange(1, n_p + 1)
        r = choose(eu[:, s], cost[:, s], size, feasible[:, s])
        if r is not None:
            rec[s] = r
            r2 = choose(eu[:, s], cost[:, s], size, feasible[:, s], exclude=[r])
            run[s] = -1 if r2 is None else r2
    rows = []
    for s, st in enumerate(ev.states):
        for p in range(n_p):
            rows.append({
                "state": st, "portfolio": ids[p], "deaths_averted": eda[p, s],
                "deaths_averted_lo": da_lo[p, s], "deaths_averted_hi": da_hi[p, s],
                "bw_rate_difference_change": rdc[:, p, s].mean(), "p_best": pb[p, s],
                "cost": cost[p, s], "pareto": bool(pareto[p, s]), "n_strategies": int(size[p]),
                "deaths_averted_point": ev.deaths_averted[0, p, s],
                "bw_rate_difference_change_lo": rd_lo[p, s],
                "bw_rate_difference_change_hi": rd_hi[p, s],
                "disparity_reduction": edr[p, s], "disparity_reduction_lo": dr_lo[p, s],
                "disparity_reduction_hi": dr_hi[p, s], "objective": eu[p, s],
                "objective_lo": u_lo[p, s], "objective_hi": u_hi[p, s],
                "within_budget": bool(feasible[p, s]), "rank": int(rank[p, s])})
    portfolios = pd.DataFrame(rows, columns=PORTFOLIO_COLUMNS)

    # EVPPI per uncertain evidence effect.
    draws = ev.effects[sl]
    eff_ids = sorted(draws[0]) if draws else []
    xs = {k: np.array([d[k] for d in draws]) for k in eff_ids}
    varying = [k for k in eff_ids if np.ptp(xs[k]) > 0]
    ev_tab = np.zeros((len(varying), n_s))
    for j, k in enumerate(varying):
        ev_tab[j] = evppi(u, xs[k], feasible)
    total_evpi = evpi(u, feasible)
    evppi_rows = []
    for s, st in enumerate(ev.states):
        for j, k in enumerate(varying):
            evppi_rows.append({"state": st, "effect": k, "evppi": ev_tab[j, s],
                               "evpi": total_evpi[s]})
    evppi_df = pd.DataFrame(evppi_rows, columns=["state", "effect", "evppi", "evpi"])

    rec_rows = []
    for s, st in enumerate(ev.states):
        r, r2 = rec[s], run[s]
        row = {"state": st, "recommended": ids[r] if r >= 0 else NONE,
               "runner_up": ids[r2] if r2 >= 0 else NONE,
               "p_best": pb[r, s] if r >= 0 else np.nan}
        top = np.argsort(-ev_tab[:, s], kind="stable")[:3] if varying else []
        for i in range(3):
            if i < len(top) and ev_tab[top[i], s] > 0:
                row[f"key_input_{i + 1}"] = varying[top[i]]
                row[f"key_input_{i + 1}_evppi"] = ev_tab[top[i], s]
            else:
                row[f"key_input_{i + 1}"] = ""
                row[f"key_input_{i + 1}_evppi"] = np.nan
        row.update({
            "deaths_averted": eda[r, s] if r >= 0 else 0.0,
            "deaths_averted_lo": da_lo[r, s] if r >= 0 else 0.0,
            "deaths_averted_hi": da_hi[r, s] if r >= 0 else 0.0,
            "bw_rate_difference_change": rdc[:, r, s].mean() if r >= 0 else 0.0,
            "disparity_reduction": edr[r, s] if r >= 0 else 0.0,
            "cost": cost[r, s] if r >= 0 else np.nan,
            "budget": rp.state_budget(st),
            "runner_up_deaths_averted": eda[r2, s] if r2 >= 0 else np.nan,
            "runner_up_p_best": pb[r2, s] if r2 >= 0 else np.nan,
            "evpi": total_evpi[s]})
        rec_rows.append(row)
    recs = pd.DataFrame(rec_rows, columns=RECOMMENDATION_COLUMNS)

    # National allocation (multiple-choice knapsack) and random allocations on the same draws.
    nat = plan.budget.national if plan.budget is not None else None
    t0 = time.perf_counter()
    choice, status = solve_allocation(eu, cost, feasible, nat)
    t_milp = time.perf_counter() - t0
    alloc_rows = []
    for s, st in enumerate(ev.states):
        p = choice[s]
        if p >= 0:
            alloc_rows.append({"state": st, "portfolio": ids[p], "deaths_averted": eda[p, s],
                               "cost": cost[p, s], "deaths_averted_lo": da_lo[p, s],
                               "deaths_averted_hi": da_hi[p, s],
                               "disparity_reduction": edr[p, s], "objective": eu[p, s]})
        else:
            alloc_rows.append({"state": st, "portfolio": NONE, "deaths_averted": 0.0,
                               "cost": 0.0, "deaths_averted_lo": 0.0, "deaths_averted_hi": 0.0,
                               "disparity_reduction": 0.0, "objective": 0.0})
    allocation = pd.DataFrame(alloc_rows, columns=ALLOCATION_COLUMNS)
    opt_u = _total(u, choice)[:, 0]
    opt_da = _total(da, choice)[:, 0]
    opt_dr = _total(dr, choice)[:, 0]
    rnd = random_allocations(feasible, cost, nat, N_RANDOM_ALLOCATIONS, plan.seed)
    rnd_u = _total(u, rnd)                       # [R, J]
    rnd_da = _total(da, rnd)
    rnd_exp = rnd_u.mean(axis=0)
    total_cost = float(np.nansum([cost[choice[s], s] for s in range(n_s) if choice[s] >= 0]))
    summary = {
        "objective_weights": {"deaths_averted": w1, "disparity_reduction": w2},
        "national_budget": nat,
        "states": n_s,
        "states_with_a_portfolio": int((choice >= 0).sum()),
        "strategies_chosen": int(sum(size[c] for c in choice if c >= 0)),
        "deaths_averted": float(opt_da.mean()),
        "deaths_averted_lo": float(np.percentile(opt_da, 2.5)),
        "deaths_averted_hi": float(np.percentile(opt_da, 97.5)),
        "disparity_reduction": float(opt_dr.mean()),
        "objective": float(opt_u.mean()),
        "cost": total_cost if plan.costs is not None else None,
        "solver": "scipy.optimize.milp (HiGHS), exact multiple-choice knapsack",
        "solver_status": status,
        "solver_seconds": t_milp,
        "random_allocations": {
            "n": N_RANDOM_ALLOCATIONS,
            "rule": "each state a uniformly random portfolio within its budget, states in "
                    "random order while the national budget lasts",
            "objective_mean": float(rnd_exp.mean()),
            "objective_best": float(rnd_exp.max()),
            "deaths_averted_mean": float(rnd_da.mean()),
            "improvement_objective": float(opt_u.mean() - rnd_exp.mean()),
            "improvement_pct": float(100 * (opt_u.mean() - rnd_exp.mean())
                                     / abs(rnd_exp.mean())) if rnd_exp.mean() != 0 else None,
            "share_of_random_allocations_beaten": float(np.mean(opt_u.mean() >= rnd_exp)),
            "p_optimal_beats_random_same_draw": float(np.mean(opt_u[:, None] > rnd_u)),
        },
    }
    return Analysis(portfolios, recs, evppi_df, allocation, summary,
                    per_draw={"u": u, "da": da, "dr": dr, "feasible": feasible, "cost": cost,
                              "choice": choice, "random": rnd})


# ---------------------------------------------------------------------------------------------
# Figures and briefs
# ---------------------------------------------------------------------------------------------

#: The standard 8 x 11 U.S. tile grid: state -> (row, column).
TILE_GRID = {
    "AK": (0, 0), "ME": (0, 10),
    "VT": (1, 9), "NH": (1, 10),
    "WA": (2, 0), "ID": (2, 1), "MT": (2, 2), "ND": (2, 3), "MN": (2, 4), "IL": (2, 5),
    "WI": (2, 6), "MI": (2, 7), "NY": (2, 8), "RI": (2, 9), "MA": (2, 10),
    "OR": (3, 0), "NV": (3, 1), "WY": (3, 2), "SD": (3, 3), "IA": (3, 4), "IN": (3, 5),
    "OH": (3, 6), "PA": (3, 7), "NJ": (3, 8), "CT": (3, 9),
    "CA": (4, 0), "UT": (4, 1), "CO": (4, 2), "NE": (4, 3), "MO": (4, 4), "KY": (4, 5),
    "WV": (4, 6), "VA": (4, 7), "MD": (4, 8), "DE": (4, 9),
    "AZ": (5, 1), "NM": (5, 2), "KS": (5, 3), "AR": (5, 4), "TN": (5, 5), "NC": (5, 6),
    "SC": (5, 7), "DC": (5, 8),
    "OK": (6, 3), "LA": (6, 4), "MS": (6, 5), "AL": (6, 6), "GA": (6, 7),
    "HI": (7, 0), "TX": (7, 3), "FL": (7, 8),
}


def _short_label(pid: str) -> str:
    return "+".join(ABBREV[k] for k in pid.split("+")) if pid and pid != NONE else "none"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def state_figure(an: Analysis, state: str, path: Path, top: int = 15) -> Path:
    """Ranking with 95% intervals, and the Pareto fronts, for one state."""
    plt = _plt()
    df = an.portfolios[an.portfolios.state == state].sort_values("rank")
    rec = an.recommendations.set_index("state").loc[state, "recommended"]
    has_cost = df.cost.notna().any()
    fig, axes = plt.subplots(1, 3 if has_cost else 2, figsize=(13 if has_cost else 10, 4.6),
                             gridspec_kw={"width_ratios": [1.3, 1, 1] if has_cost else [1.3, 1]})
    ax = axes[0]
    d = df.head(top).iloc[::-1]
    y = np.arange(len(d))
    colours = ["#c0392b" if p == rec else "#34495e" for p in d.portfolio]
    ax.errorbar(d.deaths_averted, y, xerr=[d.deaths_averted - d.deaths_averted_lo,
                                           d.deaths_averted_hi - d.deaths_averted],
                fmt="none", ecolor="#95a5a6", capsize=2)
    ax.scatter(d.deaths_averted, y, c=colours, zorder=3, s=18)
    ax.set_yticks(y, [f"{_short_label(p)}  ({pb:.0%})" for p, pb in zip(d.portfolio, d.p_best)],
                  fontsize=7)
    ax.set_xlabel("deaths averted over the horizon (95% interval)")
    ax.set_title(f"{state}: top {len(d)} portfolios by objective (P(best))", fontsize=9)
    ax.axvline(0, color="k", lw=0.5)

    def front(ax, x, xlabel):
        on = df.pareto.values
        ax.scatter(x[~on], df.disparity_reduction.values[~on] if xlabel != "cost" else
                   df.deaths_averted.values[~on], s=10, c="#bdc3c7", label="dominated")
        yv = df.disparity_reduction.values if xlabel != "cost" else df.deaths_averted.values
        ax.scatter(x[on], yv[on], s=18, c="#2980b9", label="Pareto front")
        r = (df.portfolio == rec).values
        ax.scatter(x[r], yv[r], s=60, facecolors="none", edgecolors="#c0392b", lw=1.5,
                   label="recommended")
        ax.legend(fontsize=7, loc="best")

    front(axes[1], df.deaths_averted.values, "deaths")
    axes[1].set_xlabel("deaths averted")
    axes[1].set_ylabel("excess NH black deaths averted")
    axes[1].set_title("deaths averted vs disparity reduction", fontsize=9)
    if has_cost:
        front(axes[2], df.cost.values / 1e6, "cost")
        axes[2].set_xlabel("cost, million USD (user's cost inputs)")
        axes[2].set_ylabel("deaths averted")
        axes[2].set_title("deaths averted vs cost", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pareto_figure(an: Analysis, path: Path, against: str = "disparity") -> Path:
    """Small multiples over states of the Pareto fronts (vs disparity reduction or vs cost)."""
    plt = _plt()
    df = an.portfolios
    states = list(dict.fromkeys(df.state))
    ncol = min(8, len(states))
    nrow = int(np.ceil(len(states) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol, 1.9 * nrow), squeeze=False)
    recs = an.recommendations.set_index("state").recommended
    for i, st in enumerate(states):
        ax = axes[i // ncol][i % ncol]
        d = df[df.state == st]
        x = d.deaths_averted.values if against == "disparity" else d.cost.values / 1e6
        yv = d.disparity_reduction.values if against == "disparity" else d.deaths_averted.values
        on = d.pareto.values
        ax.scatter(x[~on], yv[~on], s=4, c="#bdc3c7")
        o = np.argsort(x[on])
        ax.plot(x[on][o], yv[on][o], "-o", ms=2.5, lw=0.8, c="#2980b9")
        r = (d.portfolio == recs[st]).values
        ax.scatter(x[r], yv[r], s=30, facecolors="none", edgecolors="#c0392b")
        ax.set_title(st, fontsize=8, pad=2)
        ax.tick_params(labelsize=5)
    for j in range(len(states), nrow * ncol):
        axes[j // ncol][j % ncol].axis("off")
    if against == "disparity":
        fig.suptitle("Pareto fronts: deaths averted (x) vs excess NH black deaths averted (y); "
                     "red ring = recommended", fontsize=9)
    else:
        fig.suptitle("Pareto fronts: cost, million USD (x) vs deaths averted (y); red ring = "
                     "recommended", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def tile_map(an: Analysis, path: Path) -> Path:
    """U.S. tile-grid map (8 x 11) of the recommended portfolios, coloured by portfolio."""
    plt = _plt()
    recs = an.recommendations.set_index("state").recommended.to_dict()
    labels = sorted(set(recs.values()), key=lambda p: (p == NONE, p.count("+"), p))
    cmap = plt.get_cmap("tab20")
    colour = {p: cmap(i % 20) for i, p in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(11, 7.2))
    for st, (r, c) in TILE_GRID.items():
        if st in recs:
            fc, txt = colour[recs[st]], _short_label(recs[st])
        else:
            fc, txt = "#eeeeee", ""
        ax.add_patch(plt.Rectangle((c, -r), 0.94, 0.94, fc=fc, ec="white"))
        ax.text(c + 0.47, -r + 0.62, st, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(c + 0.47, -r + 0.3, txt, ha="center", va="center", fontsize=5.5)
    ax.set_xlim(-0.1, 11)
    ax.set_ylim(-7.1, 1)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, fc=colour[p]) for p in labels]
    ax.legend(handles, [_short_label(p) for p in labels], fontsize=7, ncol=4, loc="lower right",
              title="recommended portfolio", title_fontsize=8, frameon=False)
    legend = ", ".join(f"{v} = {LABELS[k]}" for k, v in ABBREV.items())
    ax.set_title(f"Recommended portfolio by state\n{legend}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(x, nd=0):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:,.{nd}f}"


def _names(pid: str) -> str:
    if not pid or pid == NONE:
        return "no strategy"
    return " + ".join(LABELS[k] for k in pid.split("+"))


_CSS = """body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:60rem;margin:1.2rem auto;
padding:0 1rem;color:#222;line-height:1.4}h1{font-size:1.5rem;margin-bottom:.2rem}
h2{font-size:1.1rem;margin:1rem 0 .3rem;border-bottom:1px solid #ddd}
.rec{background:#fdf2e9;border-left:5px solid #c0392b;padding:.6rem 1rem;font-size:1.1rem}
table{border-collapse:collapse;font-size:.9rem}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;
text-align:left}td.n{text-align:right}img{max-width:100%}.small{font-size:.8rem;color:#555}
@media print{body{margin:0}}"""


def write_brief(an: Analysis, rp: ResolvedPlan, ev: Evaluation, state: str, fig_path: Path,
                path: Path, evidence=None, coverage: pd.DataFrame | None = None) -> Path:
    """A self-contained one-page HTML brief for ``state``."""
    r = an.recommendations.set_index("state").loc[state]
    df = an.portfolios[an.portfolios.state == state].set_index("portfolio")
    plan = rp.plan
    img = base64.b64encode(fig_path.read_bytes()).decode("ascii")
    rec, run = r.recommended, r.runner_up
    e = html.escape
    name = STATE_NAMES.get(state, state)
    yrs = f"{plan.years[0]}–{plan.years[1]}" if isinstance(plan.years, (list, tuple)) \
        else str(plan.years)
    sidx = ev.states.index(state)

    def impact_row(label, pid):
        if pid == NONE or pid not in df.index:
            return f"<tr><td>{e(label)}</td><td colspan=5>{e(_names(pid))}</td></tr>"
        x = df.loc[pid]
        cost = "" if not np.isfinite(x.cost) else f"${x.cost:,.0f}"
        return (f"<tr><td>{e(label)}</td><td>{e(_names(pid))}</td>"
                f"<td class=n>{_fmt(x.deaths_averted, 1)}<br><span class=small>"
                f"{_fmt(x.deaths_averted_lo, 1)} to {_fmt(x.deaths_averted_hi, 1)}</span></td>"
                f"<td class=n>{x.bw_rate_difference_change:+.3f}<br><span class=small>"
                f"{x.bw_rate_difference_change_lo:+.3f} to {x.bw_rate_difference_change_hi:+.3f}"
                f"</span></td><td class=n>{_fmt(x.disparity_reduction, 1)}</td>"
                f"<td class=n>{x.p_best:.0%}</td><td class=n>{cost}</td></tr>")

    keys = []
    for i in (1, 2, 3):
        k = r[f"key_input_{i}"]
        if isinstance(k, str) and k:
            desc = ""
            if evidence is not None and k in evidence.effects:
                eff = evidence.effects[k]
                desc = f" — {eff.description} (point {eff.point:g}, range {eff.lo:g}–{eff.hi:g})"
            keys.append(f"<li><b>{e(k)}</b>{e(desc)}: knowing it exactly would be worth "
                        f"{r[f'key_input_{i}_evppi']:.2f} deaths averted (EVPPI)</li>")
    if not keys:
        keys.append("<li>No single uncertain input changes the choice materially "
                    "(all EVPPI ≈ 0): the recommendation is robust to the evidence ranges.</li>")
    cov_lines = []
    if coverage is not None:
        c = coverage[coverage.state == state]
        for k in rp.candidates:
            ck = c[c.strategy == k].sort_values("year")
            if len(ck):
                cov_lines.append(f"{LABELS[k]}: {ck.coverage.min():.0%}–{ck.coverage.max():.0%} "
                                 f"of {ELIGIBLE[k]}")
    wt = plan.objective
    base_d = ev.deaths_baseline[0, sidx]
    cost_note = ("Costs are the plan's own inputs (cost per birth reached × births reached); "
                 "imsim ships no cost data." if plan.costs is not None else
                 "No costs were given: the ranking ignores cost.")
    body = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>{e(name)}: recommended infant mortality strategies</title><style>{_CSS}</style></head><body>
<h1>{e(name)} ({e(state)}): which strategies to focus on, {e(yrs)}</h1>
<p class=small>Plan <b>{e(plan.name)}</b> · imsim recommend · {len(ev.portfolios)} portfolios of up to
{plan.max_strategies} strategies compared under {an.per_draw['u'].shape[0]} uncertainty draws</p>
<div class=rec><b>Recommendation:</b> {e(_names(rec))}.<br>
Expected {_fmt(r.deaths_averted, 1)} infant deaths averted over {e(yrs)} (95% interval
{_fmt(r.deaths_averted_lo, 1)} to {_fmt(r.deaths_averted_hi, 1)}), of {_fmt(base_d, 0)} expected
without these strategies. Probability it is the best choice: <b>{r.p_best:.0%}</b>.</div>
<h2>Expected impact</h2>
<table><tr><th></th><th>portfolio</th><th>deaths averted (95%)</th>
<th>change in NH black − NH white deaths per 1,000 (95%)</th><th>excess NH black deaths averted</th>
<th>P(best)</th><th>cost</th></tr>
{impact_row("Recommended", rec)}{impact_row("Runner-up", run)}</table>
<p class=small>A negative change in the rate difference means the black–white gap narrows.
Objective = {wt.deaths_averted:g} × deaths averted + {wt.disparity_reduction:g} × excess NH black
deaths averted. Ties go to the cheaper, then smaller portfolio.</p>
<h2>What could overturn this choice</h2><ul>{''.join(keys)}</ul>
<p class=small>Expected value of perfect information on all inputs: {r.evpi:.2f} deaths
(the most a better evidence base could add to the outcome of this choice).</p>
<h2>Ranking and trade-offs</h2>
<img alt="ranking and Pareto fronts for {e(state)}" src="data:image/png;base64,{img}">
<h2>Key assumptions</h2><ul>
<li>Coverage if chosen: {e('; '.join(cov_lines)) or 'see plan'}.</li>
<li>Effect sizes and their uncertainty from imsim's evidence library (`imsim data evidence`);
the baseline is refitted for every draw so it reproduces 2013–2015 observed rates; future years hold
births at the 2017 level and rates at the 2013–2015 fit.</li>
<li>Strategies in a portfolio combine through the model of each birth, never by adding effects.</li>
<li>{e(cost_note)}</li>
<li>Births by state × race for 2013–2017 are partly estimated (see README, "Data and sources").</li>
</ul></body></html>"""
    path.write_text(body, encoding="utf-8")
    return path


def write_index(an: Analysis, rp: ResolvedPlan, path: Path) -> Path:
    e = html.escape
    rows = []
    for r in an.recommendations.itertuples():
        rows.append(f"<tr><td><a href='briefs/{e(r.state)}.html'>{e(STATE_NAMES[r.state])}</a>"
                    f"</td><td>{e(_names(r.recommended))}</td><td class=n>"
                    f"{_fmt(r.deaths_averted, 1)}</td><td class=n>{r.p_best:.0%}</td></tr>")
    s = an.allocation_summary
    tile = ""
    if (path.parent / "figures" / "tile_map.png").exists():
        b64 = base64.b64encode((path.parent / "figures" / "tile_map.png").read_bytes()).decode()
        tile = f"<img alt='tile map of recommended portfolios' src='data:image/png;base64,{b64}'>"
    path.write_text(f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>{e(rp.plan.name)}: recommendations</title><style>{_CSS}</style></head><body>
<h1>{e(rp.plan.name)}: recommended strategy portfolios</h1>
<p>National allocation: {s['states_with_a_portfolio']} states, {_fmt(s['deaths_averted'], 0)}
deaths averted expected (95% interval {_fmt(s['deaths_averted_lo'], 0)} to
{_fmt(s['deaths_averted_hi'], 0)}); random allocations average
{_fmt(s['random_allocations']['deaths_averted_mean'], 0)}.</p>{tile}
<table><tr><th>state brief</th><th>recommended</th><th>deaths averted</th><th>P(best)</th></tr>
{''.join(rows)}</table></body></html>""", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Running and writing
# ---------------------------------------------------------------------------------------------

@dataclass
class Recommendation:
    plan: ResolvedPlan
    evaluation: Evaluation
    analysis: Analysis
    coverage: pd.DataFrame
    evidence: Any
    timings: dict


def recommend(rp: ResolvedPlan, draws: int | None = None, seed: int | None = None,
              progress: bool = False) -> Recommendation:
    """Evaluate every portfolio of a plan and analyse the results (nothing is written)."""
    from .runner import effect_draws

    t0 = time.perf_counter()
    n_draws = rp.plan.draws if draws is None else int(draws)
    seed = rp.plan.seed if seed is None else int(seed)
    if n_draws < 1:
        raise InputError(f"draws must be at least 1, got {n_draws}")
    if rp.plan.draws != n_draws or rp.plan.seed != seed:
        rp = ResolvedPlan(rp.plan.model_copy(update={"draws": n_draws, "seed": seed}),
                          rp.scenario, rp.candidates, rp.file)
    setup, evidence, coverage = build_setup(rp)
    ports = enumerate_portfolios(rp.candidates, rp.plan.max_strategies)
    eff = effect_draws(evidence, seed, n_draws)
    t1 = time.perf_counter()
    ev = evaluate(setup, ports, eff, progress=progress)
    t2 = time.perf_counter()
    an = analyse(rp, ev, evidence)
    t3 = time.perf_counter()
    timings = {"setup_s": t1 - t0, "evaluate_s": t2 - t1, "analyse_s": t3 - t2,
               **{f"evaluate.{k}": v for k, v in ev.timings.items()}}
    return Recommendation(rp, ev, an, coverage, evidence, timings)


def default_out(rp: ResolvedPlan) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"recommend-{rp.plan.name}-{stamp}"


def _csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.6g")


def save(rec: Recommendation, out: str | Path | None = None, figures: bool = True) -> Path:
    """Write every output into a new folder atomically (temp folder, then os.replace)."""
    import yaml

    rp, an, ev = rec.plan, rec.analysis, rec.evaluation
    out = Path(out) if out is not None else default_out(rp)
    from .outdir import atomic_folder

    with atomic_folder(out) as tmp:
        t0 = time.perf_counter()
        _csv(an.portfolios, tmp / "portfolios.csv")
        _csv(an.recommendations, tmp / "recommendations.csv")
        _csv(an.evppi, tmp / "evppi.csv")
        _csv(an.allocation, tmp / "allocation.csv")
        _csv(rec.coverage, tmp / "coverage.csv")
        with open(tmp / "allocation_summary.json", "w", encoding="utf-8") as fh:
            json.dump(an.allocation_summary, fh, indent=2)
        with open(tmp / "plan.resolved.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(rp.resolved(), fh, sort_keys=False)
        t1 = time.perf_counter()
        if figures:
            (tmp / "figures" / "states").mkdir(parents=True)
            (tmp / "briefs").mkdir()
            tile_map(an, tmp / "figures" / "tile_map.png")
            pareto_figure(an, tmp / "figures" / "pareto_disparity.png", "disparity")
            if an.portfolios.cost.notna().any():
                pareto_figure(an, tmp / "figures" / "pareto_cost.png", "cost")
            for st in ev.states:
                fig = state_figure(an, st, tmp / "figures" / "states" / f"{st}.png")
                write_brief(an, rp, ev, st, fig, tmp / "briefs" / f"{st}.html", rec.evidence,
                            rec.coverage)
            write_index(an, rp, tmp / "index.html")
        t2 = time.perf_counter()
        rec.timings.update({"tables_s": t1 - t0, "figures_briefs_s": t2 - t1})
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(manifest(rec), fh, indent=2)
    return out


def manifest(rec: Recommendation) -> dict:
    from importlib import metadata

    from . import __version__
    from .data import data_hash

    versions = {}
    for pkg in ("numpy", "pandas", "numba", "scipy", "pydantic", "PyYAML", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    rp = rec.plan
    return {
        "command": "recommend",
        "imsim_version": __version__,
        "plan": rp.resolved(),
        "plan_file": rp.file,
        "seed": rp.plan.seed,
        "draws": rp.plan.draws,
        "draws_note": "draw 0 = evidence point values (deaths_averted_point); statistics use "
                      "draws 1..R (all draws when R = 1)",
        "engine": "expected",
        "states": len(rec.evaluation.states),
        "portfolios_per_state": len(rec.evaluation.portfolios),
        "data_hash": data_hash(),
        "calibration": "default calibration; draw d uses its posterior draw (runner.calibration_draw)",
        "timings": rec.timings,
        "python": sys.version.split()[0],
        "versions": versions,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# Command line (registered by imsim.cli)
# ---------------------------------------------------------------------------------------------

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim recommend`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "recommend", help="rank strategy portfolios per state and allocate them nationally",
        description="Evaluate every portfolio of 1..k strategies in every state of a plan under "
                    "parameter uncertainty (common random numbers across portfolios), then write "
                    "portfolios.csv, recommendations.csv, allocation.csv, "
                    "allocation_summary.json, figures/, briefs/XX.html, index.html and "
                    "manifest.json into a new folder. See docs/recommend.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  imsim recommend plans/southeast.yaml --out results/se")
    p.add_argument("plan", help="plan YAML file (see plans/ for examples)")
    p.add_argument("--out", metavar="DIR", help="folder to create (default: "
                   "results/recommend-<name>-<timestamp>/); must not exist or be empty")
    p.add_argument("--draws", type=int, help="uncertainty draws (default: the plan's)")
    p.add_argument("--seed", type=int, help="random seed (default: the plan's)")
    p.add_argument("--no-figures", action="store_true", help="skip figures and briefs")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def cmd_recommend(args) -> int:
    """Run ``imsim recommend``; InputError propagates (the CLI prints it and exits 2)."""
    t0 = time.perf_counter()
    rp = load_plan(args.plan)
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"seed {args.seed} is out of range; allowed 0 to 2**63 - 1")
    if args.draws is not None and not 1 <= args.draws <= 5000:
        raise InputError(f"--draws must be 1 to 5000, got {args.draws}")
    out = Path(args.out) if args.out else default_out(rp)
    check_new(out)
    rec = recommend(rp, draws=args.draws, seed=args.seed, progress=not args.quiet)
    path = save(rec, out, figures=not args.no_figures)
    if not args.quiet:
        s = rec.analysis.allocation_summary
        print(f"{rp.plan.name}: {len(rec.evaluation.states)} state(s) x "
              f"{len(rec.evaluation.portfolios)} portfolios x {rec.plan.plan.draws} draws; national "
              f"allocation averts {s['deaths_averted']:,.0f} deaths "
              f"(95% interval {s['deaths_averted_lo']:,.0f} to {s['deaths_averted_hi']:,.0f}), "
              f"{s['random_allocations']['improvement_objective']:,.0f} more than random "
              f"allocations on average")
        print(f"wrote {path}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    """Standalone entry point (``python -m imsim.recommend PLAN``), same exit codes as imsim."""
    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "recommend":
        argv = ["recommend", *argv]
    args = parser.parse_args(argv)
    try:
        return cmd_recommend(args)
    except InputError as exc:
        print(f"imsim: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
