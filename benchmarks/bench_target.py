"""Time `imsim target` solving: one state, and the nation, with the expected engine.

Plain script (not a test):  python benchmarks/bench_target.py [replicates]
For each case it prints the time of the first solve in a fresh process (imports, Numba
compilation from cache, the baseline fits of every draw) and of a second solve in the same
process (fits cached), plus the CPU time. A solve = every strategy alone and the portfolio
(grid of 21 coverages, bisection to 1e-4) and p_reach over `replicates` draws at each solution.
"""
from __future__ import annotations

import subprocess
import sys
import time

CASE = r"""
import sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import imsim
from imsim.analysis.target import Target, solve_targets
sc = imsim.load_scenario("scenarios/{file}")
{update}
t = Target("imr", {imr}, "{state}")
r = solve_targets(sc, t, replicates={R})
t1 = time.perf_counter(); c1 = time.process_time()
r = solve_targets(sc, Target("imr", {imr2}, "{state}"), replicates={R})
t2 = time.perf_counter(); c2 = time.process_time()
print(f"{label}: first solve {{t1 - t0:.1f}} s wall ({{c1 - c0:.1f}} s CPU, incl. imports), "
      f"second {{t2 - t1:.1f}} s wall ({{c2 - c1:.1f}} s CPU); {{len(r.table)}} rows, "
      f"{{r.draws}} draws, {{int(r.table.reachable.sum())}} reachable")
"""


def main(replicates: int = 100) -> None:
    cases = [
        dict(label="one state (AL, 5 years, 6 strategies)", file="safe_sleep_south.yaml",
             update="", imr=7.5, imr2=7.7, state="AL"),
        dict(label="the nation (51 states, 6 strategies)", file="safe_sleep_south.yaml",
             update='sc = sc.model_copy(update={"states": "all"})', imr=5.5, imr2=5.6,
             state="ALL"),
    ]
    for c in cases:
        code = CASE.format(R=replicates, **c)
        subprocess.run([sys.executable, "-c", code], check=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
