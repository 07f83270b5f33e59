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
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
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

#: Files that make a loadable calibration (the rest of a fit folder is its report).
FIT_FILES = ("calibration.json", "cells.csv", "races.csv", "states.csv", "imr_draws.csv")
#: Files a fit folder also holds (reports).
REPORT_FILES = ("fit_report.csv", "fit_report.png", "backtest.csv", "backtest.png")


# =============================================================================================
# The calibrated targets: what a run loads
# =============================================================================================

@dataclass
class CalibratedTargets:
    """Calibrated targets on the 51 x 5 grid that :func:`imsim.inputs.fit.direct_fit` reproduces.

    ``imr`` is the point (posterior median, = mean of the draws) IMR per 1,000 of every cell;
    ``imr_lo``/``imr_hi`` its 95% posterior interval; ``imr_draws[K, 51, 5]`` joint posterior
    draws; ``cause_share[5, 3]`` the share of deaths by cause per race (neonatal, SUID, other
    postneonatal); ``ga_shift[51, 5]`` the log-odds shift of every GA cut; ``cells`` a table per
    cell (observation, tier, births, pooled); ``meta`` data and targets hashes, settings, sigmas.
    """

    imr: np.ndarray
    imr_lo: np.ndarray
    imr_hi: np.ndarray
    imr_draws: np.ndarray
    cause_share: np.ndarray
    ga_shift: np.ndarray
    cells: pd.DataFrame
    meta: dict
    path: str | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name", "calibration"))

    @property
    def n_draws(self) -> int:
        return int(self.imr_draws.shape[0])

    def cell_imr(self, draw: int | None = None) -> np.ndarray:
        """IMR per 1,000 ``[51, 5]``: the point (``draw=None``) or posterior draw ``draw % K``."""
        if draw is None:
            return self.imr
        return self.imr_draws[int(draw) % self.n_draws]

    def ga_shift_cuts(self) -> np.ndarray:
        """``[51, 5, 5]``: the same shift on every GA cut (the form :class:`Fit` holds)."""
        return np.repeat(self.ga_shift[:, :, None], 5, axis=2)

    @property
    def content_hash(self) -> str:
        """A hash of everything a fit reads from this calibration (caches key on it)."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for arr in (self.imr, self.imr_draws, self.cause_share, self.ga_shift):
            a = np.ascontiguousarray(arr, dtype=float)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    @property
    def stale(self) -> bool:
        """True when the packaged data changed since this fit (its data hash differs)."""
        from imsim.inputs.data import data_hash

        return self.meta.get("data_hash") != data_hash()

    # -- persistence --------------------------------------------------------------------------
    def save(self, out: str | os.PathLike) -> Path:
        """Write the fit files (:data:`FIT_FILES`) into folder ``out`` (created)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        cells = self.cells.copy()
        cells.to_csv(out / "cells.csv", index=False, float_format="%.6g")
        races = pd.DataFrame({"race": RACES, "share_neonatal": self.cause_share[:, 0],
                              "share_suid": self.cause_share[:, 1],
                              "share_other_postneonatal": self.cause_share[:, 2]})
        for k, v in self.meta.get("race_columns", {}).items():
            races[k] = v
        races.to_csv(out / "races.csv", index=False, float_format="%.6g")
        states = pd.DataFrame({"state": STATES})
        for k, v in self.meta.get("state_columns", {}).items():
            states[k] = v
        states.to_csv(out / "states.csv", index=False, float_format="%.6g")
        cols = [f"{s}.{r}" for s in STATES for r in RACES]
        draws = pd.DataFrame(self.imr_draws.reshape(self.n_draws, -1), columns=cols)
        draws.insert(0, "draw", np.arange(self.n_draws))
        draws.to_csv(out / "imr_draws.csv", index=False, float_format="%.5g")
        meta = {k: v for k, v in self.meta.items() if k not in ("race_columns", "state_columns")}
        (out / "calibration.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n",
                                              encoding="utf-8")
        return out

    @classmethod
    def load(cls, folder) -> CalibratedTargets:
        """Read a fit folder (a path or an ``importlib.resources`` traversable)."""
        folder_s = str(folder)

        def read_csv(name):
            with folder.joinpath(name).open("r", encoding="utf-8") as fh:
                return pd.read_csv(fh, keep_default_na=False, na_values=[""])

        try:
            meta = json.loads(folder.joinpath("calibration.json").read_text(encoding="utf-8"))
            cells = read_csv("cells.csv")
            races = read_csv("races.csv")
            states = read_csv("states.csv")
            draws = read_csv("imr_draws.csv")
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"not a readable calibration folder ({exc}); expected "
                             f"{', '.join(FIT_FILES)}", file=folder_s) from None
        try:
            idx_s = cells["state"].map(S_INDEX).to_numpy()
            idx_r = cells["race"].map(R_INDEX).to_numpy()
            grid = {}
            for col in ("imr", "imr_lo", "imr_hi", "ga_shift"):
                g = np.full((N_S, N_R), np.nan)
                g[idx_s, idx_r] = cells[col].to_numpy(float)
                grid[col] = g
            cols = [f"{s}.{r}" for s in STATES for r in RACES]
            d = draws[cols].to_numpy(float).reshape(len(draws), N_S, N_R)
            races = races.set_index("race").loc[list(RACES)]
            share = races[["share_neonatal", "share_suid", "share_other_postneonatal"]].to_numpy(float)
        except (KeyError, ValueError) as exc:
            raise InputError(f"calibration folder is incomplete or malformed ({exc})",
                             file=folder_s) from None
        if any(np.isnan(v).any() for v in grid.values()) or np.isnan(d).any() or (d <= 0).any():
            raise InputError("calibration has missing or non-positive cells", file=folder_s)
        meta["race_columns"] = {c: races[c].to_numpy() for c in races.columns
                                if not c.startswith("share_")}
        meta["state_columns"] = {c: states[c].to_numpy() for c in states.columns if c != "state"}
        return cls(grid["imr"], grid["imr_lo"], grid["imr_hi"], d, share, grid["ga_shift"], cells,
                   meta, path=folder_s)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _packaged_default():
    from importlib import resources

    return resources.files("imsim.inputs.data").joinpath("calibration").joinpath("default")


def load_calibration(name_or_path: str | os.PathLike | None = None) -> CalibratedTargets | None:
    """Find and load a calibration.

    ``None`` or ``"default"``: ``./calibration/default/`` when the working directory has one,
    else the copy packaged with imsim (``imsim/inputs/data/calibration/default``). ``"none"`` or
    ``"direct"``: ``None`` (the caller uses the direct fit). A name: ``./calibration/<name>/``.
    Otherwise a folder path. A missing or malformed folder raises :class:`InputError`; a fit made
    from other packaged data loads with a warning (``.stale`` is True).
    """
    if name_or_path is not None and str(name_or_path).lower() in ("none", "direct"):
        return None
    if name_or_path is None or str(name_or_path) == "default":
        local = Path("calibration") / "default"
        if (local / "calibration.json").is_file():
            cal = CalibratedTargets.load(local)
        else:
            pkg = _packaged_default()
            if not pkg.joinpath("calibration.json").is_file():
                return None
            cal = CalibratedTargets.load(pkg)
            cal.path = "packaged:imsim/inputs/data/calibration/default"
    else:
        p = Path(name_or_path)
        if not (p / "calibration.json").is_file():
            alt = Path("calibration") / str(name_or_path)
            if (alt / "calibration.json").is_file():
                p = alt
            else:
                raise InputError("no calibration here (expected a folder with calibration.json "
                                 "written by 'imsim calibrate')", file=str(name_or_path))
        cal = CalibratedTargets.load(p)
    if cal.stale:
        warnings.warn(f"calibration {cal.path} was fitted to other data (data hash "
                      f"{cal.meta.get('data_hash')}); refit with 'imsim calibrate'", stacklevel=2)
    return cal


# =============================================================================================
# Calibrate: fit, report, write
# =============================================================================================

def build_targets(obs: Observations, settings: dict | None = None, name: str = "default",
                  rate_fit: RateFit | None = None) -> tuple[CalibratedTargets, dict]:
    """Fit both stages to ``obs``; return the targets and fit diagnostics."""
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
    cal = CalibratedTargets(point, rf.lo, rf.hi, rf.draws, share, ga_shift, cells, meta)
    return cal, {"rate_fit": rf, "ga": ga_info, "cause": c_info}


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
        Run the 2016-2017 back-test and write it beside the fit.
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
national race); 'suppressed'/'missing' rows drop the packaged value of that cell; single-year
2013-2017 state rows replace the back-test observations; 'births' rows for 2013-2015 replace the
births the fit weights a cell by. Other rows are ignored (listed in calibration.json 'notes').

Writes calibration.json, cells.csv, races.csv, states.csv, imr_draws.csv (what a run loads),
fit_report.csv/png and backtest.csv/png into a new folder (default
calibration/<targets name or 'fit'>-<timestamp>/). An existing --out is refused unless it is a
calibration folder and --replace is given (maintainers: imsim calibrate --out calibration/default
--replace --package-copy). Nothing is written if anything fails.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``imsim calibrate`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "calibrate", help="fit the baseline to observed 2013-2015 rates (with uncertainty)",
        description="Fit the baseline to the observed 2013-2015 targets: IMR by state x race "
                    "(partial pooling: national race x state effect, so small and suppressed "
                    "cells get shrunk estimates with honest intervals), state and national "
                    "totals, preterm rates, the neonatal/postneonatal split and SUID by race. "
                    "Writes the fit with K posterior draws per cell, a fit report and a back-test "
                    "(2016-2017).",
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
    p.add_argument("--no-backtest", action="store_true", help="skip the 2016-2017 back-test")
    p.add_argument("--package-copy", action="store_true",
                   help=argparse.SUPPRESS)  # maintainers: also copy into imsim/inputs/data/calibration/
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_calibrate)
    return p


def cmd_calibrate(args) -> int:
    """Run ``imsim calibrate``; returns the exit code (InputError propagates: exit 2)."""
    if args.draws < 2:
        raise InputError(f"--draws must be at least 2, got {args.draws}")
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
    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    from imsim.calibration.backtest import add_backtest_parser

    add_backtest_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
