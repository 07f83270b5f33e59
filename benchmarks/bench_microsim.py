"""Benchmark: microsimulation throughput on the full 2013-2015 U.S. cohort, via imsim.run.

    python benchmarks/bench_microsim.py [--repeats 5] [--threads N]

Prints births simulated per second by the microsim kernel and through a whole ``imsim.run``
(one cohort of births per run: cells identical in both arms are simulated once), the time of NumPy drawing one uniform per birth for comparison, and the expected
engine's time for a national 5-year scenario. Compilation is excluded (a warm-up run first).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="NUMBA_NUM_THREADS")
    args = ap.parse_args()
    if args.threads:
        os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    import numpy as np

    import imsim
    from imsim.birth.engines import microsim
    from imsim.birth.params import build_tables
    from imsim.analysis.runner import resolve_inputs
    from imsim.inputs.fit import fit_for
    from imsim.config.scenario import parse_scenario

    import numba

    sc = parse_scenario({"name": "bench", "years": [2013, 2015], "states": "all"})
    t = time.perf_counter()
    imsim.run(sc, engine="microsim")  # warm-up: compile or load kernels, fit baseline
    print(f"warm-up (compile/cache load + fit): {time.perf_counter() - t:.2f} s; "
          f"numba threads: {numba.get_num_threads()}")

    inputs = resolve_inputs(sc)
    eff = inputs.evidence.point()
    fit = fit_for(inputs.baseline, eff)
    tables = build_tables(inputs.baseline.params(inputs.cells, eff, fit))
    n = int(inputs.cells.births.sum())
    kern, full = [], []
    for i in range(args.repeats):
        t = time.perf_counter()
        microsim(tables, seed=i)
        kern.append(time.perf_counter() - t)
        t = time.perf_counter()
        imsim.run(sc, engine="microsim", seed=i)
        full.append(time.perf_counter() - t)
    rng = np.random.default_rng(0)
    uni = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        rng.random(n)
        uni.append(time.perf_counter() - t)
    k, f, u = statistics.median(kern), statistics.median(full), statistics.median(uni)
    print(f"births per arm: {n:,}")
    print(f"microsim kernel, one arm:     {k:.3f} s  -> {n / k / 1e6:.0f} M births/s")
    print(f"imsim.run, whole baseline run: {f:.3f} s  -> {n / f / 1e6:.0f} M births/s "
          "(the scenario arm equals the baseline, so its cells are reused, not re-simulated)")
    print(f"numpy rng.random(n) one uniform per birth: {u:.3f} s; "
          f"microsim / numpy-uniform time ratio: {k / u:.2f}")

    sc5 = parse_scenario({"name": "bench5", "years": [2026, 2030], "states": "all",
                          "strategies": {"safe_sleep": {"coverage": 0.5},
                                         "smoking_cessation": {"coverage": 0.3}}})
    imsim.run(sc5)
    from imsim.birth.engines import expected

    inputs5 = resolve_inputs(sc5)
    tables5 = build_tables(inputs5.baseline.params(inputs5.cells, eff, fit))
    ex = []
    for _ in range(args.repeats * 4):
        t = time.perf_counter()
        expected(tables5)
        ex.append(time.perf_counter() - t)
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        imsim.run(sc5)
        runs.append(time.perf_counter() - t)
    print(f"expected engine, national 5-year scenario ({inputs5.cells.n} cells): kernel "
          f"{statistics.median(ex) * 1e3:.2f} ms per arm; imsim.run {statistics.median(runs):.3f} s")


if __name__ == "__main__":
    main()
