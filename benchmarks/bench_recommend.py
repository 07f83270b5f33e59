"""Benchmark (not a test): `imsim recommend` on all 51 states x 41 portfolios x 200 draws.

    python benchmarks/bench_recommend.py [--draws 200] [--profile] [--figures]

Prints the wall time of the evaluation (effect draws, per-draw baseline fits, stacked portfolio
arms, the expected engine) and of the analysis (p_best, Pareto fronts, EVPPI, national MILP), with
the split of the evaluation time by stage. ``--figures`` also writes every output (figures and 51
briefs) to a temporary folder; ``--profile`` prints the top cProfile entries.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from imsim.analysis.recommend import load_plan, recommend
from imsim.output.recommendation import save

PLAN = Path(__file__).resolve().parents[1] / "plans" / "national.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--figures", action="store_true")
    args = ap.parse_args()
    rp = load_plan(PLAN)
    # Warm up: numba kernels loaded/compiled, baseline tables read.
    recommend(load_plan(PLAN), draws=2)
    prof = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    rec = recommend(rp, draws=args.draws)
    if prof:
        prof.disable()
    t1 = time.perf_counter()
    ev = rec.evaluation
    print(f"{len(ev.states)} states x {len(ev.portfolios)} portfolios x {args.draws} draws "
          f"(+ draw 0): {t1 - t0:.1f} s wall")
    for k, v in rec.timings.items():
        print(f"  {k:28s} {v:9.2f}")
    if args.figures:
        with tempfile.TemporaryDirectory() as tmp:
            t2 = time.perf_counter()
            save(rec, Path(tmp) / "out")
            print(f"writing tables, figures and 51 briefs: {time.perf_counter() - t2:.1f} s")
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
