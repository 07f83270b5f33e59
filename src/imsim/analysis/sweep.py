"""``imsim sweep``: run a sensitivity sweep (SALib Sobol, Morris) or a probabilistic analysis.

The sweep file and its parameter distributions are defined in :mod:`imsim.config.sweepfile`; the
indices, tables, figures and report in :mod:`imsim.analysis.sensitivity`. This module runs a sweep.
Rows are evaluated in fixed chunks (boundaries independent of the executor) on a local process
pool or a Dask cluster; each finished chunk is written atomically to ``<out>.partial/chunks/`` so
``--resume`` redoes nothing, and the results are renamed to ``<out>`` only when everything is
written. Folder names and atomic writes follow :mod:`imsim.core.folders`: an existing, non-empty
``--out`` is refused before any evaluation, and default names never collide.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from imsim.core.errors import InputError
from imsim.core.folders import PARTIAL, atomic_file, check_new, new_folder, publish
from imsim.analysis.sensitivity import analyse, tornado, write_outputs
from imsim.config.sweepfile import (
    DEFAULT_CHUNK,
    DISTS,
    METHODS,
    SPEC_KEYS,
    TOP_KEYS,
    Dist,
    Sweep,
    load_sweep,
)

__all__ = ["DEFAULT_CHUNK", "DISTS", "METHODS", "SPEC_KEYS", "TOP_KEYS", "Dist", "Sweep",
           "add_parser", "cmd_sweep", "load_sweep", "main", "run_sweep"]


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------

def _eval_chunk(evaluator, X):
    """Evaluate one chunk (runs in a worker; numba kept single-threaded)."""
    try:
        import numba

        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    return np.asarray(evaluator(X), dtype=float)


def _worker_init():
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import numba

        numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (``.npy``) atomically: a crash never leaves a truncated chunk."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def _atomic_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _partial_of(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL)


def run_sweep(sweep: Sweep | str | os.PathLike, out=None, workers: int | None = None,
              scheduler: str | None = None, resume=None, evaluator=None, progress: bool = True,
              figures: bool = True, on_chunk=None) -> dict:
    """Run a sweep and write its results folder.

    Parameters
    ----------
    sweep : Sweep or path
        A validated sweep or a sweep file to load.
    out : path, optional
        The results folder; must not exist or be empty (checked before anything is evaluated).
        Default: a fresh ``results/<name>-<time>/`` (``-2``, ``-3``... if taken).
    workers : int, optional
        Local worker processes (default: all cores; 1 evaluates in this process).
    scheduler : str, optional
        A Dask scheduler address (``tcp://host:port``); used instead of local processes.
    resume : path, optional
        An interrupted sweep's ``<out>.partial`` folder (or ``<out>``) to finish.
    evaluator : callable, optional
        Replaces the imsim model by any picklable callable ``X[k, P] -> Y[k, O]`` (tests use
        SALib's Ishigami function).
    progress : bool
        Show a progress bar.
    figures : bool
        Draw the figures.
    on_chunk : callable, optional
        ``on_chunk(i)`` is called in the parent after chunk ``i`` is saved (tests use it to
        simulate an interruption).

    Returns
    -------
    dict
        ``out`` (Path), ``evaluations`` (rows in the design), ``evaluated`` (rows evaluated in
        this run), ``manifest`` (dict; timings in seconds), ``indices`` (see
        :func:`imsim.analysis.sensitivity.analyse`), ``Y`` float64 ``[n_rows, O]`` and ``X``
        float64 ``[n_rows, P]``.

    Raises
    ------
    InputError
        For an existing, non-empty ``out``, an interrupted sweep in ``<out>.partial`` (without
        ``resume``), a ``resume`` folder that is missing, finished or from a changed sweep
        file, ``workers < 1``, an invalid sweep file or an unreachable Dask scheduler.
    """
    t_start = time.perf_counter()
    # Folders first: an existing --out is refused before anything is read or evaluated.
    if resume is not None:
        r = Path(resume)
        if r.name.endswith(".partial"):
            partial, out_dir = r, r.with_name(r.name[: -len(".partial")])
        else:
            out_dir, partial = r, _partial_of(r)
        if out is not None and Path(out) != out_dir:
            raise InputError(f"--out {out} does not match --resume {resume}")
        if not partial.is_dir():
            if out_dir.exists() and (out_dir / "manifest.json").exists():
                raise InputError("this sweep already finished; nothing to resume",
                                 file=str(out_dir))
            raise InputError("no interrupted sweep here (expected a folder "
                             f"{partial.name}/ with chunks)", file=str(partial))
        if not (partial / "sweep.json").is_file():
            raise InputError("not a resumable sweep (no sweep.json); delete it and rerun",
                             file=str(partial))
        check_new(out_dir)
    elif out is not None:
        out_dir = Path(out)
        partial = _partial_of(out_dir)
        if partial.exists():
            raise InputError(f"an interrupted sweep is in {partial}; finish it with --resume "
                             f"{partial} or delete it", file=str(out_dir))
        check_new(out_dir)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if evaluator is None:
        from imsim.analysis.evaluate import Evaluator

        evaluator = Evaluator(sweep.scenario, sweep.param_ids, sweep.outputs)
    dhash = sweep.definition_hash()
    if resume is not None:
        meta = json.loads((partial / "sweep.json").read_text())
        if meta.get("hash") != dhash:
            raise InputError("the sweep file changed since this sweep started (definition "
                             "hash differs); rerun it from scratch", file=str(partial))
        X = np.load(partial / "X.npy")
        Q = np.load(partial / "Q.npy")
    else:
        if out is None:          # claim results/<name>-<time>[-k].partial/ (never collides)
            out_dir = new_folder(sweep.name, "results", suffix=PARTIAL)
            partial = _partial_of(out_dir)
        else:
            try:
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.mkdir()
            except FileExistsError:
                raise InputError(f"another sweep started in {partial} meanwhile",
                                 file=str(out_dir)) from None
        try:   # until sweep.json exists the folder is not resumable: remove it on failure
            Q = sweep.unit_sample()
            X = sweep.transform(Q)
            (partial / "chunks").mkdir()
            _atomic_save(partial / "Q.npy", Q)
            _atomic_save(partial / "X.npy", X)
            if sweep.file:
                with atomic_file(partial / "sweep.yaml") as tmp:
                    shutil.copyfile(sweep.file, tmp)
            _atomic_text(partial / "sweep.json", json.dumps(
                {"hash": dhash, "resolved": sweep.resolved()}, indent=2, default=str))
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    chunks_dir = partial / "chunks"
    n_rows = X.shape[0]
    cs = sweep.chunk_size
    bounds = [(a, min(a + cs, n_rows)) for a in range(0, n_rows, cs)]
    done = {}
    for i in range(len(bounds)):
        f = chunks_dir / f"chunk-{i:05d}.npy"
        if f.exists():
            done[i] = np.load(f)
    todo = [i for i in range(len(bounds)) if i not in done]
    n_workers = workers or os.cpu_count() or 1
    executor = "dask" if scheduler else ("local" if n_workers == 1 else "processes")
    t_eval = time.perf_counter()
    evaluated = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(bounds), initial=len(done), desc=f"sweep {sweep.name}",
                   unit="chunk", dynamic_ncols=True)

    def finish(i, Y):
        nonlocal evaluated
        _atomic_save(chunks_dir / f"chunk-{i:05d}.npy", Y)
        done[i] = Y
        evaluated += bounds[i][1] - bounds[i][0]
        if bar is not None:
            bar.update(1)
        if on_chunk is not None:
            on_chunk(i)

    try:
        if todo:
            if executor == "local":
                for i in todo:
                    a, b = bounds[i]
                    finish(i, _eval_chunk(evaluator, X[a:b]))
            elif executor == "processes":
                _run_pool(evaluator, X, bounds, todo, n_workers, finish)
            else:
                n_workers = _run_dask(evaluator, X, bounds, todo, scheduler, finish)
    finally:
        if bar is not None:
            bar.close()
    t_eval = time.perf_counter() - t_eval
    Y = np.concatenate([done[i] for i in range(len(bounds))]) if bounds else np.zeros((0, 0))
    # Analysis and files, written into the partial folder, then renamed.
    t_an = time.perf_counter()
    res = analyse(sweep, Q, X, Y)
    bars = tornado(sweep, evaluator)
    stage = partial / "results"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    write_outputs(stage, sweep, X, Y, res, bars, figures)
    t_an = time.perf_counter() - t_an
    total = time.perf_counter() - t_start
    results_hash = hashlib.sha256(np.ascontiguousarray(X).tobytes()
                               + np.ascontiguousarray(Y).tobytes()).hexdigest()
    manifest = {
        "name": sweep.name, "method": sweep.method, "samples": sweep.samples,
        "seed": sweep.seed, "second_order": sweep.second_order,
        "parameters": sweep.param_ids, "outputs": sweep.outputs,
        "evaluations": int(n_rows), "evaluated_this_run": int(evaluated),
        "chunks": len(bounds), "chunk_size": cs, "resumed_chunks": len(bounds) - len(todo),
        "executor": executor, "workers": n_workers, "scheduler": scheduler,
        "engine": "expected",
        "timings": {"evaluate_s": t_eval, "analysis_s": t_an, "total_s": total},
        "evaluations_per_second": (evaluated / t_eval) if evaluated and t_eval > 0 else None,
        "definition_hash": dhash, "results_hash": results_hash,
        "data_hash": _packaged_data_hash(),
        "scenario_file": sweep.scenario_path, "versions": _versions(),
    }
    _atomic_text(stage / "manifest.json", json.dumps(manifest, indent=2, default=str))
    shutil.copyfile(partial / "sweep.json", stage / "sweep.resolved.json")
    if (partial / "sweep.yaml").exists():
        shutil.copyfile(partial / "sweep.yaml", stage / "sweep.yaml")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    publish(stage, out_dir)          # refuses an out_dir that something else filled meanwhile
    shutil.rmtree(partial)
    return {"out": out_dir, "evaluations": int(n_rows), "evaluated": int(evaluated),
            "manifest": manifest, "indices": res, "Y": Y, "X": X}


def _mp_context():
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def _run_pool(evaluator, X, bounds, todo, n_workers, finish):
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from imsim.birth.engines import warm_up

    warm_up()  # compile / load the numba cache once, before workers read it
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context(),
                             initializer=_worker_init) as pool:
        pending = {}
        queue = list(todo)
        try:
            while queue or pending:
                while queue and len(pending) < 2 * n_workers:
                    i = queue.pop(0)
                    a, b = bounds[i]
                    pending[pool.submit(_eval_chunk, evaluator, X[a:b])] = i
                fin, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in fin:
                    i = pending.pop(fut)
                    finish(i, fut.result())
        except BaseException:
            for fut in pending:
                fut.cancel()
            raise


def _run_dask(evaluator, X, bounds, todo, scheduler, finish) -> int:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover
        raise InputError(f"--scheduler needs dask.distributed ({exc})") from None
    try:
        client = Client(scheduler, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    try:
        n = len(client.scheduler_info().get("workers", {})) or 1
        ev = client.scatter(evaluator, broadcast=True)
        futs = [client.submit(_eval_chunk, ev, X[bounds[i][0]:bounds[i][1]], pure=False,
                              key=f"imsim-sweep-chunk-{i}-{os.getpid()}-{time.time_ns()}")
                for i in todo]
        index = {f.key: i for f, i in zip(futs, todo)}
        for fut in as_completed(futs):
            finish(index[fut.key], np.asarray(fut.result()))
        return n
    finally:
        client.close()

def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("imsim", "numpy", "SALib", "dask", "distributed", "numba", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

def add_parser(subparsers):
    """Register ``imsim sweep`` on an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``sweep`` parser (its ``func`` default is :func:`cmd_sweep`).
    """
    p = subparsers.add_parser(
        "sweep", help="sensitivity sweep (Sobol, Morris, PSA) of a scenario",
        description="Run a sweep file: sample uncertain inputs (SALib Sobol / Morris, or PSA), "
                    "evaluate the base scenario for every row with the expected engine on a "
                    "local process pool or a Dask cluster, and write samples, indices, figures "
                    "and a report. See docs/sweeps.md.")
    p.add_argument("file", help="sweep YAML file (see sweeps/)")
    p.add_argument("--out", metavar="DIR", help="results folder (default results/<name>-<time>/)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (default: all cores)")
    p.add_argument("--scheduler", metavar="tcp://host:port",
                   help="run on a Dask distributed cluster instead of local processes")
    p.add_argument("--resume", metavar="DIR",
                   help="finish an interrupted sweep (its <out>.partial folder or <out>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run ``imsim sweep`` from parsed arguments and print a one-line summary.

    Parameters
    ----------
    args : argparse.Namespace
        ``file``, ``out``, ``workers``, ``scheduler``, ``resume``, ``quiet``.

    Returns
    -------
    int
        0 (exit code).

    Raises
    ------
    InputError
        Propagated from :func:`run_sweep` (the CLI prints it and exits with code 2).
    """
    res = run_sweep(args.file, out=args.out, workers=args.workers, scheduler=args.scheduler,
                    resume=args.resume, progress=not getattr(args, "quiet", False))
    m = res["manifest"]
    eps = m["evaluations_per_second"]
    if not getattr(args, "quiet", False):
        print(f"{m['name']}: {m['evaluations']:,} evaluations ({m['evaluated_this_run']:,} this "
              f"run, {m['executor']}, {m['workers']} worker(s)) in "
              f"{m['timings']['total_s']:.1f} s"
              + (f", {eps:,.0f} evaluations/s" if eps else ""))
        print(f"wrote {res['out']}/")
    return 0


def main(argv=None) -> int:
    """Run ``imsim sweep`` as a stand-alone entry point.

    E.g. ``python -c 'from imsim.analysis.sweep import main; main(["sweeps/x.yaml"])'``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments after ``sweep`` (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit code: 0, or 2 after printing an :class:`InputError`.
    """
    import sys

    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["sweep", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except InputError as exc:
        print(f"imsim: error: {exc.format()}", file=sys.stderr)
        return 2


def _packaged_data_hash() -> str:
    """The fingerprint of the packaged data the sweep ran on (as in run manifests)."""
    from imsim.inputs.data import data_hash

    return data_hash()
