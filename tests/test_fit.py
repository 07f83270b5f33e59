"""Engine item 5: the expected engine on the packaged baseline reproduces observed 2013-2015 IMR.

Two fits. The *direct* fit (``calibration: direct``) solves one multiplier per cell, so every
state x race cell with a published IMR is met to within 1e-6 per 1,000. The *calibrated* default
fit (partial pooling, issue Calibration) meets the national IMR of every race within 1% while
keeping the cells inside their observation intervals. Both at once is impossible with the
packaged data: the published race rates and state totals disagree by ~0.8% in deaths (births of
unknown race), and births by state x race are estimates.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import imsim
from imsim.inputs.baseline import N_R, N_S, get_baseline
from imsim.core.constants import RACES
from imsim.birth.engines import expected
from imsim.inputs.fit import direct_fit, imr_targets
from imsim.birth.kernels import N_BANDS, OUT_DEATHS
from imsim.birth.params import build_tables
from imsim.config.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
CELL_TOL_PER_1000 = 1e-6
RACE_REL_TOL = 0.01


def _pooled_imr(result, draw=0):
    """IMR per 1,000 [51, 5] and births [51, 5] of the baseline arm, pooled over years."""
    cells = result.inputs.cells
    deaths = result.arms.baseline[draw][:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1)
    d = np.zeros((N_S, N_R))
    b = np.zeros((N_S, N_R))
    np.add.at(d, (cells.s_idx, cells.r_idx), deaths)
    np.add.at(b, (cells.s_idx, cells.r_idx), cells.births)
    return d, b


@pytest.fixture(scope="module")
def baseline_run(warm):
    return imsim.run(load_scenario(ROOT / "scenarios" / "baseline.yaml"), engine="expected",
                     calibration="direct")


@pytest.fixture(scope="module")
def calibrated_run(warm):
    return imsim.run(load_scenario(ROOT / "scenarios" / "baseline.yaml"), engine="expected")


def test_every_observed_cell_imr_is_reproduced(baseline_run):
    d, b = _pooled_imr(baseline_run)
    obs, _ = imr_targets()
    have = ~np.isnan(obs)
    assert have.sum() > 150                      # most cells are published
    assert (b[have] > 0).all()
    err = np.abs(1000.0 * d[have] / b[have] - obs[have])
    worst = np.unravel_index(np.argmax(np.where(have, np.abs(1000 * d / np.maximum(b, 1) - obs),
                                                -1)), obs.shape)
    assert err.max() <= CELL_TOL_PER_1000, (err.max(), worst)


def test_direct_fit_on_pooled_cells_reproduces_observed_cells():
    """The same without the runner: pooled 2013-2015 cells, fit and expected engine directly."""
    from imsim.inputs.evidence import EvidenceLibrary

    bl = get_baseline()
    effects = EvidenceLibrary.load().point()
    fit = direct_fit(bl, effects)
    cells = bl.pooled_cells()
    counts = expected(build_tables(bl.params(cells, effects, fit)))
    imr = 1000.0 * counts[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1) / cells.births
    obs, _ = imr_targets()
    o = obs[cells.s_idx, cells.r_idx]
    have = ~np.isnan(o)
    assert np.max(np.abs(imr[have] - o[have])) <= CELL_TOL_PER_1000
    # Without the fit the cells are *not* met, so the assertion above has teeth.
    raw = expected(build_tables(bl.params(cells, effects, None)))
    imr_raw = 1000.0 * raw[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1) / cells.births
    assert np.max(np.abs(imr_raw[have] - o[have])) > 0.1


def test_fit_holds_for_sampled_effect_draws(warm):
    """Each uncertainty draw is re-fitted, so every draw's baseline still meets observed cells."""
    sc = parse_scenario({"name": "t", "years": [2013, 2015], "states": "all", "seed": 4,
                         "replicates": 2})
    res = imsim.run(sc, engine="expected", calibration="direct")
    obs, _ = imr_targets()
    have = ~np.isnan(obs)
    assert res.arms.baseline.shape[0] == 3
    for draw in range(3):
        d, b = _pooled_imr(res, draw)
        assert np.max(np.abs(1000.0 * d[have] / b[have] - obs[have])) <= CELL_TOL_PER_1000, draw


@pytest.mark.parametrize("race", RACES)
def test_national_imr_by_race_calibrated(calibrated_run, race):
    d, b = _pooled_imr(calibrated_run)
    _, obs_race = imr_targets()
    r = RACES.index(race)
    model = 1000.0 * d[:, r].sum() / b[:, r].sum()
    assert abs(model / obs_race[r] - 1.0) <= RACE_REL_TOL, (race, model, obs_race[r])


def test_national_total_and_published_examples_calibrated(calibrated_run):
    """The issue's examples: 5.89 overall, 11.10 NH black, 4.99 Hispanic (db295)."""
    d, b = _pooled_imr(calibrated_run)
    total = 1000.0 * d.sum() / b.sum()
    black = 1000.0 * d[:, RACES.index("nh_black")].sum() / b[:, RACES.index("nh_black")].sum()
    hisp = 1000.0 * d[:, RACES.index("hispanic")].sum() / b[:, RACES.index("hispanic")].sum()
    for model, published in ((total, 5.89), (black, 11.10), (hisp, 4.99)):
        assert abs(model / published - 1.0) <= RACE_REL_TOL, (model, published)


def test_calibrated_cells_inside_observation_intervals(calibrated_run):
    """At least 95% of published cells lie inside their observation's 95% interval."""
    from imsim.calibration.calibrate import load_observations

    d, b = _pooled_imr(calibrated_run)
    imr = 1000.0 * d / np.maximum(b, 1)
    rep = __import__("pandas").read_csv(ROOT / "calibration" / "default" / "fit_report.csv")
    cells = rep[(rep.target == "imr") & (rep.state != "ALL") & (rep.race != "ALL")
                & rep.observed.notna()]
    from imsim.inputs.baseline import R_INDEX, S_INDEX

    inside = [(row.observed_lo <= imr[S_INDEX[row.state], R_INDEX[row.race]] <= row.observed_hi)
              for row in cells.itertuples()]
    assert len(inside) > 150
    assert np.mean(inside) >= 0.95, np.mean(inside)
    del load_observations
