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

from imsim.inputs.baseline import Baseline, Cells, get_baseline
from imsim.analysis.draws import Draw, draw_plan
from imsim.birth.engines import ENGINES, expected, microsim
from imsim.birth.params import CellParams, build_tables, cells_differ
from imsim.birth.strategies import ExposureChange, Levers, scenario_arm
from imsim.config.scenario import Scenario
from imsim.core.constants import DATA_YEARS, RACES, STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.inputs.evidence import EvidenceLibrary
from imsim.inputs.fit import fit_for



@dataclass
class Arms:
    """Outcome counts of both arms of a run, per draw and cell.

    Attributes
    ----------
    baseline, scenario : numpy.ndarray
        float64 ``[n_draws, n_cells, N_OUT]``: births, deaths by cause x GA band and exposed
        births (columns ``OUT_*`` of :mod:`imsim.birth.kernels`); counts, not rates (whole
        numbers for the microsim). Draw 0 is the point.
    """

    baseline: np.ndarray
    scenario: np.ndarray


@dataclass
class RunInputs:
    """Everything resolved before the engines run (reused by attribution and sweeps).

    Attributes
    ----------
    scenario : Scenario
        The validated scenario.
    baseline : Baseline
        The scenario-independent inputs.
    cells : Cells
        The ``n`` cells (year x state x race) of the horizon, with births.
    coverage : dict of str to numpy.ndarray
        Strategy id -> float64 ``[n]`` coverage (share of the eligible reached, after per-race
        reach; 0 where the strategy is off).
    options : list of dict
        ``[n]``: per cell, strategy id -> its options.
    evidence : EvidenceLibrary
        The evidence library with the scenario's overrides.
    collaborative : pandas.DataFrame or None
        Quarterly coverage from the learning-collaborative ABM, when one ran.
    calibration : CalibratedTargets or None
        The calibration the baseline reproduces (None: the direct fit).
    levers : Levers
        The portfolio over the cells (built from the above when not given).
    warnings : list of str
        One-line warnings about the scenario (e.g. Medicaid expansion asked for where the
        state had already expanded); set by :func:`resolve_inputs`, see :func:`run_warnings`.
    """

    scenario: Scenario
    baseline: Baseline
    cells: Cells
    coverage: dict[str, np.ndarray]          # strategy -> coverage per cell
    options: list[dict[str, dict]]           # per cell: strategy -> options
    evidence: EvidenceLibrary
    collaborative: object = None             # quarterly coverage DataFrame when an ABM ran
    calibration: object = None               # CalibratedTargets (None: direct fit)
    levers: Levers | None = None             # the portfolio over the cells (built from the above)
    warnings: list[str] = field(default_factory=list)   # one line each (run_warnings)

    def __post_init__(self):
        if self.levers is None:
            self.levers = levers_for(self)


@dataclass
class Result:
    """The outcome of :func:`run`; tables are built lazily (see :mod:`imsim.analysis.results`).

    Attributes
    ----------
    inputs : RunInputs
        What the run resolved (cells, coverage, evidence, calibration).
    engine : str
        ``"expected"`` or ``"microsim"``.
    seed : int
        The seed used.
    replicates : int
        Uncertainty draws requested (1: the point only).
    arms : Arms
        Outcome counts ``[n_draws, n_cells, N_OUT]`` of both arms.
    effects : list of dict
        ``[n_draws]``: evidence effect values of each draw (draw 0: point values).
    timings : dict of str to float
        Wall-clock times in seconds (``resolve_s``, ``draws_s``, ``engine_s``; ``save_s``
        once saved).
    fit_source : str
        ``"direct"`` or ``"calibration:<name>"``.
    draws : list of Draw
        The uncertainty draws (draw 0: the point).
    """

    inputs: RunInputs
    engine: str
    seed: int
    replicates: int
    arms: Arms
    effects: list[dict[str, float]]
    timings: dict[str, float] = field(default_factory=dict)
    fit_source: str = "direct"
    draws: list[Draw] = field(default_factory=list)   # the uncertainty draws (draw 0: point)
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def scenario(self) -> Scenario:
        """The scenario that was run."""
        return self.inputs.scenario

    def table(self, name: str):
        """Return a result table, built on first use and cached.

        Parameters
        ----------
        name : str
            One of :data:`imsim.analysis.results.TABLES` (``summary``, ``by_year``,
            ``by_cause``, ``preterm``, ``disparities``, ``attribution``, ``coverage``).

        Returns
        -------
        pandas.DataFrame
            The table (shared with the cache: copy it before editing).

        Raises
        ------
        KeyError
            For an unknown table name.
        """
        from imsim.analysis import results

        if name not in self._tables:
            self._tables[name] = results.build_table(self, name)
        return self._tables[name]

    @property
    def summary(self):
        """Deaths and IMR (per 1,000 live births) per state x race, with ``ALL`` totals."""
        return self.table("summary")

    @property
    def warnings(self) -> list[str]:
        """One-line warnings about the scenario (not errors; see :func:`run_warnings`)."""
        return list(self.inputs.warnings)


def ramp_value(cov, year: int) -> float:
    """Return the coverage in ``year`` of a scenario coverage: a number, or a ramp.

    A ramp ``{year: value}`` is 0 before its first year, linear between points and held after
    its last year.

    Parameters
    ----------
    cov : float or dict of int to float or None
        A coverage (share, 0..1), a ramp, or None (0).
    year : int
        Calendar year.

    Returns
    -------
    float
        Coverage in ``year`` (share, 0..1).
    """
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


def abm_lookup(annual) -> dict[tuple[int, str, str], float]:
    """The collaborative's annual coverage as ``{(year, state, strategy): coverage}``."""
    return {(int(r.year), r.state, r.strategy): float(r.coverage) for r in annual.itertuples()}


def cell_coverage(scenario: Scenario, cells: Cells, abm_cov=None):
    """Return each strategy's coverage per cell and each cell's lever options.

    The collaborative's coverage (``abm_cov``, from :func:`abm_lookup`) replaces the scenario's
    for the (year, state, strategy) it covers; otherwise the state's portfolio ramp
    (:func:`ramp_value`), 0 where a strategy has no coverage of its own; then per-race reach.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario.
    cells : Cells
        The cells (``n``).
    abm_cov : dict, optional
        ``{(year, state, strategy): coverage}`` of a collaborative run.

    Returns
    -------
    coverage : dict of str to numpy.ndarray
        Strategy id -> float ``[n]``, share of the eligible population reached.
    options : list of dict
        Per cell: strategy id -> its options (program, components, policy...).
    """
    n = cells.n
    coverage = {k: np.zeros(n) for k in STRATEGIES}
    options: list[dict[str, dict]] = [dict() for _ in range(n)]
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
                c = ramp_value(block.coverage if block else None, yr)
            if block is not None and block.reach and race in block.reach:
                c *= block.reach[race]
            coverage[k][i] = c
            options[i][k] = (block.model_dump(exclude={"coverage", "reach"})
                             if block is not None else {})
    return coverage, options


def resolve_inputs(scenario: Scenario, baseline: Baseline | None = None) -> RunInputs:
    """Resolve a scenario's cells, coverage per strategy and cell, and lever options.

    Runs the learning-collaborative ABM when the scenario has one (its annual coverage then
    replaces the scenario's coverage for the strategies it covers), applies per-race reach and
    ``births_change_per_year`` (when set: the 2023 births compounded per year after 2023;
    unset: the projected births of :meth:`Baseline.cells`), and loads the evidence library
    with the scenario's overrides.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario.
    baseline : Baseline, optional
        Default: the process-wide baseline (:func:`imsim.inputs.baseline.get_baseline`).

    Returns
    -------
    RunInputs
        With ``calibration`` unset (None); :func:`run` sets it.
    """
    baseline = baseline or get_baseline()
    g = scenario.births_change_per_year
    # Unset: births after the latest data year follow the projected state trend. Set (0 = hold):
    # the latest data year's births (2023) compounded by g per year after it.
    cells = baseline.cells(scenario.year_list, scenario.state_list, project=g is None)
    if g:
        ahead = np.maximum(cells.year - max(DATA_YEARS), 0)
        cells.births = np.round(cells.births * (1.0 + g) ** ahead).astype(np.int64)
    abm = None
    abm_cov = None
    if scenario.collaborative is not None:
        from imsim.collaborative.abm import annual_coverage, parse_collaborative, run_collaborative

        cfg = parse_collaborative(scenario.collaborative)
        abm = run_collaborative(cfg, (scenario.years[0], scenario.years[1]), scenario.seed)
        abm_cov = abm_lookup(annual_coverage(abm))
    coverage, options = cell_coverage(scenario, cells, abm_cov)
    evidence = EvidenceLibrary.load().with_overrides(scenario.effects or {})
    inputs = RunInputs(scenario, baseline, cells, coverage, options, evidence, abm)
    inputs.warnings = run_warnings(inputs)
    return inputs


def unique_cells(inputs: RunInputs) -> tuple[RunInputs, np.ndarray]:
    """Reduce inputs to cells with distinct parameters, each with one birth.

    Two cells share parameters when they have the same state, race, coverage of every
    strategy and eligibility attributes (years differ only in births, coverage and whether the
    state had already expanded Medicaid). Expected counts are proportional to
    births, so the expected engine evaluates each distinct cell once and scales.

    Parameters
    ----------
    inputs : RunInputs
        Inputs over ``n`` cells.

    Returns
    -------
    unique : RunInputs
        Inputs over ``u <= n`` cells, one birth each.
    inverse : numpy.ndarray
        int ``[n]``: ``cells[i]`` has the parameters of ``unique.cells[inverse[i]]``.
    """
    cells = inputs.cells
    # The year is part of the key: rates move with time (the calibration's trend model).
    key = np.column_stack([cells.year, cells.s_idx, cells.r_idx]
                          + [inputs.coverage[k] for k in STRATEGIES]
                          + [inputs.levers.cells.key()]).astype(float)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    ucells = Cells(cells.year[first], cells.s_idx[first], cells.r_idx[first],
                   np.ones(first.shape[0], dtype=np.int64))
    unique = RunInputs(
        scenario=inputs.scenario, baseline=inputs.baseline, cells=ucells,
        coverage={k: v[first] for k, v in inputs.coverage.items()},
        options=[inputs.options[i] for i in first], evidence=inputs.evidence,
        collaborative=inputs.collaborative, calibration=inputs.calibration,
        levers=inputs.levers.take(first), warnings=list(inputs.warnings))
    return unique, inverse


def exposure_changes(scenario: Scenario, cells: Cells) -> list[ExposureChange]:
    """Return the scenario's counterfactual exposure changes as masks over ``cells``.

    Parameters
    ----------
    scenario : Scenario
        The scenario (its per-state ``exposures:`` blocks).
    cells : Cells
        The ``n`` cells of the run.

    Returns
    -------
    list of ExposureChange
        One per (state, exposure) changed, each with a bool ``[n]`` mask of the state's cells.
    """
    states = np.asarray(STATES)[cells.s_idx]
    out = []
    for st in np.unique(states):
        for exposure, ch in (scenario.exposure_changes(st) or {}).items():
            out.append(ExposureChange(exposure, states == st, scale=ch.scale, set_to=ch.set))
    return out


def levers_for(inputs: RunInputs) -> Levers:
    """Return the portfolio of a run over its cells: coverage, options, eligibility, exposures.

    Parameters
    ----------
    inputs : RunInputs
        The resolved inputs (its ``levers`` field is not read).

    Returns
    -------
    Levers
        Levers over ``inputs.cells``.
    """
    cells = inputs.cells
    attrs = inputs.baseline.cell_attributes(cells)
    return Levers.from_cells(inputs.coverage, inputs.options, attrs,
                             exposure_changes(inputs.scenario, cells))


def year_ranges(years) -> str:
    """Return years as ranges: ``[2014, 2015, 2016, 2019]`` -> ``"2014-2016, 2019"``."""
    ys = sorted({int(y) for y in years})
    if not ys:
        return ""
    out, start = [], ys[0]
    for a, b in zip(ys, ys[1:] + [None]):
        if b != a + 1:
            out.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out)


def medicaid_expansion_unavailable(levers: Levers, cells: Cells) -> dict[str, list[int]]:
    """Where a portfolio asks for Medicaid expansion that is no longer a choice.

    Parameters
    ----------
    levers : Levers
        A portfolio over ``cells`` (its ``cells.medicaid_expanded`` attribute).
    cells : Cells
        The same ``n`` cells.

    Returns
    -------
    dict of str to list of int
        State -> the years in which ``social_determinants`` with ``policy: medicaid_expansion``
        has coverage > 0 although the state had already expanded Medicaid (the policy has no
        effect there); states in :data:`STATES` order, empty when there are none.
    """
    from imsim.core.constants import SD_POLICIES

    k = "social_determinants"
    cov = levers.coverage[k]
    policy = np.array([levers.options[k][g].get("policy", SD_POLICIES[0]) == "medicaid_expansion"
                       for g in levers.option_index[k]], dtype=bool)
    hit = (cov > 0) & policy & levers.cells.medicaid_expanded
    out: dict[str, list[int]] = {}
    for i in np.flatnonzero(hit):
        out.setdefault(STATES[cells.s_idx[i]], []).append(int(cells.year[i]))
    return {s: sorted(set(out[s])) for s in STATES if s in out}


def medicaid_expansion_warning(unavailable: dict[str, list[int]]) -> str | None:
    """Return one line naming the states and years of :func:`medicaid_expansion_unavailable`.

    Parameters
    ----------
    unavailable : dict of str to list of int
        State -> years, as :func:`medicaid_expansion_unavailable` returns.

    Returns
    -------
    str or None
        None when ``unavailable`` is empty.
    """
    if not unavailable:
        return None
    where = "; ".join(f"{s} {year_ranges(y)}" for s, y in unavailable.items())
    return ("social_determinants policy medicaid_expansion has no effect where the state had already "
            f"expanded Medicaid (states.csv, KFF), so its coverage counts as 0 there: {where}")


def run_warnings(inputs: RunInputs) -> list[str]:
    """Return the warnings of a run's inputs (each one line; empty list when none).

    Currently: Medicaid expansion asked for where it is no longer a choice
    (:func:`medicaid_expansion_warning`). Not errors: the run goes ahead without that effect.

    Parameters
    ----------
    inputs : RunInputs
        The resolved inputs (their levers and cells are read).

    Returns
    -------
    list of str
        One line per warning.
    """
    line = medicaid_expansion_warning(medicaid_expansion_unavailable(inputs.levers, inputs.cells))
    return [line] if line else []


def scenario_params(inputs: RunInputs, base: CellParams, effects,
                    only: set[str] | None = None, with_exposures: bool = True) -> CellParams:
    """Return the scenario arm of ``base`` (see :func:`imsim.birth.strategies.scenario_arm`).

    Parameters
    ----------
    inputs : RunInputs
        The resolved inputs; their ``levers`` cover the same cells as ``base``.
    base : CellParams
        Baseline parameters (not modified).
    effects : mapping of str to float or numpy.ndarray
        Evidence values of the draw.
    only : set of str, optional
        Apply only these strategies (attribution); default all with coverage.
    with_exposures : bool
        Apply the counterfactual exposure changes (attribution switches them off).

    Returns
    -------
    CellParams
        A new object, the scenario arm.
    """
    return scenario_arm(base, inputs.levers, effects, strategies=only, exposures=with_exposures)


def get_calibration(name=None, scenario_dir=None):
    """Return the calibration to fit the baseline to.

    Parsed once per folder and reused while its files are unchanged (size, mtime, inode:
    :meth:`imsim.calibration.targets.CalibratedTargets.load`), so a recalibration is always seen.

    Parameters
    ----------
    name : CalibratedTargets or str or path or None
        A :class:`~imsim.calibration.targets.CalibratedTargets` (returned as is), a calibration
        name or folder, ``None``/``"default"`` (the default fit) or ``"direct"``/``"none"``.
    scenario_dir : str or path, optional
        The folder of the scenario file naming the calibration: a name is also searched
        relative to it (search order: :func:`imsim.calibration.targets.calibration_candidates`).

    Returns
    -------
    CalibratedTargets or None
        None for the direct fit to observed cells.

    Raises
    ------
    InputError
        If a named calibration is missing or malformed (see
        :func:`imsim.calibration.targets.load_calibration`).
    """
    if name is not None and not isinstance(name, (str, os.PathLike)):
        return name
    from imsim.calibration.targets import load_calibration

    return load_calibration(name, scenario_dir=scenario_dir)


def run(scenario: Scenario, engine: str | None = None, seed: int | None = None,
        replicates: int | None = None, progress: bool = False, calibration=None,
        on_draw=None) -> Result:
    """Run ``scenario`` through one engine, both arms, for every uncertainty draw.

    Arguments given here override the scenario's own settings.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario.
    engine : {"expected", "microsim"}, optional
        Default: the scenario's.
    seed : int, optional
        In ``[0, 2**63)``; default: the scenario's.
    replicates : int, optional
        Uncertainty draws (>= 1; 1: the point only); default: the scenario's.
    progress : bool
        Show a progress bar over the draws.
    calibration : str or path or CalibratedTargets, optional
        A calibration name or folder (default: the scenario's, else the packaged default fit);
        ``"direct"`` fits the baseline directly to the observed cells instead.
    on_draw : callable, optional
        Called as ``on_draw(done, total)`` after each draw (the browser workbench's progress);
        an exception it raises stops the run.

    Returns
    -------
    Result
        Arms ``[n_draws, n_cells, N_OUT]`` with ``n_draws = 1`` or ``1 + replicates``, the
        draws, timings (seconds) and lazily built tables.

    Raises
    ------
    InputError
        For an unknown engine, a seed out of range, ``replicates < 1`` or a calibration that
        cannot be loaded.
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
    plan = draw_plan(inputs.evidence, cal, seed, replicates)
    draws = [dr.effects for dr in plan]
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
    for d, dr in enumerate(plan):
        effects = dr.effects
        fit = fit_for(inputs.baseline, effects, cal, dr.calibration_draw)
        if engine == "expected":
            # Expected counts are proportional to births: evaluate each distinct parameter set
            # once per birth and scale (years with the same coverage share one evaluation).
            base = inputs.baseline.params(unique.cells, effects, fit)
            scen = scenario_params(unique, base, effects)
            tb, ts = build_tables(base), build_tables(scen)
            te = time.perf_counter()
            # Projected births carry their trend's uncertainty in draws d >= 1.
            bd = births * inputs.baseline.births_factor(inputs.cells, seed, d)[:, None]
            out_b[d] = expected(tb)[inverse] * bd
            out_s[d] = expected(ts)[inverse] * bd
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
        if on_draw is not None:
            on_draw(d + 1, n_draws)
    if bar is not None:
        bar.close()
    t2 = time.perf_counter()
    return Result(inputs=inputs, engine=engine, seed=seed, replicates=replicates,
                  arms=Arms(out_b, out_s), effects=draws, draws=plan,
                  timings={"resolve_s": t1 - t0, "draws_s": t2 - t1, "engine_s": t_engine},
                  fit_source="direct" if cal is None else f"calibration:{cal.name}")
