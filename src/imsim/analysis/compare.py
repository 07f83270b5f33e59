"""The differences of two run folders (``imsim compare RUN_A RUN_B``): the computation.

Each run folder (written by ``imsim run``, see README "Outputs") holds ``summary.csv``,
``by_year.csv``, ``disparities.csv``, ``scenario.resolved.yaml`` and ``manifest.json``. This
module reads two of them, checks that they cover the same states x races and years, and returns
one table per state x race with each headline quantity of A, of B and ``<quantity>_diff``
(B minus A):

``deaths_baseline, deaths_scenario, deaths_averted, imr_baseline, imr_scenario, preterm_averted,
gap_closed_pct, rate_difference_change`` (the last from ``disparities.csv``: the change of the
rate difference to the NH white rate that the scenario makes; empty on NH white and ``race=ALL``
rows).

**Paired intervals.** Two runs' draws match when their manifests record the same seed, engine,
replicates (> 1) and calibration (name and hashes): then draw *d* of A and draw *d* of B use the
same evidence values and calibration draw, and the difference of the runs is itself paired draw
by draw. The run folders do not store per-draw values, so both resolved scenarios are re-run
(:func:`imsim.analysis.runner.run` with the recorded seed, replicates, engine and calibration) and
``<quantity>_diff_lo``/``_hi`` are the 2.5th-97.5th percentiles of the per-draw differences. The
re-run must reproduce the stored point values (draw 0) -- if the packaged data or calibration
changed since, it does not, and no interval is given. When the draws do not match, the
``note`` column says why and the interval columns are empty (the difference of two independent
intervals is not the interval of the difference). Point values are always the stored ones.

The writing (``compare.csv``, ``compare.html``) is :mod:`imsim.output.comparefolder`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.errors import InputError

__all__ = ["QUANTITIES", "CompareResult", "RunFolder", "compare_runs", "draws_match",
           "load_run", "per_draw"]

#: Headline quantities compared (all per state x race, summed over the horizon).
QUANTITIES = ("deaths_baseline", "deaths_scenario", "deaths_averted", "imr_baseline",
              "imr_scenario", "preterm_averted", "gap_closed_pct", "rate_difference_change")

#: Files a run folder must have.
RUN_FILES = ("summary.csv", "by_year.csv", "disparities.csv", "scenario.resolved.yaml",
             "manifest.json")

#: Relative tolerance for "the re-run reproduces the stored point value": the run folder writes
#: six significant digits (``float_format="%.6g"``), so a faithful re-run differs by < 5e-6.
REPRODUCE_RTOL = 2e-5

#: Births before 37 weeks: the first four GA bands (<28, 28-31, 32-33, 34-36), as in
#: :mod:`imsim.analysis.results`.
PRETERM_BANDS = 4


@dataclass
class RunFolder:
    """One run folder, read.

    Attributes
    ----------
    path : Path
        The folder.
    summary, by_year, disparities : pandas.DataFrame
        Its tables.
    scenario : dict
        ``scenario.resolved.yaml``.
    manifest : dict
        ``manifest.json``.
    """

    path: Path
    summary: pd.DataFrame
    by_year: pd.DataFrame
    disparities: pd.DataFrame
    scenario: dict
    manifest: dict

    @property
    def label(self) -> str:
        """The scenario name and folder, for headings."""
        return f"{self.manifest.get('scenario', self.scenario.get('name', '?'))} ({self.path.name})"


@dataclass
class CompareResult:
    """The comparison of run A and run B.

    Attributes
    ----------
    a, b : RunFolder
        The runs (differences are B minus A).
    table : pandas.DataFrame
        ``state, race``, then per quantity ``<q>_a, <q>_b, <q>_diff, <q>_diff_lo, <q>_diff_hi``,
        then ``paired`` and ``note``.
    paired : bool
        Whether paired intervals were computed.
    notes : list of str
        Why there is no interval, or how the interval was made.
    """

    a: RunFolder
    b: RunFolder
    table: pd.DataFrame
    paired: bool
    notes: list[str] = field(default_factory=list)


def load_run(path) -> RunFolder:
    """Read a run folder written by ``imsim run``.

    Raises
    ------
    InputError
        When ``path`` is missing, not a folder, or lacks a run folder's files.
    """
    import yaml

    from imsim.core.validation import parse_yaml, read_text_file

    p = Path(path)
    if not p.exists():
        raise InputError("run folder not found", file=str(p))
    if not p.is_dir():
        raise InputError("not a folder; give a run folder written by `imsim run`", file=str(p))
    missing = [f for f in RUN_FILES if not (p / f).is_file()]
    if missing:
        raise InputError(f"not a run folder (missing {', '.join(missing)}); give a folder "
                         "written by `imsim run`", file=str(p))
    try:
        summary = pd.read_csv(p / "summary.csv", keep_default_na=False, na_values=[""])
        by_year = pd.read_csv(p / "by_year.csv", keep_default_na=False, na_values=[""])
        disp = pd.read_csv(p / "disparities.csv", keep_default_na=False, na_values=[""])
        manifest = json.loads((p / "manifest.json").read_text(encoding="utf-8"))
        scenario = parse_yaml(read_text_file(p / "scenario.resolved.yaml", "resolved scenario"),
                              p / "scenario.resolved.yaml", "resolved scenario")
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read run folder: {str(exc).splitlines()[0]}",
                         file=str(p)) from None
    need = {"state", "race", *[q for q in QUANTITIES if q != "rate_difference_change"]}
    if not need <= set(summary.columns) or not {"state", "race", "rate_difference_change"} \
            <= set(disp.columns) or "year" not in by_year.columns:
        raise InputError("not a run folder (summary.csv/disparities.csv/by_year.csv lack "
                         "their columns)", file=str(p))
    if not isinstance(manifest, dict) or not isinstance(scenario, dict):
        raise InputError("not a run folder (manifest.json or scenario.resolved.yaml is not a "
                         "mapping)", file=str(p))
    for df in (summary, disp):
        df["state"] = df["state"].astype(str)
        df["race"] = df["race"].astype(str)
    return RunFolder(p, summary, by_year, disp, scenario, manifest)


def _check_same_cells(a: RunFolder, b: RunFolder) -> None:
    sa, sb = set(a.summary.state), set(b.summary.state)
    if sa != sb:
        only = sorted(sa ^ sb)
        raise InputError(f"the runs cover different states ({', '.join(only[:6])}"
                         f"{'...' if len(only) > 6 else ''} in only one); compare runs of the "
                         f"same states", file=f"{a.path} vs {b.path}")
    ya, yb = sorted(set(a.by_year.year)), sorted(set(b.by_year.year))
    if ya != yb:
        raise InputError(f"the runs cover different years ({ya[0]}-{ya[-1]} vs {yb[0]}-{yb[-1]}); "
                         "compare runs of the same years", file=f"{a.path} vs {b.path}")
    ka = set(zip(a.summary.state, a.summary.race))
    kb = set(zip(b.summary.state, b.summary.race))
    if ka != kb:
        raise InputError("the runs cover different state x race rows; compare runs of the same "
                         "states", file=f"{a.path} vs {b.path}")


def _cal_key(m: dict):
    d = m.get("calibration_detail") or {}
    return (m.get("calibration"), d.get("data_hash"), d.get("targets_hash"))


def draws_match(a: dict, b: dict) -> tuple[bool, str]:
    """Whether two manifests' uncertainty draws are the same draws (so can be paired).

    Returns
    -------
    (bool, str)
        True and ``""``, or False and one line saying what differs.
    """
    diffs = [f"{k} {a.get(k)} vs {b.get(k)}" for k in ("seed", "engine", "replicates")
             if a.get(k) != b.get(k)]
    if _cal_key(a) != _cal_key(b):
        diffs.append(f"calibration {a.get('calibration')} vs {b.get('calibration')}"
                     if a.get("calibration") != b.get("calibration")
                     else "calibration hashes differ")
    if diffs:
        return False, "draws do not match (" + "; ".join(diffs) + "): no paired interval"
    if int(a.get("replicates") or 1) <= 1:
        return False, "point estimates only (replicates 1): no interval"
    return True, ""


def per_draw(result) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Each compared quantity per draw and state x race group of a run.

    Returns
    -------
    keys : list of dict
        ``{"state", "race"}`` per group (as in ``summary.csv``).
    values : dict of str to numpy.ndarray
        Quantity -> float64 ``[n_draws, n_groups]`` (draw 0: the point); NaN where undefined
        (gap on NH white rows or without a gap; rate difference change on NH white and
        ``race=ALL`` rows).
    """
    from imsim.analysis.results import gap_closed_pct
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
    from imsim.core.constants import ALL, RACES, STATES

    # The groups of summary.csv: each state x race, state x ALL, ALL x race, ALL x ALL.
    cells = result.inputs.cells
    st = np.asarray(STATES)[cells.s_idx]
    rc = np.asarray(RACES)[cells.r_idx]
    keys, idx = [], []
    for s_ in [s for s in STATES if s in set(st)] + [ALL]:
        smask = (st == s_) if s_ != ALL else np.ones(cells.n, bool)
        for r_ in [*RACES, ALL]:
            mask = smask & ((rc == r_) if r_ != ALL else True)
            keys.append({"state": s_, "race": r_})
            idx.append(np.flatnonzero(mask))

    def agg(arr, lo, n):                      # [D, n_cells, K] -> [D, G], columns lo:lo+n
        x = arr[..., lo:lo + n].sum(axis=-1)
        return np.stack([x[:, i].sum(axis=1) for i in idx], axis=1)

    births = agg(result.arms.baseline, OUT_BIRTHS, N_BANDS)
    db = agg(result.arms.baseline, OUT_DEATHS, 3 * N_BANDS)
    ds = agg(result.arms.scenario, OUT_DEATHS, 3 * N_BANDS)
    pre_b = agg(result.arms.baseline, OUT_BIRTHS, PRETERM_BANDS)
    pre_s = agg(result.arms.scenario, OUT_BIRTHS, PRETERM_BANDS)
    with np.errstate(invalid="ignore", divide="ignore"):
        rb = np.where(births > 0, 1000.0 * db / births, np.nan)
        rs = np.where(births > 0, 1000.0 * ds / births, np.nan)
    pos = {(k["state"], k["race"]): g for g, k in enumerate(keys)}
    w = np.array([pos[(k["state"], "nh_white")] for k in keys])
    rd_b, rd_s = rb - rb[:, w], rs - rs[:, w]
    white = np.array([k["race"] == "nh_white" for k in keys])
    gap = gap_closed_pct(rd_b, rd_s)
    gap[:, white] = np.nan
    rdc = rd_s - rd_b
    rdc[:, white | np.array([k["race"] == "ALL" for k in keys])] = np.nan
    values = {"deaths_baseline": db, "deaths_scenario": ds, "deaths_averted": db - ds,
              "imr_baseline": rb, "imr_scenario": rs,
              "preterm_averted": pre_b - pre_s, "gap_closed_pct": gap,
              "rate_difference_change": rdc}
    return keys, values


def _rerun(folder: RunFolder):
    """Re-run a folder's resolved scenario with its recorded seed, replicates, engine, calibration."""
    from imsim.analysis.runner import run
    from imsim.config.scenario import parse_scenario

    m = folder.manifest
    scenario = parse_scenario(folder.scenario, file=str(folder.path / "scenario.resolved.yaml"))
    detail = m.get("calibration_detail") or {}
    if detail:
        path = detail.get("path")
        cal = path if path and Path(path).is_dir() else detail.get("name")
    else:
        cal = "direct"
    return run(scenario, engine=m.get("engine"), seed=m.get("seed"),
               replicates=m.get("replicates"), calibration=cal)


def _reproduces(folder: RunFolder, keys, values) -> bool:
    s = folder.summary.set_index(["state", "race"])
    for q in ("deaths_baseline", "deaths_scenario", "imr_baseline"):
        stored = np.array([s.loc[(k["state"], k["race"]), q] for k in keys], dtype=float)
        if not np.allclose(values[q][0], stored, rtol=REPRODUCE_RTOL, atol=1e-9, equal_nan=True):
            return False
    return True


def _interval(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5th-97.5th percentiles over draws 1..R of ``diff[D, G]``, ignoring undefined draws."""
    draws = diff[1:]
    lo = np.full(diff.shape[1], np.nan)
    hi = np.full(diff.shape[1], np.nan)
    ok = np.isfinite(draws).any(axis=0) & np.isfinite(diff[0])
    if ok.any():
        lo[ok] = np.nanpercentile(draws[:, ok], 2.5, axis=0)
        hi[ok] = np.nanpercentile(draws[:, ok], 97.5, axis=0)
    return lo, hi


def compare_runs(run_a, run_b, *, paired: bool = True) -> CompareResult:
    """Compare two run folders: B minus A per state x race, with paired intervals if possible.

    Parameters
    ----------
    run_a, run_b : path or RunFolder
        Run folders written by ``imsim run``.
    paired : bool
        Re-run both scenarios for paired intervals when their draws match (False: point
        differences only, with a note).

    Returns
    -------
    CompareResult

    Raises
    ------
    InputError
        For a missing folder, a folder that is not a run folder, or runs of different states,
        races or years.
    """
    a = run_a if isinstance(run_a, RunFolder) else load_run(run_a)
    b = run_b if isinstance(run_b, RunFolder) else load_run(run_b)
    _check_same_cells(a, b)
    keys = list(zip(a.summary.state, a.summary.race))
    out = pd.DataFrame({"state": [k[0] for k in keys], "race": [k[1] for k in keys]})

    def col(folder: RunFolder, q: str) -> np.ndarray:
        src = folder.disparities if q == "rate_difference_change" else folder.summary
        s = src.set_index(["state", "race"])[q]
        return np.array([s.get(k, np.nan) for k in keys], dtype=float)

    for q in QUANTITIES:
        va, vb = col(a, q), col(b, q)
        out[f"{q}_a"], out[f"{q}_b"], out[f"{q}_diff"] = va, vb, vb - va
        out[f"{q}_diff_lo"] = np.nan
        out[f"{q}_diff_hi"] = np.nan
    ok, note = draws_match(a.manifest, b.manifest)
    notes = []
    if ok and not paired:
        ok, note = False, "paired intervals not asked for (--no-intervals)"
    if ok:
        ra = _rerun(a)
        rb = ra if a.path.resolve() == b.path.resolve() else _rerun(b)
        ka, va = per_draw(ra)
        kb, vb = per_draw(rb)
        if not (_reproduces(a, ka, va) and _reproduces(b, kb, vb)):
            ok, note = False, ("re-running the resolved scenarios does not reproduce the stored "
                               "values (packaged data or calibration changed since the runs): "
                               "no paired interval")
        else:
            ga = {(k["state"], k["race"]): g for g, k in enumerate(ka)}
            gb = {(k["state"], k["race"]): g for g, k in enumerate(kb)}
            ia = np.array([ga[k] for k in keys])
            ib = np.array([gb[k] for k in keys])
            for q in QUANTITIES:
                lo, hi = _interval(vb[q][:, ib] - va[q][:, ia])
                defined = np.isfinite(out[f"{q}_diff"].to_numpy())
                out[f"{q}_diff_lo"] = np.where(defined, lo, np.nan)
                out[f"{q}_diff_hi"] = np.where(defined, hi, np.nan)
            n = int(a.manifest.get("replicates"))
            notes.append(f"paired: both runs re-run with seed {a.manifest.get('seed')}, "
                         f"{n} replicates, {a.manifest.get('engine')} engine, "
                         f"{a.manifest.get('calibration')}; intervals are the 2.5th-97.5th "
                         f"percentiles of the {n} per-draw differences B - A")
    if not ok:
        notes.append(note)
    out["paired"] = ok
    out["note"] = "" if ok else note
    return CompareResult(a, b, out, ok, notes)
