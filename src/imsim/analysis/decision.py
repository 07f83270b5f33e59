"""The decision analysis of ``imsim recommend``: from per-draw outcomes to choices.

Given every portfolio's outcomes in every state under the same uncertainty draws, decide what to
recommend and how sure that choice is: the ranking by expected objective, the probability that
each portfolio is the best (``p_best``), the Pareto fronts of deaths averted, disparity reduction
and cost, the runner-up, the expected value of perfect (partial) information that says which
uncertain inputs could overturn the choice (EVPI, EVPPI), and the national allocation solved
exactly as a multiple-choice knapsack, compared with random allocations on the same draws.

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

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from imsim.config.plan import ResolvedPlan
from imsim.analysis.portfolio import Evaluation, portfolio_id
from imsim.analysis.economics import PORTFOLIO_CE_COLUMNS, cost_effectiveness
from imsim.analysis.results import MIN_INTERVAL_DRAWS
from imsim.core.constants import RACES

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
PORTFOLIO_COLUMNS += PORTFOLIO_CE_COLUMNS      # cost-effectiveness (imsim.analysis.economics)
# The objective's weights in words, and deaths averted per race/Hispanic origin of the mother
# (expected over draws; they sum to deaths_averted).
PORTFOLIO_COLUMNS += ["objective_weights"] + [f"deaths_averted_{r}" for r in RACES]
RECOMMENDATION_COLUMNS = [
    "state", "recommended", "runner_up", "p_best", "key_input_1", "key_input_1_evppi",
    "key_input_2", "key_input_2_evppi", "key_input_3", "key_input_3_evppi",
    "deaths_averted", "deaths_averted_lo", "deaths_averted_hi", "bw_rate_difference_change",
    "disparity_reduction", "cost", "budget", "runner_up_deaths_averted", "runner_up_p_best",
    "evpi",
    # extra columns (may be added to, never renamed). With a national budget `recommended` is
    # the state's portfolio in the national allocation; `best_without_budget` is the state's
    # best portfolio ignoring the national budget (the same as `recommended` without one).
    "objective", "best_without_budget", "best_without_budget_deaths_averted",
    "best_without_budget_cost", "best_without_budget_objective",
    "objective_weights",
]
ALLOCATION_COLUMNS = ["state", "portfolio", "deaths_averted", "cost", "deaths_averted_lo",
                      "deaths_averted_hi", "disparity_reduction", "objective"]


def pareto_front(points: np.ndarray, maximise=None) -> np.ndarray:
    """Return which rows of ``points`` are not dominated by any other row (the Pareto front).

    A row dominates another when it is at least as good in every column and better in one.
    Columns that are NaN in every row are ignored.

    Parameters
    ----------
    points : array_like of float
        ``[n, m]`` (or ``[n]``) criteria of ``n`` options.
    maximise : array_like of bool, optional
        ``[m]``: per column, whether larger is better (default: all).

    Returns
    -------
    numpy.ndarray
        bool ``[n]``: True on the front.
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
    """Return the share of draws in which each option has the highest value, ties split.

    Parameters
    ----------
    u : numpy.ndarray
        float ``[R, P]``: value of each option in each draw.
    feasible : numpy.ndarray
        bool ``[P]``: options that may be chosen.

    Returns
    -------
    numpy.ndarray
        float64 ``[P]``, probabilities (0 for infeasible options); sums to 1 when any option
        is feasible, else all 0.
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
    """Return the option with the highest expected value; ties -> lower cost, fewer strategies.

    Remaining ties go to the option listed first. Values within :data:`TIE_RTOL` (relative)
    count as tied; a NaN cost counts as 0.

    Parameters
    ----------
    eu : numpy.ndarray
        float ``[P]``: expected value of each option.
    cost : numpy.ndarray
        float ``[P]``: cost of each option (USD; NaN without costs).
    size : numpy.ndarray
        int ``[P]``: number of strategies of each option.
    feasible : numpy.ndarray
        bool ``[P]``: options that may be chosen.
    exclude : iterable of int
        Options not to choose (e.g. the recommendation, to find the runner-up).

    Returns
    -------
    int or None
        The option's index, or None when none is feasible.
    """
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
    """Return the expected value of partial perfect information about input ``x``, per state.

    Regression estimator (Strong, Oakley & Brennan 2014): for each option a, E[U_a | x] is
    estimated by least squares on a polynomial (cubic by default) of the standardised rank of x
    over the draws; EVPPI = mean over draws of max_a E[U_a | x] - max_a mean U_a.

    Parameters
    ----------
    u : numpy.ndarray
        float ``[R, P, S]``: objective per draw, option and state.
    x : numpy.ndarray
        float ``[R]``: the input's value in each draw.
    feasible : numpy.ndarray
        bool ``[P, S]``.
    degree : int
        Degree of the polynomial.

    Returns
    -------
    numpy.ndarray
        float64 ``[S]``, >= 0, in the objective's units (deaths); 0 when ``x`` does not vary
        or there are fewer than ``degree + 3`` draws.
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
    """Return the expected value of perfect information per state.

    Parameters
    ----------
    u : numpy.ndarray
        float ``[R, P, S]``: objective per draw, option and state.
    feasible : numpy.ndarray
        bool ``[P, S]``.

    Returns
    -------
    numpy.ndarray
        float64 ``[S]``: mean of the per-draw best minus the best mean, >= 0, in the
        objective's units.
    """
    v = np.where(feasible[None], u, -np.inf)
    with np.errstate(invalid="ignore"):
        val = v.max(axis=1).mean(axis=0) - np.where(feasible, u.mean(axis=0), -np.inf).max(axis=0)
    return np.where(feasible.any(axis=0), np.maximum(val, 0.0), 0.0)


def solve_allocation(value: np.ndarray, cost: np.ndarray, feasible: np.ndarray,
                     budget: float | None):
    """Choose at most one portfolio per state to maximise the total value (exact MILP).

    A multiple-choice knapsack solved with ``scipy.optimize.milp`` (HiGHS): only feasible
    options with a positive value are considered; total cost <= ``budget`` when given.

    Parameters
    ----------
    value : numpy.ndarray
        float ``[P, S]``: expected objective of each portfolio in each state.
    cost : numpy.ndarray
        float ``[P, S]``: cost in USD (NaN counts as 0).
    feasible : numpy.ndarray
        bool ``[P, S]``.
    budget : float or None
        National budget in USD (None: unlimited).

    Returns
    -------
    choice : numpy.ndarray
        int64 ``[S]``: the chosen portfolio of each state, -1 for none.
    status : str
        The solver's message.

    Raises
    ------
    RuntimeError
        If the solver returns no solution.
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
    """Return ``n`` random allocations to compare the optimal allocation with.

    Each state gets a uniformly random feasible portfolio, states taken in random order while
    the national budget lasts (else none, -1). Allocation ``j`` depends only on ``(seed, j)``.

    Parameters
    ----------
    feasible : numpy.ndarray
        bool ``[P, S]``.
    cost : numpy.ndarray
        float ``[P, S]``: cost in USD (NaN counts as 0).
    budget : float or None
        National budget in USD (None: unlimited).
    n : int
        Number of allocations.
    seed : int
        Seed (stream ``decision_random_allocation``).

    Returns
    -------
    numpy.ndarray
        int64 ``[n, S]``: portfolio index per state, -1 for none.
    """
    from imsim.core.streams import generator

    p_n, s_n = feasible.shape
    out = np.full((n, s_n), -1, dtype=np.int64)
    opts = [np.flatnonzero(feasible[:, s]) for s in range(s_n)]
    for j in range(n):
        rng = generator(seed, "decision_random_allocation", j)   # allocation j: keyed by j
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


def allocation_total(per_draw: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Return the per-draw total over states of the chosen portfolios' values.

    Parameters
    ----------
    per_draw : numpy.ndarray
        float ``[R, P, S]``: a value per draw, portfolio and state.
    choice : numpy.ndarray
        int ``[S]`` or ``[J, S]``: one or ``J`` allocations (-1: none, contributes 0).

    Returns
    -------
    numpy.ndarray
        float64 ``[R, J]`` (``J = 1`` for one allocation): ``sum_s per_draw[:, choice[s], s]``.
    """
    ch = np.atleast_2d(choice)
    s_idx = np.arange(per_draw.shape[2])
    safe = np.where(ch >= 0, ch, 0)
    vals = per_draw[:, safe, s_idx[None, :]]            # [R, J, S]
    vals = np.where((ch >= 0)[None], vals, 0.0)
    return vals.sum(axis=2)                             # [R, J]


@dataclass
class Analysis:
    """The decision analysis of a plan: the tables ``imsim recommend`` writes.

    Attributes
    ----------
    portfolios : pandas.DataFrame
        One row per state x portfolio (:data:`PORTFOLIO_COLUMNS`).
    recommendations : pandas.DataFrame
        One row per state (:data:`RECOMMENDATION_COLUMNS`).
    evppi : pandas.DataFrame
        ``state, effect, evppi, evpi`` (in the objective's units).
    allocation : pandas.DataFrame
        The national allocation, one row per state (:data:`ALLOCATION_COLUMNS`).
    allocation_summary : dict
        Totals of the allocation, solver status and the comparison with random allocations.
    per_draw : dict
        Per-draw arrays: ``u``, ``da``, ``dr`` ``[R, P, S]``, ``feasible`` and ``cost``
        ``[P, S]``, ``choice`` ``[S]``, ``random`` ``[J, S]``.
    cost_effectiveness : pandas.DataFrame or None
        Cost, life-years gained, ICER and dominance per state and ``national``
        (:data:`imsim.analysis.economics.CE_COLUMNS`).
    ceac : pandas.DataFrame or None
        The cost-effectiveness acceptability curve (empty without costs).
    """

    portfolios: pd.DataFrame
    recommendations: pd.DataFrame
    evppi: pd.DataFrame
    allocation: pd.DataFrame
    allocation_summary: dict
    per_draw: dict = field(default_factory=dict)
    cost_effectiveness: pd.DataFrame | None = None
    ceac: pd.DataFrame | None = None


def objective_text(w_deaths: float, w_disparity: float) -> str:
    """The objective in words, e.g. "1.0 x deaths averted + 1.0 x excess NH black deaths averted".

    Written in ``portfolios.csv``, ``recommendations.csv``, ``manifest.json``, ``index.html``
    and every brief, so each output states what it ranks by.

    Parameters
    ----------
    w_deaths, w_disparity : float
        The plan's ``objective.deaths_averted`` and ``objective.disparity_reduction`` weights.

    Returns
    -------
    str
        The text.
    """
    return (f"{float(w_deaths)!r} x deaths averted + {float(w_disparity)!r} x excess NH black "
            f"deaths averted")


def _q(a, axis=0):
    return np.percentile(a, 2.5, axis=axis), np.percentile(a, 97.5, axis=axis)


def analyse(rp: ResolvedPlan, ev: Evaluation, evidence=None) -> Analysis:
    """Analyse an evaluation: rankings, p_best, Pareto fronts, recommendations, EVPPI, allocation.

    With more than one draw, the statistics use the sampled draws 1..R (draw 0, the point, is
    reported as ``deaths_averted_point``); with one draw they use the point.

    Parameters
    ----------
    rp : ResolvedPlan
        The plan (objective weights, costs in USD per birth reached, budgets, seed).
    ev : Evaluation
        Outcomes ``[D, P, S]`` of every portfolio in every state.
    evidence : EvidenceLibrary, optional
        Not used.

    Returns
    -------
    Analysis
        The tables (deaths are counts over the horizon; rate differences per 1,000 live
        births; costs in USD).
    """
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
    # Costs from the cost library vary over the draws (triangular low-value-high, keyed stream
    # cost_draw); budgets, rankings, the allocation and the ICER frontier use the library's value
    # (cost above), the CEAC uses the paired per-draw costs.
    cost_draws = None
    library = [k for k in ev.strategies if k in getattr(rp, "library_costs", ())]
    if plan.costs is not None and library:
        from imsim.analysis.economics import library_cost_draws

        n_d = ev.deaths_averted.shape[0]
        units = np.tile(unit, (n_d, 1))                                  # [D, K]
        drawn = library_cost_draws(library, plan.seed, n_d)
        for j, k in enumerate(library):
            units[:, ev.strategies.index(k)] = drawn[:, j]
        cost_draws = np.einsum("pk,sk,rk->rps", member, ev.reached, units[sl])   # [R, P, S]
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
    # National allocation (multiple-choice knapsack). With a national budget the recommendation of
    # each state IS its portfolio in the allocation (one answer per state); the best portfolio
    # ignoring the national budget is reported beside it (`best_without_budget`).
    nat = plan.budget.national if plan.budget is not None else None
    t0 = time.perf_counter()
    choice, status = solve_allocation(eu, cost, feasible, nat)
    t_milp = time.perf_counter() - t0
    best_nb = rec.copy()
    if nat is not None:
        rec = choice.copy()
        for s in range(n_s):
            r2 = choose(eu[:, s], cost[:, s], size, feasible[:, s],
                        exclude=[rec[s]] if rec[s] >= 0 else [])
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
    wtext = objective_text(w1, w2)
    by_race = (ev.deaths_averted_by_race[sl].mean(axis=0)             # [P, S, R]
               if ev.deaths_averted_by_race is not None else
               np.full((n_p, n_s, len(RACES)), np.nan))
    for i, row in enumerate(rows):             # rows are state-major, portfolio-minor
        s, p = divmod(i, n_p)
        row["objective_weights"] = wtext
        for j, race in enumerate(RACES):
            row[f"deaths_averted_{race}"] = by_race[p, s, j]
    ce_rows, ce_table, ceac_df = cost_effectiveness(ev.states, ids, da, cost,
                                                    plan.costs is not None,
                                                    cost_draws=cost_draws)
    for c in PORTFOLIO_CE_COLUMNS:             # same state x portfolio order as `rows`
        for row, v in zip(rows, ce_rows[c].tolist()):
            row[c] = v
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
            "evpi": total_evpi[s],
            "objective": eu[r, s] if r >= 0 else 0.0,
            "best_without_budget": ids[best_nb[s]] if best_nb[s] >= 0 else NONE,
            "best_without_budget_deaths_averted": eda[best_nb[s], s] if best_nb[s] >= 0 else 0.0,
            "best_without_budget_cost": cost[best_nb[s], s] if best_nb[s] >= 0 else np.nan,
            "best_without_budget_objective": eu[best_nb[s], s] if best_nb[s] >= 0 else 0.0,
            "objective_weights": wtext})
        rec_rows.append(row)
    recs = pd.DataFrame(rec_rows, columns=RECOMMENDATION_COLUMNS)

    # The national allocation's table, and random allocations on the same draws.
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
    opt_u = allocation_total(u, choice)[:, 0]
    opt_da = allocation_total(da, choice)[:, 0]
    opt_dr = allocation_total(dr, choice)[:, 0]
    rnd = random_allocations(feasible, cost, nat, N_RANDOM_ALLOCATIONS, plan.seed)
    rnd_u = allocation_total(u, rnd)                       # [R, J]
    rnd_da = allocation_total(da, rnd)
    rnd_exp = rnd_u.mean(axis=0)
    total_cost = float(np.nansum([cost[choice[s], s] for s in range(n_s) if choice[s] >= 0]))
    summary = {
        "objective_weights": {"deaths_averted": w1, "disparity_reduction": w2},
        "objective_weights_text": wtext,
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
            # The gap in deaths averted (deaths, not the objective): allocation - random mean.
            "improvement_deaths": float(opt_da.mean() - rnd_da.mean()),
            "improvement_pct": float(100 * (opt_u.mean() - rnd_exp.mean())
                                     / abs(rnd_exp.mean())) if rnd_exp.mean() != 0 else None,
            "share_of_random_allocations_beaten": float(np.mean(opt_u.mean() >= rnd_exp)),
            "p_optimal_beats_random_same_draw": float(np.mean(opt_u[:, None] > rnd_u)),
        },
        # Honest intervals: below MIN_INTERVAL_DRAWS sampled draws (as imsim run) the outputs
        # show no 95% interval and say that EVPPI (key inputs) is not estimated reliably.
        "draws": int(da.shape[0]) if ev.deaths_averted.shape[0] > 1 else 0,
        "interval_reliable": bool(ev.deaths_averted.shape[0] > 1
                                  and da.shape[0] >= MIN_INTERVAL_DRAWS),
    }
    return Analysis(portfolios, recs, evppi_df, allocation, summary,
                    per_draw={"u": u, "da": da, "dr": dr, "feasible": feasible, "cost": cost,
                              "cost_draws": cost_draws, "choice": choice, "random": rnd},
                    cost_effectiveness=ce_table, ceac=ceac_df)

