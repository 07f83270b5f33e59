"""Processes and faults (issue 17, part B): killed commands leave no orphan process and nothing
that looks complete; interrupted sweeps resume bit-identically; Dask failures give one clear line;
damaged partials are repaired or refused in one line; one writer per output folder.

The promises and the figures are in docs/reliability.md ("Processes and faults").
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from imsim.analysis import sweep as S
from imsim.analysis.evaluate import IshigamiEvaluator
from imsim.core import folders
from imsim.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SOUTH = str(REPO / "scenarios" / "coiin_portfolios.yaml")
psutil = pytest.importorskip("psutil")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _ishigami(tmp_path, n=64, chunk_size=32, name="ish"):
    data = {"name": name, "scenario": SOUTH, "method": "sobol", "samples": n, "seed": 3,
            "outputs": ["deaths_averted"], "chunk_size": chunk_size,
            "parameters": {"strategies.safe_sleep.coverage": {"low": 0, "high": 1},
                           "strategies.smoking_cessation.coverage": {"low": 0, "high": 1},
                           "strategies.preconception_care.coverage": {"low": 0, "high": 1}}}
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def _real(tmp_path, samples=32, chunk_size=1, name="real"):
    """A small sweep of the real model (PSA, one row per chunk: many chunks to kill between)."""
    data = {"name": name, "scenario": SOUTH, "method": "psa", "samples": samples, "seed": 5,
            "chunk_size": chunk_size, "outputs": ["deaths_averted"],
            "parameters": {"safe_sleep_unsafe_reduction": {},
                           "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def _run(f, out, **kw):
    kw = {"workers": 1, "evaluator": IshigamiEvaluator(), "progress": False,
          "figures": False, **kw}
    return S.run_sweep(f, out=out, **kw)


class _Stop(Exception):
    pass


def _stop_at(k):
    def cb(i):
        if i == k:
            raise _Stop
    return cb


def _cli(*args, cwd=REPO, **kw):
    """Start ``imsim`` (this interpreter) in a new session, pipes for stdout and stderr."""
    code = "import sys; from imsim.cli import main; sys.exit(main())"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, **kw)


def _session_survivors(sid: int, wait: float = 5.0) -> list:
    """Processes of session ``sid`` still alive after up to ``wait`` seconds (zombies aside)."""
    deadline = time.monotonic() + wait
    while True:
        alive = []
        for p in psutil.process_iter(["pid", "status", "cmdline"]):
            try:
                if os.getsid(p.pid) == sid and p.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _wait_for(pred, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _complete_looking(folder: Path) -> list[Path]:
    """Non-hidden result folders in ``folder`` (a manifest.json is what marks them complete)."""
    return [p for p in folder.iterdir() if p.is_dir() and (p / "manifest.json").exists()]


# ---------------------------------------------------------------------------------------------
# Processes end with their parent
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM",
                                 pytest.param("SIGINT", marks=pytest.mark.slow)])
def test_killed_sweep_leaves_no_process_and_resumes_identically(tmp_path, how):
    """Kill `imsim sweep --workers 2` mid-run (SIGKILL/SIGTERM of the parent; SIGINT to the
    process group, as Ctrl-C): within 5 s no process of its session is left, its stderr reaches
    EOF (nothing holds the caller's pipe), nothing complete-looking exists, and --resume gives
    the bytes of an uninterrupted run."""
    f = _real(tmp_path)
    out = tmp_path / "sw"
    proc = _cli("sweep", f, "--out", out, "--workers", 2, "--quiet")
    sid = os.getsid(proc.pid)
    chunks = out.with_name("sw.partial") / "chunks"
    _wait_for(lambda: len(list(chunks.glob("chunk-*.npy"))) >= 2 or proc.poll() is not None,
              what="two chunks")
    assert proc.poll() is None, proc.communicate()
    workers = [c for c in psutil.Process(proc.pid).children(recursive=True)]
    assert len(workers) >= 2                       # the pool is up
    if how == "SIGINT":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, getattr(signal, how))
    _, err = proc.communicate(timeout=30)          # EOF on stderr: no one holds it open
    left = _session_survivors(sid)
    for p in left:
        p.kill()
    assert left == [], [p.info["cmdline"] for p in left]
    assert not out.exists() and _complete_looking(tmp_path) == []
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == {"SIGTERM": 143, "SIGINT": 130}[how], err
        assert "Traceback" not in err and "nothing was written" not in err
        assert f"--resume {out}.partial" in err, err
    res = S.run_sweep(f, resume=f"{out}.partial", workers=1, progress=False, figures=False)
    ref = S.run_sweep(f, out=tmp_path / "ref", workers=1, progress=False, figures=False)
    assert 0 < res["evaluated"] < ref["evaluated"]
    assert res["Y"].tobytes() == ref["Y"].tobytes()
    assert res["manifest"]["results_hash"] == ref["manifest"]["results_hash"]


def test_pool_workers_die_with_their_parent(tmp_path):
    """The worker initializer alone (no cleanup by the parent): a process that started a pool
    and is SIGKILLed takes its spawned workers (and the resource tracker) with it."""
    code = textwrap.dedent("""
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        from imsim.core import procs
        pool = ProcessPoolExecutor(2, mp_context=procs.mp_context(),
                                   initializer=procs.worker_init, initargs=(os.getpid(),))
        pids = [pool.submit(os.getpid).result() for _ in range(4)]
        print(" ".join(map(str, sorted(set(pids)))), flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids and all(psutil.pid_exists(p) for p in pids)
    sid = os.getsid(proc.pid)
    proc.kill()
    proc.wait()
    left = _session_survivors(sid)
    for p in left:
        p.kill()
    assert left == [], [p.info["cmdline"] for p in left]


def test_cli_main_restores_the_signal_handlers(capsys):
    from imsim import cli

    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["data", "evidence", "no-such-effect-anywhere"]) == 2
    assert signal.getsignal(signal.SIGTERM) is before
    capsys.readouterr()


def test_sigterm_is_an_interruption_with_exit_143():
    from imsim.core import procs

    code = textwrap.dedent("""
        import os, signal, sys, time
        from imsim.core import procs
        procs.install_signal_handlers()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            sys.exit(procs.exit_code(exc))
    """)
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 143
    assert procs.exit_code(KeyboardInterrupt()) == 130


# ---------------------------------------------------------------------------------------------
# Dask: bad addresses, a port that is not Dask, workers and scheduler lost
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["foo", "tcp://[::1", "http://localhost:1", "tcp://h:"])
def test_bad_scheduler_address_one_line_nothing_written(tmp_path, capsys, address):
    f = _ishigami(tmp_path)
    code = S.main([str(f), "--out", str(tmp_path / "o"), "--scheduler", address, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and address in err, err
    assert "Dask" in err or "address" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ish.yaml"]


def test_a_port_that_is_not_dask_times_out_in_one_line(tmp_path, capsys, monkeypatch):
    """A plain TCP server that accepts and never answers: distributed.Client alone waits
    forever; imsim gives up after DASK_CONNECT_TIMEOUT with one line and no .partial."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)],
                     daemon=True).start()
    monkeypatch.setattr(S, "DASK_CONNECT_TIMEOUT", 2.0)
    f = _ishigami(tmp_path)
    addr = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
    t0 = time.monotonic()
    code = S.main([str(f), "--out", str(tmp_path / "o"), "--scheduler", addr, "--quiet"])
    took = time.monotonic() - t0
    srv.close()
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no Dask scheduler answered" in err, err
    assert took < 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ish.yaml"]


class _Slow(IshigamiEvaluator):
    """Ishigami, 0.1 s per chunk (so a cluster can be taken away mid-sweep)."""

    def __call__(self, X):
        time.sleep(0.1)
        return super().__call__(X)


def _cluster(n=1):
    try:
        from distributed import LocalCluster

        return LocalCluster(n_workers=n, threads_per_worker=1, processes=False,
                            dashboard_address=None)
    except Exception as exc:  # pragma: no cover - no sockets
        pytest.skip(f"dask LocalCluster cannot start: {exc}")


@pytest.mark.parametrize("loss", ["workers", "scheduler"])
def test_losing_the_dask_cluster_keeps_a_resumable_partial(tmp_path, monkeypatch, loss):
    """All workers leave (scale to 0) or the scheduler shuts down mid-sweep: a SweepAborted
    (exit 3) naming how to resume, not a FutureCancelledError; resuming gives the bytes of an
    uninterrupted run."""
    monkeypatch.setattr(S, "DASK_NO_WORKERS_WAIT", 1.0)
    monkeypatch.setattr(S, "DASK_POLL", 0.2)
    f = _ishigami(tmp_path, n=32, chunk_size=16)                 # 160 rows, 10 chunks
    ref = _run(f, tmp_path / "ref")
    cluster = _cluster()

    def take_away(i):
        if i == 1 and not getattr(take_away, "done", False):
            take_away.done = True
            if loss == "workers":
                cluster.scale(0)
            else:
                cluster.close()

    out = tmp_path / "d"
    try:
        with pytest.raises(S.SweepAborted) as ei:
            _run(f, out, scheduler=cluster.scheduler_address, evaluator=_Slow(),
                 on_chunk=take_away)
    finally:
        cluster.close()
    msg = ei.value.format()
    assert ei.value.exit_code == 3 and "\n" not in msg
    assert f"--resume {out}.partial" in msg and ("no Dask worker" in msg or "scheduler" in msg)
    assert not out.exists()
    res = _run(f, None, resume=f"{out}.partial")
    assert res["Y"].tobytes() == ref["Y"].tobytes()


def test_a_dask_worker_lost_mid_sweep_changes_nothing(tmp_path):
    f = _ishigami(tmp_path, n=32, chunk_size=16)
    ref = _run(f, tmp_path / "ref")
    cluster = _cluster(2)

    def drop_one(i):
        if i == 1 and len(cluster.workers) == 2:
            cluster.scale(1)

    try:
        res = _run(f, tmp_path / "d", scheduler=cluster.scheduler_address, evaluator=_Slow(),
                   on_chunk=drop_one)
    finally:
        cluster.close()
    assert res["Y"].tobytes() == ref["Y"].tobytes()


# ---------------------------------------------------------------------------------------------
# Partials: killed at startup, tampered, discarded
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["rerun", "resume"])
def test_a_sweep_killed_at_startup_can_be_rerun_or_resumed(tmp_path, capsys, how):
    """What SIGKILL before sweep.json leaves (an empty .partial, maybe chunks/ and Q.npy):
    a rerun and --resume both start afresh, with a note."""
    f = _ishigami(tmp_path)
    ref = _run(f, tmp_path / "ref")
    partial = tmp_path / "o.partial"
    (partial / "chunks").mkdir(parents=True)
    np.save(partial / "Q.npy", np.zeros((3, 3)))
    if how == "rerun":
        res = _run(f, tmp_path / "o")
    else:
        res = _run(f, None, resume=partial)
    assert "killed before it finished any work" in capsys.readouterr().err
    assert res["Y"].tobytes() == ref["Y"].tobytes() and not partial.exists()


def _interrupted(tmp_path, f, k=1):
    out = tmp_path / "o"
    with pytest.raises(_Stop):
        _run(f, out, on_chunk=_stop_at(k))
    return out, tmp_path / "o.partial"


TAMPER = {
    "missing X.npy": lambda p: (p / "X.npy").unlink(),
    "truncated Q.npy": lambda p: (p / "Q.npy").write_bytes((p / "Q.npy").read_bytes()[:100]),
    "edited X.npy": lambda p: np.save(p / "X.npy", np.load(p / "X.npy") * 1.01),
    "truncated chunk": lambda p: (p / "chunks" / "chunk-00000.npy").write_bytes(
        (p / "chunks" / "chunk-00000.npy").read_bytes()[:90]),
    "wrong-shape chunk": lambda p: np.save(p / "chunks" / "chunk-00001.npy", np.zeros((5, 2))),
    "all-NaN chunk": lambda p: np.save(p / "chunks" / "chunk-00000.npy",
                                       np.full((32, 1), np.nan)),
    "pickled chunk": lambda p: np.save(p / "chunks" / "chunk-00000.npy",
                                       np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "text chunk": lambda p: (p / "chunks" / "chunk-00001.npy").write_text("hello"),
}


@pytest.mark.parametrize("tamper", list(TAMPER))
def test_tampered_partials_are_repaired_and_resume_identically(tmp_path, capsys, tamper):
    f = _ishigami(tmp_path)                                       # 320 rows, 10 chunks
    ref = _run(f, tmp_path / "ref")
    out, partial = _interrupted(tmp_path, f)
    TAMPER[tamper](partial)
    ev = IshigamiEvaluator()
    res = _run(f, None, resume=partial, evaluator=ev)
    err = capsys.readouterr().err
    assert "imsim: note:" in err and ("recomputing" in err or "regenerated" in err), err
    assert res["Y"].tobytes() == ref["Y"].tobytes()
    assert (out / "manifest.json").exists() and not partial.exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"hash": 3}', "\udcff"])
def test_a_bad_sweep_json_is_one_line_then_discard_partial_works(tmp_path, capsys, content):
    f = _ishigami(tmp_path)
    out, partial = _interrupted(tmp_path, f)
    (partial / "sweep.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    for argv in (["--resume", str(partial)], ["--out", str(out)]):
        assert S.main([str(f), *argv, "--workers", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--discard-partial" in err, err
    ref = _run(f, tmp_path / "ref")
    res = _run(f, out, discard_partial=True)
    assert res["Y"].tobytes() == ref["Y"].tobytes() and not partial.exists()


def test_missing_sweep_json_with_chunks_is_refused_then_discarded(tmp_path, capsys):
    f = _ishigami(tmp_path)
    out, partial = _interrupted(tmp_path, f)
    (partial / "sweep.json").unlink()
    assert S.main([str(f), "--resume", str(partial), "--workers", "1", "--quiet"]) == 2
    assert "--discard-partial" in capsys.readouterr().err
    _run(f, out, discard_partial=True)
    assert (out / "manifest.json").exists() and not partial.exists()


def test_a_resumable_partial_blocks_a_rerun_with_both_ways_out(tmp_path, capsys):
    f = _ishigami(tmp_path)
    out, partial = _interrupted(tmp_path, f)
    assert S.main([str(f), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {partial}" in err and "--discard-partial" in err and "2 chunk" in err
    assert S.main([str(f), "--resume", str(partial), "--discard-partial"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_killed_after_publishing_the_leftover_partial_is_removed(tmp_path, capsys):
    """SIGKILL between renaming the results into place and removing the .partial: the
    finished folder is complete; the next --resume or rerun removes the leftover and says the
    sweep is finished."""
    import shutil

    f = _ishigami(tmp_path)
    _run(f, tmp_path / "o")
    out, partial = tmp_path / "o", tmp_path / "o.partial"
    (partial / "chunks").mkdir(parents=True)
    shutil.copyfile(out / "sweep.resolved.json", partial / "sweep.json")
    assert S.main([str(f), "--resume", str(partial), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already finished" in err and "removed" in err and not partial.exists()
    assert (out / "manifest.json").exists()


def test_interrupted_before_any_chunk_leaves_no_partial(tmp_path):
    f = _ishigami(tmp_path)

    def ctrl_c(X):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(f, tmp_path / "o", evaluator=ctrl_c)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ish.yaml"]


def test_interrupted_sweep_says_it_is_resumable(tmp_path, capsys, monkeypatch):
    """Through imsim.cli.main: Ctrl-C after two chunks prints where the chunks are and the
    resume command (never "nothing was written"), exit 130."""
    from imsim import cli

    f = _ishigami(tmp_path)
    real = S.run_sweep

    def interrupted(*a, **kw):
        def ctrl_c(i):
            if i == 1:
                raise KeyboardInterrupt
        return real(*a, **{**kw, "evaluator": IshigamiEvaluator(), "on_chunk": ctrl_c})

    monkeypatch.setattr(S, "run_sweep", interrupted)
    out = tmp_path / "o"
    assert cli.main(["sweep", str(f), "--out", str(out), "--workers", "1", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was written" not in err
    assert f"2 of 10 chunks are kept in {out}.partial" in err
    assert f"imsim sweep {f} --resume {out}.partial" in err


# ---------------------------------------------------------------------------------------------
# One writer per output folder; unusable output paths; stale temporaries
# ---------------------------------------------------------------------------------------------

_HOLD = textwrap.dedent("""
    import sys, time
    from imsim.core import folders
    folders.check_new(sys.argv[1])
    print("held", flush=True)
    time.sleep(600)
""")


def test_two_commands_on_one_out_one_is_refused_before_work(tmp_path, capsys):
    """While one process writes `out` (holds its lock), a second run, sweep or atomic_folder on
    the same `out` is refused at once, naming the first one's pid; once the first dies (even by
    SIGKILL) the folder is free again."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {holder.pid}"):
            folders.check_new(out)
        f = _ishigami(tmp_path)
        assert S.main([str(f), "--out", str(out), "--workers", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"another imsim command (pid {holder.pid})" in err and err.count("\n") == 1
        assert not (tmp_path / "out.partial").exists()
        from imsim import cli

        t0 = time.monotonic()
        assert cli.main(["run", str(REPO / "scenarios" / "baseline.yaml"), "--out", str(out),
                         "--quiet"]) == 2
        assert time.monotonic() - t0 < 20                  # refused before the run, not after
        err = capsys.readouterr().err
        assert f"another imsim command (pid {holder.pid})" in err and err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    with folders.atomic_folder(out) as st:
        (st.tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "ish.yaml") == ["out"]


def test_concurrent_sweeps_on_one_out_one_wins(tmp_path):
    """Two `imsim sweep --out X` started together: exactly one writes X, the other exits 2
    with one line; no .partial or lock is left."""
    f = _ishigami(tmp_path, n=16)
    code = textwrap.dedent(f"""
        import sys
        from imsim.analysis import sweep as S
        from imsim.analysis.evaluate import IshigamiEvaluator
        sys.stdin.readline()
        try:
            S.run_sweep({str(f)!r}, out={str(tmp_path / 'x')!r}, workers=1,
                        evaluator=IshigamiEvaluator(), progress=False, figures=False)
        except Exception as exc:
            print(type(exc).__name__, exc, file=sys.stderr)
            sys.exit(2)
    """)
    ps = [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in ps:
        p.stdin.write("go\n")
        p.stdin.flush()
    errs = [p.communicate(timeout=120)[1] for p in ps]
    codes = sorted(p.returncode for p in ps)
    assert codes in ([0, 2], [0, 0]), errs       # [0, 0]: one finished before the other began
    if codes == [0, 2]:
        err = next(e for e, p in zip(errs, ps) if p.returncode == 2)
        assert err.startswith("InputError") and ("another imsim command" in err
                                                  or "already exists" in err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ish.yaml", "x"]


def test_unusable_output_paths_are_one_line(tmp_path, capsys, monkeypatch):
    from imsim import cli

    monkeypatch.chdir(REPO)
    (tmp_path / "afile").write_text("x")
    cases = {tmp_path / "afile" / "sub": "is a file, not a folder",
             tmp_path / ("n" * 300): "name too long",
             tmp_path / ("d" * 300) / "out": "name too long"}
    for out, why in cases.items():
        assert cli.main(["run", "scenarios/baseline.yaml", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1 and "Traceback" not in err, err
    f = _ishigami(tmp_path)
    assert S.main([str(f), "--out", str(tmp_path / "afile" / "sub"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ish.yaml"]


def test_unreadable_and_overlong_input_names_are_one_line(tmp_path, capsys, monkeypatch):
    from imsim import cli

    monkeypatch.chdir(tmp_path)
    for argv in (["run", "x" * 300 + ".yaml"], ["validate", "y" * 300 + ".yaml"],
                 ["sweep", "z" * 300 + ".yaml"]):
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    """An output folder inside a folder nobody may write (made immutable with chattr +i, which
    binds root too): `imsim run` and `imsim sweep` refuse it in one line before any work."""
    from imsim import cli

    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("chattr +i not available here (root may write anywhere else)")
        ro.chmod(0o555)
    try:
        monkeypatch.chdir(REPO)
        assert cli.main(["run", "scenarios/baseline.yaml", "--out", str(ro / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(ro / "out") in err and "cannot create it" in err, err
        f = _ishigami(tmp_path)
        assert S.main([str(f), "--out", str(ro / "sw"), "--quiet"]) == 2
        assert "cannot create it" in capsys.readouterr().err
        assert list(ro.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(ro)], capture_output=True)
        ro.chmod(0o755)


def test_sigkill_during_save_leaves_temporaries_the_next_run_removes(tmp_path):
    """A process SIGKILLed while it writes a folder (claimed default name and explicit --out)
    leaves hidden temporaries; the next command writing beside them removes them, and the
    empty default folder the dead process claimed (its lock went with the process)."""
    code = textwrap.dedent("""
        import os, sys, time
        from imsim.core import folders
        os.chdir(sys.argv[1])
        a = folders.atomic_folder(None, name="run", parent="results")
        b = folders.atomic_folder("results/explicit")
        for cm in (a, b):
            st = cm.__enter__()
            (st.tmp / "summary.csv").write_text("half")
        print("writing", flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    res = tmp_path / "results"
    left = sorted(x.name for x in res.iterdir())
    assert any(n.startswith(".explicit.tmp-") for n in left)
    assert any(n.startswith(".run-") and ".tmp-" in n for n in left)
    assert _complete_looking(res) == []
    removed = folders.clean_stale(res)
    assert len(removed) == 2
    assert list(res.iterdir()) == []                       # the claimed run-<time>/ too
    # and atomic_folder does it by itself
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "writing"
    p.kill()
    p.wait()
    with folders.atomic_folder(res / "next") as st:
        (st.tmp / "x").write_text("x")
    assert sorted(x.name for x in res.iterdir()) == ["next"]


def test_live_temporaries_are_left_alone(tmp_path):
    live = tmp_path / f".out.tmp-{os.getppid()}-0123abcd"
    live.mkdir()
    mine = tmp_path / f".x.tmp-{os.getpid()}-0123abcd.npy"
    mine.write_text("x")
    other = tmp_path / ".y.tmp-0123abcd"                    # no pid: not ours to judge
    other.mkdir()
    assert folders.clean_stale(tmp_path) == []
    assert live.exists() and mine.exists() and other.exists()


def test_default_sweep_folders_in_the_same_second_are_distinct(tmp_path, monkeypatch):
    monkeypatch.setattr(folders, "timestamp", lambda: "20260101-120000")
    monkeypatch.chdir(tmp_path)
    f = _ishigami(tmp_path, n=8)
    outs = [_run(f, None)["out"].name for _ in range(2)]
    assert outs == ["ish-20260101-120000", "ish-20260101-120000-2"]


def test_result_folders_respect_the_umask(tmp_path):
    code = textwrap.dedent("""
        import os, sys
        os.umask(0o022)
        from imsim.core import folders
        with folders.atomic_folder(sys.argv[1]) as st:
            (st.tmp / "a.csv").write_text("1")
        print(oct(os.stat(sys.argv[1]).st_mode & 0o777))
    """)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o")], capture_output=True,
                       text=True, timeout=60)
    assert p.stdout.strip() == "0o755", p.stderr


# ---------------------------------------------------------------------------------------------
# Signals at several points of run, recommend and calibrate
# ---------------------------------------------------------------------------------------------

COMMANDS = {
    "run": ["run", "scenarios/safe_sleep.yaml", "--replicates", "200", "--quiet"],   # ~19 s
    "recommend": ["recommend", "plans/southeast.yaml", "--quiet"],                   # ~35 s
    "calibrate": ["calibrate", "--quiet"],                                           # ~20 s
    "sweep": ["sweep", "sweeps/safe_sleep_sobol.yaml", "--workers", "2", "--quiet"],
}


def _kill_at(tmp_path, command, sig, delay):
    """Start `command` writing into tmp_path/out, send `sig` after `delay` s; return what it
    printed and its exit code after checking no process of its session survived."""
    out = tmp_path / "out"
    proc = _cli(*COMMANDS[command], "--out", out)
    sid = os.getsid(proc.pid)
    time.sleep(delay)
    if proc.poll() is None:
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=300)
    left = _session_survivors(sid)
    for p in left:
        p.kill()
    assert left == [], [p.info["cmdline"] for p in left]
    return out, proc.returncode, err


def _check_after_kill(tmp_path, out, code, err, sig):
    """Either the command finished (a complete folder) or nothing complete-looking is left."""
    if code == 0:
        assert (out / "manifest.json").exists()
        return "finished"
    assert "Traceback" not in err, err
    if sig != signal.SIGKILL:
        assert code in (130, 143), (code, err)
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert last.startswith("imsim: interrupted;"), err     # (after any warnings)
    assert not (out / "manifest.json").exists()
    partial = tmp_path / "out.partial"
    if partial.exists():
        assert "nothing was written" not in err
    folders.clean_stale(tmp_path)
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden
    return "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
@pytest.mark.parametrize("command", ["run", "recommend"])
def test_signal_early_in_a_command(tmp_path, command, sig):
    """One quick injection per command in the default suite (the sweep has its own above)."""
    out, code, err = _kill_at(tmp_path, command, sig, 5.0)
    assert _check_after_kill(tmp_path, out, code, err, sig) == "interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("delay", [1.0, 3.0, 8.0, 15.0])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_signals_at_several_points(tmp_path, command, sig, delay):
    out, code, err = _kill_at(tmp_path, command, sig, delay)
    outcome = _check_after_kill(tmp_path, out, code, err, sig)
    if os.environ.get("IMSIM_FAULT_LOG"):        # the figures of docs/reliability.md
        with open(os.environ["IMSIM_FAULT_LOG"], "a") as fh:
            fh.write(json.dumps({"command": command, "signal": signal.Signals(sig).name,
                                 "delay": delay, "outcome": outcome,
                                 "resumable": (tmp_path / "out.partial").exists()}) + "\n")
