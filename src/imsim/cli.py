"""The ``imsim`` command line: a thin layer over the library.

Every user mistake is an :class:`imsim.core.errors.InputError`: one line on stderr, exit code 2, no
traceback, nothing written.
"""
from __future__ import annotations

import argparse
import sys
import time

from imsim.core.constants import ENGINES, STRATEGIES
from imsim.core.errors import InputError

EPILOG = """\
examples:
  imsim run scenarios/baseline.yaml                      national 2013-2015 baseline
  imsim run scenarios/safe_sleep.yaml --replicates 200   with 95% intervals
  imsim run scenarios/baseline.yaml --engine microsim --seed 3
  imsim validate scenarios/coiin_portfolios.yaml         check a scenario without running it
  imsim schema > scenario.schema.json                    JSON Schema for your editor
  imsim data                                             packaged tables and their sources
  imsim data import-wonder export.txt --out targets.csv  read a CDC WONDER export
  imsim calibrate --targets targets.csv --out calibration/my_state
  imsim run scenarios/safe_sleep.yaml --calibration calibration/my_state
  imsim sweep sweeps/safe_sleep_sobol.yaml --workers 2
  imsim recommend plans/southeast.yaml
  imsim target scenarios/safe_sleep_south.yaml --imr 7.5 --state AL
  imsim replay --out results/replay

Docs: README.md (scenario format, outputs, data), docs/reliability.md. Exit codes: 0 ok,
1 system error, 2 bad input, 3 sweep aborted (resumable), 130 Ctrl-C, 143 SIGTERM.
"""


def _fill(text: str) -> str:
    """Wrap a --help description (the parsers keep their epilog examples as written)."""
    import textwrap

    return textwrap.fill(text, 88)


def _add_run(sub):
    p = sub.add_parser(
        "run", help="run a scenario and write its results folder",
        description="Run a scenario file: baseline and scenario arms for every state x race "
                    "x year, then write summary.csv and the other tables, figures, report.html "
                    "and manifest.json into a new results folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="scenario YAML file (see scenarios/ for examples)")
    p.add_argument("--engine", choices=ENGINES,
                   help="expected: exact expected counts (fast, default); microsim: simulate "
                        "every birth (Monte Carlo spread)")
    p.add_argument("--seed", type=int, help="random seed (default: the scenario's seed)")
    p.add_argument("--replicates", type=int,
                   help="uncertainty draws; 1 = point estimate only (default: the scenario's)")
    p.add_argument("--out", metavar="DIR",
                   help="results folder to create (default: results/<name>-<timestamp>/); "
                        "must not exist yet")
    p.add_argument("--calibration", metavar="NAME_OR_DIR",
                   help="calibration to fit the baseline to (default: the scenario's "
                        "'calibration:', else 'default', the packaged fit): a folder from "
                        "`imsim calibrate`, or 'direct' (fit each observed cell exactly). A name "
                        "is searched, first match wins: (1) relative to the working directory, "
                        "(2) ./calibration/NAME, (3) relative to the scenario file's folder, "
                        "(4) calibration/NAME in the nearest parent folder of the working "
                        "directory, then of the scenario file, that has it (the repository's "
                        "calibration/ when run from inside it); a missing one lists where it "
                        "looked")
    p.add_argument("--no-figures", action="store_true", help="skip figures and report.html")
    p.add_argument("--allow-large", action="store_true",
                   help="run even when the estimated time (> 30 min) or memory (> 8 GB, or 75%% "
                        "of this machine's) is past the limits; without it such a run is "
                        "refused before it starts, with the estimate")
    p.add_argument("--quiet", action="store_true", help="no progress bar or headline")


def _cmd_run(args) -> int:
    from imsim.analysis.runner import run
    from imsim.config.scenario import load_scenario
    from imsim.core.folders import check_new
    from imsim.output.runfolder import save_result

    if args.out:
        check_new(args.out)                  # before any work
    scenario = load_scenario(args.file)
    if args.replicates is not None and not 1 <= args.replicates <= 10_000:
        raise InputError(f"--replicates {args.replicates} is out of range; allowed: 1 to 10000")
    if args.seed is not None and not 0 <= args.seed <= 2**63 - 1:
        raise InputError(f"--seed {args.seed} is out of range; allowed: 0 to 2**63 - 1")
    from imsim.analysis.budget import check_run

    check_run(scenario, args.engine, args.replicates, allow_large=args.allow_large,
              file=args.file)                # before any work
    for w in scenario.horizon_warnings():
        print(f"imsim: warning: {w}", file=sys.stderr)
    calibration = _resolve_calibration(args.calibration or scenario.calibration, args.file)
    t0 = time.perf_counter()
    result = run(scenario, engine=args.engine, seed=args.seed, replicates=args.replicates,
                 progress=not args.quiet, calibration=calibration)
    for w in result.warnings:                # once, before the outputs are written
        print(f"imsim: warning: {w}", file=sys.stderr)
    out = save_result(result, args.out, figures=not args.no_figures,
                      report=not args.no_figures)
    if not args.quiet:
        from imsim.output.runfolder import headline_text
        from imsim.output.statepages import has_strategies

        s = result.summary
        row = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
        if has_strategies(result):
            print(f"{scenario.name}: {row.births:,.0f} births, {row.deaths_baseline:,.0f} deaths "
                  f"in the baseline (IMR {row.imr_baseline:.2f}); {headline_text(result, row)}; "
                  f"IMR {row.imr_scenario:.2f}")
        else:
            print(baseline_summary(scenario, result))
        from imsim.output.report import years_note

        print(f"years {years_note(scenario.years)}")
        print(f"wrote {out}/ in {time.perf_counter() - t0:.1f} s "
              f"({result.engine} engine, seed {result.seed}, {result.replicates} replicate(s))")
    return 0


def baseline_summary(scenario, result) -> str:
    """The printed headline of a run without strategies: the baseline itself (births, infant
    deaths, IMR overall and by race with 95% intervals, the NH black / NH white ratio), never
    "0 deaths averted" (as the report's headline, imsim.output.report)."""
    from imsim.output.statepages import baseline_intervals, race_label

    b = baseline_intervals(result).set_index("race")
    tot = b.loc["ALL"]
    how = ("95% intervals: uncertainty draws" if b.kind.iloc[0] == "draws" else
           "95% intervals: Poisson, too few draws for a model interval")
    races = "; ".join(f"{race_label(r)} {v.imr_baseline:.2f} ({v.imr_lo:.2f}-{v.imr_hi:.2f})"
                      for r, v in b.iterrows() if r != "ALL")
    ratio = ""
    if {"nh_black", "nh_white"} <= set(b.index) and b.loc["nh_white", "imr_baseline"] > 0:
        bl, wh = b.loc["nh_black"], b.loc["nh_white"]
        ratio = (f"; NH black / NH white IMR ratio {bl.imr_baseline / wh.imr_baseline:.2f}, "
                 f"difference {bl.imr_baseline - wh.imr_baseline:.2f} per 1,000")
    y0, y1 = scenario.years
    return (f"{scenario.name}: baseline {y0}-{y1}, no strategies: {tot.births:,.0f} births, "
            f"{tot.deaths_baseline:,.0f} infant deaths, IMR {tot.imr_baseline:.2f} per 1,000 "
            f"({tot.imr_lo:.2f}-{tot.imr_hi:.2f}); by race: {races}{ratio} ({how})")


def _resolve_calibration(name, scenario_file):
    """Load the calibration ``name`` (searched also relative to the scenario file's folder).

    Returns None for the default (``run`` loads it), ``"direct"`` for no calibration, else the
    loaded :class:`~imsim.calibration.targets.CalibratedTargets`.
    """
    from pathlib import Path

    from imsim.analysis.runner import get_calibration

    if name is None or str(name) == "default":
        return None
    cal = get_calibration(name, scenario_dir=Path(scenario_file).parent)
    return "direct" if cal is None else cal


def _cmd_validate(args) -> int:
    from imsim.config.scenario import load_scenario

    sc = load_scenario(args.file)
    for w in sc.horizon_warnings():
        print(f"imsim: warning: {w}", file=sys.stderr)
    strategies = sorted(set().union(*[sc.portfolio(s).active().keys() for s in sc.state_list]))
    print(f"{args.file}: ok — '{sc.name}', {sc.years[0]}-{sc.years[1]}, "
          f"{len(sc.state_list)} state(s), strategies: {', '.join(strategies) or 'none'}"
          f"{', collaborative' if sc.collaborative else ''}")
    return 0


def _cmd_schema(args) -> int:
    import json

    from imsim.config.scenario import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _cmd_data(args) -> int:
    from imsim.inputs.data import catalogue, data_hash

    if args.what == "evidence":
        from imsim.inputs.evidence import EvidenceLibrary

        lib = EvidenceLibrary.load()
        ids = list(lib.ids)
        if args.files:
            if len(args.files) > 1:
                raise InputError(f"imsim data evidence takes one FILTER, got {len(args.files)}: "
                                 f"{' '.join(args.files)}")
            ids = _evidence_matches(lib, args.files[0])
            if not ids:
                raise InputError(f"no effect's id, description or strategy area contains "
                                 f"'{args.files[0]}'; strategy areas: {', '.join(STRATEGIES)}")
        for k in ids:
            e = lib.effects[k]
            tag = " [ASSUMPTION]" if e.assumption else ""
            rng = "" if e.dist == "fixed" else f" ({e.dist} {e.lo:g}-{e.hi:g})"
            print(f"{k:36s} {e.point:<8g}{rng}{tag}\n    {e.description}\n    {e.citation[:110]}")
        return 0
    if args.what == "costs":
        from imsim.analysis.economics import load_cost_library

        if args.files:
            raise InputError("imsim data costs takes no argument, got "
                             f"{' '.join(args.files)}")
        lib = load_cost_library()
        print("cost library of imsim recommend (costs.csv; a plan uses it with costs: library): "
              "USD per birth reached, low-high range, price year, status "
              "(sourced / derived / illustrative)")
        for r in lib.itertuples(index=False):
            py = f"{int(r.price_year)} USD" if r.price_year == r.price_year else "no price year"
            tag = " [ILLUSTRATIVE]" if r.status == "illustrative" else f" [{r.status}]"
            print(f"\n{r.strategy:22s} {r.usd_per_birth_reached:>8,.0f}  (range {r.low:,.0f}-"
                  f"{r.high:,.0f}, {py}){tag}")
            print(f"    per: {r.birth_reached}"
                  + (f"; priced for {r.priced_option}" if isinstance(r.priced_option, str)
                     else ""))
            print(f"    source: {r.source}\n    url: {r.url}\n    quote: {r.quote}"
                  f"\n    note: {r.note}")
        return 0
    if args.what == "import-wonder":
        from imsim.inputs.wonder import import_wonder, write_targets

        from imsim.core.folders import check_new_file

        if not args.files or not args.out:
            raise InputError("usage: imsim data import-wonder FILE... --out targets.csv")
        check_new_file(args.out)             # before any work
        df = import_wonder(args.files,
                           bridged_race_as_non_hispanic=args.bridged_race_as_non_hispanic)
        path = write_targets(df, args.out)
        for w in df.attrs.get("warnings", []):
            print(f"warning: {w}", file=sys.stderr)
        print(f"wrote {path}: {len(df)} rows ({', '.join(sorted(df['measure'].unique()))})")
        return 0
    print(f"packaged data (hash {data_hash()}), built by scripts/build_data.py from ../shared/data")
    for t in catalogue():
        print(f"\n{t['name']} ({t['file']}, {t['rows']} rows): {t['description']}")
        for s in t.get("sources", []):
            print(f"  - {s}")
    print("\ncosts (costs.csv): the cost library of imsim recommend (USD per birth reached per "
          "strategy, with range and source; not a model input, not in the data hash): "
          "imsim data costs")
    return 0


def _evidence_matches(lib, text: str) -> list[str]:
    """Return the ids of effects whose id, description or strategy area contains ``text``."""
    from imsim.inputs.data import load_table

    areas = {r.id: r.area for r in load_table("evidence").itertuples(index=False)
             if isinstance(r.area, str)}                  # e.g. "1_safe_sleep"
    text = text.lower()
    return [k for k in lib.ids
            if any(text in f.lower() for f in (k, lib.effects[k].description, areas.get(k, "")))]


#: Subcommands defined in their own modules, imported only when used (so --help stays instant):
#: name -> (module, parser-builder, command function, one-line help).
LAZY_COMMANDS = {
    "calibrate": ("imsim.calibration.calibrate", "add_parser", "cmd_calibrate",
                  "fit the baseline to observed rates (pooled, with uncertainty) and report fit"),
    "backtest": ("imsim.calibration.backtest", "add_backtest_parser", "cmd_backtest",
                 "forecast state IMRs from 2012 and 2015 with the trend model vs carry-forward"),
    "sweep": ("imsim.analysis.sweep", "add_parser", "cmd_sweep",
              "sensitivity analysis: Sobol, Morris or probabilistic sweeps (local or Dask)"),
    "recommend": ("imsim.output.recommendation", "add_parser", "cmd_recommend",
                  "rank strategy portfolios per state and allocate nationally"),
    "check": ("imsim.output.checkfolder", "add_parser", "cmd_check",
              "compare the model with published figures not used to fit it"),
    "compare": ("imsim.output.comparefolder", "add_parser", "cmd_compare",
                "differences of two run folders (B - A), with paired intervals"),
    "detect": ("imsim.output.detectfolder", "add_parser", "cmd_detect",
               "will the vital statistics show it: P(observed decline), power, MDE by state"),
    "target": ("imsim.output.targetfolder", "add_parser", "cmd_target",
               "coverage needed to reach an IMR, disparity or deaths-averted target"),
    "replay": ("imsim.output.replayfolder", "add_parser", "cmd_replay",
               "replay 2013-2017 (expansion, smoking trend, CoIIN) against observed change"),
    "serve": ("imsim.output.web", "add_parser", "cmd_serve",
              "a planner's workbench in the browser (local, offline; pip install 'imsim[web]')"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the ``imsim`` argument parser.

    Subcommands in :data:`LAZY_COMMANDS` get their full parser only when they are the command
    being run (their modules are imported then); otherwise a placeholder, so ``imsim --help``
    imports nothing heavy.

    Parameters
    ----------
    command : str, optional
        The subcommand about to run.

    Returns
    -------
    argparse.ArgumentParser
        The parser.
    """
    from imsim.core.version import __version__

    parser = argparse.ArgumentParser(
        prog="imsim",
        description="imsim: how many U.S. infant deaths do safe sleep, smoking cessation, "
                    "preterm prevention, preconception care, risk-appropriate care and social "
                    "determinants strategies avert, for whom, and how sure are we?",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    v = sub.add_parser(
        "validate", help="check a scenario file without running it",
        description=_fill("Check a scenario file without running it: every key, value and "
                          "cross-reference. Prints one 'ok' line (name, years, states, "
                          "strategies), or one error line naming the file, the key path, the bad "
                          "value and what is allowed (exit 2). Warnings (e.g. a coverage ramp "
                          "year outside `years`) go to stderr."),
        epilog="examples:\n  imsim validate scenarios/safe_sleep_south.yaml\n"
               "  imsim validate my_scenario.yaml && imsim run my_scenario.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("file", help="scenario YAML file")
    sub.add_parser(
        "schema", help="print the JSON Schema of scenario files",
        description=_fill("Print the JSON Schema (draft 2020-12) of scenario files on stdout: "
                          "every key with its type, allowed values and description. Point your "
                          "editor's YAML language server at it for completion and checks while "
                          "you write."),
        epilog="examples:\n  imsim schema > scenario.schema.json\n"
               "  # then, first line of a scenario file (VS Code / YAML language server):\n"
               "  # yaml-language-server: $schema=scenario.schema.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    d = sub.add_parser("data", help="list packaged tables and sources; evidence; costs; "
                                    "import-wonder",
                       description=_fill("Without arguments: list the packaged tables and "
                                         "their sources. `imsim data evidence [FILTER]` lists "
                                         "every effect, or only those whose id, description "
                                         "or strategy area contains FILTER "
                                         "(case-insensitive). `imsim data costs` lists the "
                                         "cost library of imsim recommend (per strategy: "
                                         "USD per birth reached, range, price year, source). "
                                         "`imsim data import-wonder "
                                         "FILE... --out targets.csv` reads CDC WONDER exports."),
                       epilog="examples:\n  imsim data\n  imsim data evidence safe_sleep\n"
                              "  imsim data costs\n"
                              "  imsim data import-wonder export.txt --out targets.csv\n"
                              "  imsim data import-wonder bridged.txt --out targets.csv "
                              "--bridged-race-as-non-hispanic",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("what", nargs="?", choices=["tables", "evidence", "costs", "import-wonder"],
                   default="tables")
    d.add_argument("files", nargs="*", metavar="FILE_OR_FILTER",
                   help="WONDER export files (import-wonder); one FILTER (evidence)")
    d.add_argument("--out", help="targets CSV to create; must not exist (import-wonder)")
    d.add_argument("--bridged-race-as-non-hispanic", action="store_true",
                   help="import-wonder: accept a file grouped by race without Hispanic origin "
                        "and map each race to its non-Hispanic group (approximate: those "
                        "races include Hispanic mothers)")
    for name, (module, builder, _cmd, text) in LAZY_COMMANDS.items():
        if name == command:
            import importlib

            mod = importlib.import_module(module)
            getattr(mod, builder)(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    return parser


COMMANDS = {"run": _cmd_run, "validate": _cmd_validate, "schema": _cmd_schema,
            "data": _cmd_data}


def main(argv=None) -> int:
    """Run the ``imsim`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0 ok, 2 bad input (:class:`InputError`, one line on stderr), 130
        interrupted (Ctrl-C), 143 terminated (SIGTERM).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    from imsim.core import procs

    handlers = procs.install_signal_handlers()   # SIGTERM/SIGHUP clean up like Ctrl-C
    try:
        return _main(argv)
    finally:
        procs.restore_signal_handlers(handlers)


def _main(argv: list[str]) -> int:
    """:func:`main` with the signal handlers installed."""
    from imsim.core import procs

    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command)       # imports the command's modules
        args = parser.parse_args(argv)
    except KeyboardInterrupt as exc:
        print("imsim: interrupted; nothing was written", file=sys.stderr)
        return procs.exit_code(exc)
    if not args.command:
        parser.print_help()
        return 0
    try:
        if args.command in LAZY_COMMANDS:
            import importlib

            module, _builder, cmd, _text = LAZY_COMMANDS[args.command]
            func = getattr(importlib.import_module(module), cmd)
            return int(func(args) or 0)
        return COMMANDS[args.command](args)
    except InputError as exc:
        print(f"imsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        # A sweep that keeps its finished chunks says so (and how to resume) in .resumable.
        kept = getattr(exc, "resumable", None)
        print(f"imsim: interrupted; {kept or 'nothing was written'}", file=sys.stderr)
        return procs.exit_code(exc)
    except BrokenPipeError:
        # Output piped into a reader that stopped early (e.g. `imsim data evidence | head`).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # A path the system refuses (unreadable, a file where a folder should be, a name too
        # long, a read-only or full disk): one line naming it, never a traceback.
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"imsim: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2 if exc.filename is not None else 1
    finally:
        from imsim.core.folders import release_all

        release_all()                        # output locks (also dropped by the OS at exit)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
