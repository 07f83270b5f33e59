"""Time the collaborative ABM: 51 CoIIN teams, 145 team-strategy pairs, 20 quarters.

Plain script (not a test):  .venv/bin/python benchmarks/bench_collaborative.py [repeats]
Prints the median wall time of repeated runs of run_collaborative (including the DataFrame).
"""
from __future__ import annotations

import statistics
import sys
import time

from imsim.collaborative.abm import parse_collaborative, run_collaborative


def main(repeats: int = 30) -> None:
    config = parse_collaborative(
        {
            "start": 2026,
            "support_ends": 2029,
            "teams": "coiin_2013_2017",
            "peer_learning": 0.3,
            "capacity": {"default": 0.5, "AL": 0.7},
        }
    )
    years = (2026, 2030)  # 20 quarters
    run_collaborative(config, years, seed=0)  # warm-up (imports, caches)
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        df = run_collaborative(config, years, seed=seed)
        times.append(time.perf_counter() - t0)
    n_pairs = sum(len(v) for v in config.teams.values())
    print(
        f"collaborative ABM: {len(config.teams)} teams, {n_pairs} team-strategy pairs, 20 quarters, "
        f"{len(df)} rows: median {statistics.median(times) * 1000:.1f} ms "
        f"(min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, {repeats} runs)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
