"""Benchmark: a 16-parameter Sobol sweep (N = 1024, second order: N (2P + 2) = 34,816 rows) of a
national six-strategy portfolio, 2026-2030, expected engine, on a local process pool.

    .venv/bin/python benchmarks/bench_sweep.py [--workers 2] [--samples 1024] [--baseline-effects]

Prints evaluations per second and total time. By default the 16 parameters are strategy
efficacies and coverages (they do not enter the baseline fit, so the baseline arm is computed
once); ``--baseline-effects`` swaps four of them for effects that enter the baseline (each new
value needs a new baseline fit, see docs/sweeps.md "Performance").
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import yaml

SCENARIO = {
    "name": "bench-national-portfolio",
    "years": [2026, 2030],
    "states": "all",
    "seed": 1,
    "strategies": {
        "safe_sleep": {"coverage": {2026: 0.2, 2030: 0.6}},
        "smoking_cessation": {"coverage": 0.3},
        "preterm_prevention": {"coverage": 0.5},
        "preconception_care": {"coverage": 0.4},
        "risk_appropriate_care": {"coverage": 0.9},
        "social_determinants": {"coverage": 0.5},
    },
}
PARAMS = {
    "safe_sleep_unsafe_reduction": {},
    "cessation_counselling_rr": {},
    "hard_stop_eed_reduction": {},
    "vaginal_progesterone_ptb_rr": {},
    "larc_short_ipi_reduction": {},
    "medicaid_expansion_death_rr": {},
    "cessation_control_quit": {"low": 0.05, "high": 0.15},
    "ohpc_meis_ptb_rr": {},
    "cessation_incentives_rr": {},
    "income_support_ptb_or": {},
    "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8},
    "strategies.smoking_cessation.coverage": {"low": 0.1, "high": 0.5},
    "strategies.preterm_prevention.coverage": {"low": 0.2, "high": 0.8},
    "strategies.preconception_care.coverage": {"low": 0.2, "high": 0.6},
    "strategies.risk_appropriate_care.coverage": {"low": 0.5, "high": 1.0},
    "strategies.social_determinants.coverage": {"low": 0.2, "high": 0.8},
}
BASELINE_SWAP = {
    "ohpc_meis_ptb_rr": "unsafe_sleep_suid_or",
    "cessation_incentives_rr": "nonlevel3_neonatal_or",
    "income_support_ptb_or": "smoking_suid_rr",
    "cessation_control_quit": "short_ipi_ptb_or",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--no-second-order", action="store_true")
    ap.add_argument("--baseline-effects", action="store_true")
    args = ap.parse_args()
    from imsim.analysis.sweep import run_sweep

    params = dict(PARAMS)
    if args.baseline_effects:
        for old, new in BASELINE_SWAP.items():
            del params[old]
            params[new] = {}
    tmp = Path(tempfile.mkdtemp(prefix="imsim-bench-"))
    try:
        (tmp / "scenario.yaml").write_text(yaml.safe_dump(SCENARIO))
        sweep = {
            "name": "bench-sobol16", "scenario": "scenario.yaml", "method": "sobol",
            "samples": args.samples, "seed": 1, "second_order": not args.no_second_order,
            "outputs": ["deaths_averted", "imr_change_pct", "bw_rate_ratio_change",
                        "bw_rate_difference_change"],
            "parameters": params,
        }
        (tmp / "sweep.yaml").write_text(yaml.safe_dump(sweep, sort_keys=False))
        t0 = time.perf_counter()
        res = run_sweep(tmp / "sweep.yaml", out=tmp / "out", workers=args.workers,
                        progress=False)
        total = time.perf_counter() - t0
        m = res["manifest"]
        print(f"{m['evaluations']:,} evaluations, {len(params)} parameters, N={args.samples}, "
              f"{m['workers']} workers: evaluate {m['timings']['evaluate_s']:.1f} s "
              f"({m['evaluations_per_second']:,.0f} evaluations/s), total {total:.1f} s "
              f"(including setup, analysis, figures); analysis and files {m['timings']['analysis_s']:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
