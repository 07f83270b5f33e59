"""``imsim recommend PLAN``: the command, and the folder a recommendation is written to.

The computation -- every portfolio of every state evaluated under the same draws, rankings,
Pareto fronts, EVPPI and the national allocation -- is :func:`imsim.analysis.recommend.recommend`.
This module writes its tables, figures and one-page briefs (:mod:`imsim.output.briefs`) and a
manifest into a new folder (default ``results/recommend-<plan>-<timestamp>/``), atomically (see
:mod:`imsim.core.folders`), and is the command line of ``imsim recommend``. See docs/recommend.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from imsim.analysis.economics import manifest_entry
from imsim.analysis.recommend import Recommendation, load_plan, recommend
from imsim.config.plan import ResolvedPlan
from imsim.core.errors import InputError
from imsim.core.folders import atomic_folder, check_new, new_folder
from imsim.analysis.decision import objective_text
from imsim.output.briefs import equity_figure, pareto_figure, state_figure, tile_map, write_brief, write_index

__all__ = ["add_parser", "ceac_figure", "cmd_recommend", "default_out", "headline", "main",
           "manifest", "save"]

#: Where default recommendation folders go (relative to the working directory).
RESULTS = "results"


def _folder_name(rp: ResolvedPlan) -> str:
    return f"recommend-{rp.plan.name}"


def default_out(rp: ResolvedPlan) -> Path:
    """Claim a fresh ``results/recommend-<plan>-<timestamp>/`` folder (created empty).

    Parameters
    ----------
    rp : ResolvedPlan
        The plan; its name names the folder.

    Returns
    -------
    Path
        The new, empty folder (``-2``, ``-3``... if that second's name is taken). :func:`save`
        without ``out`` claims its own; this is for callers that need the name first.
    """
    return new_folder(_folder_name(rp), RESULTS)


def _csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.6g")


def _check_finite(rp: ResolvedPlan, tables: dict[str, pd.DataFrame]) -> None:
    """Refuse deaths averted that are not finite numbers (one line; nothing is written)."""
    import numpy as np

    from imsim.core.errors import InputError

    for name, df in tables.items():
        if "deaths_averted" not in df.columns or not len(df):
            continue
        v = pd.to_numeric(df["deaths_averted"], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = ", ".join(f"{k} {df[k].iloc[i]}" for k in ("state", "portfolio")
                              if k in df.columns)
            raise InputError(f"the evaluation gave a non-finite deaths_averted ({v[i]}) in "
                             f"{name} ({where}; {int(bad.sum())} row(s)); nothing was written -- "
                             "check the plan's effects", file=rp.file)


def save(rec: Recommendation, out: str | os.PathLike | None = None,
         figures: bool = True) -> Path:
    """Write every output of a recommendation into a new folder, atomically.

    Parameters
    ----------
    rec : Recommendation
        The result of :func:`imsim.analysis.recommend.recommend`.
    out : path, optional
        The folder to create; it must not exist or be empty. Default: a fresh
        ``results/recommend-<plan>-<timestamp>/``.
    figures : bool
        Draw the figures and write the briefs and ``index.html``.

    Returns
    -------
    Path
        The folder written.

    Raises
    ------
    InputError
        When ``out`` exists and is not empty (checked before anything is written).
    """
    import yaml

    rp, an, ev = rec.plan, rec.analysis, rec.evaluation
    _check_finite(rp, {"portfolios": an.portfolios, "recommendations": an.recommendations,
                       "allocation": an.allocation})      # before anything is written
    with atomic_folder(out, name=_folder_name(rp), parent=RESULTS) as st:
        tmp = st.tmp
        t0 = time.perf_counter()
        _csv(an.portfolios, tmp / "portfolios.csv")
        # `note`: per state, e.g. Medicaid expansion is no longer a choice there (empty if none).
        # `draws_note`: below MIN_INTERVAL_DRAWS draws, intervals and EVPPI are unreliable.
        recs = an.recommendations.assign(
            note=an.recommendations["state"].map(lambda s: str(rec.notes.get(s, ""))),
            draws_note=few_draws_note(an.allocation_summary))
        _csv(recs, tmp / "recommendations.csv")
        _csv(an.evppi, tmp / "evppi.csv")
        _csv(an.allocation, tmp / "allocation.csv")
        _csv(rec.coverage, tmp / "coverage.csv")
        if an.cost_effectiveness is not None:
            _csv(an.cost_effectiveness, tmp / "cost_effectiveness.csv")
        if an.ceac is not None and len(an.ceac):
            _csv(an.ceac, tmp / "ceac.csv")
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
            equity_figure(an, ev, tmp / "figures" / "equity_impact.png")
            if an.portfolios.cost.notna().any():
                pareto_figure(an, tmp / "figures" / "pareto_cost.png", "cost")
            if an.ceac is not None and len(an.ceac):
                ceac_figure(an.ceac, tmp / "figures" / "ceac.png")
            for state in ev.states:
                fig = state_figure(an, state, tmp / "figures" / "states" / f"{state}.png")
                write_brief(an, rp, ev, state, fig, tmp / "briefs" / f"{state}.html",
                            rec.evidence, rec.coverage)
            write_index(an, rp, tmp / "index.html")
        t2 = time.perf_counter()
        rec.timings.update({"tables_s": t1 - t0, "figures_briefs_s": t2 - t1})
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(manifest(rec), fh, indent=2)
    return st.out


def ceac_figure(ceac: pd.DataFrame, path: Path, n_states: int = 3, top: int = 5) -> Path:
    """Draw the cost-effectiveness acceptability curves: national and the first few states.

    Parameters
    ----------
    ceac : pandas.DataFrame
        ``state, wtp_per_life_year, portfolio, p_best`` (``ceac.csv``).
    path : Path
        The PNG to write.
    n_states : int
        States drawn besides ``national`` (the first in the table's order).
    top : int
        Per panel, the portfolios with the highest maximum probability drawn (others omitted).

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    states = ["national"] + [s for s in dict.fromkeys(ceac.state) if s != "national"][:n_states]
    fig, axes = plt.subplots(1, len(states), figsize=(4.6 * len(states), 4.2), squeeze=False)
    for ax, st in zip(axes[0], states):
        d = ceac[ceac.state == st]
        best = d.groupby("portfolio").p_best.max().sort_values(ascending=False).head(top)
        for pid in best.index:
            g = d[d.portfolio == pid]
            ax.plot(g.wtp_per_life_year / 1000, g.p_best, label=pid.replace("+", " + "))
        ax.set_title("National (every state the same portfolio)" if st == "national" else st,
                     fontsize=10)
        ax.set_xlabel("willingness to pay, thousand USD per life-year")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6.5, loc="best")
    axes[0][0].set_ylabel("probability of highest net monetary benefit")
    fig.suptitle("Cost-effectiveness acceptability (costs are the plan's inputs; "
                 "example costs are illustrative)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def manifest(rec: Recommendation) -> dict:
    """Return what reproduces ``rec``: plan, seed, draws, versions, data hash, timings.

    Parameters
    ----------
    rec : Recommendation
        The recommendation.

    Returns
    -------
    dict
        JSON-ready; timings in seconds.
    """
    from importlib import metadata

    from imsim.core.version import __version__
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
        "objective_weights": {
            "deaths_averted": rp.plan.objective.deaths_averted,
            "disparity_reduction": rp.plan.objective.disparity_reduction,
            "text": objective_text(rp.plan.objective.deaths_averted,
                                   rp.plan.objective.disparity_reduction)},
        "states": len(rec.evaluation.states),
        "portfolios_per_state": len(rec.evaluation.portfolios),
        "data_hash": data_hash(),
        "calibration": ({"name": "direct", "note": "the direct fit to observed cells"}
                        if rec.calibration is None else
                        {"name": rec.calibration.name, "path": rec.calibration.path,
                         "content_hash": rec.calibration.content_hash,
                         "draws": "draw d uses its keyed posterior draw (imsim.analysis.draws)"}),
        "cost_effectiveness": manifest_entry(
            None if rp.plan.costs is None else
            {k: v for k, v in rp.plan.costs.model_dump().items() if v is not None},
            rp.library_costs),
        "timings": rec.timings,
        "warnings": list(rec.warnings),
        "python": sys.version.split()[0],
        "versions": versions,
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------
# Command line (registered by imsim.cli)
# ---------------------------------------------------------------------------------------------

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim recommend`` to an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``recommend`` parser (no ``func`` default: callers dispatch to
        :func:`cmd_recommend`).
    """
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
    """Run ``imsim recommend`` from parsed arguments, write the folder and print a summary.

    Parameters
    ----------
    args : argparse.Namespace
        ``plan``, ``out``, ``draws``, ``seed``, ``no_figures``, ``quiet``.

    Returns
    -------
    int
        0 (exit code).

    Raises
    ------
    InputError
        For an existing ``--out``, an invalid plan, a seed outside ``[0, 2**63)`` or
        ``--draws`` outside 1..5000 (the CLI prints it and exits with code 2).
    """
    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    rp = load_plan(args.plan)
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"seed {args.seed} is out of range; allowed 0 to 2**63 - 1")
    if args.draws is not None and not 1 <= args.draws <= 5000:
        raise InputError(f"--draws must be 1 to 5000, got {args.draws}")
    rec = recommend(rp, draws=args.draws, seed=args.seed, progress=not args.quiet)
    for w in rec.warnings:
        print(f"imsim: warning: {w}", file=sys.stderr)
    path = save(rec, args.out, figures=not args.no_figures)
    if not args.quiet:
        print(f"{rp.plan.name}: {len(rec.evaluation.states)} state(s) x "
              f"{len(rec.evaluation.portfolios)} portfolios x {rec.plan.plan.draws} draws; "
              f"{headline(rec.analysis.allocation_summary)}")
        print(f"wrote {path}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def few_draws_note(s: dict) -> str:
    """The note every output carries below MIN_INTERVAL_DRAWS draws ('' otherwise)."""
    from imsim.analysis.results import MIN_INTERVAL_DRAWS

    if s.get("interval_reliable", True):
        return ""
    return (f"only {s.get('draws', 0)} uncertainty draws (fewer than {MIN_INTERVAL_DRAWS}): "
            "95% intervals and EVPPI (key_input columns) are unreliable; use --draws 200")


def headline(s: dict) -> str:
    """The national allocation in one line: deaths averted, and the gaps to random allocations.

    The gap in deaths and the gap in the objective (deaths plus weighted disparity reduction)
    are reported separately, each with its unit.

    Parameters
    ----------
    s : dict
        ``Analysis.allocation_summary``.

    Returns
    -------
    str
        E.g. "national allocation averts 658 infant deaths (95% interval ...), 120 deaths more
        than random allocations on average (objective ...: 460 more)".
    """
    from imsim.analysis.results import MIN_INTERVAL_DRAWS

    rnd, w = s["random_allocations"], s["objective_weights"]
    if s.get("interval_reliable", True):
        iv = f"95% interval {s['deaths_averted_lo']:,.0f} to {s['deaths_averted_hi']:,.0f}"
    else:
        n = s.get("draws", 0)
        iv = (f"{'mean of ' + str(n) + ' draws' if n else 'point estimate'}; no 95% interval "
              f"and no EVPPI: fewer than {MIN_INTERVAL_DRAWS} draws")
    return (f"national allocation averts {s['deaths_averted']:,.0f} infant deaths "
            f"({iv}), "
            f"{rnd['improvement_deaths']:,.0f} deaths more than random allocations on average "
            f"(objective = {w['deaths_averted']:g} x deaths averted + "
            f"{w['disparity_reduction']:g} x excess NH black deaths averted: "
            f"{rnd['improvement_objective']:,.0f} more)")


def main(argv=None) -> int:
    """Run ``imsim recommend`` as a stand-alone entry point, with the same exit codes.

    E.g. ``python -m imsim.output.recommendation PLAN``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments, with or without a leading ``recommend`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0, or 2 after printing an :class:`InputError`.
    """
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
