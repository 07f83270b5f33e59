"""A run's results folder: every table, the resolved scenario, figures, report and manifest.

A run is computed by :func:`imsim.analysis.runner.run` and its tables by
:mod:`imsim.analysis.results`; this module writes them. The folder is new for every run
(default ``results/<name>-<timestamp>/``, never reused) and built atomically (see
:mod:`imsim.core.folders`): an interrupted save leaves nothing that looks complete. The manifest
records what is needed to reproduce the numbers: seed, engine, draws, package and dependency
versions, data and calibration hashes, timings.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from imsim.analysis.results import TABLES
from imsim.core.folders import atomic_folder, new_folder

#: Where default run folders go (relative to the working directory).
RESULTS = "results"


def default_out_dir(result) -> Path:
    """Claim a fresh ``results/<name>-<timestamp>/`` folder for ``result`` (created empty).

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        The run; its scenario names the folder.

    Returns
    -------
    Path
        The new, empty folder, with ``-2``, ``-3``... appended if that second's name is taken
        (see :func:`imsim.core.folders.new_folder`). :func:`save_result` without ``out_dir``
        claims its own; this is for callers that need the name first.
    """
    return new_folder(result.scenario.name, RESULTS)


def manifest(result) -> dict:
    """Return what reproduces ``result``: seed, engine, draws, versions, hashes, timings.

    Also ``warnings``: the run's one-line warnings (e.g. Medicaid expansion asked for where
    the state had already expanded; empty list when none).

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.

    Returns
    -------
    dict
        JSON-ready; ``timings_s`` in seconds, ``data_hash`` of the packaged data,
        ``calibration`` and ``calibration_detail`` (name, path, hashes, staleness).
    """
    from importlib import metadata

    from imsim.core.version import __version__
    from imsim.inputs.data import data_hash

    versions = {}
    for pkg in ("numpy", "pandas", "numba", "scipy", "pydantic", "PyYAML", "mesa", "SALib",
                "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "imsim_version": __version__,
        "scenario": result.scenario.name,
        "scenario_file": result.scenario.source,
        "engine": result.engine,
        "seed": result.seed,
        "replicates": result.replicates,
        "draws": int(result.arms.baseline.shape[0]),
        "cells": int(result.inputs.cells.n),
        "births": int(result.inputs.cells.births.sum()),
        "data_hash": data_hash(),
        "calibration": result.fit_source,
        "calibration_detail": _calibration_meta(result.inputs.calibration),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "dependencies": versions,
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "warnings": list(getattr(result, "warnings", [])),
    }


def _calibration_meta(cal) -> dict | None:
    if cal is None:
        return None
    meta = getattr(cal, "meta", {}) or {}
    return {"name": cal.name, "path": str(getattr(cal, "path", "")),
            "data_hash": meta.get("data_hash"), "targets_hash": meta.get("targets_hash"),
            "stale": bool(getattr(cal, "stale", False))}


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.6g")


def whole(x) -> str:
    """A count of deaths as a whole number with thousands separators (``-0`` shown as ``0``)."""
    return f"{round(float(x)) + 0:,.0f}"


def headline_text(result, row) -> str:
    """The headline of a summary row in words: deaths averted, the statistic, the interval.

    With at least :data:`imsim.analysis.results.MIN_INTERVAL_DRAWS` draws: ``"1,234 deaths
    averted (median of 200 paired draws; 95% interval 648 to 1,466; point estimate 1,271)"``,
    the median and interval from the same draws; below it, the point (draw 0, evidence point
    values) and why no interval is shown. Deaths are whole numbers (the CSVs keep full precision).
    """
    from imsim.analysis.results import headline

    h = headline(result, row)
    if h["statistic"] == "median":
        return (f"{whole(h['value'])} deaths averted (median of {h['draws']} paired draws; 95% "
                f"interval {whole(h['lo'])} to {whole(h['hi'])}; point estimate "
                f"{whole(h['point'])})")
    return (f"{whole(h['value'])} deaths averted (point estimate at the evidence point values; "
            f"{h['note']})")


def _num(x):
    """JSON-ready float: None for NaN."""
    x = float(x)
    return None if x != x else x


def results_json(result) -> dict:
    """The headline numbers of a run, machine-readable (``results.json``).

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.

    Returns
    -------
    dict
        ``deaths_averted`` (the headline of the ``ALL``/``ALL`` summary row: ``value``,
        ``statistic``, ``lo``/``hi`` or None, ``point``, ``median``, ``draws``,
        ``interval_reliable``, ``note``), ``births``, ``deaths_baseline``, ``imr_by_race``
        (national, before and after, with ``race=ALL``), ``disparities`` (national rate
        difference to NH white before and after, its change and ``gap_closed_pct``, with
        intervals), and ``scenario``, ``engine``, ``seed``, ``replicates``, ``draws``. Values
        agree with ``summary.csv`` and ``disparities.csv``; NaN is null.
    """
    from imsim.analysis.results import MIN_INTERVAL_DRAWS, headline, interval_reliable, n_draws

    s = result.summary
    nat = s[s.state == "ALL"]
    tot = nat[nat.race == "ALL"].iloc[0]
    ok = interval_reliable(result)
    disp = result.table("disparities")
    disp = disp[disp.state == "ALL"]
    dis = []
    for _, r in disp.iterrows():
        d = {"race": r.race}
        for c in ("rate_difference_baseline", "rate_difference_scenario",
                  "rate_difference_change", "gap_closed_pct"):
            d[c] = _num(r[c])
        for c in ("rate_difference_change", "gap_closed_pct"):
            d[f"{c}_median"] = _num(r[f"{c}_median"])
            d[f"{c}_lo"] = _num(r[f"{c}_lo"]) if ok else None
            d[f"{c}_hi"] = _num(r[f"{c}_hi"]) if ok else None
        dis.append(d)
    return {
        "scenario": result.scenario.name, "engine": result.engine, "seed": result.seed,
        "replicates": result.replicates, "draws": n_draws(result),
        "min_draws_for_interval": MIN_INTERVAL_DRAWS, "interval_reliable": ok,
        "interval": "2.5th-97.5th percentiles of the paired draws 1..R",
        "years": list(result.scenario.years), "states": list(result.scenario.state_list),
        "births": int(tot.births), "deaths_baseline": _num(tot.deaths_baseline),
        "deaths_scenario": _num(tot.deaths_scenario),
        "deaths_averted": headline(result, tot),
        "imr_by_race": [{"race": r.race, "imr_baseline": _num(r.imr_baseline),
                         "imr_scenario": _num(r.imr_scenario),
                         "imr_change_pct": _num(r.imr_change_pct)}
                        for _, r in nat.iterrows()],
        "disparities": dis,
    }


def evidence_used(result) -> pd.DataFrame:
    """Every evidence id with the value draw 0 used (``evidence_used.csv``).

    Columns ``id, value, point, dist, lo, hi, scale, overridden, assumption``: ``value`` is what
    draw 0 used (the library point, or the scenario's ``effects:`` override, which also fixes
    every draw); ``point``/``dist``/``lo``/``hi`` describe the library's distribution.
    """
    ev = result.inputs.evidence
    used = result.effects[0] if result.effects else ev.point()
    point = ev.point()
    rows = []
    for k in ev.ids:
        e = ev.effects[k]
        rows.append({"id": k, "value": float(used.get(k, point[k])), "point": e.point,
                     "dist": e.dist, "lo": e.lo, "hi": e.hi, "scale": e.scale,
                     "overridden": k in ev.overrides, "assumption": bool(e.assumption)})
    return pd.DataFrame(rows, columns=["id", "value", "point", "dist", "lo", "hi", "scale",
                                       "overridden", "assumption"])


#: Columns that always hold a number (intervals, medians and shares of a gap may be empty).
_ALWAYS_NUMBERS = ("births", "deaths_baseline", "deaths_scenario", "deaths_averted",
                   "imr_baseline", "imr_scenario")


def check_finite(result) -> None:
    """Refuse a result whose tables hold an infinite value or an empty point estimate.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        The run about to be written.

    Raises
    ------
    InputError
        Naming the table, column and first row (state, race) -- nothing is written then.
    """
    import numpy as np

    from imsim.core.errors import InputError

    for name in TABLES:
        table = result.table(name)
        for col in table.select_dtypes("number").columns:
            v = table[col].to_numpy(dtype=float)
            bad = np.isinf(v) | (np.isnan(v) if col in _ALWAYS_NUMBERS else False)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                row = ", ".join(f"{k} {table[k].iloc[i]}" for k in ("state", "race", "year")
                                if k in table.columns)
                raise InputError(f"the run gave a non-finite {col} ({v[i]}) in {name} "
                                 f"({row}; {int(bad.sum())} row(s)); nothing was written -- "
                                 "check the scenario's effects and exposures",
                                 file=result.scenario.source)


def save_result(result, out_dir: str | os.PathLike | None = None, figures: bool = True,
                report: bool = True) -> Path:
    """Write all tables, the resolved scenario, manifest, figures and report, atomically.

    Also ``results.json`` (:func:`results_json`, the headline numbers) and
    ``evidence_used.csv`` (:func:`evidence_used`).

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        The run to write.
    out_dir : path, optional
        The folder to create; it must not exist or be empty. Default: a fresh
        ``results/<name>-<timestamp>/``.
    figures : bool
        Draw the figures (``figures/*.png``).
    report : bool
        Write ``report.html`` and one page per state, ``states/<ST>.html``.

    Returns
    -------
    Path
        The folder written.

    Raises
    ------
    InputError
        When ``out_dir`` exists and is not empty (checked before anything is written).
    """
    import yaml

    check_finite(result)                     # before anything is written
    with atomic_folder(out_dir, name=result.scenario.name, parent=RESULTS) as st:
        tmp = st.tmp
        t0 = time.perf_counter()
        for name in TABLES:
            _write_csv(result.table(name), tmp / f"{name}.csv")
        evidence_used(result).to_csv(tmp / "evidence_used.csv", index=False)
        with open(tmp / "results.json", "w", encoding="utf-8") as fh:
            json.dump(results_json(result), fh, indent=2, allow_nan=False)
        with open(tmp / "scenario.resolved.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(result.scenario.resolved(engine=result.engine, seed=result.seed,
                                                    replicates=result.replicates),
                           fh, sort_keys=False)
        if figures:
            from imsim.output.figures import write_figures

            write_figures(result, tmp)
        if report:
            from imsim.output.report import write_report

            write_report(result, tmp)
            from imsim.output.statepages import write_state_pages

            write_state_pages(result, tmp)
        result.timings["save_s"] = time.perf_counter() - t0
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(manifest(result), fh, indent=2)
    return st.out
