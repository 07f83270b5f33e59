"""Choose strategy portfolios for states, with equity, cost and uncertainty (the computation).

A plan (:mod:`imsim.config.plan`) names the states, the horizon, the candidate strategies with the
coverage each would reach, costs, budgets and the objective. For every state, every portfolio of
1..k strategies is evaluated under the same effect draws and baseline fits (common random numbers
across portfolios and states; see :mod:`imsim.analysis.portfolio`); the results are turned into
rankings, Pareto fronts, a recommendation per state with the inputs whose uncertainty could
overturn it (EVPPI) and a national allocation solved exactly as a multiple-choice knapsack
(:mod:`imsim.analysis.decision`). Nothing is written here: figures, briefs, the results folder and
the ``imsim recommend`` command are in :mod:`imsim.output.recommendation`. See docs/recommend.md.

The names of the plan and decision modules used elsewhere are re-exported here, so ``from
imsim.analysis.recommend import load_plan, recommend, choose, ...`` keeps working.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from imsim.core.constants import STATES
from imsim.analysis.decision import (
    ALLOCATION_COLUMNS,
    N_RANDOM_ALLOCATIONS,
    NONE,
    PORTFOLIO_COLUMNS,
    RECOMMENDATION_COLUMNS,
    TIE_RTOL,
    Analysis,
    allocation_total,
    analyse,
    choose,
    evpi,
    evppi,
    p_best,
    pareto_front,
    random_allocations,
    solve_allocation,
)
from imsim.core.errors import InputError
from imsim.config.plan import (
    Plan,
    PlanBudget,
    PlanCosts,
    PlanObjective,
    ResolvedPlan,
    load_plan,
    parse_plan,
)
from imsim.analysis.portfolio import Evaluation, Setup, enumerate_portfolios, evaluate

#: This module's own names, and those re-exported from imsim.config.plan and imsim.analysis.decision.
__all__ = [
    "ALLOCATION_COLUMNS",
    "NONE",
    "N_RANDOM_ALLOCATIONS",
    "PORTFOLIO_COLUMNS",
    "RECOMMENDATION_COLUMNS",
    "TIE_RTOL",
    "Analysis",
    "Plan",
    "PlanBudget",
    "PlanCosts",
    "PlanObjective",
    "Recommendation",
    "ResolvedPlan",
    "allocation_total",
    "analyse",
    "build_setup",
    "choose",
    "medicaid_notes",
    "evpi",
    "evppi",
    "load_plan",
    "p_best",
    "pareto_front",
    "parse_plan",
    "random_allocations",
    "recommend",
    "solve_allocation",
]


# ---------------------------------------------------------------------------------------------
# Setup: coverage per candidate strategy and cell
# ---------------------------------------------------------------------------------------------

def build_setup(rp: ResolvedPlan) -> tuple[Setup, Any, Any]:
    """Resolve a plan's cells, the coverage each candidate would reach, and its options.

    With a collaborative block, each candidate's coverage is the ABM's annual coverage when
    every plan state works on that strategy alone.

    Parameters
    ----------
    rp : ResolvedPlan
        The plan.

    Returns
    -------
    setup : Setup
        Cells, coverage per candidate (share of the eligible, 0..1) and options.
    evidence : EvidenceLibrary
        The evidence library with the plan's overrides.
    coverage : pandas.DataFrame
        ``year, state, strategy, coverage`` (the largest over races).
    """
    from imsim.analysis.runner import resolve_inputs

    sc = rp.scenario
    inputs = resolve_inputs(sc)
    cells = inputs.cells
    active = sc.strategies.active() if sc.strategies is not None else {}
    options = {}
    for k in rp.candidates:
        block = active.get(k)
        if block is None:
            from imsim.config.scenario import STRATEGY_MODELS

            block = STRATEGY_MODELS[k]()
        options[k] = block.model_dump(exclude={"coverage", "reach"})
    coverage = {k: inputs.coverage[k].copy() for k in rp.candidates}
    if rp.plan.collaborative is not None:
        from imsim.collaborative.abm import annual_coverage, parse_collaborative, run_collaborative
        from imsim.core.constants import RACES

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
# Running
# ---------------------------------------------------------------------------------------------

@dataclass
class Recommendation:
    """Everything ``imsim recommend`` computed for a plan (written by
    :mod:`imsim.output.recommendation`).

    Attributes
    ----------
    plan : ResolvedPlan
        The plan, with the draws and seed actually used.
    evaluation : Evaluation
        Outcomes ``[D, P, S]`` of every portfolio in every state.
    analysis : Analysis
        Rankings, recommendations, EVPPI and the national allocation.
    coverage : pandas.DataFrame
        ``year, state, strategy, coverage`` of each candidate.
    evidence : EvidenceLibrary
        The evidence library used.
    timings : dict of str to float
        Seconds per step (``setup_s``, ``evaluate_s``, ``analyse_s``, ``evaluate.*``).
    notes : dict of str to str
        State -> a one-line note (e.g. Medicaid expansion is no longer a choice there, so the
        social-determinants candidate has no effect); see :func:`medicaid_notes`.
    warnings : list of str
        One-line warnings of the whole plan (empty when none).
    calibration : CalibratedTargets or None
        The calibration the baseline reproduced (None: the direct fit).
    """

    plan: ResolvedPlan
    evaluation: Evaluation
    analysis: Analysis
    coverage: pd.DataFrame
    evidence: Any
    timings: dict
    notes: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    calibration: Any = None


def medicaid_notes(setup: Setup) -> tuple[dict[str, str], list[str]]:
    """Per-state notes and the plan's warning where Medicaid expansion is no longer a choice.

    Parameters
    ----------
    setup : Setup
        The plan's cells, candidate coverage and options.

    Returns
    -------
    notes : dict of str to str
        State -> note, for states where the ``social_determinants`` candidate uses
        ``policy: medicaid_expansion`` in years the state had already expanded Medicaid (there
        it has no effect).
    warnings : list of str
        One line naming those states and years (empty when none).
    """
    from imsim.analysis.runner import (
        medicaid_expansion_unavailable,
        medicaid_expansion_warning,
        year_ranges,
    )
    from imsim.birth.strategies import Levers

    levers = Levers.uniform(setup.coverage, setup.options,
                            setup.baseline.cell_attributes(setup.cells))
    unavailable = medicaid_expansion_unavailable(levers, setup.cells)
    notes = {s: (f"social_determinants (medicaid_expansion) has no effect in {year_ranges(y)}: "
                 f"{s} had already expanded Medicaid (states.csv)")
             for s, y in unavailable.items()}
    line = medicaid_expansion_warning(unavailable)
    return notes, [line] if line else []


def recommend(rp: ResolvedPlan, draws: int | None = None, seed: int | None = None,
              progress: bool = False) -> Recommendation:
    """Evaluate every portfolio of a plan and analyse the results (nothing is written).

    Uses exactly the draws ``imsim run`` would use for the same seed and count, and the
    calibration of ``rp.scenario`` (a plan has no ``calibration`` key: the default one).

    Parameters
    ----------
    rp : ResolvedPlan
        The plan.
    draws : int, optional
        Uncertainty draws (replicates; 1: the point only); default: the plan's.
    seed : int, optional
        Seed of the draws; default: the plan's.
    progress : bool
        Show a progress bar over the draws.

    Returns
    -------
    Recommendation
        The evaluation and its analysis.

    Raises
    ------
    InputError
        If ``draws < 1``.
    """
    from imsim.analysis.draws import draw_plan
    from imsim.analysis.runner import get_calibration

    t0 = time.perf_counter()
    n_draws = rp.plan.draws if draws is None else int(draws)
    seed = rp.plan.seed if seed is None else int(seed)
    if n_draws < 1:
        raise InputError(f"draws must be at least 1, got {n_draws}")
    if rp.plan.draws != n_draws or rp.plan.seed != seed:
        rp = ResolvedPlan(rp.plan.model_copy(update={"draws": n_draws, "seed": seed}),
                          rp.scenario, rp.candidates, rp.file, rp.library_costs)
    setup, evidence, coverage = build_setup(rp)
    ports = enumerate_portfolios(rp.candidates, rp.plan.max_strategies)
    # Exactly the draws `imsim run` uses for the same seed and count (keyed; imsim.analysis.draws).
    cal = get_calibration(rp.scenario.calibration)
    plan = draw_plan(evidence, cal, seed, n_draws)
    t1 = time.perf_counter()
    ev = evaluate(setup, ports, plan, calibration=cal, progress=progress, seed=seed)
    t2 = time.perf_counter()
    an = analyse(rp, ev, evidence)
    t3 = time.perf_counter()
    timings = {"setup_s": t1 - t0, "evaluate_s": t2 - t1, "analyse_s": t3 - t2,
               **{f"evaluate.{k}": v for k, v in ev.timings.items()}}
    notes, warnings = medicaid_notes(setup)
    if rp.library_costs:
        from imsim.analysis.economics import priced_option_warnings

        warnings = warnings + priced_option_warnings(
            {k: setup.options[k] for k in rp.library_costs})
    return Recommendation(rp, ev, an, coverage, evidence, timings, notes, warnings, cal)

