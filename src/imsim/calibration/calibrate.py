"""Calibration: a small-cell-aware fit of the baseline to observed 2013-2015 rates, with uncertainty.

The fit has two stages (see ``docs/calibration.md``):

1. **Rates** (:func:`imsim.calibration.ratemodel.fit_rates`). The infant mortality rate of every
   state x race cell, partially pooled towards the national race rate x a state effect, fitted to
   the cell, state and national IMRs (:mod:`imsim.calibration.observations`) as counts of the same realised
   deaths; a Laplace approximation gives K joint posterior draws of every cell's rate.
2. **Structure** (:mod:`imsim.calibration.structure`). A gestational-age shift per race (and per state where a
   state preterm rate exists) so preterm rates match, and per-race cause shares (neonatal, SUID,
   other postneonatal) from the NMR/PNMR and SUID targets and the packaged cohort structure.

:class:`CalibratedTargets` holds both and is saved to ``calibration/<name>/``;
:func:`imsim.inputs.fit.direct_fit` with ``targets=`` solves the per-cell multipliers that make the
expected engine reproduce them for any effect draw. :func:`load_calibration` finds a saved fit.
:func:`calibrate` (``imsim calibrate``) fits, reports (:mod:`imsim.calibration.fitreport`), back-tests and
writes a fit folder. The names of the stage modules are re-exported here.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import RACES, STATES
from imsim.core.errors import InputError
from imsim.core.folders import atomic_file, atomic_folder
from imsim.calibration.fitreport import fit_quality, fit_report, modelled_counts, plot_fit_report
from imsim.calibration.observations import (
    BASE_PERIOD,
    DEFAULT_SETTINGS,
    N_R,
    N_S,
    R_INDEX,
    S_INDEX,
    Observations,
    load_observations,
    rate_data,
)
from imsim.calibration.ratemodel import Z95, RateData, RateFit, fit_rates
from imsim.calibration.structure import cause_shares, fit_ga_shift, preterm_targets, suid_targets

# The public names of the stage modules stay importable from here, as before the split.
__all__ = [
    "BASE_PERIOD",
    "CALIBRATE_EPILOG",
    "DEFAULT_SETTINGS",
    "FIT_FILES",
    "N_R",
    "N_S",
    "REPORT_FILES",
    "R_INDEX",
    "S_INDEX",
    "Z95",
    "CalibratedTargets",
    "Observations",
    "RateData",
    "RateFit",
    "add_parser",
    "build_targets",
    "calibrate",
    "cause_shares",
    "cmd_calibrate",
    "default_name",
    "fit_ga_shift",
    "fit_quality",
    "fit_rates",
    "fit_report",
    "load_calibration",
    "load_observations",
    "main",
    "modelled_counts",
    "plot_fit_report",
    "preterm_targets",
    "rate_data",
    "suid_targets",
]

from imsim.calibration.targets import (  # noqa: E402  (re-exported: what a run loads)
    FIT_FILES,
    REPORT_FILES,
    CalibratedTargets,
    load_calibration,
)


# =============================================================================================
# Calibrate: fit, report, write
# =============================================================================================

#: Most posterior draws per cell ``imsim calibrate --draws`` accepts (runs use at most 10,000
#: replicates; the default is 200).
MAX_DRAWS = 10_000


def build_targets(obs: Observations, settings: dict | None = None, name: str = "default",
                  rate_fit: RateFit | None = None) -> tuple[CalibratedTargets, dict]:
    """Fit both stages to ``obs``; return the targets and fit diagnostics (nothing is written).

    Parameters
    ----------
    obs : Observations
        The targets to fit (:func:`load_observations`).
    settings : dict, optional
        Overrides of :data:`DEFAULT_SETTINGS` (draws, seed, sigmas).
    name : str
        The calibration's name (``meta["name"]``).
    rate_fit : RateFit, optional
        A stage-1 fit to reuse instead of fitting the rates again.

    Returns
    -------
    tuple of (CalibratedTargets, dict)
        The targets (IMR per 1,000 live births, ``[51, 5]`` and ``[K, 51, 5]`` draws) and the
        diagnostics ``rate_fit``, ``ga`` and ``cause``.
    """
    from imsim.inputs.baseline import get_baseline
    from imsim.inputs.data import data_hash

    st = {**DEFAULT_SETTINGS, **(settings or {})}
    t0 = time.perf_counter()
    rd = rate_data(obs)
    rf = rate_fit or fit_rates(rd, sigma_alpha=st["sigma_alpha"], sigma_eps=st["sigma_eps"],
                               sigma_eps_by_race=st["sigma_eps_by_race"], draws=st["draws"],
                               seed=st["seed"])
    t_rates = time.perf_counter() - t0
    baseline = get_baseline()
    births = obs.births
    point = rf.point
    race_imr = (point * births).sum(axis=0) / births.sum(axis=0)
    ga_shift, ga_info = fit_ga_shift(baseline, obs, births)
    share, c_info = cause_shares(baseline, obs, race_imr)
    obs_val = np.full((N_S, N_R), np.nan)
    obs_lo = np.full((N_S, N_R), np.nan)
    obs_hi = np.full((N_S, N_R), np.nan)
    tier = np.full((N_S, N_R), np.nan)
    for r in obs.cell.itertuples():
        i, j = S_INDEX[r.state], R_INDEX[r.race]
        obs_val[i, j], obs_lo[i, j], obs_hi[i, j], tier[i, j] = r.value, r.obs_lo, r.obs_hi, r.source_tier
    ss, rr = np.meshgrid(np.arange(N_S), np.arange(N_R), indexing="ij")
    ss, rr = ss.ravel(), rr.ravel()
    cells = pd.DataFrame({
        "state": np.asarray(STATES)[ss], "race": np.asarray(RACES)[rr],
        "births": births[ss, rr].astype(np.int64),
        "observed": obs_val[ss, rr], "observed_lo": obs_lo[ss, rr], "observed_hi": obs_hi[ss, rr],
        "source_tier": tier[ss, rr], "pooled": np.isnan(obs_val[ss, rr]),
        "imr": point[ss, rr], "imr_lo": rf.lo[ss, rr], "imr_hi": rf.hi[ss, rr],
        "log_sd": rf.sd_eta[ss, rr], "ga_shift": ga_shift[ss, rr],
        "preterm": ga_info["cell_preterm"][ss, rr],
    })
    tg = ga_info["targets"]
    meta = {
        "name": name,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "imsim_version": _version(),
        "data_hash": data_hash(),
        "targets_hash": obs.targets_hash,
        "targets_file": obs.targets_file,
        "user_rows": obs.user_rows,
        "settings": st,
        "period": f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}",
        "sigma_alpha": rf.sigma_alpha,
        "sigma_eps": dict(zip(RACES, map(float, rf.sigma_eps))),
        "log_marginal_likelihood": rf.log_ml,
        "em_iterations": rf.iterations,
        "closure_factor": obs.closure,
        "neonatal_share_target": c_info.get("neonatal_target"),
        "preterm_targets": {"race": tg["race"], "all": tg["all"], "state": tg["state"]},
        "suid_targets": {k: v[0] for k, v in c_info["suid_targets"].items()},
        "notes": obs.notes,
        "rate_fit_seconds": round(t_rates, 2),
        "race_columns": {"mu": rf.mu, "ga_shift_race": ga_info["delta_race"],
                         "imr_point": race_imr,
                         "preterm_target": [tg["race"].get(r, np.nan) for r in RACES]},
        "state_columns": {"alpha": rf.alpha, "ga_shift_state": ga_info["gamma_state"],
                          "preterm_target": [tg["state"].get(s, np.nan) for s in STATES]},
    }
    t1 = time.perf_counter()
    from imsim.calibration.series import state_series
    from imsim.calibration.trend import fit_trend_model, national_with

    try:
        national = national_with(obs.national_year)
    except ValueError as exc:
        raise InputError(str(exc), file=obs.targets_file) from None
    trend = fit_trend_model(state_series(obs), national, seed=int(st["seed"]))
    meta["trend"] = {**trend.summary(), "fit_seconds": round(time.perf_counter() - t1, 2)}
    cal = CalibratedTargets(point, rf.lo, rf.hi, rf.draws, share, ga_shift, cells, meta,
                            trend=trend)
    return cal, {"rate_fit": rf, "ga": ga_info, "cause": c_info, "trend": trend}


def single_year_lines(obs) -> list[str]:
    """Say what became of every single-year row of a user's targets: used, replaced, ignored.

    One line per status and reason, with the years and the number of rows (every row is also in
    ``single_years.csv`` of the calibration folder).
    """
    sy = obs.single_years
    if sy is None or not len(sy):
        return []
    counts = sy["status"].value_counts()
    lines = ["single-year rows of " + str(obs.targets_file) + ": "
             + ", ".join(f"{int(counts.get(k, 0))} {k}" for k in ("used", "replaced", "ignored"))]
    for (status, reason), g in sy.groupby(["status", "reason"], sort=False):
        years = sorted(set(int(y) for y in g["year"]))
        span = (f"{years[0]}-{years[-1]}" if len(years) > 2 and years == list(
            range(years[0], years[-1] + 1)) else ", ".join(map(str, years)))
        states = sorted(set(g["state"]))
        who = ", ".join(states[:6]) + (f" and {len(states) - 6} more" if len(states) > 6 else "")
        lines.append(f"  {status}: {len(g)} row(s), {who}, {span}: {reason}")
    return lines


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("imsim")
    except Exception:  # noqa: BLE001 - not installed
        return "unknown"



def default_name(targets_file: str | os.PathLike | None = None) -> str:
    """Return the name of a new fit folder without ``--out``: the targets file's stem, or ``fit``.

    The folder is ``calibration/<name>-<timestamp>/`` (``-2``, ``-3``... if taken); see
    :func:`imsim.core.folders.new_folder`.

    Parameters
    ----------
    targets_file : str or path, optional
        The user's targets CSV, if any.

    Returns
    -------
    str
        The folder name before its timestamp.
    """
    return Path(targets_file).stem if targets_file else "fit"


def calibrate(targets_file: str | os.PathLike | None = None,
              out: str | os.PathLike | None = None, *,
              settings: dict | None = None, backtest: bool = True, package_copy: bool = False,
              replace: bool = False, log=None) -> tuple[CalibratedTargets, dict]:
    """Fit, report and write a new calibration folder atomically.

    Parameters
    ----------
    targets_file : path, optional
        A targets CSV from ``imsim data import-wonder`` (default: the packaged targets).
    out : path, optional
        The folder to create; it must not exist or be empty (checked before fitting). Default:
        a fresh ``calibration/<name>-<timestamp>/`` (:func:`default_name`); an existing fit is
        never overwritten. To fit without writing, use :func:`build_targets`.
    settings : dict, optional
        Overrides of :data:`DEFAULT_SETTINGS` (draws, seed, sigmas).
    backtest : bool
        Run the back-test (origins 2012 and 2015) and write it beside the fit.
    package_copy : bool
        Also copy the fit files into ``imsim/inputs/data/calibration/<out name>/`` (maintainers).
    replace : bool
        Replace an existing calibration folder ``out`` (one holding ``calibration.json``), in one
        rename at the end; anything else that exists is refused.
    log : callable, optional
        ``log(message)`` for progress lines.

    Returns
    -------
    tuple of (CalibratedTargets, dict)
        The targets and a summary: fit quality, timings, back-test metrics, ``out``.

    Raises
    ------
    InputError
        For an existing ``out`` (without ``replace``, or one that is not a calibration folder)
        or a bad targets file.

    Notes
    -----
    Everything is written into a hidden temporary folder beside the target and renamed into place
    at the end, so a failure (bad targets file: :class:`InputError`) leaves nothing behind.
    """
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    if out is not None:                      # before any work
        out = Path(out)
        exists = out.exists() and (not out.is_dir() or any(out.iterdir()))
        if exists and not replace:
            raise InputError("calibration folder already exists and is not empty; choose "
                             "another --out, or add --replace to refit it", file=str(out))
        if exists and not (out / "calibration.json").is_file():
            raise InputError("--replace only replaces a calibration folder (one with "
                             "calibration.json); this is something else", file=str(out))
    with atomic_folder(out, name=default_name(targets_file), parent="calibration",
                       replace=replace) as st:
        obs = load_observations(targets_file, settings)
        log(f"targets: {len(obs.cell)} state x race IMRs, {len(obs.state)} state totals, "
            f"{len(obs.race)} national race IMRs"
            + (f"; {obs.user_rows} rows from {targets_file}" if targets_file else ""))
        for line in single_year_lines(obs):
            log(line)
        cal, diag = build_targets(obs, settings, name=st.out.name)
        log(f"rate model: sigma_alpha {cal.meta['sigma_alpha']:.3f}, sigma_eps "
            + ", ".join(f"{k} {v:.3f}" for k, v in cal.meta["sigma_eps"].items())
            + f" ({cal.meta['rate_fit_seconds']:.1f} s)")
        report = fit_report(cal, obs)
        quality = fit_quality(report)
        cal.meta["fit_quality"] = quality
        summary = {"fit_quality": quality}
        bt = None
        if backtest:
            from imsim.calibration.backtest import backtest as run_backtest

            bt = run_backtest(cal, obs=obs)
            cal.meta["backtest"] = bt.metrics
            summary["backtest"] = bt.metrics
        cal.meta["fit_seconds"] = round(time.perf_counter() - t0, 2)
        summary["seconds"] = cal.meta["fit_seconds"]
        cal.save(st.tmp)
        if obs.single_years is not None and len(obs.single_years):
            obs.single_years.to_csv(st.tmp / "single_years.csv", index=False)
        report.to_csv(st.tmp / "fit_report.csv", index=False, float_format="%.6g")
        plot_fit_report(report, st.tmp / "fit_report.png")
        if bt is not None:
            bt.save(st.tmp)
    out = st.out
    cal.path = str(out)
    summary["out"] = out
    if package_copy:
        dst = Path(__file__).parents[1] / "inputs" / "data" / "calibration" / out.name
        for f in FIT_FILES:
            with atomic_file(dst / f) as tmp:
                shutil.copy2(out / f, tmp)
        log(f"copied the fit files to {dst}")
    return cal, summary


# =============================================================================================
# Command line (registered by imsim.cli)
# =============================================================================================

CALIBRATE_EPILOG = """\
examples:
  imsim calibrate                                       a new fit, calibration/fit-<timestamp>/
  imsim data import-wonder export.txt --out my_targets.csv
  imsim calibrate --targets my_targets.csv --out calibration/my_state
  imsim run scenarios/baseline.yaml --calibration calibration/my_state

--targets: a CSV written by 'imsim data import-wonder' (columns state, race, year_start,
year_end, measure, deaths, births, rate, flag). Measure 'imr' rows for 2013-2015 (or the three
single years, pooled) replace the packaged IMR of the cells they cover (state x race, state ALL,
national race); 'suppressed'/'missing' rows drop the packaged value of that cell; single years
from 2007 of a state or the nation (all races) update the trend model (state series, national
level) and the back-test observations; 'births' rows for 2013-2015 replace the births the fit
weights a cell by. Every single-year row is printed as used, replaced or ignored with the reason
(also in single_years.csv); other rows are listed in calibration.json 'notes'.

Writes calibration.json, cells.csv, races.csv, states.csv, imr_draws.csv, trend.json (what a run
loads), fit_report.csv/png and backtest.csv/json/png into a new folder (default
calibration/<targets name or 'fit'>-<timestamp>/). An existing --out is refused unless it is a
calibration folder and --replace is given (maintainers: imsim calibrate --out calibration/default
--replace --package-copy). Nothing is written if anything fails.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``imsim calibrate`` on an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``calibrate`` parser (its ``func`` default is :func:`cmd_calibrate`).
    """
    p = subparsers.add_parser(
        "calibrate", help="fit the baseline to observed 2013-2015 rates (with uncertainty)",
        description="Fit the baseline to the observed 2013-2015 targets: IMR by state x race "
                    "(partial pooling: national race x state effect, so small and suppressed "
                    "cells get shrunk estimates with honest intervals), state and national "
                    "totals, preterm rates, the neonatal/postneonatal split and SUID by race. "
                    "Then fits the trend model that moves every rate through time (national "
                    "level 2007-2023, pooled state and race slopes). Writes the fit with K "
                    "posterior draws per cell, the trend model, a fit report and a back-test "
                    "(origins 2012 and 2015).",
        epilog=CALIBRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", metavar="FILE",
                   help="your own targets CSV from 'imsim data import-wonder' (see below)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="calibration folder to create; must not exist or be empty (default: "
                        "calibration/<targets name or 'fit'>-<timestamp>/)")
    p.add_argument("--replace", action="store_true",
                   help="replace the existing calibration folder --out (e.g. refitting "
                        "calibration/default); the new fit is swapped in only when complete")
    p.add_argument("--draws", type=int, default=DEFAULT_SETTINGS["draws"],
                   help="posterior draws per cell (default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT_SETTINGS["seed"],
                   help="seed of the posterior draws (default: %(default)s)")
    p.add_argument("--no-backtest", action="store_true", help="skip the back-test (origins 2012 and 2015)")
    p.add_argument("--package-copy", action="store_true",
                   help=argparse.SUPPRESS)  # maintainers: also copy into imsim/inputs/data/calibration/
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args) -> int:
    """Run ``imsim calibrate`` from parsed arguments and print the fit quality.

    Parameters
    ----------
    args : argparse.Namespace
        ``targets``, ``out``, ``replace``, ``draws``, ``seed``, ``no_backtest``,
        ``package_copy``, ``quiet``.

    Returns
    -------
    int
        0 (exit code).

    Raises
    ------
    InputError
        For ``--draws`` below 2, ``--replace`` without ``--out``, or any error of
        :func:`calibrate` (the CLI prints it and exits with code 2).
    """
    if not 2 <= args.draws <= MAX_DRAWS:
        raise InputError(f"--draws {args.draws} is out of range; allowed: 2 to {MAX_DRAWS:,}")
    if not 0 <= args.seed <= 2**63 - 1:
        raise InputError(f"--seed {args.seed} is out of range; allowed: 0 to 2**63 - 1")
    if args.replace and not args.out:
        raise InputError("--replace needs --out (the calibration folder to replace)")
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    cal, summary = calibrate(args.targets, args.out,
                             settings={"draws": int(args.draws), "seed": int(args.seed)},
                             backtest=not args.no_backtest, package_copy=args.package_copy,
                             replace=args.replace, log=log)
    q = summary["fit_quality"]
    log(f"state x race cells with an observed IMR inside the observation's 95% interval: "
        f"{q['cells_within_interval']:.1%} of {q['cells_observed']} "
        f"(Poisson-only intervals: {q['cells_within_poisson_interval']:.1%})")
    for c in q["cells_outside"]:
        log(f"  outside: {c}")
    log(f"national IMR by race: max |rel. error| {q['national_race_max_abs_rel_error']:.2%}; "
        f"preterm by race {q['preterm_race_max_abs_rel_error']:.2%}; SUID by race "
        f"{q['suid_race_max_abs_rel_error']:.2%}")
    if "backtest" in summary:
        m = summary["backtest"]["all"]
        log(f"back-test 2016-2017 ({m['states']} state-years): MAE {m['mae']:.3f}, RMSE "
            f"{m['rmse']:.3f} per 1,000, 95% coverage {m['coverage_95']:.0%}")
    log(f"wrote {summary['out']}/ in {summary['seconds']:.1f} s")
    return 0


def main(argv=None) -> int:  # pragma: no cover - convenience until cli.py registers it
    """Run ``imsim calibrate`` or ``imsim backtest`` as a stand-alone entry point.

    Parameters
    ----------
    argv : list of str, optional
        Command and arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0, or 2 after printing an :class:`InputError`.
    """
    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    from imsim.calibration.backtest import add_backtest_parser

    add_backtest_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"imsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
