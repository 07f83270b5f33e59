"""Benchmark (not a test): the cost of rates that move with time.

    python benchmarks/bench_trend.py [--draws 200] [--repeat 3]

Prints, as medians over ``--repeat`` runs in this process:

* the trend model's fit (national level, state and race trends) and a whole ``imsim calibrate``
  (default targets, 200 posterior draws, back-test included) into a temporary folder;
* ``imsim.run`` of ``scenarios/safe_sleep.yaml`` (51 states x 5 races x 5 years, expected engine)
  with ``--draws`` uncertainty draws, with the default calibration (trend model) and with the
  same calibration stripped of its trend (the level model of before), and their ratio -- the
  figure the issue judges ("imsim run is not slower than today").
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import imsim
from imsim.calibration.calibrate import calibrate
from imsim.calibration.series import state_series
from imsim.calibration.targets import load_calibration
from imsim.calibration.trend import fit_trend_model
from imsim.config.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def _median(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    series = state_series()
    t_trend = _median(lambda: fit_trend_model(series), args.repeat)
    with tempfile.TemporaryDirectory() as d:
        t_cal = _median(lambda: calibrate(out=Path(d) / f"c{time.perf_counter_ns()}"), 1)
    sc = load_scenario(ROOT / "scenarios" / "safe_sleep.yaml")
    cal = load_calibration()
    level = replace(cal, trend=None)
    imsim.run(sc, replicates=2, calibration=cal)            # warm: kernels, tables
    imsim.run(sc, replicates=2, calibration=level)
    t_new = _median(lambda: imsim.run(sc, replicates=args.draws, calibration=cal), args.repeat)
    t_old = _median(lambda: imsim.run(sc, replicates=args.draws, calibration=level), args.repeat)
    print(f"trend model fit: {t_trend:.2f} s; imsim calibrate (200 draws, back-test): {t_cal:.1f} s")
    print(f"imsim run safe_sleep.yaml, {args.draws} draws: trend model {t_new:.2f} s, level model "
          f"{t_old:.2f} s; ratio {t_new / t_old:.2f}")


if __name__ == "__main__":
    main()
