"""``imsim target``: the coverage a target needs, its chance, and deaths lost when gains lapse.

The computation is :mod:`imsim.analysis.target`; this module parses the options, writes the
folder atomically and prints the summary.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from imsim.core.constants import ALL
from imsim.core.errors import InputError
from imsim.core.folders import atomic_folder, check_new

DESCRIPTION = """\
What it takes to reach a target by a year, for one state (or the nation) and one race group
(or all births): the coverage needed of each strategy of the scenario alone (constant over the
horizon, the other strategies and the scenario's exposure changes off; where the scenario uses
the strategy, with its options and per-race reach), and the multiplier of the scenario's whole
portfolio scaled together (strategy 'portfolio': every strategy's coverage x m, capped at 1;
1 = the scenario as written). Solved with the expected engine at the evidence point values
(grid, then bisection to 1e-4; the reported coverage meets the target at the point). p_reach
is the share of the uncertainty draws (evidence, calibration, trend, births, as `imsim run`
draws them) that meet the target at that coverage; a target not met at full coverage is
reachable = False (p_reach then at full coverage).

Targets (one of): --imr T (the group's IMR per 1,000 in the year at most T, e.g. Healthy
People 2030's 5.0), --rate-ratio R or --rate-difference D (the race's IMR over / minus NH
white's, same state or nation; --race default nh_black), --deaths-averted N (deaths averted,
scenario's first year to --year, at least N).

What if gains lapse: --lapse-years K --decay-per-year d adds lapse.csv: deaths averted over the
scenario's years plus K years after its last year (support ends), with coverage held at its
last-year value or decaying by d per year; the difference is the deaths lost.

Writes target.csv (state, race, year, target, strategy, coverage_needed, p_reach, reachable),
target_detail.csv (the metric with no strategy, at the solution and at full coverage),
target_portfolio.csv (each strategy's coverage at the portfolio's solution),
solved/<strategy>.yaml (scenarios that run the reported coverage: `imsim run` them),
lapse.csv when asked, and target.json (the command, target, seed, draws, timings)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim target`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "target", help="coverage needed to reach an IMR, disparity or deaths-averted target",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  imsim target scenarios/safe_sleep_south.yaml --imr 7.5 --state AL\n"
               "  imsim target scenarios/coiin_portfolios.yaml --imr 5.0 --year 2030\n"
               "  imsim target scenarios/safe_sleep_south.yaml --rate-ratio 2.2 --state GA "
               "--race nh_black\n"
               "  imsim target scenarios/safe_sleep_south.yaml --deaths-averted 50 --state MS\n"
               "  imsim target scenarios/safe_sleep_south.yaml --lapse-years 5 "
               "--decay-per-year 0.2\n\n"
               "Exit codes: 0 ran (reachable or not), 2 bad input.")
    p.add_argument("file", help="scenario YAML file whose strategies are scaled")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--imr", type=float, metavar="T", help="IMR target, per 1,000 live births")
    g.add_argument("--rate-ratio", type=float, metavar="R",
                   help="disparity target: the race's IMR / NH white IMR at most R")
    g.add_argument("--rate-difference", type=float, metavar="D",
                   help="disparity target: the race's IMR - NH white IMR at most D per 1,000")
    g.add_argument("--deaths-averted", type=float, metavar="N",
                   help="deaths averted from the scenario's first year to --year, at least N")
    p.add_argument("--state", metavar="XX", default=ALL,
                   help="a state of the scenario (default: the nation = all its states)")
    p.add_argument("--race", metavar="R", default=ALL,
                   help="nh_white, nh_black, hispanic, nh_api, nh_aian (default: all births; "
                        "nh_black for a disparity target)")
    p.add_argument("--year", type=int, metavar="Y",
                   help="the year the target is for (default: the scenario's last year)")
    p.add_argument("--lapse-years", type=int, metavar="K",
                   help="years after the scenario's last year (support ends) for lapse.csv")
    p.add_argument("--decay-per-year", type=float, metavar="d",
                   help="share of coverage lost per year after support ends (0..1)")
    p.add_argument("--replicates", type=int, default=100, metavar="N",
                   help="uncertainty draws for p_reach and lapse intervals (default 100; "
                        "0 = point only)")
    p.add_argument("--seed", type=int, metavar="S", help="seed (default: the scenario's)")
    p.add_argument("--calibration", metavar="NAME_OR_DIR",
                   help="calibration to fit the baseline to (as `imsim run`)")
    p.add_argument("--out", metavar="DIR",
                   help="folder to create (default: results/target-<name>-<timestamp>/); must "
                        "not exist or be empty")
    return p


def _target_of(args):
    from imsim.analysis.target import Target

    for kind in ("imr", "rate_ratio", "rate_difference", "deaths_averted"):
        v = getattr(args, kind)
        if v is not None:
            return Target(kind, float(v), args.state, args.race, args.year)
    return None


def _fmt(x, nd=3) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def summary_lines(res) -> list[str]:
    """Printed summary of a :class:`~imsim.analysis.target.TargetResult`."""
    t = res.target
    where = "the nation" if t.state == ALL else t.state
    who = "all births" if t.race == ALL else t.race
    lines = [f"target {t.label} in {t.year}, {where}, {who}: without strategies "
             f"{_fmt(res.baseline_metric)} (point)"]
    for row, det in zip(res.table.itertuples(), res.detail.itertuples()):
        p = "" if np.isnan(row.p_reach) else f"; reached in {row.p_reach:.0%} of {res.draws} draws"
        if row.reachable:
            what = ("x the scenario's coverage" if row.strategy == "portfolio"
                    else "coverage (alone)")
            lines.append(f"  {row.strategy}: {row.coverage_needed:.4f} {what}{p}")
        else:
            at = "full coverage" if row.strategy != "portfolio" else "every strategy at 1"
            lines.append(f"  {row.strategy}: out of reach even at {at} "
                         f"({_fmt(det.metric_at_full)}){p}")
    return lines


def cmd_target(args) -> int:
    """Run ``imsim target``; InputError propagates (the CLI prints it, exit 2)."""
    import yaml

    from imsim.analysis.target import lapse, solve_targets, solved_scenario
    from imsim.config.scenario import load_scenario

    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    target = _target_of(args)
    want_lapse = args.lapse_years is not None or args.decay_per_year is not None
    if want_lapse and (args.lapse_years is None or args.decay_per_year is None):
        raise InputError("--lapse-years and --decay-per-year go together; allowed: both "
                         "(e.g. --lapse-years 5 --decay-per-year 0.2) or neither")
    if target is None and not want_lapse:
        raise InputError("no target; allowed: one of --imr, --rate-ratio, --rate-difference, "
                         "--deaths-averted (and/or --lapse-years with --decay-per-year)")
    if not 0 <= args.replicates <= 5000:
        raise InputError(f"--replicates {args.replicates} is out of range; allowed: 0 to 5000")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"--seed {args.seed} is out of range; allowed: 0 to 2**63 - 1")
    scenario = load_scenario(args.file)
    cal = None
    name = args.calibration or scenario.calibration
    if name is not None and str(name) != "default":
        from imsim.analysis.runner import get_calibration

        cal = get_calibration(name, scenario_dir=Path(args.file).parent)
        cal = "direct" if cal is None else cal
    res = None
    if target is not None:
        res = solve_targets(scenario, target, replicates=args.replicates, seed=args.seed,
                            calibration=cal)
    lap = None
    if want_lapse:
        lap = lapse(scenario, args.lapse_years, args.decay_per_year, state=args.state,
                    race=args.race, replicates=args.replicates, seed=args.seed,
                    calibration=cal)
    name = f"target-{scenario.name}"
    with atomic_folder(args.out, name=name) as st:
        tmp = Path(st.tmp)
        meta = {"scenario": str(args.file), "seed": scenario.seed if args.seed is None
                else args.seed, "replicates": args.replicates}
        if res is not None:
            res.table.to_csv(tmp / "target.csv", index=False)
            res.detail.to_csv(tmp / "target_detail.csv", index=False)
            res.portfolio.to_csv(tmp / "target_portfolio.csv", index=False)
            (tmp / "solved").mkdir()
            for row in res.table.itertuples():
                if row.reachable:
                    sc = solved_scenario(scenario, res.target, row.strategy,
                                         float(row.coverage_needed))
                    data = sc.resolved()
                    data["name"] = f"{scenario.name}-{row.strategy}-target"[:64]
                    (tmp / "solved" / f"{row.strategy}.yaml").write_text(
                        yaml.safe_dump(data, sort_keys=False))
            meta.update({"target": res.target.label, "state": res.target.state,
                         "race": res.target.race, "year": res.target.year,
                         "draws": res.draws, "baseline_metric": res.baseline_metric,
                         "timings": res.timings})
        if lap is not None:
            lap.to_csv(tmp / "lapse.csv", index=False)
            meta["lapse"] = {"years_after": args.lapse_years,
                             "decay_per_year": args.decay_per_year}
        (tmp / "target.json").write_text(json.dumps(meta, indent=2, default=str))
        out = st.out
    if res is not None:
        print("\n".join(summary_lines(res)))
    if lap is not None:
        tot = lap[lap.year == "TOTAL"].iloc[0]
        iv = ("" if np.isnan(tot.deaths_lost_lo) else
              f" (95% interval {tot.deaths_lost_lo:,.0f} to {tot.deaths_lost_hi:,.0f})")
        print(f"gains lapse: {tot.deaths_averted_held:,.0f} deaths averted with coverage held "
              f"{args.lapse_years} years after {scenario.years[1]}, "
              f"{tot.deaths_averted_lapsed:,.0f} when it decays {args.decay_per_year:g} per "
              f"year: {tot.deaths_lost:,.0f} deaths lost{iv}")
    print(f"wrote {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0
