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

from imsim.core import procs
from imsim.core.errors import InputError
from imsim.core.folders import (
    PARTIAL,
    atomic_file,
    check_new,
    claim,
    clean_stale,
    holds,
    new_folder,
    publish,
    release,
)
from imsim.analysis.sensitivity import analyse, tornado, write_outputs, write_samples
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
           "SweepAborted", "add_parser", "cmd_sweep", "load_sweep", "main", "run_sweep"]


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------

#: The evaluator a worker process last used, by its token: each chunk arrives with a pickled
#: copy whose prepared state (inputs, fits, groups) is not pickled, so without this every chunk
#: would prepare it again.
_WORKER_EVALUATOR: dict = {}


def _eval_chunk(evaluator, X):
    """Evaluate one chunk (runs in a worker; numba kept single-threaded)."""
    try:
        import numba

        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    evaluator = _kept(evaluator)
    if X is None:                     # prepare only
        warm = getattr(evaluator, "warm", None)
        if warm is not None:
            warm()
        return None
    return np.asarray(evaluator(X), dtype=float)


def _kept(evaluator):
    """The copy of ``evaluator`` this process keeps (the first one it got with its token)."""
    token = getattr(evaluator, "token", None)
    if token is None:
        return evaluator
    kept = _WORKER_EVALUATOR.get(token)
    if kept is None:
        _WORKER_EVALUATOR.clear()
        _WORKER_EVALUATOR[token] = evaluator
        return evaluator
    return kept


def _atomic_save(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` to ``path`` (``.npy``) atomically: a crash never leaves a truncated chunk."""
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr)


def _atomic_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _check_finite_inputs(sweep: Sweep, X: np.ndarray) -> None:
    """Refuse parameter rows with a non-finite value (one line naming the parameter)."""
    bad = ~np.isfinite(X)
    if bad.any():
        k, j = np.argwhere(bad)[0]
        raise InputError(f"parameter {sweep.param_ids[j]} is {X[k, j]} in sample row {k} "
                         f"({int(bad.any(axis=1).sum())} of {X.shape[0]} rows); nothing was "
                         "evaluated", file=sweep.file)


def _check_finite_outputs(sweep: Sweep, X: np.ndarray, Y: np.ndarray, partial: Path) -> None:
    """Refuse to analyse outputs that are not all finite (one line; no results are written)."""
    bad = ~np.isfinite(Y)
    if not bad.any():
        return
    rows = np.flatnonzero(bad.any(axis=1))
    k = int(rows[0])
    at = ", ".join(f"{p}={X[k, j]:.4g}" for j, p in enumerate(sweep.param_ids))
    raise InputError(f"{rows.size} of {Y.shape[0]} evaluations gave non-finite outputs (first: "
                     f"row {k}, {at}); no results were written (evaluated chunks are kept in "
                     f"{partial})", file=sweep.file)


class SweepAborted(InputError):
    """A sweep that cannot go on for a reason outside its input (its Dask cluster was lost).

    The finished chunks are kept in ``<out>.partial``; the message says how to resume. The
    command line prints it on one line and exits with code 3.
    """

    exit_code = 3


#: Seconds to wait for a Dask scheduler to answer (connect and identify itself).
DASK_CONNECT_TIMEOUT = 20.0
#: Seconds a sweep waits with no Dask worker before it gives up (the chunks done are kept).
DASK_NO_WORKERS_WAIT = 120.0
#: Seconds between two checks of a Dask sweep's progress and workers.
DASK_POLL = 1.0


def _note(text: str) -> None:
    """Tell the user about a repair or a cleanup (one line on stderr)."""
    import sys

    print(f"imsim: note: {text}", file=sys.stderr)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _partial_state(partial: Path) -> str:
    """``none`` (no folder), ``started`` (killed before sweep.json: no work), ``resumable``, or
    ``damaged`` (chunks without sweep.json)."""
    if not partial.exists():
        return "none"
    if not partial.is_dir():
        raise InputError("is in the way of this sweep's working folder and is not a folder; "
                         "move it away", file=str(partial))
    if (partial / "sweep.json").exists():
        return "resumable"
    if any((partial / "chunks").glob("chunk-*.npy")):   # chunks but no sweep.json: damaged
        return "damaged"
    return "started"


def _drop_leftover(out_dir: Path, partial: Path) -> None:
    """Remove the ``.partial`` of a sweep that finished (``<out>`` has its manifest) but was
    killed before it removed its working folder -- unless a live process holds ``<out>``."""
    took = claim(out_dir)
    try:
        shutil.rmtree(partial)
        _note(f"removed {partial}: the working folder of the finished sweep in {out_dir}")
    finally:
        if took:
            release(out_dir)


def _n_chunks(partial: Path) -> int:
    return len(list((partial / "chunks").glob("chunk-*.npy")))


def _load_partial(sweep: Sweep, partial: Path, dhash: str) -> tuple[np.ndarray, np.ndarray]:
    """Check an interrupted sweep's ``sweep.json``, ``Q.npy`` and ``X.npy`` and return Q, X."""
    damaged = ("; start again with --discard-partial (or delete it)")
    try:
        meta = json.loads((partial / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"sweep.json is unreadable ({type(exc).__name__}){damaged}",
                         file=str(partial)) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("hash"), str):
        raise InputError(f"sweep.json is not an imsim sweep record{damaged}", file=str(partial))
    if meta["hash"] != dhash:
        raise InputError("the sweep file changed since this sweep started (definition hash "
                         "differs); rerun it with --discard-partial to start again",
                         file=str(partial))
    arrays = {}
    for name in ("Q", "X"):
        want = meta.get(f"{name}_sha256")
        path = partial / f"{name}.npy"
        try:
            a = np.load(path, allow_pickle=False)
            ok = (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.ndim == 2
                  and a.shape[1] == sweep.n_params and (want is None or _digest(a) == want))
        except (OSError, ValueError, EOFError):
            ok = False
        if not ok:
            if want is None:        # a partial of an older imsim: nothing to check against
                raise InputError(f"{name}.npy is missing or damaged{damaged}",
                                 file=str(partial))
            a = sweep.unit_sample() if name == "Q" else sweep.transform(arrays["Q"])
            if _digest(a) != want:
                raise InputError(f"{name}.npy is missing or damaged and regenerating it from "
                                 f"the sweep file gives different values{damaged}",
                                 file=str(partial))
            _atomic_save(path, a)
            _note(f"{path} was missing or damaged; regenerated it from the sweep file")
        arrays[name] = a
    return arrays["Q"], arrays["X"]


def _load_chunks(chunks_dir: Path, bounds: list[tuple[int, int]], n_out: int) -> dict:
    """The finished chunks that pass the checks; damaged ones are deleted (and recomputed)."""
    done = {}
    try:
        chunks_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot use it: {exc.strerror}", file=str(chunks_dir)) from None
    for i, (a, b) in enumerate(bounds):
        f = chunks_dir / f"chunk-{i:05d}.npy"
        if not f.exists():
            continue
        try:
            y = np.load(f, allow_pickle=False)
            why = ("not a float64 table" if not (isinstance(y, np.ndarray)
                                                 and y.dtype == np.float64) else
                   f"shape {y.shape}, expected {(b - a, n_out)}" if y.shape != (b - a, n_out)
                   else "non-finite values" if not np.isfinite(y).all() else None)
        except (OSError, ValueError, EOFError) as exc:
            why = f"unreadable ({type(exc).__name__})"
        if why is None:
            done[i] = y
        else:
            f.unlink()
            _note(f"{f} is damaged ({why}); recomputing it")
    return done


def _dask_client(scheduler: str):
    """Connect to the Dask scheduler at ``scheduler``, or refuse it in one line.

    The address is parsed first; then a Dask ``identity`` request must be answered within
    :data:`DASK_CONNECT_TIMEOUT` seconds (``distributed.Client`` itself waits forever on a port
    that accepts connections but does not speak Dask).
    """
    import asyncio

    try:
        from distributed import Client
        from distributed.comm import connect, parse_address
        from distributed.comm.addressing import parse_host_port
        from distributed.security import Security
    except ImportError as exc:  # pragma: no cover
        raise InputError(f"--scheduler needs dask.distributed ({exc})") from None
    where = f"--scheduler {scheduler}"
    try:
        scheme, loc = parse_address(scheduler)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(loc)            # host and port, e.g. 'missing port number'
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a Dask scheduler address ({exc}); expected tcp://host:port",
                         where=where) from None
    t = DASK_CONNECT_TIMEOUT
    args = Security().get_connection_args("client")

    async def identify():
        comm = await connect(scheduler, timeout=t, **args)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def probe():            # in its own thread: callers may have an event loop (Jupyter)
        try:
            box["info"] = asyncio.run(asyncio.wait_for(identify(), t))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["exc"] = exc

    import threading

    box: dict = {}
    th = threading.Thread(target=probe, name="imsim-dask-probe", daemon=True)
    th.start()
    th.join(t + 5.0)
    try:
        if "exc" in box:
            raise box["exc"]
        if "info" not in box:
            raise TimeoutError("no answer")
        info = box["info"]
    except (OSError, asyncio.TimeoutError, TimeoutError, ValueError, TypeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"no Dask scheduler answered within {t:g} s ({why}); is the address "
                         "right and the scheduler running?", where=where) from None
    except Exception as exc:            # e.g. a server answering garbage
        raise InputError(f"no Dask scheduler answered ({type(exc).__name__}); is this a Dask "
                         "scheduler port?", where=where) from None
    if not (isinstance(info, dict) and info.get("type") == "Scheduler"):
        raise InputError("something answered but it is not a Dask scheduler", where=where)
    try:
        return Client(scheduler, timeout=t, set_as_default=False)
    except Exception as exc:
        raise InputError(f"cannot connect to the Dask scheduler ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})", where=where) from None


def _run_dask(client, evaluator, X, bounds, todo, scheduler, finish, hint, done) -> int:
    """Evaluate chunks ``todo`` on a Dask cluster; raise :class:`SweepAborted` if it is lost.

    A lost worker's chunks are recomputed by Dask on the others. If the scheduler goes away, or
    no worker is left for :data:`DASK_NO_WORKERS_WAIT` seconds, the sweep stops with the
    finished chunks kept (``hint`` says how to resume; ``{n}`` is the number kept).
    """
    def aborted(why):
        return SweepAborted(f"{why}; " + hint.format(n=len(done)), where=f"--scheduler "
                            f"{scheduler}")

    try:
        n = len(client.nthreads())
        ev = client.scatter(evaluator, broadcast=True) if n else evaluator
        futs = [client.submit(_eval_chunk, ev, X[bounds[i][0]:bounds[i][1]], pure=False,
                              key=f"imsim-sweep-chunk-{i}-{os.getpid()}-{time.time_ns()}")
                for i in todo]
    except (OSError, TimeoutError) as exc:
        raise aborted(f"lost the Dask scheduler while submitting ({type(exc).__name__})") \
            from None
    index = {f.key: i for f, i in zip(futs, todo)}
    pending = list(futs)
    idle_since = None
    checked = time.monotonic()
    try:
        while pending:
            fin = [f for f in pending if f.status in ("finished", "error", "cancelled")]
            for fut in fin:         # ("lost": a worker died holding it; Dask recomputes it)
                pending.remove(fut)
                if fut.status == "finished":
                    finish(index[fut.key], np.asarray(fut.result()))
                elif fut.status == "error":
                    fut.result()                   # the evaluator's own error: raise it
                else:                              # cancelled: the scheduler went away
                    raise aborted(f"the Dask cluster cancelled chunk {index[fut.key]}; its "
                                  "scheduler was probably shut down")
            if fin:
                idle_since = None
                continue
            time.sleep(0.02)
            if time.monotonic() - checked < DASK_POLL:
                continue
            checked = time.monotonic()
            if client.status not in ("running", "connecting"):
                raise aborted(f"lost the Dask scheduler (client {client.status})")
            if len(client.nthreads()):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > DASK_NO_WORKERS_WAIT:
                raise aborted(f"no Dask worker for {DASK_NO_WORKERS_WAIT:g} s")
    except SweepAborted:
        client.cancel(list(pending))
        raise
    except (OSError, TimeoutError) as exc:
        raise aborted(f"lost the Dask scheduler ({type(exc).__name__})") from None
    except Exception as exc:
        from concurrent.futures import CancelledError

        if isinstance(exc, CancelledError):
            raise aborted("the Dask cluster cancelled the work (its scheduler was probably "
                          "shut down)") from None
        raise
    return n


def _partial_of(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL)


def run_sweep(sweep: Sweep | str | os.PathLike, out=None, workers: int | None = None,
              scheduler: str | None = None, resume=None, evaluator=None, progress: bool = True,
              figures: bool = True, on_chunk=None, discard_partial: bool = False,
              allow_large: bool = True) -> dict:
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
    discard_partial : bool
        Delete an interrupted sweep's ``<out>.partial`` (its finished chunks) and start again,
        instead of refusing to run (``--discard-partial``). A ``.partial`` that holds no
        finished work (its sweep was killed while starting) is always replaced, with a note.
    allow_large : bool
        Skip the resource guard (:func:`imsim.analysis.budget.check_sweep`); the command line
        applies it unless ``--allow-large`` (library callers: pass False to apply it).

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
        ``resume`` or ``discard_partial``), a ``resume`` folder that is missing, finished,
        damaged beyond repair or from a changed sweep file, ``workers < 1``, an invalid sweep
        file, a bad Dask address or one where no Dask scheduler answers, or another sweep
        running on the same ``out``.
    SweepAborted
        When the Dask cluster is lost mid-sweep (the finished chunks are kept; the message says
        how to resume).
    KeyboardInterrupt
        On Ctrl-C or SIGTERM (:class:`imsim.core.procs.Terminated`); when finished chunks are
        kept, its ``resumable`` attribute says where and how to resume.

    Notes
    -----
    On resume every stored file is checked: ``sweep.json`` must parse and match the sweep's
    definition; ``X.npy``/``Q.npy`` that are missing, unreadable or differ from their digests
    are regenerated from the definition (and must then match the digests); a chunk that is
    unreadable, of the wrong shape or not all finite is recomputed (a note says so).
    """
    t_start = time.perf_counter()
    out_dir = partial = None
    took_lock = False
    pool = None
    try:
        # Folders first: an existing --out is refused before anything is read or evaluated.
        if resume is not None:
            if discard_partial:
                raise InputError("--resume and --discard-partial contradict each other: resume "
                                 "keeps the finished chunks, --discard-partial deletes them")
            r = Path(resume)
            if r.name.endswith(PARTIAL):
                partial, out_dir = r, r.with_name(r.name[: -len(PARTIAL)])
            else:
                out_dir, partial = r, _partial_of(r)
            if out is not None and Path(out) != out_dir:
                raise InputError(f"--out {out} does not match --resume {resume}")
            if not partial.is_dir():
                if out_dir.is_dir() and (out_dir / "manifest.json").exists():
                    raise InputError("this sweep already finished; nothing to resume",
                                     file=str(out_dir))
                raise InputError("no interrupted sweep here (expected a folder "
                                 f"{partial.name}/ with chunks)", file=str(partial))
        elif out is not None:
            out_dir = Path(out)
            partial = _partial_of(out_dir)
        if out_dir is not None:
            if (out_dir / "manifest.json").is_file() and partial.is_dir():
                _drop_leftover(out_dir, partial)   # killed between publishing and tidying
            if resume is not None and (out_dir / "manifest.json").is_file():
                raise InputError("this sweep already finished; nothing to resume",
                                 file=str(out_dir))
            took_lock = not holds(out_dir)
            check_new(out_dir)          # and lock it: a running sweep holds its lock
            clean_stale(out_dir.parent)
            state = _partial_state(partial)
            if state == "started":
                # Killed before it wrote sweep.json: it holds no finished work.
                shutil.rmtree(partial)
                _note(f"removed {partial}: a sweep killed before it finished any work left it")
                state = "none"
            elif state == "damaged" and not discard_partial:
                raise InputError("an interrupted sweep whose sweep.json is missing; its chunks "
                                 "cannot be checked against the sweep file: start again with "
                                 "--discard-partial", file=str(partial))
            elif state in ("resumable", "damaged") and resume is None:
                if not discard_partial:
                    raise InputError(
                        f"an interrupted sweep is in {partial} ({_n_chunks(partial)} chunk(s) "
                        f"finished); finish it with --resume {partial}, or start again with "
                        "--discard-partial", file=str(out_dir))
                shutil.rmtree(partial)
                _note(f"discarded the interrupted sweep in {partial} (--discard-partial)")
                state = "none"
            fresh = state == "none"
        else:
            fresh = True
        if not isinstance(sweep, Sweep):
            sweep = load_sweep(sweep)
        if workers is not None and workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        if not allow_large and evaluator is None and scheduler is None and fresh:
            from imsim.analysis.budget import check_sweep

            check_sweep(sweep, workers or os.cpu_count() or 1)   # before any work
        if evaluator is None:
            from imsim.analysis.evaluate import Evaluator

            evaluator = Evaluator(sweep.scenario, sweep.param_ids, sweep.outputs)
        dhash = sweep.definition_hash()
        client = _dask_client(scheduler) if scheduler else None   # before any folder
        n_workers = workers or os.cpu_count() or 1
        if scheduler is None and n_workers > 1:
            # Workers start (and prepare the evaluator) while this process samples.
            pool = _start_pool(evaluator, n_workers)
        try:
            if not fresh:
                Q, X = _load_partial(sweep, partial, dhash)
            else:
                if out_dir is None:  # claim results/<name>-<time>[-k].partial/ (never collides)
                    clean_stale("results")
                    out_dir = new_folder(sweep.name, "results", suffix=PARTIAL)
                    partial = _partial_of(out_dir)
                    took_lock = claim(out_dir)
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
                    _check_finite_inputs(sweep, X)   # non-finite values never reach a kernel
                    (partial / "chunks").mkdir()
                    _atomic_save(partial / "Q.npy", Q)
                    _atomic_save(partial / "X.npy", X)
                    if sweep.file:
                        with atomic_file(partial / "sweep.yaml") as tmp:
                            shutil.copyfile(sweep.file, tmp)
                    _atomic_text(partial / "sweep.json", json.dumps(
                        {"hash": dhash, "resolved": sweep.resolved(),
                         "X_sha256": _digest(X), "Q_sha256": _digest(Q)},
                        indent=2, default=str))
                except BaseException:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise
            chunks_dir = partial / "chunks"
            clean_stale(partial)             # temporaries of a process killed mid-write
            clean_stale(chunks_dir)
            n_rows = X.shape[0]
            cs = sweep.chunk_size
            bounds = [(a, min(a + cs, n_rows)) for a in range(0, n_rows, cs)]
            done = _load_chunks(chunks_dir, bounds, len(sweep.outputs))
            todo = [i for i in range(len(bounds)) if i not in done]
            executor = "dask" if scheduler else ("local" if n_workers == 1 else "processes")
            # The tornado's rows run on a worker alongside the chunks.
            bars_f = pool.submit(_tornado_task, evaluator, sweep) if pool is not None else None
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

            resume_hint = (f"{{n}} of {len(bounds)} chunks are kept in {partial}; resume with: "
                           f"imsim sweep {sweep.file or 'SWEEP.yaml'} --resume {partial}")
            try:
                if todo:
                    if executor == "local":
                        for i in todo:
                            a, b = bounds[i]
                            finish(i, _eval_chunk(evaluator, X[a:b]))
                    elif executor == "processes":
                        _run_pool(pool, evaluator, X, bounds, todo, n_workers, finish)
                    else:
                        n_workers = _run_dask(client, evaluator, X, bounds, todo, scheduler,
                                              finish, resume_hint.format(n="{n}"), done)
            except BaseException as exc:
                if fresh and not done:       # never started work: leave nothing behind
                    shutil.rmtree(partial, ignore_errors=True)
                elif isinstance(exc, KeyboardInterrupt):
                    exc.resumable = resume_hint.format(n=len(done))
                raise
            finally:
                if bar is not None:
                    bar.close()
        finally:
            if client is not None:
                client.close()
        t_eval = time.perf_counter() - t_eval
        Y = np.concatenate([done[i] for i in range(len(bounds))]) if bounds else np.zeros((0, 0))
        _check_finite_outputs(sweep, X, Y, partial)   # before anything is analysed or written
        # Analysis and files, written into the partial folder, then renamed.
        t_an = time.perf_counter()
        stage = partial / "results"
        if stage.exists():
            shutil.rmtree(stage)
        stage.mkdir()
        # The samples table is written while the workers analyse.
        res = analyse(sweep, Q, X, Y, pool=pool,
                      meanwhile=lambda: write_samples(stage, sweep, X, Y))
        bars = bars_f.result() if bars_f is not None else tornado(sweep, evaluator)
        write_outputs(stage, sweep, X, Y, res, bars, figures, pool=pool, samples_written=True)
        if pool is not None:
            pool.shutdown(wait=True)
            pool = None
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
    except KeyboardInterrupt as exc:
        if (partial is not None and (partial / "sweep.json").is_file()
                and getattr(exc, "resumable", None) is None):
            exc.resumable = (f"the finished chunks are kept in {partial}; resume with: imsim "
                             f"sweep {getattr(sweep, 'file', None) or 'SWEEP.yaml'} --resume "
                             f"{partial}")
        raise
    finally:
        if pool is not None:          # an error or interruption: nothing the pool started stays
            procs.stop_pool(pool)
        if took_lock and out_dir is not None:
            release(out_dir)


def _start_pool(evaluator, n_workers: int):
    """A local pool of ``n_workers`` spawned workers that end with this process
    (:func:`imsim.core.procs.worker_init`), each already preparing ``evaluator``.

    The caller stops it (:func:`imsim.core.procs.stop_pool`) on any error, or shuts it down.
    """
    from concurrent.futures import ProcessPoolExecutor

    from imsim.birth.engines import warm_up

    warm_up()  # compile / load the numba cache once, before workers read it
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=procs.mp_context(),
                               initializer=procs.worker_init, initargs=(os.getpid(),))
    try:
        for _ in range(n_workers):
            pool.submit(_prepare_task, evaluator)
    except BaseException:
        procs.stop_pool(pool)
        raise
    return pool


def _prepare_task(evaluator) -> None:
    """Keep and prepare ``evaluator`` in this worker (see :func:`_eval_chunk`)."""
    _eval_chunk(evaluator, None)


def _tornado_task(evaluator, sweep):
    """:func:`imsim.analysis.sensitivity.tornado` in a worker, with its kept evaluator."""
    return tornado(sweep, _kept(evaluator))


def _run_pool(pool, evaluator, X, bounds, todo, n_workers, finish):
    """Evaluate chunks ``todo`` on ``pool`` (:func:`_start_pool`).

    On any exception here (an interruption included) the pool is stopped at once -- queued
    chunks cancelled, workers terminated and reaped -- before the exception propagates.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    try:
        pending = {}
        queue = list(todo)
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
        procs.stop_pool(pool)
        raise


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
    p.add_argument("--discard-partial", action="store_true",
                   help="delete an interrupted sweep's <out>.partial (its finished chunks) and "
                        "start again, instead of refusing to run")
    p.add_argument("--allow-large", action="store_true",
                   help="run even when the estimated time (> 30 min) or memory (> 8 GB, or 75%% "
                        "of this machine's) is past the limits (local workers only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p


def cmd_sweep(args) -> int:
    """Run ``imsim sweep`` from parsed arguments and print a one-line summary.

    Parameters
    ----------
    args : argparse.Namespace
        ``file``, ``out``, ``workers``, ``scheduler``, ``resume``, ``discard_partial``,
        ``quiet``.

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
                    resume=args.resume, progress=not getattr(args, "quiet", False),
                    discard_partial=getattr(args, "discard_partial", False),
                    allow_large=getattr(args, "allow_large", False))
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
