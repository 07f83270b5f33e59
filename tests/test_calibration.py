"""Calibration: parameter recovery, fit report, default fit, user targets, bad input."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imsim.calibration.calibrate import (
    CalibratedTargets, RateData, add_parser, calibrate, fit_rates, load_calibration,
)
from imsim.core.constants import RACES
from imsim.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]


def _simulate(seed, sigma_alpha=0.15, sigma_eps=0.2):
    from imsim.inputs.baseline import get_baseline

    births = get_baseline().pooled_cells().births.reshape(51, 5).astype(float)
    rng = np.random.default_rng(seed)
    mu = np.log([5.0, 11.0, 5.0, 4.0, 8.0])
    lam = np.exp(mu[None] + rng.normal(0, sigma_alpha, 51)[:, None]
                 + rng.normal(0, sigma_eps, (51, 5)))
    y = rng.poisson(lam * births / 1000)
    obs = np.where(y >= 10, 1000 * y / births, np.nan)        # < 10 deaths: suppressed
    obs[rng.random(obs.shape) < 0.05] = np.nan                 # and a few not retrieved
    data = RateData(births, obs, np.full(births.shape, 1e-3), 1000 * y.sum(1) / births.sum(1),
                    np.full(51, 1e-4), 1000 * y.sum(0) / births.sum(0), np.full(5, 1e-4))
    return lam, y, data


def test_parameter_recovery_coverage():
    """True rates inside their 95% intervals at about the nominal rate, tiny cells included."""
    inside, tiny_inside, n_tiny = [], [], 0
    for seed in (1, 2):
        lam, y, data = _simulate(seed)
        fit = fit_rates(data, sigma_eps_by_race=False, draws=50, seed=seed)
        ok = (lam >= fit.lo) & (lam <= fit.hi)
        inside.append(ok.ravel())
        tiny = y < 10
        n_tiny += int(tiny.sum())
        tiny_inside.append(ok[tiny])
        assert np.all(np.isfinite(fit.point)) and np.all(fit.point > 0)
        assert np.all(fit.draws > 0)
        # suppressed cells are shrunk, not zero or noise: within the range of their race
        assert np.all(fit.point[np.isnan(data.obs)] > 0.5)
        assert abs(fit.sigma_eps[0] - 0.2) < 0.08
    cov = np.concatenate(inside).mean()
    n = sum(len(i) for i in inside)
    # binomial tolerance around 0.95: 3 standard errors (a little more below: Laplace)
    se = math.sqrt(0.95 * 0.05 / n)
    assert 0.95 - 3.5 * se - 0.02 <= cov <= 1.0, cov
    assert n_tiny > 50
    assert np.concatenate(tiny_inside).mean() >= 0.85


@pytest.fixture(scope="module")
def fast_fit(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "fit"
    cal, summary = calibrate(None, out, settings={
        "sigma_alpha": 0.114, "sigma_eps": [0.103, 0.037, 0.05, 0.162, 0.265], "draws": 20})
    return out, cal, summary


def test_fit_report_columns_and_quality(fast_fit):
    out, cal, summary = fast_fit
    rep = pd.read_csv(out / "fit_report.csv")
    for c in ("target", "state", "race", "observed", "observed_lo", "observed_hi", "modelled",
              "within_interval", "source_tier", "pooled"):
        assert c in rep.columns
    assert {"imr", "preterm_rate", "suid_rate", "nmr", "pnmr", "ga_death_share"} <= set(rep.target)
    for f in ("fit_report.png", "backtest.csv", "backtest.png", "calibration.json", "cells.csv",
              "imr_draws.csv"):
        assert (out / f).is_file()
    q = summary["fit_quality"]
    assert q["cells_within_interval"] >= 0.95
    assert q["national_race_max_abs_rel_error"] < 0.01
    assert q["preterm_race_max_abs_rel_error"] < 0.02
    assert q["suid_race_max_abs_rel_error"] < 0.05
    bt = pd.read_csv(out / "backtest.csv")
    for c in ("state", "year", "observed", "observed_lo", "observed_hi", "predicted", "error",
              "within_interval"):
        assert c in bt.columns
    assert set(bt.origin) == {2012, 2015}
    assert set(bt[bt.origin == 2015].year) == {2016, 2017}
    assert set(bt[bt.origin == 2012].year) == {2013, 2014, 2015, 2016, 2017}
    assert {"naive", "trend", "model_in_sample"} <= set(bt.columns)
    # the trend model is refitted through each origin: no forecast year is in-sample
    assert not bt["model_in_sample"].any()
    assert summary["backtest"]["origins"]["2015"]["model_in_sample"] is False
    assert (out / "trend.json").is_file()


def test_saved_fit_roundtrip_and_direct_fit(fast_fit):
    from imsim.inputs.baseline import get_baseline
    from imsim.inputs.evidence import EvidenceLibrary
    from imsim.inputs.fit import direct_fit

    out, cal, _ = fast_fit
    back = CalibratedTargets.load(out)
    assert np.allclose(back.imr, cal.imr, rtol=1e-5)
    assert back.imr_draws.shape == (20, 51, 5)
    assert np.all(back.imr_draws > 0)
    bl = get_baseline()
    e = EvidenceLibrary.load().point()
    f0 = direct_fit(bl, e, targets=back)
    f3 = direct_fit(bl, e, targets=back, draw=3)
    assert f0.m_cause.shape == (3, 51, 5) and not np.allclose(f0.m_cause, f3.m_cause)
    assert direct_fit(bl, e).source == "direct"          # default path unchanged


def test_default_fit_loads_and_reproduces_national_race_imr():
    from imsim.calibration.calibrate import load_observations, modelled_counts

    cal = load_calibration()
    assert cal is not None and not cal.stale
    assert cal.imr_draws.shape[1:] == (51, 5) and np.all(np.isfinite(cal.imr))
    _, counts = modelled_counts(cal)
    b = counts[:, :6].sum(axis=1).reshape(51, 5)
    d = counts[:, 6:24].sum(axis=1).reshape(51, 5)
    race = load_observations().race.set_index("race")
    for ri, r in enumerate(RACES):
        imr = 1000 * d[:, ri].sum() / b[:, ri].sum()
        assert abs(imr / race.loc[r, "value"] - 1) < 0.01, r


def _wonder_targets(path: Path, rows):
    cols = ["state", "race", "year_start", "year_end", "measure", "deaths", "births", "rate", "flag"]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def test_user_targets_replace_cells(tmp_path):
    f = _wonder_targets(tmp_path / "t.csv", [
        ("AK", "nh_aian", 2013, 2015, "imr", 120, 8138, 1000 * 120 / 8138, "ok"),
        ("AK", "nh_black", 2013, 2015, "imr", "", "", "", "suppressed"),
        ("AK", "ALL", 2016, 2016, "imr", 60, 11209, 1000 * 60 / 11209, "ok"),
    ])
    out = tmp_path / "mine"
    cal, summary = calibrate(f, out, settings={
        "sigma_alpha": 0.114, "sigma_eps": [0.103, 0.037, 0.05, 0.162, 0.265], "draws": 10},
        backtest=False)
    rep = pd.read_csv(out / "fit_report.csv")
    row = rep[(rep.target == "imr") & (rep.state == "AK") & (rep.race == "nh_aian")].iloc[0]
    assert abs(row.observed - 1000 * 120 / 8138) < 1e-3
    blk = rep[(rep.target == "imr") & (rep.state == "AK") & (rep.race == "nh_black")].iloc[0]
    assert bool(blk.pooled) and np.isnan(blk.observed)
    assert cal.meta["targets_file"] == str(f) and cal.meta["user_rows"] == 3


@pytest.mark.parametrize("row, msg", [
    (("ZZ", "ALL", 2013, 2015, "imr", 5, 1000, 5.0, "ok"), "unknown state"),
    (("AK", "ALL", 2013, 2015, "imr", -5, 1000, 5.0, "ok"), "negative"),
    (("AK", "ALL", 2013, 2015, "imr", 5, 1000, 5000.0, "ok"), "out of range"),
    (("AK", "ALL", 2013, 2015, "deaths", 5, 1000, 5.0, "ok"), "unknown measure"),
])
def test_bad_targets_exit_2_nothing_written(tmp_path, row, msg):
    f = _wonder_targets(tmp_path / "bad.csv", [row])
    out = tmp_path / "never"
    with pytest.raises(InputError) as exc:
        calibrate(f, out, backtest=False)
    assert "bad.csv" in str(exc.value) and "row 2" in str(exc.value) and msg in str(exc.value)
    assert not out.exists()
    assert not any(p.name.startswith(".never") for p in tmp_path.iterdir())
    r = subprocess.run([sys.executable, "-m", "imsim.calibration.calibrate", "calibrate", "--targets",
                        str(f), "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 2 and "row 2" in r.stderr and not out.exists()


def test_existing_out_is_refused_before_fitting(tmp_path, monkeypatch):
    import imsim.calibration.calibrate as C

    def fail(*a, **k):
        raise AssertionError("fitting started although --out exists")

    monkeypatch.setattr(C, "load_observations", fail)
    fit = tmp_path / "fit"
    fit.mkdir()
    (fit / "calibration.json").write_text("{}")
    with pytest.raises(InputError, match="--replace"):
        calibrate(None, fit)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="only replaces a calibration folder"):
        calibrate(None, other, replace=True)
    with pytest.raises(AssertionError, match="fitting started"):   # a fit folder may be replaced
        calibrate(None, fit, replace=True)
    assert (fit / "calibration.json").read_text() == "{}"
    assert (other / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit", "other"]


def test_cli_parser_help():
    import argparse

    p = argparse.ArgumentParser(prog="imsim")
    sub = p.add_subparsers()
    add_parser(sub)
    args = p.parse_args(["calibrate", "--targets", "x.csv", "--out", "calibration/x"])
    assert args.targets == "x.csv" and args.out == "calibration/x" and callable(args.func)
    assert not args.replace
    args = p.parse_args(["calibrate"])
    assert args.out is None                      # a new calibration/fit-<timestamp>/


@pytest.mark.slow
def test_full_calibration_under_two_minutes(tmp_path):
    import time

    t = time.perf_counter()
    cal, summary = calibrate(None, tmp_path / "full")
    assert time.perf_counter() - t < 120
    assert summary["fit_quality"]["cells_within_interval"] >= 0.95
