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


def save_result(result, out_dir: str | os.PathLike | None = None, figures: bool = True,
                report: bool = True) -> Path:
    """Write all tables, the resolved scenario, manifest, figures and report, atomically.

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
        Write ``report.html``.

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

    with atomic_folder(out_dir, name=result.scenario.name, parent=RESULTS) as st:
        tmp = st.tmp
        t0 = time.perf_counter()
        for name in TABLES:
            _write_csv(result.table(name), tmp / f"{name}.csv")
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
        result.timings["save_s"] = time.perf_counter() - t0
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(manifest(result), fh, indent=2)
    return st.out
