"""Benchmark: ``imsim detect`` on all states, a 5-year horizon, microsim replicates.

    python benchmarks/bench_detect.py [--replicates 1000] [--states all] [--scenario FILE]

Prints the wall time of :func:`imsim.analysis.detect.detect` and its parts (the scenario's
microsim run, the baseline period's microsim run, the expected-count runs, the tables with the
exact MDE solves), the births simulated per second, and the time extrapolated to 1,000 replicates
(the microsim parts scale linearly with the replicates). Compilation and the baseline fit are
excluded (a warm-up run first).
"""
from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--states", default="all", help="'all' or comma-separated USPS codes")
    ap.add_argument("--scenario", help="a scenario YAML (default: safe sleep 0.5 and smoking "
                                       "cessation 0.3 in every state, 2026-2030)")
    args = ap.parse_args()
    import numba

    from imsim.analysis.detect import detect
    from imsim.config.scenario import load_scenario, parse_scenario

    if args.scenario:
        sc = load_scenario(args.scenario)
    else:
        states = "all" if args.states == "all" else args.states.split(",")
        sc = parse_scenario({"name": "bench-detect", "years": [2026, 2030], "states": states,
                             "seed": 1,
                             "strategies": {"safe_sleep": {"coverage": 0.5},
                                            "smoking_cessation": {"coverage": 0.3}}})
    t = time.perf_counter()
    detect(sc, windows=(1,), replicates=2)       # warm-up: kernels, fits
    print(f"warm-up: {time.perf_counter() - t:.1f} s; numba threads {numba.get_num_threads()}")
    t = time.perf_counter()
    det = detect(sc, windows=(1, 3, 5), replicates=args.replicates)
    wall = time.perf_counter() - t
    tm = det.timings
    births = (det.result.inputs.cells.births.sum() * 2 + det.baseline_result.inputs.cells.births.sum())
    per_draw = (tm["scenario_s"] + tm["baseline_period_s"]) / (args.replicates + 1)
    print(f"detect: {len(sc.state_list)} states, years {sc.years[0]}-{sc.years[1]}, "
          f"{args.replicates} replicates: {wall:.1f} s "
          f"(scenario microsim {tm['scenario_s']:.1f} s, baseline period microsim "
          f"{tm['baseline_period_s']:.1f} s, expected {tm['expected_s']:.1f} s, tables "
          f"{tm['tables_s']:.1f} s)")
    print(f"about {births * (args.replicates + 1) / (tm['scenario_s'] + tm['baseline_period_s']) / 1e6:.1f} "
          f"M births/s (at most {births / 1e6:.1f} M births per draw: both arms and the baseline period)")
    print(f"extrapolated to 1,000 replicates: {per_draw * 1001 + tm['expected_s'] + tm['tables_s']:.0f} s")


if __name__ == "__main__":
    main()
