"""The six strategy levers: each moves its named quantities the right way and by the evidence's
amount, outcomes follow through the expected engine, and strategies combine through the model.

Quantities are checked on the draw-0 (point-value) arms built exactly as :func:`imsim.run` builds
them: base params from the fitted baseline, scenario params from :func:`scenario_params`.
"""
from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

import imsim
from imsim.core.constants import ALL, RACES, STATES
from imsim.birth.engines import expected
from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
from imsim.birth.params import CellParams, build_tables, exposure_marginals
from imsim.analysis.runner import get_calibration, resolve_inputs, scenario_params
from imsim.inputs.fit import fit_for
from imsim.config.scenario import parse_scenario
from imsim.birth.strategies import MEDICAID_RACE_EFFECT, SMOKING_PROGRAM_EFFECT

STATES_ = ["AL", "MS", "GA"]
YEARS = [2016, 2017]
TIGHT = dict(rtol=1e-12, atol=0.0)
NEONATAL, SUID, OTHER = 0, 1, 2


def _spec(strategies=None, **extra):
    spec = {"name": "t", "years": list(YEARS), "states": list(STATES_)}
    if strategies is not None:
        spec["strategies"] = strategies
    spec.update(extra)
    return spec


def _arms(spec):
    """(inputs, point effects, baseline params, scenario params) of draw 0, as imsim.run."""
    inputs = resolve_inputs(parse_scenario(spec))
    effects = inputs.evidence.point()
    fit = fit_for(inputs.baseline, effects, get_calibration(None))
    base = inputs.baseline.params(inputs.cells, effects, fit)
    scen = scenario_params(inputs, base, effects)
    return inputs, effects, base, scen


def _changed(a: CellParams, b: CellParams) -> set[str]:
    return {f.name for f in fields(a)
            if not np.array_equal(getattr(a, f.name), getattr(b, f.name))}


def _counts(p: CellParams) -> np.ndarray:
    return expected(build_tables(p))


def _deaths(c):
    """[n, 3 causes, 6 bands] deaths per cell."""
    return c[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(-1, 3, N_BANDS)


def _preterm(c):
    return c[:, OUT_BIRTHS:OUT_BIRTHS + 4].sum(axis=1)       # bands < 37 weeks


def _total_averted(result, state=ALL):
    s = result.summary
    return float(s[(s.state == state) & (s.race == ALL)].deaths_averted.iloc[0])


# ---------------------------------------------------------------------------------------------
# Each lever: its quantities, by the evidence's amount
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("override", [None, 0.3])
@pytest.mark.parametrize("c", [0.25, 0.8])
def test_safe_sleep_scales_unsafe_sleep_by_coverage_times_efficacy(c, override):
    effects = {"safe_sleep_unsafe_reduction": override} if override is not None else None
    spec = _spec({"safe_sleep": {"coverage": c}}, **({"effects": effects} if effects else {}))
    _, e, base, scen = _arms(spec)
    if override is not None:
        assert e["safe_sleep_unsafe_reduction"] == override
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    factor = 1.0 - c * e["safe_sleep_unsafe_reduction"]
    np.testing.assert_allclose(ms["unsafe_sleep"], mb["unsafe_sleep"] * factor, **TIGHT)
    assert np.all(mb["unsafe_sleep"] > 0)
    # Only unsafe sleep moves; every other exposure and quantity is untouched.
    assert _changed(base, scen) == {"p_us"}
    for k in ("low_income", "smoking", "prior_preterm", "short_ipi", "elective_early_term"):
        np.testing.assert_array_equal(ms[k], mb[k])


@pytest.mark.parametrize("program", sorted(SMOKING_PROGRAM_EFFECT))
def test_smoking_cessation_removes_extra_quitters_for_each_program(program):
    c = 0.5
    _, e, base, scen = _arms(_spec({"smoking_cessation": {"coverage": c, "program": program}}))
    rr = e[SMOKING_PROGRAM_EFFECT[program]]
    extra_quit = e["cessation_control_quit"] * (rr - 1.0)
    assert 0 < extra_quit < 1
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    assert np.all(mb["smoking"] > 0)
    # Share of smokers removed is exactly c * control quit * (RR - 1).
    removed = (mb["smoking"] - ms["smoking"]) / mb["smoking"]
    np.testing.assert_allclose(removed, c * extra_quit, rtol=1e-10)
    assert _changed(base, scen) == {"p_exp"}
    np.testing.assert_array_equal(scen.p_exp[:, 1:, :], base.p_exp[:, 1:, :])


def test_smoking_programs_differ_by_their_relative_risk():
    """The program option reaches the lever: a larger RR removes more smokers."""
    removed = {}
    for program in SMOKING_PROGRAM_EFFECT:
        _, e, base, scen = _arms(_spec({"smoking_cessation": {"coverage": 0.5,
                                                               "program": program}}))
        mb, ms = exposure_marginals(base)["smoking"], exposure_marginals(scen)["smoking"]
        removed[program] = float(((mb - ms) / mb).mean())
    point = {p: e[SMOKING_PROGRAM_EFFECT[p]] for p in SMOKING_PROGRAM_EFFECT}
    assert sorted(removed, key=removed.get) == sorted(point, key=point.get)


@pytest.mark.parametrize("c", [0.3, 1.0])
def test_hard_stop_lowers_elective_early_term_by_evidence(c):
    _, e, base, scen = _arms(_spec({"preterm_prevention": {"coverage": c,
                                                            "components": ["hard_stop"]}}))
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    assert np.all(mb["elective_early_term"] > 0)
    np.testing.assert_allclose(ms["elective_early_term"],
                               mb["elective_early_term"] * (1 - c * e["hard_stop_eed_reduction"]),
                               **TIGHT)
    assert _changed(base, scen) == {"p_exp"}
    np.testing.assert_array_equal(scen.p_exp[:, :3, :], base.p_exp[:, :3, :])
    np.testing.assert_array_equal(scen.p_prog, base.p_prog)


@pytest.mark.parametrize("c", [0.4, 0.9])
def test_preconception_care_lowers_short_ipi_by_evidence(c):
    _, e, base, scen = _arms(_spec({"preconception_care": {"coverage": c}}))
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    assert np.all(mb["short_ipi"] > 0)
    np.testing.assert_allclose(ms["short_ipi"],
                               mb["short_ipi"] * (1 - c * e["larc_short_ipi_reduction"]), **TIGHT)
    assert _changed(base, scen) == {"p_exp"}
    np.testing.assert_array_equal(scen.p_exp[:, [0, 1, 3], :], base.p_exp[:, [0, 1, 3], :])


@pytest.mark.parametrize("c", [0.5, 0.9])
def test_risk_appropriate_care_raises_level3_share(c):
    _, _, base, scen = _arms(_spec({"risk_appropriate_care": {"coverage": c}}))
    assert np.all(base.p_l3 < 1)
    np.testing.assert_allclose(scen.p_l3, base.p_l3 + c * (1 - base.p_l3), **TIGHT)
    assert _changed(base, scen) == {"p_l3"}


def test_social_determinants_medicaid_expansion_sets_reach_and_death_odds():
    c = 0.5
    inputs, e, base, scen = _arms(_spec({"social_determinants": {"coverage": c,
                                                                  "policy": "medicaid_expansion"}}))
    np.testing.assert_array_equal(base.p_sd, 0.0)
    np.testing.assert_allclose(scen.p_sd, c, **TIGHT)
    # Race-specific effects (AL, MS, GA had not expanded Medicaid: every cell is reached).
    ids = [MEDICAID_RACE_EFFECT.get(RACES[r], "medicaid_expansion_death_rr")
           for r in inputs.cells.r_idx]
    np.testing.assert_allclose(scen.rr_sd_death, [e[k] for k in ids], **TIGHT)
    assert e["medicaid_expansion_death_rr_hispanic"] < 1
    np.testing.assert_array_equal(scen.beta_sd, 0.0)
    assert _changed(base, scen) == {"p_sd", "rr_sd_death"}


def test_social_determinants_income_support_sets_preterm_odds():
    c = 0.7
    _, e, base, scen = _arms(_spec({"social_determinants": {"coverage": c,
                                                             "policy": "income_support"}}))
    np.testing.assert_allclose(scen.p_sd, c, **TIGHT)
    np.testing.assert_array_equal(scen.rr_sd_death, 1.0)
    # Preterm odds (cuts 28, 32, 34, 37 weeks) x income_support_ptb_or; the 39-week cut untouched.
    np.testing.assert_allclose(scen.beta_sd[:, :4], np.log(e["income_support_ptb_or"]), **TIGHT)
    np.testing.assert_array_equal(scen.beta_sd[:, 4], 0.0)
    assert _changed(base, scen) == {"p_sd", "beta_sd"}
    cb, cs = _counts(base), _counts(scen)
    assert np.all(_preterm(cs) < _preterm(cb))


def test_ohpc_base_case_has_no_effect():
    """17-OHPC alone with the base-case effect (none): treated, but outcomes unchanged."""
    inputs, e, base, scen = _arms(_spec({"preterm_prevention": {
        "coverage": 0.6, "components": ["ohpc"], "ohpc_effect": "none"}}))
    assert e["ohpc_ptb_rr"] == 1.0
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    np.testing.assert_allclose(scen.p_prog, 0.6 * (1 - s), **TIGHT)
    assert np.all(scen.p_prog > 0)                 # births are treated ...
    np.testing.assert_array_equal(scen.beta_prog, 0.0)
    cb, cs = _counts(base), _counts(scen)          # ... with no effect on any outcome
    np.testing.assert_allclose(_deaths(cs), _deaths(cb), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(_preterm(cs), _preterm(cb), rtol=1e-12, atol=1e-9)


def test_ohpc_meis_option_lowers_preterm():
    c = 0.6
    inputs, e, base, scen = _arms(_spec({"preterm_prevention": {
        "coverage": c, "components": ["ohpc"], "ohpc_effect": "meis"}}))
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    np.testing.assert_allclose(scen.p_prog, c * (1 - s), **TIGHT)
    # Meis effect (a risk ratio, exact amounts in tests/test_levers_evidence.py) on every
    # preterm cut (< 37 weeks), not on the 39-week cut.
    np.testing.assert_array_equal(scen.beta_prog[:, 4], 0.0)
    cb, cs = _counts(base), _counts(scen)
    assert np.all(_preterm(cs) < _preterm(cb))
    assert _deaths(cs).sum() < _deaths(cb).sum()


def test_vaginal_progesterone_lowers_preterm_by_evidence():
    c = 0.8
    inputs, e, base, scen = _arms(_spec({"preterm_prevention": {
        "coverage": c, "components": ["vaginal_progesterone"]}}))
    s = inputs.baseline.short_cervix_share[inputs.cells.s_idx, inputs.cells.r_idx]
    assert np.all(s > 0)
    # Eligible births with a short cervix are treated with probability c ...
    np.testing.assert_allclose(scen.p_prog, c * s, **TIGHT)
    # ... with the evidence's risk ratios on the cuts < 37 weeks (exact amounts:
    # tests/test_levers_evidence.py). beta_prog is relative to the untreated eligible births,
    # whose log odds are re-solved (their mix holds fewer short-cervix births): it carries the
    # treated subgroup's own risk as well as the treatment. The 39-week cut is untouched.
    np.testing.assert_array_equal(scen.beta_prog[:, 4], 0.0)
    np.testing.assert_array_equal(scen.beta_pp[:, 4], base.beta_pp[:, 4])
    assert _changed(base, scen) == {"p_prog", "beta_prog", "beta_pp"}
    cb, cs = _counts(base), _counts(scen)
    # Births < 28, < 32, < 34 and < 37 weeks fall in every cell.
    for k in (1, 2, 3, 4):
        lt = slice(OUT_BIRTHS, OUT_BIRTHS + k)
        assert np.all(cs[:, lt].sum(axis=1) < cb[:, lt].sum(axis=1))
    assert _deaths(cs).sum() < _deaths(cb).sum()


# ---------------------------------------------------------------------------------------------
# Outcomes through the expected engine
# ---------------------------------------------------------------------------------------------

LEVER_SPECS = {
    "safe_sleep": {"safe_sleep": {"coverage": 0.6}},
    "smoking_cessation": {"smoking_cessation": {"coverage": 0.6, "program": "incentives"}},
    "hard_stop": {"preterm_prevention": {"coverage": 0.6, "components": ["hard_stop"]}},
    "vaginal_progesterone": {"preterm_prevention": {"coverage": 0.6,
                                                    "components": ["vaginal_progesterone"]}},
    "preconception_care": {"preconception_care": {"coverage": 0.6}},
    "risk_appropriate_care": {"risk_appropriate_care": {"coverage": 0.9}},
    "medicaid_expansion": {"social_determinants": {"coverage": 0.6}},
    "income_support": {"social_determinants": {"coverage": 0.6, "policy": "income_support"}},
}


# Medicaid expansion is left out: its pooled all-race estimate is null with a point above 1
# (Wiggins 2020), so it does not avert deaths in every group; tests/test_medicaid.py checks it.
@pytest.mark.parametrize("lever", [k for k in LEVER_SPECS if k != "medicaid_expansion"])
def test_each_lever_averts_deaths(lever):
    result = imsim.run(parse_scenario(_spec(LEVER_SPECS[lever])), engine="expected",
                       replicates=1)
    for st in STATES_ + [ALL]:
        assert _total_averted(result, st) > 0, st
    # Never more deaths in any cell of the scenario arm.
    db = _deaths(result.arms.baseline[0]).sum(axis=(1, 2))
    ds = _deaths(result.arms.scenario[0]).sum(axis=(1, 2))
    assert np.all(ds <= db * (1 + 1e-12))
    # Births are the same in both arms.
    births = slice(OUT_BIRTHS, OUT_BIRTHS + N_BANDS)
    np.testing.assert_allclose(result.arms.scenario[0][:, births].sum(axis=1),
                               result.arms.baseline[0][:, births].sum(axis=1), rtol=1e-12)


def test_safe_sleep_lowers_suid_not_neonatal():
    _, _, base, scen = _arms(_spec(LEVER_SPECS["safe_sleep"]))
    db, ds = _deaths(_counts(base)), _deaths(_counts(scen))
    assert np.all(ds[:, SUID].sum(axis=1) < db[:, SUID].sum(axis=1))
    np.testing.assert_allclose(ds[:, NEONATAL], db[:, NEONATAL], rtol=1e-12, atol=1e-12)
    # Births by GA band are unchanged: safe sleep acts after birth.
    b = slice(OUT_BIRTHS, OUT_BIRTHS + N_BANDS)
    np.testing.assert_allclose(_counts(scen)[:, b], _counts(base)[:, b], rtol=1e-12)


@pytest.mark.parametrize("spec", [
    {"preterm_prevention": {"coverage": 0.6, "components": ["hard_stop", "ohpc"],
                            "ohpc_effect": "meis"}},
    {"preterm_prevention": {"coverage": 0.6, "components": ["vaginal_progesterone", "ohpc"],
                            "ohpc_effect": "meis"}},
    LEVER_SPECS["income_support"],
], ids=["hard_stop+ohpc_meis", "vaginal+ohpc_meis", "income_support"])
def test_preterm_prevention_lowers_preterm_births(spec):
    result = imsim.run(parse_scenario(_spec(spec)), replicates=1)
    s = result.summary
    tot = s[(s.state == ALL) & (s.race == ALL)].iloc[0]
    assert tot.preterm_averted > 0
    assert tot.preterm_scenario < tot.preterm_baseline
    pt = result.table("preterm")
    row = pt[(pt.state == ALL) & (pt.race == ALL)].iloc[0]
    np.testing.assert_allclose(row.preterm_averted, tot.preterm_averted, rtol=1e-12)


def test_vaginal_progesterone_lowers_very_preterm_births_in_the_run():
    result = imsim.run(parse_scenario(_spec(LEVER_SPECS["vaginal_progesterone"])), replicates=1)
    lt34 = slice(OUT_BIRTHS, OUT_BIRTHS + 3)
    assert (result.arms.scenario[0][:, lt34].sum()
            < result.arms.baseline[0][:, lt34].sum())


def test_hard_stop_moves_early_term_to_full_term():
    _, _, base, scen = _arms(_spec(LEVER_SPECS["hard_stop"]))
    cb, cs = _counts(base), _counts(scen)
    assert np.all(cs[:, OUT_BIRTHS + 4] < cb[:, OUT_BIRTHS + 4])      # 37-38 weeks fall
    assert np.all(cs[:, OUT_BIRTHS + 5] > cb[:, OUT_BIRTHS + 5])      # 39+ rise
    np.testing.assert_allclose(_preterm(cs), _preterm(cb), rtol=1e-12)  # < 37 unchanged


def test_risk_appropriate_care_lowers_very_preterm_neonatal_deaths():
    _, _, base, scen = _arms(_spec(LEVER_SPECS["risk_appropriate_care"]))
    db, ds = _deaths(_counts(base)), _deaths(_counts(scen))
    assert np.all(ds[:, NEONATAL, :2] < db[:, NEONATAL, :2])          # < 28 and 28-31 weeks
    np.testing.assert_allclose(ds[:, NEONATAL, 2:], db[:, NEONATAL, 2:], rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Reach, ramps, combination, coverage 0, counterfactual exposures
# ---------------------------------------------------------------------------------------------

def test_reach_limits_a_strategy_to_one_race():
    reach = {r: 0.0 for r in RACES}
    reach["nh_black"] = 1.0
    inputs, _, base, scen = _arms(_spec({"safe_sleep": {"coverage": 0.7, "reach": reach}}))
    race = np.asarray(RACES)[inputs.cells.r_idx]
    ub, us = exposure_marginals(base)["unsafe_sleep"], exposure_marginals(scen)["unsafe_sleep"]
    black = race == "nh_black"
    assert np.all(us[black] < ub[black])
    np.testing.assert_array_equal(scen.p_us[~black], base.p_us[~black])
    np.testing.assert_array_equal(inputs.coverage["safe_sleep"][~black], 0.0)
    np.testing.assert_allclose(inputs.coverage["safe_sleep"][black], 0.7, **TIGHT)


def test_reach_is_a_multiplier_for_listed_races_only():
    """README: reach is an optional multiplier of coverage per race; unlisted races keep 1."""
    inputs, e, base, scen = _arms(_spec({"safe_sleep": {
        "coverage": 0.6, "reach": {"nh_black": 1.0, "nh_white": 0.0, "hispanic": 0.5}}}))
    race = np.asarray(RACES)[inputs.cells.r_idx]
    cov = inputs.coverage["safe_sleep"]
    expect = {"nh_white": 0.0, "nh_black": 0.6, "hispanic": 0.3, "nh_api": 0.6, "nh_aian": 0.6}
    for r, v in expect.items():
        np.testing.assert_allclose(cov[race == r], v, **TIGHT)
    white = race == "nh_white"
    np.testing.assert_array_equal(scen.p_us[white], base.p_us[white])
    ub, us = exposure_marginals(base)["unsafe_sleep"], exposure_marginals(scen)["unsafe_sleep"]
    np.testing.assert_allclose(us, ub * (1 - cov * e["safe_sleep_unsafe_reduction"]), **TIGHT)


def test_coverage_ramp_is_linear_per_year():
    spec = _spec({"safe_sleep": {"coverage": {2015: 0.1, 2018: 0.7}}})
    spec["years"] = [2014, 2019]
    inputs, e, base, scen = _arms(spec)
    year = inputs.cells.year
    cov = inputs.coverage["safe_sleep"]
    # 0 before the first point, linear between points, held after the last.
    expect = {2014: 0.0, 2015: 0.1, 2016: 0.3, 2017: 0.5, 2018: 0.7, 2019: 0.7}
    for y, v in expect.items():
        assert np.any(year == y)
        np.testing.assert_allclose(cov[year == y], v, rtol=1e-12, atol=1e-15)
    ub, us = exposure_marginals(base)["unsafe_sleep"], exposure_marginals(scen)["unsafe_sleep"]
    np.testing.assert_allclose(us, ub * (1 - cov * e["safe_sleep_unsafe_reduction"]), **TIGHT)
    np.testing.assert_array_equal(scen.p_us[year == 2014], base.p_us[year == 2014])


def test_overlapping_strategies_combine_through_the_model():
    ss = {"safe_sleep": {"coverage": 0.6}}
    sm = {"smoking_cessation": {"coverage": 0.6, "program": "feedback"}}
    a = _total_averted(imsim.run(parse_scenario(_spec(ss)), replicates=1))
    b = _total_averted(imsim.run(parse_scenario(_spec(sm)), replicates=1))
    both = imsim.run(parse_scenario(_spec({**ss, **sm})), replicates=1)
    ab = _total_averted(both)
    assert a > 0 and b > 0
    # Not additive: both reach the same births (smoking x unsafe-sleep SUID interaction, and
    # unsafe sleep is more common among smokers), so the joint effect is sub-additive.
    assert abs(ab - (a + b)) > 0.01 * (a + b)
    assert ab < a + b
    assert ab > max(a, b)
    # Attribution credits the joint total, per state and overall.
    attr = both.table("attribution")
    for st in STATES_ + [ALL]:
        credited = attr[attr.state == st].deaths_averted.sum()
        np.testing.assert_allclose(credited, _total_averted(both, st), rtol=1e-6)
    assert set(attr.strategy) == {"safe_sleep", "smoking_cessation"}


ALL_ZERO = {
    "safe_sleep": {"coverage": 0.0, "reach": {"nh_black": 1.0}},
    "smoking_cessation": {"coverage": 0.0, "program": "feedback"},
    "preterm_prevention": {"coverage": {2016: 0.0, 2017: 0.0},
                           "components": ["hard_stop", "vaginal_progesterone", "ohpc"],
                           "ohpc_effect": "meis"},
    "preconception_care": {"coverage": 0.0},
    "risk_appropriate_care": {"coverage": 0.0},
    "social_determinants": {"coverage": 0.0, "policy": "income_support"},
}


def test_coverage_zero_params_unchanged():
    _, _, base, scen = _arms(_spec(ALL_ZERO))
    assert _changed(base, scen) == set()


@pytest.mark.parametrize("engine", ["expected", "microsim"])
def test_coverage_zero_arms_bit_identical(engine):
    result = imsim.run(parse_scenario(_spec(ALL_ZERO, seed=11)), engine=engine, replicates=3)
    assert result.arms.baseline.shape[0] == 4
    np.testing.assert_array_equal(result.arms.scenario, result.arms.baseline)
    s = result.summary
    assert (s.deaths_averted == 0).all()
    assert (s.preterm_averted == 0).all()


def test_coverage_zero_with_a_real_strategy_elsewhere_only_changes_that_strategy():
    """Control for the bit-identical test: one non-zero lever does change the arms."""
    spec = _spec({**ALL_ZERO, "preconception_care": {"coverage": 0.2}})
    result = imsim.run(parse_scenario(spec), engine="expected", replicates=1)
    assert not np.array_equal(result.arms.scenario, result.arms.baseline)
    _, _, base, scen = _arms(spec)
    assert _changed(base, scen) == {"p_exp"}


def test_exposure_scale_zero_removes_smoking():
    inputs, _, base, scen = _arms(_spec(exposures={"smoking": {"scale": 0.0}}))
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    assert np.all(mb["smoking"] > 0)
    np.testing.assert_array_equal(ms["smoking"], 0.0)
    np.testing.assert_array_equal(scen.p_exp[:, 0, :], 0.0)
    for k in ("low_income", "prior_preterm", "short_ipi", "elective_early_term"):
        np.testing.assert_array_equal(ms[k], mb[k])
    db, ds = _deaths(_counts(base)), _deaths(_counts(scen))
    assert np.all(ds.sum(axis=(1, 2)) < db.sum(axis=(1, 2)))


@pytest.mark.parametrize("exposure,value", [("smoking", 0.05), ("unsafe_sleep", 0.1),
                                            ("short_ipi", 0.2)])
def test_exposure_set_sets_marginal_in_every_cell(exposure, value):
    _, _, base, scen = _arms(_spec(exposures={exposure: {"set": value}}))
    mb, ms = exposure_marginals(base), exposure_marginals(scen)
    assert not np.allclose(mb[exposure], value)       # it really moved
    np.testing.assert_allclose(ms[exposure], value, rtol=1e-10)


def test_exposure_scale_half_keeps_clustering():
    _, _, base, scen = _arms(_spec(exposures={"smoking": {"scale": 0.5}}))
    np.testing.assert_allclose(scen.p_exp[:, 0, :], 0.5 * base.p_exp[:, 0, :], **TIGHT)
    np.testing.assert_allclose(exposure_marginals(scen)["smoking"],
                               0.5 * exposure_marginals(base)["smoking"], **TIGHT)


def test_by_state_exposures_and_portfolio_apply_to_that_state_only():
    spec = _spec({"safe_sleep": {"coverage": 0.5}},
                 by_state={"GA": {"strategies": {"preconception_care": {"coverage": 0.5}},
                                  "exposures": {"smoking": {"scale": 0.0}}}})
    inputs, _, base, scen = _arms(spec)
    st = np.asarray(STATES)[inputs.cells.s_idx]
    ga = st == "GA"
    ms = exposure_marginals(scen)
    mb = exposure_marginals(base)
    np.testing.assert_array_equal(ms["smoking"][ga], 0.0)
    np.testing.assert_array_equal(ms["smoking"][~ga], mb["smoking"][~ga])
    assert np.all(ms["short_ipi"][ga] < mb["short_ipi"][ga])
    np.testing.assert_array_equal(ms["short_ipi"][~ga], mb["short_ipi"][~ga])
    # by_state.strategies replaces the top-level portfolio: no safe sleep in GA.
    np.testing.assert_array_equal(inputs.coverage["safe_sleep"][ga], 0.0)
    np.testing.assert_allclose(inputs.coverage["safe_sleep"][~ga], 0.5)
