"""Benchmark: microsimulation throughput on the full 2013-2015 U.S. cohort, via imsim.run.

    python benchmarks/bench_microsim.py [--repeats 7] [--threads N] [--no-numpy-model]

Prints births simulated per second by the microsim kernel and through a whole ``imsim.run``
(one cohort of births per run: cells identical in both arms are simulated once), the time of
NumPy drawing one uniform per birth in the same process, and THE RATIO JUDGED (issue 15): kernel
time / NumPy ``rng.random(n)`` time, target <= 1.5. Both wall-clock and CPU-time ratios are
printed: on a shared machine the wall ratio moves with other people's load (the kernel needs two
free cores at once, NumPy one), the CPU ratio (work done, summed over threads) much less.
It also runs the same birth model written the plain NumPy way (vectorised over the births of a
cell, NumPy's generator, the same tables), so imsim's engine can be compared with the obvious
implementation, and the expected engine's time for a national 5-year scenario. Compilation is
excluded (a warm-up run first); every figure is a median over the repeats.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-numpy-model", action="store_true",
                    help="skip the plain NumPy implementation of the birth model")
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
    kern, kcpu, full, uni, ucpu = [], [], [], [], []
    rng = np.random.default_rng(0)
    for i in range(args.repeats):
        c, t = time.process_time(), time.perf_counter()
        microsim(tables, seed=i)
        kern.append(time.perf_counter() - t)
        kcpu.append(time.process_time() - c)
        t = time.perf_counter()
        imsim.run(sc, engine="microsim", seed=i)
        full.append(time.perf_counter() - t)
        c, t = time.process_time(), time.perf_counter()
        rng.random(n)
        uni.append(time.perf_counter() - t)
        ucpu.append(time.process_time() - c)
    med = statistics.median
    k, f, u = med(kern), med(full), med(uni)
    print(f"births per arm: {n:,}")
    print(f"microsim kernel, one arm:      {k:.3f} s  -> {n / k / 1e6:.0f} M births/s")
    print(f"imsim.run, whole baseline run: {f:.3f} s  -> {n / f / 1e6:.0f} M births/s "
          "(the scenario arm equals the baseline, so its cells are reused, not re-simulated)")
    print(f"numpy rng.random(n), one uniform per birth: {u:.3f} s -> {n / u / 1e6:.0f} M/s")
    print(f"RATIO microsim / numpy-uniform time (target <= 1.5): wall {k / u:.2f}; "
          f"CPU time {med(kcpu) / med(ucpu):.2f} (summed over {numba.get_num_threads()} "
          f"threads; wall ratio on idle cores ~ CPU ratio / threads)")
    if not args.no_numpy_model:
        ref_counts = microsim(tables, seed=0)
        npt = []
        for i in range(max(1, args.repeats // 2)):
            t = time.perf_counter()
            got = numpy_model(tables, np.random.default_rng(i))
            npt.append(time.perf_counter() - t)
        tn = med(npt)
        print(f"plain NumPy birth model (vectorised over births): {tn:.3f} s -> "
              f"{n / tn / 1e6:.1f} M births/s; imsim's kernel is {tn / k:.0f}x faster "
              f"(deaths: numpy model {int(got[:, 6:24].sum()):,}, kernel "
              f"{int(ref_counts[:, 6:24].sum()):,}, different random numbers)")

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


def numpy_model(tables, rng):
    """The birth model of :mod:`imsim.birth.kernels`, written the obvious NumPy way.

    Vectorised over the births of each cell (a Python loop over cells), NumPy's generator (no
    common random numbers), the same kernel tables; returns counts ``[n_cells, N_OUT]`` in the
    kernel's columns (births and deaths by band, exposure tallies).
    """
    import numpy as np

    from imsim.birth import kernels as K

    out = np.zeros((tables.births.shape[0], K.N_OUT), dtype=np.int64)
    for c in range(tables.births.shape[0]):
        n = int(tables.births[c])
        if n <= 0:
            continue
        u = rng.random((8, n))
        pe = tables.p_exp[c]
        li = (u[0] < tables.p_li[c]).astype(np.int64)
        smk = (u[1] < pe[0][li]).astype(np.int64)
        pp = (u[2] < pe[1][li]).astype(np.int64)
        ipi = (u[3] < pe[2][li]).astype(np.int64)
        eet = (u[4] < pe[3][li]).astype(np.int64)
        us = (u[5] < tables.p_us[c][li, smk]).astype(np.int64)
        prog = (pp == 1) & (rng.random(n) < tables.p_prog[c]) if tables.p_prog[c] > 0 else 0 * pp
        sd = (li == 1) & (rng.random(n) < tables.p_sd[c]) if tables.p_sd[c] > 0 else 0 * li
        prog = np.asarray(prog, dtype=np.int64)
        sd = np.asarray(sd, dtype=np.int64)
        combo = smk + 2 * pp + 4 * ipi + 8 * li + 16 * prog + 32 * sd
        bnd = (u[6][:, None] >= tables.ga_cum[c][combo]).sum(axis=1)
        el = eet * (bnd == K.N_BANDS - 1)
        row = bnd + el
        band = np.where(el == 1, K.EET_BAND, bnd)
        lt32 = band < 2
        l3 = lt32 & (rng.random(n) < tables.p_l3[c])
        nonl3 = (lt32 & ~l3).astype(np.int64)
        thr = tables.death_cum[c][row, nonl3, smk + 2 * us + 4 * li + 8 * sd]
        ud = u[7]
        cause = np.where(ud < thr[:, 0], 0, np.where(ud < thr[:, 1], 1,
                                                      np.where(ud < thr[:, 2], 2, -1)))
        o = out[c]
        o[:K.N_BANDS] = np.bincount(band, minlength=K.N_BANDS)
        dead = cause >= 0
        o[K.OUT_DEATHS:K.OUT_DEATHS + 3 * K.N_BANDS] = np.bincount(
            K.N_BANDS * cause[dead] + band[dead], minlength=3 * K.N_BANDS)
        for col, x in ((K.OUT_LI, li), (K.OUT_SMK, smk), (K.OUT_PP, pp), (K.OUT_IPI, ipi),
                       (K.OUT_EET, eet), (K.OUT_US, us), (K.OUT_PROG, prog), (K.OUT_SD, sd),
                       (K.OUT_LT32, lt32), (K.OUT_L3, l3)):
            o[col] = int(x.sum())
    return out


if __name__ == "__main__":
    main()
