"""Run a scenario: baseline and scenario arms, for each uncertainty draw, through one engine.

Draw 0 uses the evidence library's point values (the headline numbers); draws 1..R sample every
effect from its distribution (and, for the microsim, Monte Carlo replicate d). For each draw the
baseline fit is re-solved so that the baseline still reproduces the observed rates; both arms of a
draw share effects, fit and (microsim) random numbers, so their difference is a paired draw.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from imsim.birth import strategies as S
from imsim.inputs.baseline import BASELINE_EFFECTS, Baseline, Cells, get_baseline
from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.birth.engines import ENGINES, expected, microsim
from imsim.core.errors import InputError
from imsim.inputs.evidence import EvidenceLibrary
from imsim.inputs.fit import Fit, direct_fit
from imsim.birth.params import CellParams, build_tables, cells_differ
from imsim.config.scenario import Scenario

#: Draw-stream label for effect sampling (keeps effect draws independent of the microsim's).
_EFFECT_STREAM = 0x1B51


@dataclass
class Arms:
    """Outcome counts of both arms: ``[n_draws, n_cells, N_OUT]``."""

    baseline: np.ndarray
    scenario: np.ndarray


@dataclass
class RunInputs:
    """Everything resolved before the engines run (reused by attribution and sweeps)."""

    scenario: Scenario
    baseline: Baseline
    cells: Cells
    coverage: dict[str, np.ndarray]          # strategy -> coverage per cell
    options: list[dict[str, dict]]           # per cell: strategy -> options
    evidence: EvidenceLibrary
    collaborative: object = None             # quarterly coverage DataFrame when an ABM ran
    calibration: object = None               # CalibratedTargets (None: direct fit)


@dataclass
class Result:
    """The outcome of :func:`run`; tables are built lazily (see :mod:`imsim.analysis.results`)."""

    inputs: RunInputs
    engine: str
    seed: int
    replicates: int
    arms: Arms
    effects: list[dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    fit_source: str = "direct"
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def scenario(self) -> Scenario:
        return self.inputs.scenario

    def table(self, name: str):
        from imsim.analysis import results

        if name not in self._tables:
            self._tables[name] = results.build_table(self, name)
        return self._tables[name]

    @property
    def summary(self):
        """Deaths and IMR per state x race (with ``ALL`` totals) over the horizon."""
        return self.table("summary")

    def save(self, out_dir=None, figures: bool = True, report: bool = True):
        """Write every output into a new folder atomically; return its path."""
        from imsim.analysis.results import save_result

        return save_result(self, out_dir, figures=figures, report=report)


def _ramp_value(cov, year: int) -> float:
    if cov is None:
        return 0.0
    if not isinstance(cov, dict):
        return float(cov)
    years = sorted(cov)
    if year < years[0]:
        return 0.0
    if year >= years[-1]:
        return float(cov[years[-1]])
    return float(np.interp(year, years, [cov[y] for y in years]))


def resolve_inputs(scenario: Scenario, baseline: Baseline | None = None) -> RunInputs:
    """Cells, coverage per strategy and cell, and lever options, for a scenario."""
    baseline = baseline or get_baseline()
    cells = baseline.cells(scenario.year_list, scenario.state_list)
    if scenario.births_change_per_year:
        ahead = np.maximum(cells.year - 2017, 0)
        cells.births = np.round(cells.births * (1.0 + scenario.births_change_per_year) ** ahead
                                ).astype(np.int64)
    n = cells.n
    coverage = {k: np.zeros(n) for k in STRATEGIES}
    options: list[dict[str, dict]] = [dict() for _ in range(n)]
    abm = None
    abm_cov = None
    if scenario.collaborative is not None:
        from imsim.collaborative.abm import annual_coverage, parse_collaborative, run_collaborative

        cfg = parse_collaborative(scenario.collaborative)
        abm = run_collaborative(cfg, (scenario.years[0], scenario.years[1]), scenario.seed)
        annual = annual_coverage(abm)
        abm_cov = {(int(r.year), r.state, r.strategy): float(r.coverage)
                   for r in annual.itertuples()}
    states = np.asarray(STATES)[cells.s_idx]
    races = np.asarray(RACES)[cells.r_idx]
    for i in range(n):
        st, yr, race = states[i], int(cells.year[i]), races[i]
        active = scenario.portfolio(st).active()
        keys = set(active)
        if abm_cov is not None:
            keys |= {k for k in STRATEGIES if (yr, st, k) in abm_cov}
        for k in keys:
            block = active.get(k)
            if abm_cov is not None and (yr, st, k) in abm_cov:
                c = abm_cov[(yr, st, k)]
            elif abm_cov is not None and (block is None or block.coverage is None):
                c = 0.0
            else:
                c = _ramp_value(block.coverage if block else None, yr)
            if block is not None and block.reach and race in block.reach:
                c *= block.reach[race]
            coverage[k][i] = c
            opts = block.model_dump(exclude={"coverage", "reach"}) if block is not None else {}
            options[i][k] = opts
    evidence = EvidenceLibrary.load().with_overrides(scenario.effects or {})
    return RunInputs(scenario, baseline, cells, coverage, options, evidence, abm)


def unique_cells(inputs: RunInputs) -> tuple[RunInputs, np.ndarray]:
    """Inputs reduced to cells with distinct parameters, each with one birth, and the index map.

    Two cells share parameters when they have the same state, race and coverage of every
    strategy (years differ only in births and coverage). Returns ``(unique_inputs, inverse)``
    with ``cells[i]`` ~ ``unique.cells[inverse[i]]``.
    """
    cells = inputs.cells
    key = np.column_stack([cells.s_idx, cells.r_idx]
                          + [inputs.coverage[k] for k in STRATEGIES]).astype(float)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    ucells = Cells(cells.year[first], cells.s_idx[first], cells.r_idx[first],
                   np.ones(first.shape[0], dtype=np.int64))
    unique = RunInputs(
        scenario=inputs.scenario, baseline=inputs.baseline, cells=ucells,
        coverage={k: v[first] for k, v in inputs.coverage.items()},
        options=[inputs.options[i] for i in first], evidence=inputs.evidence,
        collaborative=inputs.collaborative, calibration=inputs.calibration)
    return unique, inverse


def _option_groups(options, strategy):
    """Group cell indices by their option dict for one strategy."""
    groups: dict[str, tuple[dict, list[int]]] = {}
    for i, opts in enumerate(options):
        if strategy in opts:
            key = repr(sorted(opts[strategy].items()))
            groups.setdefault(key, (opts[strategy], []))[1].append(i)
    return [(o, np.array(idx, dtype=np.int64)) for o, idx in groups.values()]


def scenario_params(inputs: RunInputs, base: CellParams, effects: dict[str, float],
                    only: set[str] | None = None, with_exposures: bool = True) -> CellParams:
    """The scenario arm: counterfactual exposures, then each strategy lever.

    ``only`` restricts the levers to a subset of strategies and ``with_exposures`` switches the
    counterfactual exposures (both used by attribution).
    """
    scen = base.copy()
    sc = inputs.scenario
    states = np.asarray(STATES)[inputs.cells.s_idx]
    for st in (np.unique(states) if with_exposures else []):
        changes = sc.exposure_changes(st)
        if not changes:
            continue
        mask = states == st
        for exposure, ch in changes.items():
            S.apply_exposure_change(scen, exposure, mask, scale=ch.scale, set_to=ch.set)
    short_share = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    for k in STRATEGIES:
        if only is not None and k not in only:
            continue
        cov = inputs.coverage[k]
        if not np.any(cov > 0):
            continue
        for opts, idx in _option_groups(inputs.options, k):
            idx = idx[cov[idx] > 0]
            if idx.size == 0:
                continue
            if idx.size == scen.n:                 # every cell: edit in place, no copy
                if k == "preterm_prevention":
                    S.preterm_prevention(scen, cov, effects, opts, short_share)
                else:
                    S.LEVERS[k](scen, cov, effects, opts)
                continue
            sub = scen.take(idx)
            if k == "preterm_prevention":
                S.preterm_prevention(sub, cov[idx], effects, opts, short_share[idx])
            else:
                S.LEVERS[k](sub, cov[idx], effects, opts)
            scen.put(idx, sub)
    return scen


def effect_draws(evidence: EvidenceLibrary, seed: int, replicates: int) -> list[dict[str, float]]:
    """Draw 0: point values; draws 1..R: samples (R = replicates, when > 1)."""
    draws = [evidence.point()]
    if replicates > 1:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _EFFECT_STREAM]))
        sample = evidence.sample(replicates, rng)
        for d in range(replicates):
            draws.append({k: float(v[d]) for k, v in sample.items()})
    return draws


_FIT_CACHE: dict = {}
_CAL_CACHE: dict = {}


def get_calibration(name=None):
    """The calibration to fit the baseline to: a name or folder (``None``/``"default"``: the
    default fit, ``"direct"``: none -- the direct fit to observed cells); loaded once."""
    if name is not None and not isinstance(name, (str, os.PathLike)):
        return name                      # already a CalibratedTargets
    key = "default" if name is None else str(name)
    if key not in _CAL_CACHE:
        from imsim.calibration.calibrate import load_calibration

        _CAL_CACHE[key] = load_calibration(None if key == "default" else key)
    return _CAL_CACHE[key]


def calibration_draw(calibration, d: int) -> int | None:
    """Posterior draw used by uncertainty draw ``d`` (draw 0: the point estimate)."""
    if calibration is None or d == 0:
        return None
    k = int(calibration.imr_draws.shape[0])
    return (d - 1) % k


def _fit_for(baseline: Baseline, effects: dict[str, float], cache: dict,
             calibration=None, draw: int | None = None) -> Fit:
    """Fit for ``effects`` and a calibration (object or None = direct), cached."""
    key = (tuple((k, effects[k]) for k in BASELINE_EFFECTS if k in effects), id(calibration),
           draw)
    if key not in cache:
        if len(cache) > 512:
            cache.clear()
        cache[key] = direct_fit(baseline, effects, targets=calibration, draw=draw)
    return cache[key]


def fit_for_draw(baseline: Baseline, effects: dict[str, float], calibration=None,
                 draw: int | None = None) -> Fit:
    """The baseline fit for effect values ``effects`` and calibration posterior draw ``draw``.

    ``calibration``: a CalibratedTargets, a name/folder, ``None`` (the default fit) or
    ``"direct"``. Cached by the effects that enter the baseline, so strategy-efficacy draws
    reuse fits.
    """
    cal = get_calibration(calibration)
    if cal is not None and draw is not None:
        draw = int(draw) % int(cal.imr_draws.shape[0])
    return _fit_for(baseline, effects, _FIT_CACHE, cal, draw)


def run(scenario: Scenario, engine: str | None = None, seed: int | None = None,
        replicates: int | None = None, progress: bool = False, calibration=None) -> Result:
    """Run ``scenario``; arguments given here override the scenario's own settings.

    ``calibration``: a calibration name or folder (default: the scenario's, else the packaged
    default fit); ``"direct"`` fits the baseline directly to the observed cells instead.
    """
    engine = scenario.engine if engine is None else engine
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'; allowed: {', '.join(ENGINES)}")
    seed = scenario.seed if seed is None else int(seed)
    if seed < 0 or seed >= 2**63:
        raise InputError(f"seed {seed} is out of range; allowed 0 to 2**63 - 1")
    replicates = scenario.replicates if replicates is None else int(replicates)
    if replicates < 1:
        raise InputError(f"replicates must be at least 1, got {replicates}")
    t0 = time.perf_counter()
    cal = get_calibration(calibration if calibration is not None else scenario.calibration)
    inputs = resolve_inputs(scenario)
    inputs.calibration = cal
    draws = effect_draws(inputs.evidence, seed, replicates)
    t1 = time.perf_counter()
    n_draws = len(draws)
    from imsim.birth.kernels import N_OUT

    out_b = np.zeros((n_draws, inputs.cells.n, N_OUT))
    out_s = np.zeros((n_draws, inputs.cells.n, N_OUT))
    bar = None
    if progress and n_draws > 1:
        from tqdm import tqdm

        bar = tqdm(total=n_draws, desc=f"{engine} draws", unit="draw", leave=False)
    t_engine = 0.0
    if engine == "expected":
        unique, inverse = unique_cells(inputs)
        births = inputs.cells.births.astype(float)[:, None]
    for d, effects in enumerate(draws):
        fit = _fit_for(inputs.baseline, effects, _FIT_CACHE, cal, calibration_draw(cal, d))
        if engine == "expected":
            # Expected counts are proportional to births: evaluate each distinct parameter set
            # once per birth and scale (years with the same coverage share one evaluation).
            base = inputs.baseline.params(unique.cells, effects, fit)
            scen = scenario_params(unique, base, effects)
            tb, ts = build_tables(base), build_tables(scen)
            te = time.perf_counter()
            out_b[d] = expected(tb)[inverse] * births
            out_s[d] = expected(ts)[inverse] * births
        else:
            base = inputs.baseline.params(inputs.cells, effects, fit)
            scen = scenario_params(inputs, base, effects)
            tb, ts = build_tables(base), build_tables(scen)
            te = time.perf_counter()
            out_b[d] = microsim(tb, seed, replicate=d)
            # Cells whose tables are the same in both arms have the same outcomes (CRN by
            # construction): simulate only the cells the scenario changes.
            diff = cells_differ(tb, ts)
            out_s[d] = out_b[d]
            if diff.any():
                idx = np.flatnonzero(diff)
                out_s[d][idx] = microsim(ts.take(idx), seed, replicate=d)
        t_engine += time.perf_counter() - te
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    t2 = time.perf_counter()
    return Result(inputs=inputs, engine=engine, seed=seed, replicates=replicates,
                  arms=Arms(out_b, out_s), effects=draws,
                  timings={"resolve_s": t1 - t0, "draws_s": t2 - t1, "engine_s": t_engine},
                  fit_source="direct" if cal is None else f"calibration:{cal.name}")
