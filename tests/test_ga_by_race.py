"""Gestational age by race: each race's own GA distribution, one GA measure for births and deaths.

The packaged ``ga_structure.csv`` gives every race its own births share by GA band (obstetric
estimate); the baseline turns it into race-specific cumulative targets at all five cuts (28, 32,
34, 37, 39 weeks), and the cut-point solve reproduces them exactly in every cell.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imsim.birth.engines import expected
from imsim.birth.kernels import N_BANDS, OUT_BIRTHS
from imsim.birth.params import build_tables
from imsim.core.constants import GA_BANDS, RACES
from imsim.inputs.baseline import get_baseline
from imsim.inputs.data import load_table
from imsim.inputs.evidence import EvidenceLibrary
from imsim.inputs.fit import fit_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
#: The packaged CSV prints shares with 6 decimals: a cumulative of two rounded shares is within 1e-6.
CSV_TOL = 1.01e-6
#: Cut-point solve: bisection to 1e-13 on the cumulative probability (baseline.solve_cutpoints).
SOLVE_TOL = 1e-8

# Source rows, copied by hand from the CDC WONDER Natality export (Year 2017, OE Gestational Age 10 x
# Bridged Race; GitHub parismoscow/IMR-project commit 1ec2bd7f, 'datafiles/extreme prematurity by race,
# 2007-2017.txt'): births under 20, 20-27, 28-31 weeks, and all births of known OE gestational age.
BLACK = {"<20": 562, "20-27": 8858, "28-31": 10127,
         "known": 562 + 8858 + 10127 + 38167 + 30634 + 416780 + 116862 + 33686 + 1841}
AIAN = {"<20": 16, "20-27": 291, "28-31": 427,
        "known": 16 + 291 + 427 + 2179 + 1927 + 26619 + 7906 + 2350 + 125}
# NH AIAN preterm: March of Dimes 2017 report card, NH AIAN 1.18 x NH white 2014-2016 (AAP News, Nov 2017),
# NH white 8.91 / 8.88 / 9.06% in 2014 / 2015 / 2016 (NCHS db312 via statinvestor), shared
# observed/preterm_state_race.csv.
AIAN_RATIO, WHITE_14_16 = 1.18, (8.91, 8.88, 9.06)


def _race_cum(race: str) -> np.ndarray:
    g = load_table("ga_structure")
    sub = g[g["race"] == race].set_index("ga_band").loc[list(GA_BANDS)]
    return np.cumsum(sub["births_share"].to_numpy(float))


@pytest.mark.parametrize("race, src", [("nh_black", BLACK), ("nh_aian", AIAN)])
def test_packaged_distribution_equals_hand_computation(race, src):
    cum = _race_cum(race)
    lt28 = (src["<20"] + src["20-27"]) / src["known"]
    lt32 = (src["<20"] + src["20-27"] + src["28-31"]) / src["known"]
    assert abs(cum[0] - lt28) < CSV_TOL, (race, cum[0], lt28)
    assert abs(cum[1] - lt32) < CSV_TOL, (race, cum[1], lt32)


def test_race_distributions_differ_at_every_cut():
    """Not one shift of a common shape: the black/white odds ratio differs between the cuts."""
    b, w = _race_cum("nh_black")[:5], _race_cum("nh_white")[:5]
    lor = np.log(b / (1 - b)) - np.log(w / (1 - w))
    assert lor[0] - lor[3] > 0.3        # extremely preterm excess well above the preterm excess
    assert (b / w)[0] > 2.5             # NH black under 28 weeks: 2.8x NH white in the source


def test_aian_preterm_from_its_source():
    want = AIAN_RATIO * sum(WHITE_14_16) / 3
    t = load_table("targets")
    row = t[(t["target"] == "preterm_rate") & (t["race"] == "nh_aian") & (t["period"].astype(str) == "2014-2015")]
    assert len(row) == 1
    assert abs(float(row["value"].iloc[0]) - want) < 1e-6
    assert abs(_race_cum("nh_aian")[3] - want / 100) < CSV_TOL
    national = t[(t["target"] == "preterm_rate") & (t["race"] == "ALL") & (t["period"].astype(str) == "2014-2015")]
    assert want > float(national["value"].iloc[0])   # above the national rate, as published
    if not SHARED.is_dir():
        return
    pt = pd.read_csv(SHARED / "observed" / "preterm_state_race.csv")
    ratio = pt[(pt.measure == "preterm_disparity_vs_white") & (pt.race_ethnicity == "American Indian/Alaska Native")]
    assert float(ratio.value.iloc[0]) == AIAN_RATIO
    w = pt[(pt.geo_abbr == "US") & (pt.race_ethnicity == "non-Hispanic white")
           & (pt.measure == "preterm_birth_rate_lt37wk")]
    assert tuple(float(w[w.period.astype(str) == y].value.iloc[0]) for y in ("2014", "2015", "2016")) == WHITE_14_16


def test_births_and_deaths_on_one_ga_measure():
    g = load_table("ga_structure")
    assert (g["births_ga_measure"] == g["deaths_ga_measure"]).all()
    assert set(g["births_ga_measure"]) == {"obstetric estimate (OE)"}
    assert g["births_share"].notna().all()
    for race, sub in g.groupby("race"):
        assert abs(sub["births_share"].sum() - 1) < 1e-5, race
        assert ((sub["births_share_lo"] <= sub["births_share"]) & (sub["births_share"] <= sub["births_share_hi"])).all()


def _engine_cum(bl, fit):
    cells = bl.pooled_cells()
    out = expected(build_tables(bl.params(cells, EvidenceLibrary.load().point(), fit)))
    b = out[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS]
    return cells, np.cumsum(b, axis=1)[:, :5] / b.sum(axis=1, keepdims=True)


def test_baseline_reproduces_each_race_cumulative_targets():
    """Without a fit every cell's marginal P(GA < cut) is its race's target, at every cut."""
    bl = get_baseline()
    cells, cum = _engine_cum(bl, None)
    want = bl.ga_cum_target[cells.r_idx]
    assert np.max(np.abs(cum - want)) < SOLVE_TOL
    for race in RACES:   # and the targets are the packaged distribution
        ri = RACES.index(race)
        assert np.allclose(bl.ga_cum_target[ri], _race_cum(race)[:5], atol=CSV_TOL)


def test_calibrated_shift_moves_cells_within_their_race_distribution():
    """With the default calibration a cell's cuts are its race's cuts shifted by the cell's log-odds shift."""
    bl = get_baseline()
    fit = fit_for(bl, EvidenceLibrary.load().point(), _default_calibration())
    cells, cum = _engine_cum(bl, fit)
    base = bl.ga_cum_target[cells.r_idx]
    shift = fit.ga_shift[cells.s_idx, cells.r_idx]
    want = 1.0 / (1.0 + np.exp(-(np.log(base / (1 - base)) + shift)))
    assert np.max(np.abs(cum - want)) < SOLVE_TOL
    # States move within race; each race's own preterm rate stays on its target.
    pre = load_table("targets")
    pre = pre[(pre["target"] == "preterm_rate") & (pre["period"].astype(str) == "2014-2015")].set_index("race")
    for ri, race in enumerate(RACES):
        m = cells.r_idx == ri
        rate = np.sum(cum[m, 3] * cells.births[m]) / cells.births[m].sum()
        assert abs(100 * rate - float(pre.loc[race, "value"])) < 1e-4, race


def _default_calibration():
    from imsim.calibration.targets import load_calibration

    return load_calibration(None)
