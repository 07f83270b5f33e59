"""Elective early-term delivery: its prevalence from the PC-01 measure, and its death probability.

* The Leapfrog rate is the Joint Commission PC-01 measure, whose denominator is deliveries at 37-38
  weeks without an excluding condition -- not all births. Elective early-term births among all
  births are PC-01 rate x share of births at 37-38 weeks x (1 - excluded share); the model's
  exposure is the probability of being a *candidate* (delivered early only if it would otherwise
  be born at 39+ weeks).
* An elective early-term birth is counted in the 37-38 week band but dies with the 39+ band's
  probabilities times ``rr_eet_death``; the hard stop moves it back to 39+, so each elective
  birth prevented averts q(39+) x (RR - 1) deaths in expectation.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from imsim.birth import engines
from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
from imsim.birth.params import CellParams, build_tables, logit
from imsim.inputs.data import load_table

ET, FT = N_BANDS - 2, N_BANDS - 1          # 37-38 and 39+ week bands


# ---------------------------------------------------------------------------------------------
# Prevalence: hand computation from the sources
# ---------------------------------------------------------------------------------------------

def _hand_share():
    """Elective early-term births per birth, 2013-2015, and the model's candidate probability."""
    # Leapfrog PC-01 rates (shared evidence/prevalence.csv:84): 4.6% in 2013, 1.9% in 2016;
    # linear in between for 2014 and 2015, averaged over the 2013-2015 baseline.
    rates = [4.6 + (1.9 - 4.6) * k / 3 for k in range(3)]          # 2013, 2014, 2015
    pc01 = sum(rates) / 3 / 100
    assert pc01 == pytest.approx(0.037, abs=1e-12)
    ga = load_table("ga_structure")
    nat = ga[ga.race == "ALL"].set_index("ga_band")["births_share"]
    early_term, full_term = float(nat["37-38"]), float(nat["39+"])
    # PC-01 denominator exclusions: medically indicated (27.6%) or PROM (3.3%) early-term
    # births (Parikh 2014, Consortium on Safe Labor).
    excluded = 0.276 + 0.033
    share = pc01 * early_term * (1 - excluded)
    return share, share / (full_term + share), full_term


def test_prevalence_is_pc01_rate_times_early_term_share():
    share, candidate, _ = _hand_share()
    assert 0.005 < share < 0.008          # about 0.6% of births, not the 4.6% PC-01 rate
    x = load_table("exposures")
    eet = x[(x.exposure == "elective_early_term") & (x.state == "ALL")].set_index("race")
    # The table keeps 6 decimals.
    assert eet.loc["ALL", "prevalence"] == pytest.approx(candidate, abs=5e-7)
    # No race-specific source: every race carries the national value (flagged as assumption).
    assert np.allclose(eet.prevalence, candidate, rtol=0, atol=5e-7)
    assert eet.assumption.astype(bool).all()
    assert (eet.lo < eet.prevalence).all() and (eet.prevalence < eet.hi).all()


def test_model_delivers_the_sourced_share_early():
    """In the baseline, candidates x P(would be 39+) = the sourced elective share of births."""
    from imsim.inputs.baseline import get_baseline
    from imsim.inputs.evidence import EvidenceLibrary

    share, candidate, s39 = _hand_share()
    baseline = get_baseline()
    cells = baseline.pooled_cells()
    effects = EvidenceLibrary.load().point()
    base = baseline.params(cells, effects, None)
    none = base.copy()
    none.p_exp[:, 3, :] = 0.0                       # same cut-points, no elective deliveries
    b = engines.expected(build_tables(base))
    n = engines.expected(build_tables(none))
    moved = n[:, OUT_BIRTHS + FT] - b[:, OUT_BIRTHS + FT]
    births = b[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=1)
    # Per cell: p x P(natural GA >= 39) with P(natural >= 39) = S39_target / (1 - p) (exact
    # but for the few high-risk exposure combinations whose P(GA < 37) exceeds their natural
    # P(GA < 39), where the cumulative probabilities are made non-decreasing).
    s39_cell = 1.0 - baseline.ga_cum_target[cells.r_idx, 4]
    p = base.p_exp[:, 3, 0]
    np.testing.assert_allclose(moved / births, p * s39_cell / (1 - p), rtol=1e-5)
    # The race GA targets differ a little from the national 39+ share; nationally the model's
    # elective share is the sourced one within that difference.
    # (p/(1-p) = share/S39 up to the 6-decimal rounding of the table.)
    s39_nat = np.sum(s39_cell * births) / births.sum()
    assert p[0] / (1 - p[0]) == pytest.approx(share / s39, rel=1e-4)
    assert moved.sum() / births.sum() == pytest.approx(p[0] / (1 - p[0]) * s39_nat, rel=1e-5)
    assert moved.sum() / births.sum() == pytest.approx(share, rel=0.03)


# ---------------------------------------------------------------------------------------------
# Death probability of an elective birth: q(39+) x RR
# ---------------------------------------------------------------------------------------------

def one_cell(p_eet=0.3, rr=1.4, q=(0.004, 0.002, 0.001), births=100_000):
    """One cell in which only the elective early-term exposure is on (no other exposure)."""
    n = 1
    z5 = np.zeros((n, 5))
    cum = np.array([0.01, 0.02, 0.03, 0.10, 0.30])
    qb = np.array([0.3, 0.05, 0.02, 0.008, 0.006, 0.0])   # bands < 39 wk; 39+ set below
    q_neo, q_suid, q_oth = (np.append(qb[:5] * (k + 1), qk)[None, :] for k, qk in enumerate(q))
    p_exp = np.zeros((n, 4, 2))
    p_exp[:, 3, :] = p_eet
    return CellParams(
        births=np.array([births], dtype=np.int64), uid=np.array([77], dtype=np.uint64),
        p_li=np.zeros(n), p_exp=p_exp, p_us=np.zeros((n, 2, 2)), p_prog=np.zeros(n),
        p_sd=np.zeros(n), p_l3=np.ones(n), theta=logit(cum)[None, :], beta_smk=z5,
        beta_pp=z5, beta_ipi=z5, beta_li=z5, beta_prog=z5, beta_sd=z5,
        q_neo=q_neo, q_suid=q_suid, q_oth=q_oth, or_nonl3=np.ones(n), or_us_suid=np.ones(n),
        rr_smk_suid=np.ones(n), or_us_smk=np.ones(n), rr_li_pn=np.ones(n),
        rr_sd_death=np.ones(n), rr_eet_death=np.full(n, rr), rr_smk_neo=np.ones(n),
    ), cum


def _by_cause(a, b, c):
    """Deaths by cause per birth for competing cause probabilities a, b, c."""
    return np.array([a, (1 - a) * b, (1 - a) * (1 - b) * c])


def test_elective_birth_dies_with_39_plus_probability_times_rr(warm):
    p_eet, rr = 0.3, 1.4
    params, cum = one_cell(p_eet, rr)
    out = engines.expected(build_tables(params))[0]
    births = float(params.births[0])
    p_et, p_ft = cum[4] - cum[3], 1.0 - cum[4]       # natural 37-38 and 39+ shares
    elective = births * p_ft * p_eet
    q4 = np.array([params.q_neo[0, ET], params.q_suid[0, ET], params.q_oth[0, ET]])
    q5 = np.array([params.q_neo[0, FT], params.q_suid[0, FT], params.q_oth[0, FT]])
    # Births: electives are counted at 37-38 weeks.
    assert out[OUT_BIRTHS + ET] == pytest.approx(births * p_et + elective, rel=1e-12)
    assert out[OUT_BIRTHS + FT] == pytest.approx(births * p_ft * (1 - p_eet), rel=1e-12)
    # Deaths at 37-38 weeks: indicated/spontaneous births at q(37-38), electives at q(39+) x RR.
    want_et = births * p_et * _by_cause(*q4) + elective * _by_cause(*(q5 * rr))
    want_ft = births * p_ft * (1 - p_eet) * _by_cause(*q5)
    got_et = out[[OUT_DEATHS + k * N_BANDS + ET for k in range(3)]]
    got_ft = out[[OUT_DEATHS + k * N_BANDS + FT for k in range(3)]]
    np.testing.assert_allclose(got_et, want_et, rtol=1e-12)
    np.testing.assert_allclose(got_ft, want_ft, rtol=1e-12)
    # Not the 37-38 band's probability (what the model used to do).
    wrong = births * p_et * _by_cause(*q4) + elective * _by_cause(*q4)
    assert abs(got_et.sum() - wrong.sum()) > 0.1 * wrong.sum() * elective / births


@pytest.mark.parametrize("q", [(0.004, 0.0, 0.0), (0.004, 0.002, 0.001)])
def test_hard_stop_averts_q39_times_rr_minus_one_per_elective_birth_prevented(warm, q):
    from imsim.birth.strategies import CellAttributes, preterm_prevention

    rr, coverage, efficacy = 1.4, 0.8, 0.55
    base, cum = one_cell(0.3, rr, q)
    scen = base.copy()
    preterm_prevention(scen, np.array([coverage]), {"hard_stop_eed_reduction": efficacy},
                       {"components": ["hard_stop"]}, CellAttributes(np.zeros(1)))
    ob = engines.expected(build_tables(base))[0]
    os_ = engines.expected(build_tables(scen))[0]
    deaths = slice(OUT_DEATHS, OUT_DEATHS + 3 * N_BANDS)
    averted = ob[deaths].sum() - os_[deaths].sum()
    prevented = float(base.births[0]) * (1 - cum[4]) * 0.3 * coverage * efficacy
    q5 = np.array(q)
    per_birth = _by_cause(*(q5 * rr)).sum() - _by_cause(*q5).sum()
    assert averted / prevented == pytest.approx(per_birth, rel=1e-9)
    if q[1] == q[2] == 0.0:                        # one cause: exactly q(39+) x (RR - 1)
        assert averted / prevented == pytest.approx(q[0] * (rr - 1), rel=1e-9)
    # No preterm birth is averted: the hard stop only moves 37-38 week births to 39+.
    np.testing.assert_allclose(os_[OUT_BIRTHS:OUT_BIRTHS + ET], ob[OUT_BIRTHS:OUT_BIRTHS + ET],
                               rtol=1e-12)
    # The microsim agrees in expectation (paired draws; tolerance from the binomial variance).
    params_b, params_s = base, scen
    params_b.births[:] = params_s.births[:] = 2_000_000
    mb = engines.microsim(build_tables(params_b), 5)[0]
    ms = engines.microsim(build_tables(params_s), 5)[0]
    sim = float(mb[deaths].sum() - ms[deaths].sum())
    moved = 2_000_000 * (1 - cum[4]) * 0.3 * coverage * efficacy
    want = moved * per_birth
    # Common random numbers: a birth's outcomes differ between the arms only if it is moved and
    # its uniform falls between the two death thresholds (probability per_birth): the difference
    # is binomial(births, P(moved) x per_birth), variance ~ its mean.
    sd = np.sqrt(want)
    assert abs(sim - want) < 5 * sd


def test_rr_acts_only_on_elective_births_in_kernel_and_reference(warm):
    """Kernel == reference bit for bit with a large RR; the RR moves only 37-38 week deaths."""
    from conftest import random_params

    params = random_params(909, n_cells=4)
    outs = {}
    for rr in (1.0, 3.0):
        params.rr_eet_death = np.full(params.n, rr)
        got = engines.microsim(build_tables(params), 31, replicate=2)
        want = ref.simulate_counts(params, 31, replicate=2)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(engines.expected(build_tables(params)), ref.expected_counts(params),
                                   rtol=1e-10, atol=1e-9)
        outs[rr] = got
    lo, hi = outs[1.0], outs[3.0]
    np.testing.assert_array_equal(lo[:, :N_BANDS], hi[:, :N_BANDS])          # same births
    changed = np.flatnonzero((lo != hi).any(axis=0))
    assert set(changed) <= {OUT_DEATHS + k * N_BANDS + ET for k in range(3)}
    assert (hi[:, OUT_DEATHS + ET::N_BANDS][:, :3].sum() > lo[:, OUT_DEATHS + ET::N_BANDS][:, :3].sum())
