"""What it takes to reach a target: the coverage needed, its chance, and gains that lapse.

:func:`solve_targets` answers, for one state (or the nation) and one race group (or all births)
in one year ``Y``:

* **each strategy alone** -- the smallest constant coverage ``c`` (share of the strategy's
  eligible births reached, the same in every year of the horizon) of that one strategy, every
  other strategy and the scenario's counterfactual exposure changes off, that meets the target.
  The strategy acts where the scenario uses it (its states' portfolios, or the collaborative's
  teams), with the scenario's options and per-race ``reach`` (coverage x reach); this is the
  sweep's ``strategies.<k>.coverage`` convention (:mod:`imsim.analysis.evaluate`).
* **the portfolio scaled together** (strategy ``portfolio``) -- the smallest multiplier ``m``
  of the scenario's own coverage (its ramps, or the collaborative's coverage, per state and
  year; then reach) with every strategy's coverage capped at 1: coverage ``min(1, m x c)``.
  ``coverage_needed`` is then ``m`` (1 = the scenario as written); the scenario's exposure
  changes stay on. ``target_portfolio.csv`` gives each strategy's coverage at the solution.

Targets (:class:`Target`): ``imr`` (the group's IMR per 1,000 in year ``Y`` at most T),
``rate_ratio`` / ``rate_difference`` (the race's IMR over / minus the NH white IMR of the same
state or nation in year ``Y`` at most T) and ``deaths_averted`` (deaths averted, baseline minus
scenario, summed over the horizon's first year to ``Y``, at least N).

How: the expected engine at the evidence point values and the calibration's point estimate
(draw 0, as every headline) on the cells the target reads; the metric is evaluated on a grid of
coverages, then bisected between the last grid point that misses and the first that meets the
target down to :data:`TOL`, and the upper end is reported, so the reported coverage meets the
target at the point (not merely within tolerance). The grid makes the answer "the smallest
coverage that meets it" even where a metric is not monotone in coverage (a rate ratio can be).
A target not met at full coverage (``c = 1``; for the portfolio, the multiplier that puts every
strategy at 1) is ``reachable = False`` with an empty ``coverage_needed``. ``p_reach`` is the
share of the uncertainty draws 1..R (evidence, calibration posterior, trend and projected
births, exactly as ``imsim run`` draws them with the same seed) that meet the target at the
reported coverage (at full coverage when unreachable; empty with R = 0).

:func:`lapse` answers "what if gains lapse": deaths averted over the horizon extended by ``K``
years after the scenario's last year (when support ends), with each cell's coverage held at its
last-year value or decaying by ``d`` per year, ``coverage x (1 - d)^j`` in the ``j``-th year
after support; the difference is the deaths lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, RACES, STATES, STRATEGIES
from imsim.core.errors import InputError

#: Bisection tolerance on coverage (and on the portfolio multiplier).
TOL = 1e-4
#: Grid points on [0, full] before bisection.
GRID = 21
#: Target kinds: name -> (direction, unit). ``<=``: met at or below the value.
KINDS = {"imr": ("<=", "per 1,000"), "rate_ratio": ("<=", ""),
         "rate_difference": ("<=", "per 1,000"), "deaths_averted": (">=", "deaths")}
#: Columns of target.csv, in order.
COLUMNS = ["state", "race", "year", "target", "strategy", "coverage_needed", "p_reach",
           "reachable"]


@dataclass(frozen=True)
class Target:
    """One target: ``kind`` in :data:`KINDS`, its value, where (state or ``ALL``), race, year.

    ``race`` is the group whose IMR is targeted (``ALL``: all births) and, for ``rate_ratio``
    and ``rate_difference``, the group compared with NH white (not ``nh_white`` or ``ALL``).
    """

    kind: str
    value: float
    state: str = ALL
    race: str = ALL
    year: int | None = None

    def met(self, metric):
        """True where ``metric`` meets the target (NaN never does)."""
        m = np.asarray(metric, dtype=float)
        with np.errstate(invalid="ignore"):
            return (m >= self.value) if KINDS[self.kind][0] == ">=" else (m <= self.value)

    @property
    def label(self) -> str:
        """``"imr <= 5"``, ``"deaths_averted >= 100"``."""
        return f"{self.kind} {KINDS[self.kind][0]} {self.value:g}"


def check_target(target: Target, scenario) -> Target:
    """Check a target against a scenario; return it with ``year`` filled in (default: last).

    Raises
    ------
    InputError
        One line naming the option, the value and what is allowed.
    """
    if target.kind not in KINDS:
        raise InputError(f"unknown target '{target.kind}'; allowed: {', '.join(KINDS)}")
    v = target.value
    if not math.isfinite(v):
        raise InputError(f"--{target.kind.replace('_', '-')} {v} is not a number")
    if target.kind == "imr" and not 0 < v < 1000:
        raise InputError(f"--imr {v:g} is out of range; allowed: above 0 and below 1000 "
                         "(infant deaths per 1,000 live births)")
    if target.kind == "rate_ratio" and not v > 0:
        raise InputError(f"--rate-ratio {v:g} is out of range; allowed: above 0")
    if target.kind == "deaths_averted" and not v > 0:
        raise InputError(f"--deaths-averted {v:g} is out of range; allowed: above 0")
    if target.state != ALL and target.state not in scenario.state_list:
        raise InputError(f"--state {target.state} is not in the scenario's states; allowed: "
                         f"{', '.join(scenario.state_list)} (or leave it out for the nation)")
    race = target.race
    if race != ALL and race not in RACES:
        raise InputError(f"--race {race} is unknown; allowed: {', '.join(RACES)} (or leave it "
                         "out for all births)")
    if target.kind in ("rate_ratio", "rate_difference"):
        if race == ALL:
            race = "nh_black"
        if race == "nh_white":
            raise InputError(f"--race nh_white: a --{target.kind.replace('_', '-')} compares a "
                             "race with NH white; allowed: "
                             f"{', '.join(r for r in RACES if r != 'nh_white')}")
    y0, y1 = scenario.years
    year = y1 if target.year is None else int(target.year)
    if not y0 <= year <= y1:
        raise InputError(f"--year {year} is outside the scenario's years {y0}-{y1}; allowed: "
                         f"{y0} to {y1}")
    return Target(target.kind, float(v), target.state, race, year)


# -- the problem: cells, coverage settings, draws -----------------------------------------------

class CoverageProblem:
    """The cells a target reads, the scenario's coverage split into level and reach, and the
    baseline arm per draw (built once; every coverage setting reuses them).

    Parameters
    ----------
    scenario : Scenario
        The scenario (its states and years are replaced by ``states`` and ``years``).
    states : list of str
        The states to resolve.
    year_to : int
        Last year resolved.
    year_cells : iterable of int
        The years whose cells are kept (the ones the target reads).
    calibration : optional
        As :func:`imsim.analysis.runner.get_calibration`.
    seed : int, optional
        Seed of the draws (default: the scenario's).
    replicates : int
        Uncertainty draws besides draw 0 (the point).
    years : tuple of int, optional
        ``(first, last)`` of the resolution (default: the scenario's first year to ``year_to``).
    """

    def __init__(self, scenario, states, year_to, year_cells, calibration=None, seed=None,
                 replicates: int = 0, years=None):
        from imsim.analysis import runner
        from imsim.analysis.draws import draw_plan

        y0 = scenario.years[0] if years is None else years[0]
        sc = scenario.model_copy(update={"states": list(states), "years": (y0, year_to)})
        self.scenario = sc
        self.seed = scenario.seed if seed is None else int(seed)
        self.cal = runner.get_calibration(calibration if calibration is not None
                                          else scenario.calibration)
        inputs = runner.resolve_inputs(sc)
        inputs.calibration = self.cal
        self.inputs = inputs
        cells = inputs.cells
        sel = np.flatnonzero(np.isin(cells.year, list(year_cells)))
        self.sel = sel
        from imsim.inputs.baseline import Cells

        self.cells = Cells(cells.year[sel], cells.s_idx[sel], cells.r_idx[sel],
                           cells.births[sel],
                           None if cells.projected is None else cells.projected[sel])
        self.n = sel.size
        self.levers = inputs.levers.take(sel)
        self.attrs = self.levers.cells
        self.race = np.asarray(RACES)[self.cells.r_idx]
        self.state = np.asarray(STATES)[self.cells.s_idx]
        # Coverage = level x reach, level per (state, year, strategy) (the ramp or the ABM).
        self.uses, self.reach, self.level = {}, {}, {}
        states_all = np.asarray(STATES)[cells.s_idx]
        races_all = np.asarray(RACES)[cells.r_idx]
        for k in STRATEGIES:
            uses = np.array([k in inputs.options[i] for i in sel], dtype=bool)
            reach = np.ones(self.n)
            for j, i in enumerate(sel):
                if not uses[j]:
                    continue
                block = sc.portfolio(states_all[i]).active().get(k)
                if block is not None and block.reach and races_all[i] in block.reach:
                    reach[j] = block.reach[races_all[i]]
            cov = inputs.coverage[k][sel]
            with np.errstate(invalid="ignore", divide="ignore"):
                lev = np.where(reach > 0, cov / reach, np.nan)
            # A race with reach 0 takes its state-year's level from the other races.
            key = [(s, y) for s, y in zip(self.state, self.cells.year)]
            best: dict = {}
            for j, kk in enumerate(key):
                if np.isfinite(lev[j]):
                    best[kk] = max(best.get(kk, 0.0), float(lev[j]))
            lev = np.array([best.get(kk, 0.0) for kk in key])
            self.uses[k], self.reach[k], self.level[k] = uses, reach, np.where(uses, lev, 0.0)
        self.strategies = [k for k in STRATEGIES if self.uses[k].any()]
        plan = draw_plan(inputs.evidence, self.cal, self.seed, max(int(replicates), 1))
        self.plan = plan if replicates > 0 else plan[:1]
        self._base: dict[int, tuple] = {}

    # coverage settings -----------------------------------------------------------------------
    def alone(self, k: str, c: float) -> dict[str, np.ndarray]:
        """Strategy ``k`` alone at constant coverage ``c`` (x reach) where the scenario uses it."""
        cov = {s: np.zeros(self.n) for s in STRATEGIES}
        cov[k] = np.where(self.uses[k], min(max(c, 0.0), 1.0) * self.reach[k], 0.0)
        return cov

    def scaled(self, m: float) -> dict[str, np.ndarray]:
        """Every strategy's level x ``m``, capped at 1, then reach."""
        return {s: np.where(self.uses[s], np.minimum(1.0, m * self.level[s]) * self.reach[s],
                            0.0) for s in STRATEGIES}

    def m_full(self) -> float:
        """The multiplier that puts every used strategy-cell with a level above 0 at 1."""
        pos = np.concatenate([self.level[k][self.uses[k] & (self.level[k] > 0)]
                              for k in STRATEGIES])
        return float(1.0 / pos.min()) if pos.size else 0.0

    # the engine ------------------------------------------------------------------------------
    def base(self, d: int):
        """(baseline params, baseline outputs, births factor) of draw ``d`` (cached)."""
        hit = self._base.get(d)
        if hit is None:
            from imsim.birth.engines import expected
            from imsim.birth.params import build_tables
            from imsim.inputs.fit import fit_for

            dr = self.plan[d]
            bl = self.inputs.baseline
            fit = fit_for(bl, dr.effects, self.cal, dr.calibration_draw)
            params = bl.params(self.cells, dr.effects, fit)
            bf = bl.births_factor(self.cells, self.seed, d)
            hit = (params, expected(build_tables(params)) * bf[:, None], bf)
            self._base[d] = hit
        return hit

    def outcomes(self, settings, draws, exposures: bool):
        """Baseline and scenario outputs ``[S, D, n, N_OUT]`` for coverage settings x draws."""
        from imsim.birth.engines import expected
        from imsim.birth.params import build_tables
        from imsim.birth.strategies import apply

        S, D, n = len(settings), len(draws), self.n
        bases = [self.base(d) for d in draws]
        pre = _concat([b[0] for b in bases])                   # D copies
        stack = _concat([pre] * S) if S > 1 else pre.copy()    # S x D copies
        idx = np.tile(np.arange(n), S * D)
        levers = self.levers.take(idx)
        for s in STRATEGIES:
            levers = levers.with_coverage(s, np.concatenate(
                [np.tile(cov[s], D) for cov in settings]))
        eff_ids = list(self.plan[0].effects)
        E = {e: np.tile(np.repeat(np.array([float(self.plan[d].effects[e]) for d in draws]),
                                  n), S) for e in eff_ids}
        apply(stack, levers, E, exposures=exposures)
        bf = np.tile(np.concatenate([b[2] for b in bases]), S)
        out_s = (expected(build_tables(stack)) * bf[:, None]).reshape(S, D, n, -1)
        out_b = np.stack([b[1] for b in bases])[None]
        return out_b, out_s


def _concat(params_list):
    """Stack CellParams of several parts as extra cells (a copy)."""
    from dataclasses import fields

    from imsim.birth.params import CellParams

    if len(params_list) == 1:
        return params_list[0].copy()
    return CellParams(**{f.name: np.concatenate([getattr(p, f.name) for p in params_list])
                         for f in fields(params_list[0])})


def births_of(out):
    """Live births of engine outputs ``[..., N_OUT]`` -> ``[...]``."""
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS

    return out[..., OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=-1)


def deaths_of(out):
    """Infant deaths (every cause and GA band) of engine outputs ``[..., N_OUT]`` -> ``[...]``."""
    from imsim.birth.kernels import N_BANDS, OUT_DEATHS

    return out[..., OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=-1)


def _rate(deaths, births):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(births > 0, 1000.0 * deaths / births, np.nan)


def _metric(problem: CoverageProblem, target: Target, out_b, out_s) -> np.ndarray:
    """The target's metric for outputs ``[S, D, n, K]`` -> ``[S, D]``."""
    in_state = np.ones(problem.n, bool) if target.state == ALL else problem.state == target.state
    in_year = problem.cells.year == target.year

    def rate(out, race):
        m = in_state & in_year & ((problem.race == race) if race != ALL else True)
        return _rate(deaths_of(out[..., m, :]).sum(-1), births_of(out[..., m, :]).sum(-1))

    if target.kind == "imr":
        return rate(out_s, target.race)
    if target.kind == "rate_ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            return rate(out_s, target.race) / rate(out_s, "nh_white")
    if target.kind == "rate_difference":
        return rate(out_s, target.race) - rate(out_s, "nh_white")
    m = in_state & (problem.cells.year <= target.year)
    if target.race != ALL:
        m &= problem.race == target.race
    averted = deaths_of(out_b[..., m, :]).sum(-1) - deaths_of(out_s[..., m, :]).sum(-1)
    return np.broadcast_to(averted, out_s.shape[:2]).copy()


def _solve(values_at, met, full: float) -> tuple[float | None, float]:
    """Smallest x in [0, full] meeting the target (grid, then bisection); None if none does.

    Returns (x or None, the point metric at the reported x, or at ``full`` when None).
    """
    if full <= 0:
        v0 = float(values_at([0.0])[0])
        return (0.0, v0) if met(v0) else (None, v0)
    grid = np.linspace(0.0, full, GRID)
    vals = values_at(grid)
    ok = met(vals)
    if ok[0]:
        return 0.0, float(vals[0])
    if not ok.any():
        return None, float(vals[-1])
    j = int(np.argmax(ok))
    lo, hi, vhi = grid[j - 1], grid[j], float(vals[j])
    while hi - lo > TOL * max(1.0, full):
        mid = 0.5 * (lo + hi)
        vm = float(values_at([mid])[0])
        if met(vm):
            hi, vhi = mid, vm
        else:
            lo = mid
    return float(hi), vhi


@dataclass
class TargetResult:
    """What :func:`solve_targets` found.

    Attributes
    ----------
    target : Target
        The target, year filled in.
    table : pandas.DataFrame
        ``target.csv``: :data:`COLUMNS`.
    detail : pandas.DataFrame
        Per row: ``strategy, coverage_needed, metric_at_solution, metric_at_zero, metric_at_full,
        p_reach, draws`` (the metric at the point, in the target's unit).
    portfolio : pandas.DataFrame
        ``target_portfolio.csv``: ``strategy, state, year, coverage_scenario,
        coverage_at_solution`` (levels before reach, for the target's year).
    draws : int
        Uncertainty draws behind ``p_reach``.
    baseline_metric : float
        The metric with no strategy (the baseline arm at the point).
    """

    target: Target
    table: pd.DataFrame
    detail: pd.DataFrame
    portfolio: pd.DataFrame
    draws: int
    baseline_metric: float
    timings: dict = field(default_factory=dict)


def solve_targets(scenario, target: Target, replicates: int = 100, seed: int | None = None,
                  calibration=None) -> TargetResult:
    """Solve for the coverage that reaches ``target`` (see the module docstring).

    Parameters
    ----------
    scenario : Scenario
        The scenario whose strategies (and portfolio) are scaled.
    target : Target
        The target; checked with :func:`check_target`.
    replicates : int
        Uncertainty draws for ``p_reach`` (0: none, ``p_reach`` empty).
    seed : int, optional
        Seed of the draws (default: the scenario's).
    calibration : str or path or CalibratedTargets, optional
        As :func:`imsim.analysis.runner.run`.

    Returns
    -------
    TargetResult
    """
    import time

    t0 = time.perf_counter()
    target = check_target(target, scenario)
    states = scenario.state_list if target.state == ALL else [target.state]
    ycells = (range(scenario.years[0], target.year + 1) if target.kind == "deaths_averted"
              else [target.year])
    pb = CoverageProblem(scenario, states, target.year, ycells, calibration, seed, replicates)
    if not pb.strategies:
        raise InputError("the scenario has no strategy to scale; allowed: a scenario with "
                         "strategies (or a collaborative block)")
    draws_u = list(range(1, len(pb.plan)))
    ob, _ = pb.outcomes([pb.alone(pb.strategies[0], 0.0)], [0], False)
    baseline_metric = float(_metric(pb, target, ob, ob)[0, 0])
    rows, detail = [], []
    solved_m = None
    for k in pb.strategies + ["portfolio"]:
        if k == "portfolio":
            setting, full, expo = pb.scaled, pb.m_full(), True
        else:
            setting, full, expo = (lambda c, k=k: pb.alone(k, c)), 1.0, False

        def values_at(xs, setting=setting, expo=expo):
            b, s = pb.outcomes([setting(float(x)) for x in xs], [0], expo)
            return _metric(pb, target, b, s)[:, 0]

        x, v = _solve(values_at, target.met, full)
        v_ends = values_at([0.0, full]) if full > 0 else values_at([0.0, 0.0])
        at = full if x is None else x
        p = np.nan
        if draws_u:
            b, s = pb.outcomes([setting(at)], draws_u, expo)
            p = float(np.mean(target.met(_metric(pb, target, b, s)[0])))
        if k == "portfolio":
            solved_m = at
        rows.append({"state": target.state, "race": target.race, "year": target.year,
                     "target": target.label, "strategy": k,
                     "coverage_needed": np.nan if x is None else x, "p_reach": p,
                     "reachable": x is not None})
        detail.append({"strategy": k, "coverage_needed": np.nan if x is None else x,
                       "full": full, "metric_at_solution": v if x is not None else np.nan,
                       "metric_at_zero": float(v_ends[0]), "metric_at_full": float(v_ends[1]),
                       "p_reach": p, "draws": len(draws_u)})
    port = []
    yr = pb.cells.year == target.year
    for k in pb.strategies:
        for st in states:
            m = yr & (pb.state == st) & pb.uses[k]
            if not m.any():
                continue
            lev = float(pb.level[k][m].max())
            port.append({"strategy": k, "state": st, "year": target.year,
                         "coverage_scenario": lev,
                         "coverage_at_solution": min(1.0, solved_m * lev)})
    return TargetResult(target, pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(detail),
                        pd.DataFrame(port, columns=["strategy", "state", "year",
                                                    "coverage_scenario",
                                                    "coverage_at_solution"]),
                        len(draws_u), baseline_metric,
                        {"solve_s": time.perf_counter() - t0})


def solved_scenario(scenario, target: Target, strategy: str, value: float):
    """A scenario that runs the coverage :func:`solve_targets` reports, for ``imsim run``.

    ``strategy`` a strategy id (alone, constant coverage ``value``) or ``"portfolio"``
    (multiplier ``value``). States: the target's (or the scenario's); years: the scenario's
    first year to the target's year; per state a ``by_state`` portfolio with per-year coverage
    points (so the cap at 1 applies year by year); no collaborative block (its coverage is
    written out); for a strategy alone no exposure changes.

    Returns
    -------
    Scenario
        Validated (:func:`imsim.config.scenario.parse_scenario`).
    """
    from imsim.config.scenario import parse_scenario

    target = check_target(target, scenario)
    states = scenario.state_list if target.state == ALL else [target.state]
    pb = CoverageProblem(scenario, states, target.year,
                  range(scenario.years[0], target.year + 1), None, None, 0)
    data = scenario.resolved()
    data = {k: v for k, v in data.items()
            if k not in ("strategies", "by_state", "collaborative", "exposures")}
    data["states"] = list(states)
    data["years"] = [scenario.years[0], target.year]
    by_state = {}
    for st in states:
        strategies = {}
        ks = [strategy] if strategy != "portfolio" else pb.strategies
        for k in ks:
            m = (pb.state == st) & pb.uses[k]
            if not m.any():
                continue
            block = scenario.portfolio(st).active().get(k)
            opts = block.model_dump(exclude={"coverage"}, exclude_none=True) if block else {}
            if strategy == "portfolio":
                pts = {}
                for y in range(scenario.years[0], target.year + 1):
                    my = m & (pb.cells.year == y)
                    lev = float(pb.level[k][my].max()) if my.any() else 0.0
                    pts[y] = min(1.0, value * lev)
                opts["coverage"] = pts
            else:
                opts["coverage"] = float(value)
            strategies[k] = opts
        entry: dict = {"strategies": strategies}
        if strategy == "portfolio":
            exp = scenario.exposure_changes(st)
            if exp:
                entry["exposures"] = {e: ch.model_dump(exclude_none=True)
                                      for e, ch in exp.items()}
        by_state[st] = entry
    data["by_state"] = by_state
    data["strategies"] = {}
    return parse_scenario(data, coverage_optional=True)


# -- what if gains lapse ------------------------------------------------------------------------

def lapse(scenario, years_after: int, decay_per_year: float, state: str = ALL, race: str = ALL,
          replicates: int = 100, seed: int | None = None, calibration=None) -> pd.DataFrame:
    """Deaths averted with coverage held vs decaying after support ends (the scenario's last year).

    Parameters
    ----------
    scenario : Scenario
        Its coverage as written (ramps or collaborative).
    years_after : int
        ``K`` >= 1 years after the scenario's last year.
    decay_per_year : float
        ``d`` in [0, 1]: coverage ``x (1 - d)^j`` in the ``j``-th year after support ends.
    state, race : str
        Where (``ALL``: the scenario's states / all births).

    Returns
    -------
    pandas.DataFrame
        ``lapse.csv``: one row per year of the extended horizon and a ``TOTAL`` row, columns
        ``state, race, year, coverage_factor, deaths_averted_held, deaths_averted_lapsed,
        deaths_lost`` each count with ``_lo``/``_hi`` (2.5th/97.5th percentiles of draws
        1..R; empty with R = 0); the counts are the point (draw 0).
    """
    from imsim.core.validation import max_year

    K = int(years_after)
    d = float(decay_per_year)
    if K < 1:
        raise InputError(f"--lapse-years {K} is out of range; allowed: 1 or more")
    if not (math.isfinite(d) and 0.0 <= d <= 1.0):
        raise InputError(f"--decay-per-year {d:g} is out of range; allowed: 0 to 1 "
                         "(share of coverage lost per year)")
    y0, y1 = scenario.years
    last = y1 + K
    if last > max_year():
        raise InputError(f"--lapse-years {K} reaches {last}; allowed: up to {max_year() - y1} "
                         f"(years up to {max_year()})")
    if state != ALL and state not in scenario.state_list:
        raise InputError(f"--state {state} is not in the scenario's states; allowed: "
                         f"{', '.join(scenario.state_list)}")
    if race != ALL and race not in RACES:
        raise InputError(f"--race {race} is unknown; allowed: {', '.join(RACES)}")
    states = scenario.state_list if state == ALL else [state]
    # Resolve over the scenario's own years (coverage as written, the ABM as configured), then
    # carry each (state, race) cell's last-year coverage into the K years after.
    pb = CoverageProblem(scenario, states, last, range(y0, last + 1), calibration, seed, replicates,
                  years=(y0, last))
    # Coverage in the scenario's last year, per (state, race).
    yrs = pb.cells.year
    held, lapsed = {}, {}
    factor = np.where(yrs > y1, (1.0 - d) ** np.maximum(yrs - y1, 0), 1.0)
    key_last = {(s, r): i for i, (s, r, y) in enumerate(zip(pb.cells.s_idx, pb.cells.r_idx, yrs))
                if y == y1}
    src = np.array([i if y <= y1 else key_last[(s, r)]
                    for i, (s, r, y) in enumerate(zip(pb.cells.s_idx, pb.cells.r_idx, yrs))])
    for k in STRATEGIES:
        cov = pb.levers.coverage[k]
        held[k] = cov[src]
        lapsed[k] = cov[src] * factor
    draws = list(range(len(pb.plan)))
    ob, os_ = pb.outcomes([held, lapsed], draws, True)
    m = np.ones(pb.n, bool) if state == ALL else pb.state == state
    if race != ALL:
        m &= pb.race == race
    years = list(range(y0, last + 1))
    rows = []

    def stats(x):            # x [D] -> point, lo, hi
        if len(draws) > 1:
            return float(x[0]), float(np.percentile(x[1:], 2.5)), float(np.percentile(x[1:], 97.5))
        return float(x[0]), np.nan, np.nan

    for y in years + [None]:
        my = m & ((yrs == y) if y is not None else True)
        db = deaths_of(ob[0][:, my, :]).sum(-1)
        dh = db - deaths_of(os_[0][:, my, :]).sum(-1)
        dl = db - deaths_of(os_[1][:, my, :]).sum(-1)
        row = {"state": state, "race": race, "year": "TOTAL" if y is None else y,
               "coverage_factor": np.nan if y is None else float((1 - d) ** max(y - y1, 0))}
        for name, x in (("deaths_averted_held", dh), ("deaths_averted_lapsed", dl),
                        ("deaths_lost", dh - dl)):
            p, lo, hi = stats(x)
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = p, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
