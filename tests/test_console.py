"""End to end through the installed ``imsim`` console command (not only the module mains).

Each test runs the executable that ``pip install`` put next to the Python interpreter, from the
repository root, as a user would: exit code, what it prints, and the files it writes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMSIM = Path(sys.executable).parent / ("imsim.exe" if os.name == "nt" else "imsim")

pytestmark = pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")


def imsim(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed ``imsim`` from the repository root."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(IMSIM), *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env=env)


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def test_version_and_help():
    proc = imsim("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("imsim ")
    proc = imsim("--help")
    assert proc.returncode == 0
    for command in ("run", "sweep", "recommend", "calibrate", "data"):
        assert command in proc.stdout


def test_run_baseline(tmp_path):
    out = tmp_path / "r"
    proc = imsim("run", "scenarios/baseline.yaml", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}/" in proc.stdout
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False, na_values=[""])
    total = summary[(summary.state == "ALL") & (summary.race == "ALL")].iloc[0]
    assert total.births > 11_000_000                      # three years of U.S. births
    assert 5.0 < total.imr_baseline < 7.0                 # per 1,000: the observed ~5.9
    assert total.deaths_averted == 0                      # the baseline has no strategy
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenario"] == "baseline" and manifest["engine"] == "expected"
    assert [p.name for p in tmp_path.iterdir()] == ["r"]  # no temporary folder left


def test_existing_out_is_refused_before_any_work(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    err = _one_line_error(imsim("run", "scenarios/does-not-exist.yaml", "--out", out))
    assert "not empty" in err                             # refused before reading the scenario
    targets = tmp_path / "targets.csv"
    targets.write_text("mine")
    err = _one_line_error(imsim("data", "import-wonder", "missing.txt", "--out", targets))
    assert "already exists" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and targets.read_text() == "mine"


def test_sweep(tmp_path):
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "tiny-psa", "scenario": str(REPO / "scenarios" / "safe_sleep_south.yaml"),
        "method": "psa", "samples": 8, "seed": 1, "outputs": ["deaths_averted"],
        "parameters": {"safe_sleep_unsafe_reduction": {},
                       "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}))
    out = tmp_path / "sw"
    proc = imsim("sweep", sweep, "--out", out, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert "8 evaluations" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["evaluations"] == 8 and manifest["method"] == "psa"
    drivers = pd.read_csv(out / "drivers.csv")
    assert len(drivers) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw", "tiny.yaml"]   # no .partial


def test_recommend(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({
        "name": "tiny", "states": ["AL", "MS"], "years": [2026, 2027], "max_strategies": 1,
        "strategies": {"safe_sleep": {"coverage": 0.5}, "smoking_cessation": {"coverage": 0.3}},
        "draws": 4, "seed": 1}))
    out = tmp_path / "rec"
    proc = imsim("recommend", plan, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tiny: 2 state(s)")
    rec = pd.read_csv(out / "recommendations.csv")
    assert sorted(rec.state) == ["AL", "MS"]
    assert set(rec.recommended) <= {"safe_sleep", "smoking_cessation"}
    for name in ("index.html", "briefs/AL.html", "figures/tile_map.png", "manifest.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "manifest.json").read_text())["draws"] == 4


def test_calibrate(tmp_path):
    out = tmp_path / "cal"
    proc = imsim("calibrate", "--out", out, "--no-backtest")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}/" in proc.stdout
    for name in ("calibration.json", "cells.csv", "races.csv", "states.csv", "imr_draws.csv",
                 "fit_report.csv", "fit_report.png"):
        assert (out / name).is_file(), name
    assert not (out / "backtest.csv").exists()
    meta = json.loads((out / "calibration.json").read_text())
    assert meta["name"] == "cal" and meta["fit_quality"]["cells_within_interval"] >= 0.95
    # A second fit into the same folder is refused at once, unless --replace.
    err = _one_line_error(imsim("calibrate", "--out", out, "--no-backtest"))
    assert "--replace" in err
    assert json.loads((out / "calibration.json").read_text()) == meta
    assert [p.name for p in tmp_path.iterdir()] == ["cal"]
