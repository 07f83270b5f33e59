"""``imsim recommend PLAN``: choose strategy portfolios for states, with equity, cost and uncertainty.

The pipeline and public face of the command. A plan (:mod:`imsim.config.plan`) names the states, the
horizon, the candidate strategies with the coverage each would reach, costs, budgets and the
objective. For every state, every portfolio of 1..k strategies is evaluated under the same effect
draws and baseline fits (common random numbers across portfolios and states; see
:mod:`imsim.analysis.portfolio`); the results are turned into rankings, Pareto fronts, a recommendation per
state with the inputs whose uncertainty could overturn it (EVPPI) and a national allocation
solved exactly as a multiple-choice knapsack (:mod:`imsim.analysis.decision`), then into figures and
one-page briefs (:mod:`imsim.output.briefs`), all written atomically into a new folder with a manifest.
See docs/recommend.md.

The names of those modules used elsewhere are re-exported here, so ``from imsim.analysis.recommend import
load_plan, recommend, save, choose, ...`` keeps working.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imsim.output.briefs import (
    ABBREV,
    LABELS,
    TILE_GRID,
    pareto_figure,
    state_figure,
    tile_map,
    write_brief,
    write_index,
)
from imsim.core.constants import STATES
from imsim.analysis.decision import (
    ALLOCATION_COLUMNS,
    N_RANDOM_ALLOCATIONS,
    NONE,
    PORTFOLIO_COLUMNS,
    RECOMMENDATION_COLUMNS,
    TIE_RTOL,
    Analysis,
    _total,
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
from imsim.core.folders import check_new
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

#: This module's own names, and those re-exported from imsim.config.plan, imsim.analysis.decision and imsim.output.briefs.
__all__ = [
    "ABBREV",
    "ALLOCATION_COLUMNS",
    "LABELS",
    "NONE",
    "N_RANDOM_ALLOCATIONS",
    "PORTFOLIO_COLUMNS",
    "RECOMMENDATION_COLUMNS",
    "TIE_RTOL",
    "TILE_GRID",
    "Analysis",
    "Plan",
    "PlanBudget",
    "PlanCosts",
    "PlanObjective",
    "Recommendation",
    "ResolvedPlan",
    "_total",
    "add_parser",
    "analyse",
    "build_setup",
    "choose",
    "cmd_recommend",
    "default_out",
    "evpi",
    "evppi",
    "load_plan",
    "main",
    "manifest",
    "p_best",
    "pareto_figure",
    "pareto_front",
    "parse_plan",
    "random_allocations",
    "recommend",
    "save",
    "solve_allocation",
    "state_figure",
    "tile_map",
    "write_brief",
    "write_index",
]


# ---------------------------------------------------------------------------------------------
# Setup: coverage per candidate strategy and cell
# ---------------------------------------------------------------------------------------------

def build_setup(rp: ResolvedPlan) -> tuple[Setup, Any, Any]:
    """Cells, coverage and options; returns (setup, evidence library, coverage table)."""
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
    from imsim.analysis.runner import effect_draws

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
    from imsim.core.folders import atomic_folder

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

    from imsim import __version__
    from imsim.inputs.data import data_hash

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
    """Standalone entry point (``python -m imsim.analysis.recommend PLAN``), same exit codes as imsim."""
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
