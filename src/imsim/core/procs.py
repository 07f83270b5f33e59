"""Child processes that end with their parent, and signals that end a command cleanly.

imsim starts worker processes only for ``imsim sweep`` (a local process pool). The promises,
proven in ``tests/test_faults.py`` and listed in ``docs/reliability.md``:

* **Workers die with their parent.** Workers are started with the ``spawn`` method (no
  forkserver that outlives the command) and, in their initializer (:func:`worker_init`), ask the
  kernel to kill them when their parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``), with a
  watchdog thread that polls the parent's pid as a portable fallback. So ``kill -9`` of the
  command leaves no pool worker (and so no resource tracker, which ends when its last user
  does) holding memory or the caller's stderr.
* **Workers ignore SIGINT.** Ctrl-C reaches the whole foreground process group; only the parent
  acts on it: it stops the pool (:func:`stop_pool`), keeps what is finished, and exits.
* **SIGTERM and SIGHUP end a command like Ctrl-C.** :func:`install_signal_handlers` turns them
  into :class:`Terminated` (a :class:`KeyboardInterrupt`), so every cleanup path that handles an
  interruption (temporary folders removed, pools stopped, resumable work kept) runs for them too.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time

#: ``prctl`` option: the signal the kernel sends this process when its parent thread dies.
PR_SET_PDEATHSIG = 1
#: Seconds between two checks of the parent's pid by a worker's watchdog thread.
WATCH_INTERVAL = 0.5


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's :class:`KeyboardInterrupt`.

    Parameters
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(signal.Signals(signum).name)


def _raise_terminated(signum, frame):  # noqa: ARG001 - the signal handler signature
    raise Terminated(signum)


def install_signal_handlers() -> dict:
    """Make SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only from the main thread (Python delivers signals there); elsewhere a no-op. Signals the
    caller chose to ignore (``SIG_IGN``, e.g. under ``nohup``) stay ignored.

    Returns
    -------
    dict
        The handlers replaced (signal -> handler), for :func:`restore_signal_handlers`.
    """
    previous = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _raise_terminated)
    return previous


def restore_signal_handlers(previous: dict) -> None:
    """Put back the handlers :func:`install_signal_handlers` replaced.

    Parameters
    ----------
    previous : dict
        Its return value.
    """
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's exit code for an interruption: 128 + the signal (130 for Ctrl-C).

    Parameters
    ----------
    exc : KeyboardInterrupt
        The interruption (a :class:`Terminated` carries its signal).

    Returns
    -------
    int
        130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
    """
    return 128 + (exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT))


def die_with_parent(parent_pid: int) -> None:
    """Make this (child) process end when the process ``parent_pid`` ends.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); everywhere a
    daemon thread checks every :data:`WATCH_INTERVAL` seconds that the parent is still our
    parent and exits at once (``os._exit``) if not. Exits at once if the parent is already
    gone.

    Parameters
    ----------
    parent_pid : int
        The pid of the process that started this one.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except Exception:  # pragma: no cover - no libc / no prctl: the watchdog remains
            pass
    if os.getppid() != parent_pid:      # died before prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(WATCH_INTERVAL)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="imsim-parent-watch", daemon=True).start()


def worker_init(parent_pid: int) -> None:
    """Initializer of every imsim pool worker: die with the parent, ignore Ctrl-C, one thread.

    Parameters
    ----------
    parent_pid : int
        The pid of the process that owns the pool (``os.getpid()`` there).
    """
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import numba

        numba.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass


def mp_context():
    """The multiprocessing context of imsim's pools: ``spawn``.

    ``spawn`` starts each worker from the parent itself (so the kernel's parent-death signal
    refers to the command) and starts no forkserver that could outlive it; ``fork`` is unsafe in
    a process with threads (numba's, tqdm's).

    Returns
    -------
    multiprocessing.context.BaseContext
        The ``spawn`` context.
    """
    import multiprocessing as mp

    return mp.get_context("spawn")


def stop_pool(pool, timeout: float = 5.0) -> None:
    """Stop a :class:`concurrent.futures.ProcessPoolExecutor` now: cancel, terminate, reap.

    Queued work is cancelled and running workers are sent SIGTERM (SIGKILL after ``timeout``
    seconds), then reaped, so nothing the pool started survives this call.

    Parameters
    ----------
    pool : concurrent.futures.ProcessPoolExecutor
        The pool.
    timeout : float
        Seconds to wait for the workers to end after SIGTERM.
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:  # pragma: no cover - a broken pool
        pass
    for p in procs:
        try:
            p.terminate()
        except Exception:  # pragma: no cover - already reaped
            pass
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():  # pragma: no cover - ignores SIGTERM
            p.kill()
            p.join(1.0)
