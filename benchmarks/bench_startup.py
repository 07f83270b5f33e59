"""Time the command line warm (issue 15, target 4: start-up): ``imsim --help`` under 0.3 s and
``imsim run scenarios/baseline.yaml`` under 2 s wall time.

Plain script (not a test), from the repository root:  python benchmarks/bench_startup.py [runs]

Each command runs as a fresh subprocess (the way a user runs it): one warm-up (fills the
Numba cache and the OS file cache), then ``runs`` timed runs (default 5). Prints the median,
min and max wall time of each, the ratio of the median to its target (< 1 meets it), and the
median CPU time (user + system) of the subprocess, which other processes' load inflates far less
than the wall time (the 1-minute load average is printed before and after: on this 2-core
machine a load above ~1 means the wall times are not the command's own). The run writes into
a new temporary folder each time (``--out``), removed afterwards.
"""
from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("imsim")   # the console script a user runs
IMSIM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "imsim.cli"]
TARGETS = {"help": 0.3, "run": 2.0}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _time(cmd: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one run of ``cmd``."""
    c0, t0 = _cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    dt, dc = time.perf_counter() - t0, _cpu() - c0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return dt, dc


def bench(label: str, make_cmd, runs: int) -> float:
    """Run ``make_cmd(i)`` once to warm up and ``runs`` times timed; print and return the median."""
    _time(make_cmd(-1))
    both = [_time(make_cmd(i)) for i in range(runs)]
    times = [w for w, _ in both]
    med = statistics.median(times)
    target = TARGETS[label]
    print(f"imsim {label:<4}: median {med:.3f} s (min {min(times):.3f}, max {max(times):.3f}, "
          f"{runs} runs); target {target:g} s, ratio {med / target:.2f}"
          f"{'' if med < target else '  (over the target)'}; CPU median "
          f"{statistics.median(c for _, c in both):.3f} s")
    return med


def main(runs: int = 5) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imsim-bench-startup-"))
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    try:
        bench("help", lambda i: IMSIM + ["--help"], runs)
        bench("run", lambda i: IMSIM + ["run", "scenarios/baseline.yaml", "--out",
                                        str(tmp / f"run{i + 1}")], runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
