"""Evidence-true levers: the short-IPI exposure and preconception care, and progesterone.

Each corrected quantity is checked against a value computed by hand from its source:

* ``short_ipi`` is the exposure its odds ratio was estimated for -- an interpregnancy interval
  under 6 months (Class 2017: <6 vs 18-23 months) -- among ALL births: the share of births of
  order >= 2 (NVSR 64-12 Table 2, 2014) x the share of those with IPI < 6 months (NCHS Data
  Brief 240, by race).
* Vaginal progesterone lowers the number of births below 28, 32, 34 and 37 weeks among the
  short-cervix births it reaches by the published RISK ratios (Romero 2012/2018 IPD, PREGNANT
  trial), applied to those births' own risk (PREGNANT placebo arm); 17-OHPC's Meis effect is a
  risk ratio on the prior-preterm births it reaches; its base case changes nothing.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from imsim.analysis.runner import get_calibration, resolve_inputs, scenario_params
from imsim.birth.engines import expected
from imsim.birth.kernels import OUT_BIRTHS, OUT_PP, OUT_PROG
from imsim.birth.params import apply_or, build_tables, exposure_marginals, logit
from imsim.config.scenario import parse_scenario
from imsim.core.constants import RACES
from imsim.inputs.data import load_table
from imsim.inputs.fit import fit_for
from reference import ga_cumulative as ref_ga_cumulative

# NVSR 64-12 (Births: Final Data for 2014) Table 2: all births, first births, order not stated.
TOTAL_2014, FIRST_2014, UNKNOWN_2014 = 3_988_076, 1_550_475, 19_898
PARITY2 = (TOTAL_2014 - UNKNOWN_2014 - FIRST_2014) / (TOTAL_2014 - UNKNOWN_2014)
# NCHS Data Brief 240: IPI < 6 months among second- and higher-order births, 2014.
IPI_LT6 = {"nh_black": 0.071, "nh_white": 0.041, "hispanic": 0.050}
# Rodriguez (OR + SC Medicaid): short IPI 23.0% after immediate postpartum LARC vs 42.1%.
LARC_REDUCTION = 1 - 23.0 / 42.1
# Risk ratios at the model's cuts 28, 32, 34, 37 weeks: Romero 2012 IPD <28 wk 0.50, Romero
# 2018 IPD <33 wk 0.62, Romero 2012 IPD <35 wk 0.69, PREGNANT trial <37 wk 0.91.
VAGINAL_RR = np.array([0.50, 0.62, 0.69, 0.91])
# PREGNANT placebo arm (n = 224): births < 28 wk 21, < 33 wk 34, < 35 wk 50, < 37 wk 74.
PLACEBO = {28: 21 / 224, 33: 34 / 224, 35: 50 / 224, 37: 74 / 224}
MEIS_RR = 37.1 / 54.9
TOL = dict(rtol=1e-6, atol=0.0)
#: The packaged tables store 6 decimals: values read from them match hand-computed ones to 5e-7.
CSV = dict(rtol=0.0, atol=5e-7)
STATES_ = ["AL", "CA", "MS"]


def _arms(strategies, years=(2015, 2015)):
    spec = {"name": "t", "years": list(years), "states": list(STATES_),
            "strategies": strategies}
    inputs = resolve_inputs(parse_scenario(spec))
    effects = inputs.evidence.point()
    fit = fit_for(inputs.baseline, effects, get_calibration(None))
    base = inputs.baseline.params(inputs.cells, effects, fit)
    return inputs, effects, base, scenario_params(inputs, base, effects)


def _below(counts):
    """Expected births below 28, 32, 34, 37 weeks per cell [n, 4]."""
    return np.cumsum(counts[:, OUT_BIRTHS:OUT_BIRTHS + 4], axis=1)


def _eligible_cum(p, c, beta_pp=None):
    """P(GA < 28, 32, 34, 37 | eligible) of cell ``c`` [4], treated and untreated together, by
    enumeration with the NumPy reference (independent of the lever and of the kernels); with
    ``beta_pp`` [5] given, of untreated eligible births with those eligibility log odds ratios."""
    q = p.take([c])
    if beta_pp is not None:
        q.beta_pp = np.asarray(beta_pp, dtype=float)[None, :]
        q.p_prog = np.zeros(1)
    pe = q.p_exp[0]
    tot, acc = 0.0, np.zeros(4)
    for li, smk, ipi, sd, prog in itertools.product((0, 1), repeat=5):
        def bern(prob, x):
            return prob if x else 1.0 - prob
        w = (bern(q.p_li[0], li) * pe[1, li] * bern(pe[0, li], smk) * bern(pe[2, li], ipi)
             * bern(q.p_sd[0] if li else 0.0, sd) * bern(q.p_prog[0], prog))
        one = np.ones(1, dtype=np.int64)
        cum = ref_ga_cumulative(q, 0, smk * one, one, ipi * one, li * one, prog * one,
                                sd * one)[0]
        acc += w * cum[:4]
        tot += w
    return acc / tot


def _short_cervix_log_or(e):
    return np.append(np.log([e[f"short_cervix_ptb_lt{k}_or"] for k in (28, 32, 34, 37)]), 0.0)


# ---------------------------------------------------------------------------------------------
# Short interpregnancy interval and preconception care
# ---------------------------------------------------------------------------------------------

def test_short_ipi_is_ipi_under_6_months_among_all_births():
    ex = load_table("exposures")
    ipi = ex[(ex.exposure == "short_ipi") & (ex.state == "ALL")].set_index("race")["prevalence"]
    assert abs(PARITY2 - 0.6093) < 5e-5                   # 2,417,703 / 3,968,178
    for race, lt6 in IPI_LT6.items():
        np.testing.assert_allclose(ipi[race], PARITY2 * lt6, **CSV)
    # All races: the births-weighted (2015) mean of the three sourced groups, times PARITY2.
    b = load_table("births")
    w = b[b.year == 2015].groupby("race").births.sum()
    w = w / w.sum()
    nat = sum(IPI_LT6[r] * w[r] for r in IPI_LT6) / sum(w[r] for r in IPI_LT6)
    np.testing.assert_allclose(ipi["ALL"], PARITY2 * nat, **CSV)
    for race in ("nh_api", "nh_aian"):
        np.testing.assert_allclose(ipi[race], ipi["ALL"], rtol=1e-12)
    # Far below the 28.9% (< 18 months, second+ order births only) applied to every birth before.
    assert ipi.max() < 0.05


def test_model_short_ipi_prevalence_and_odds_ratio_are_the_sourced_ones():
    inputs, e, base, _ = _arms({})
    m = exposure_marginals(base)["short_ipi"]
    for r, race in enumerate(RACES):
        sel = inputs.cells.r_idx == r
        want = PARITY2 * IPI_LT6[race] if race in IPI_LT6 else None
        if want is not None:
            np.testing.assert_allclose(m[sel], want, **CSV)
    # The odds ratio of the sibling design (IPI < 6 vs 18-23 months) on the preterm cuts only.
    assert e["short_ipi_ptb_or"] == 1.22
    np.testing.assert_allclose(base.beta_ipi[:, :4], np.log(1.22), rtol=1e-12)
    np.testing.assert_array_equal(base.beta_ipi[:, 4], 0.0)


@pytest.mark.parametrize("c", [0.4, 1.0])
def test_preconception_care_lowers_ipi_under_6_months_by_larc_reduction(c):
    _, e, base, scen = _arms({"preconception_care": {"coverage": c}})
    np.testing.assert_allclose(e["larc_short_ipi_reduction"], LARC_REDUCTION, **CSV)
    mb = exposure_marginals(base)["short_ipi"]
    ms = exposure_marginals(scen)["short_ipi"]
    np.testing.assert_allclose(ms, mb * (1 - c * e["larc_short_ipi_reduction"]), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Progesterone
# ---------------------------------------------------------------------------------------------

def test_short_cervix_odds_ratios_from_the_placebo_arm():
    ga = load_table("ga_structure")
    nat = ga[ga.race == "ALL"].set_index("ga_band")["births_share"]
    nat = nat / nat.sum()
    cum = np.cumsum([nat[b] for b in ("<28", "28-31", "32-33", "34-36")])
    placebo = [PLACEBO[28], PLACEBO[28] + 0.8 * (PLACEBO[33] - PLACEBO[28]),
               0.5 * (PLACEBO[33] + PLACEBO[35]), PLACEBO[37]]
    e = resolve_inputs(parse_scenario({"name": "t", "years": [2015, 2015], "states": ["AL"]})) \
        .evidence.point()
    for k, cut in enumerate((28, 32, 34, 37)):
        want = (placebo[k] / (1 - placebo[k])) / (cum[k] / (1 - cum[k]))
        # The shares in ga_structure.csv are rounded to 6 decimals (the build uses them unrounded):
        # up to 5e-7 / 0.007 ~ 1e-4 relative on the odds of the earliest cut.
        np.testing.assert_allclose(e[f"short_cervix_ptb_lt{cut}_or"], want, rtol=1e-4)
    # Risk ratios of vaginal progesterone, and 17-OHPC's.
    got = [e[k] for k in ("vaginal_progesterone_ptb_lt28_rr", "vaginal_progesterone_ptb_rr",
                          "vaginal_progesterone_ptb_lt35_rr", "vaginal_progesterone_ptb_lt37_rr")]
    np.testing.assert_allclose(got, VAGINAL_RR, rtol=1e-12)
    assert e["ohpc_ptb_rr"] == 1.0
    np.testing.assert_allclose(e["ohpc_meis_ptb_rr"], MEIS_RR, **CSV)


def test_eligible_exposure_mixes_prior_preterm_and_short_cervix_by_prevalence():
    inputs, e, base, _ = _arms({})
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    np.testing.assert_allclose(s, 0.011 / (0.04 + 0.011), rtol=1e-12)
    r = inputs.baseline.ga_cum_national[:4]
    mix = ((1 - s)[:, None] * apply_or(r[None, :], e["prior_preterm_ptb_or"])
           + s[:, None] * apply_or(r[None, :], np.exp(_short_cervix_log_or(e)[:4])[None, :]))
    np.testing.assert_allclose(base.beta_pp[:, :4], logit(mix) - logit(r)[None, :], rtol=1e-12)
    np.testing.assert_array_equal(base.beta_pp[:, 4], 0.0)
    # A short cervix carries more risk than a prior preterm birth, most at the earliest cut.
    assert np.all(base.beta_pp[:, 0] > np.log(e["prior_preterm_ptb_or"]))


@pytest.mark.parametrize("c", [1.0, 0.6])
def test_vaginal_progesterone_lowers_births_below_each_cut_by_the_risk_ratio(c):
    inputs, e, base, scen = _arms({"preterm_prevention": {
        "coverage": c, "components": ["vaginal_progesterone"]}})
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    cb, cs = expected(build_tables(base)), expected(build_tables(scen))
    # The births reached: eligible births with a short cervix, times the coverage.
    reached = cs[:, OUT_PROG]
    np.testing.assert_allclose(reached, cb[:, OUT_PP] * c * s, rtol=1e-12)
    for i in range(base.n):
        sc = _eligible_cum(base, i, _short_cervix_log_or(e))      # their risk without treatment
        drop = _below(cb)[i] - _below(cs)[i]
        # Among the births reached, births < 28, 32, 34, 37 weeks fall by the risk ratio.
        np.testing.assert_allclose(drop, reached[i] * (1 - VAGINAL_RR) * sc, **TOL)
        # Equivalently: the eligible births' cumulative GA probabilities with and without.
        np.testing.assert_allclose(_eligible_cum(scen, i),
                                   _eligible_cum(base, i) - c * s[i] * (1 - VAGINAL_RR) * sc,
                                   **TOL)
    # Preterm births (< 37 weeks) fall in every cell.
    assert np.all(_below(cs)[:, 3] < _below(cb)[:, 3])


def test_ohpc_meis_is_a_risk_ratio_on_the_prior_preterm_births_reached():
    inputs, e, base, scen = _arms({"preterm_prevention": {
        "coverage": 1.0, "components": ["ohpc"], "ohpc_effect": "meis"}})
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    cb, cs = expected(build_tables(base)), expected(build_tables(scen))
    reached = cs[:, OUT_PROG]
    np.testing.assert_allclose(reached, cb[:, OUT_PP] * (1 - s), rtol=1e-12)
    for i in range(base.n):
        elig = _eligible_cum(base, i, base.beta_pp[i])
        sc = _eligible_cum(base, i, _short_cervix_log_or(e))
        prior = (elig - s[i] * sc) / (1 - s[i])          # the rest of the eligible mix
        drop = _below(cb)[i] - _below(cs)[i]
        np.testing.assert_allclose(drop, reached[i] * (1 - MEIS_RR) * prior, **TOL)


def test_ohpc_base_case_adds_nothing_to_vaginal_progesterone():
    _, _, base, vag = _arms({"preterm_prevention": {
        "coverage": 0.7, "components": ["vaginal_progesterone"]}})
    _, e, _, both = _arms({"preterm_prevention": {
        "coverage": 0.7, "components": ["vaginal_progesterone", "ohpc"], "ohpc_effect": "none"}})
    assert e["ohpc_ptb_rr"] == 1.0
    np.testing.assert_allclose(_below(expected(build_tables(both))),
                               _below(expected(build_tables(vag))), rtol=1e-9)
