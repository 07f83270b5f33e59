"""Smoking and unsafe-sleep quantities against hand computations from their sources.

Sources (../shared/data/evidence/effects.csv rows, 0-based as in build_data.py): Dietz 2010 category
ORs of smoking for very (1.5), moderately (1.4) and late (1.2) preterm birth vs term; Priyadarshi
2022 pooled OR of supine vs non-supine 0.51; Carpenter 2013 bed-sharing AOR among non-smoking parents
2.7; Vennemann 2012 bed-sharing OR among smoking mothers 6.27; Sun 2023 RR 1.35 of smoking for
deaths from other perinatal conditions at term; NVSR 65(1) 2014 smoking prevalence 8.4%.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import random_params

from imsim.birth.kernels import N_BANDS
from imsim.birth.params import death_probabilities
from imsim.inputs.data import load_table
from imsim.inputs.evidence import EvidenceLibrary


@pytest.fixture(scope="module")
def ev():
    return EvidenceLibrary.load()


def _ga_shares():
    ga = load_table("ga_structure")
    s = ga[ga.race == "ALL"].set_index("ga_band")["births_share"]
    return {"vp": s["<28"] + s["28-31"], "mp": s["32-33"], "lp": s["34-36"],
            "t": 1 - s["<28"] - s["28-31"] - s["32-33"] - s["34-36"]}


def test_smoking_cut_ors_are_cumulative_from_dietz_categories(ev):
    c = _ga_shares()
    o = {"vp": 1.5, "mp": 1.4, "lp": 1.2, "t": 1.0}

    def cum(below):
        above = [k for k in c if k not in below]
        s = sum(o[k] * c[k] for k in below) / sum(o[k] * c[k] for k in above)
        n = sum(c[k] for k in below) / sum(c[k] for k in above)
        return s / n

    assert ev.effects["smoking_ga_lt32_or"].point == pytest.approx(cum(["vp"]), rel=1e-5)
    assert ev.effects["smoking_ga_lt34_or"].point == pytest.approx(cum(["vp", "mp"]), rel=1e-5)
    assert ev.effects["smoking_ga_lt37_or"].point == pytest.approx(cum(["vp", "mp", "lp"]), rel=1e-5)
    # The cumulative <37 OR exceeds the late-preterm category OR it replaced.
    assert ev.effects["smoking_ga_lt37_or"].point > 1.2


def test_unsafe_sleep_or_is_the_composite_of_its_two_components(ev):
    ns_or, bs_or, ns, bs = 1 / 0.51, 2.7, 0.216, 0.135
    w = np.array([ns * (1 - bs), bs * (1 - ns), ns * bs])
    expect = (w @ np.array([ns_or, bs_or, ns_or * bs_or])) / w.sum()
    assert ev.effects["unsafe_sleep_suid_or"].point == pytest.approx(expect, rel=1e-5)


def test_smoking_interaction_divides_by_the_non_smokers_bed_sharing_or(ev):
    assert ev.effects["unsafe_sleep_smoking_interaction"].point == pytest.approx(6.27 / 2.7, rel=1e-5)


def test_smoking_prevalence_is_for_the_2013_2015_baseline():
    ex = load_table("exposures")
    row = ex[(ex.exposure == "smoking") & (ex.state == "ALL") & (ex.race == "ALL")].iloc[0]
    assert row.prevalence == pytest.approx(0.084) and str(row.period) == "2014"
    aian = ex[(ex.exposure == "smoking") & (ex.state == "ALL") & (ex.race == "nh_aian")].iloc[0]
    assert aian.prevalence == pytest.approx(0.18)
    white = ex[(ex.exposure == "smoking") & (ex.state == "ALL") & (ex.race == "nh_white")].iloc[0]
    assert white.prevalence == pytest.approx(0.105 * 8.4 / 7.2, rel=1e-4)


def test_smoking_raises_term_neonatal_death_directly_and_not_preterm():
    """Neonatal death of a smoker's term birth = non-smoker's x rr_smk_neo; preterm bands unchanged."""
    p = random_params(3, death_range=(0.001, 0.05))
    p_neo, _, _ = death_probabilities(p)
    smoker, nonsmoker = 1, 0            # combination index smk + 2 us + 4 li + 8 sd
    for c in range(p.n):
        for band in range(N_BANDS):
            ratio = p_neo[c, band, 0, smoker] / p_neo[c, band, 0, nonsmoker]
            if band >= 4 and p_neo[c, band, 0, smoker] < 0.999:
                assert ratio == pytest.approx(p.rr_smk_neo[c], rel=1e-12)
            elif band < 4:
                assert ratio == pytest.approx(1.0, rel=1e-12)


def test_the_baseline_uses_the_evidence_value(ev):
    from imsim.analysis.runner import get_calibration
    from imsim.inputs.baseline import get_baseline
    from imsim.inputs.fit import fit_for

    base = get_baseline()
    cells = base.cells([2015], ["VT"])
    effects = ev.point()
    params = base.params(cells, effects, fit_for(base, effects, get_calibration(None)))
    assert np.all(params.rr_smk_neo == pytest.approx(ev.effects["smoking_term_neonatal_rr"].point))
