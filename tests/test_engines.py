"""The two engines: statistical agreement, reproducibility and common random numbers.

Statistical tests use fixed seeds (so they are deterministic) and tolerances from the variance:
``|sim - exp| <= z * sqrt(var)`` with z = 4, whose two-sided false-failure probability under the
normal approximation is 6.3e-5 per comparison (<= 1e-3 for the 15 comparisons of a test, by
Bonferroni). The birth outcomes of one cell are i.i.d., so a cell's count of any outcome is
binomial: ``var = E (1 - E / births)``, summed over independent cells.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import imsim
from conftest import random_params, scenario_arms
from imsim.birth import engines
from imsim.birth import strategies as S
from imsim.birth.kernels import N_BANDS, N_OUT, OUT_DEATHS
from imsim.birth.params import build_tables
from imsim.config.scenario import parse_scenario

Z = 4.0
DEATHS = slice(OUT_DEATHS, OUT_DEATHS + 3 * N_BANDS)
STRATEGY_SPEC = {
    "safe_sleep": {"coverage": 0.8},
    "smoking_cessation": {"coverage": 0.5},
    "preterm_prevention": {"coverage": 0.6, "components": ["hard_stop", "vaginal_progesterone"]},
    "risk_appropriate_care": {"coverage": 0.9},
    "social_determinants": {"coverage": 0.5},
}
FEW_STATES = ["MS", "GA", "CA", "NM", "SD"]


def _summaries(counts, r_idx):
    """Named national totals of [n_cells, N_OUT] counts: deaths, by race, by cause, preterm."""
    deaths = counts[:, DEATHS].reshape(-1, 3, N_BANDS)
    out = {"deaths": deaths.sum(axis=(1, 2))}
    for r in range(5):
        out[f"deaths_race{r}"] = np.where(r_idx == r, out["deaths"], 0.0)
    for k, cause in enumerate(("neonatal", "suid", "other")):
        out[f"deaths_{cause}"] = deaths[:, k, :].sum(axis=1)
    out["preterm_births"] = counts[:, :4].sum(axis=1)      # bands < 37 weeks
    return out                                            # per cell, summed by the caller


def test_microsim_converges_to_expected_national_baseline(warm):
    sc = parse_scenario({"name": "t", "years": [2013, 2015], "states": "all"})
    r_exp = imsim.run(sc, engine="expected")
    r_sim = imsim.run(sc, engine="microsim", seed=20240601)
    exp = r_exp.arms.baseline[0]
    sim = r_sim.arms.baseline[0]
    births = r_exp.inputs.cells.births.astype(float)
    r_idx = r_exp.inputs.cells.r_idx
    assert np.array_equal(sim[:, :N_BANDS].sum(axis=1), births)   # every birth simulated once
    s_exp, s_sim = _summaries(exp, r_idx), _summaries(sim, r_idx)
    failures = []
    for name in s_exp:
        e_cell = s_exp[name]
        var = np.sum(e_cell * (1.0 - e_cell / np.maximum(births, 1.0)))
        diff = s_sim[name].sum() - e_cell.sum()
        if abs(diff) > Z * np.sqrt(var):
            failures.append((name, s_sim[name].sum(), e_cell.sum(), diff / np.sqrt(var)))
    assert not failures, failures


@pytest.mark.slow
def test_microsim_replicate_mean_converges_per_cell(warm):
    """32 replicates of the national baseline: national totals within z = 4 of the expectation
    with the variance of the replicate sum (32x smaller relative tolerance than one run), and a
    chi-square over cells of each cell's total deaths (binomial; cells with < 20 expected deaths
    over all replicates are pooled into one), at level 1e-4."""
    _, _, base, _ = scenario_arms({"name": "t", "years": [2013, 2015], "states": "all"})
    tb = build_tables(base)
    R = 32
    exp = engines.expected(tb) * R
    births = tb.births.astype(float) * R
    sim = sum(engines.microsim(tb, 99, replicate=rep) for rep in range(R)).astype(float)
    r_idx = np.asarray(base.uid % np.uint64(10), dtype=np.int64)
    s_exp, s_sim = _summaries(exp, r_idx), _summaries(sim, r_idx)
    for name in s_exp:
        var = np.sum(s_exp[name] * (1.0 - s_exp[name] / births))
        assert abs(s_sim[name].sum() - s_exp[name].sum()) <= Z * np.sqrt(var), name
    e, s = s_exp["deaths"], s_sim["deaths"]
    var = e * (1.0 - e / births)
    big = e >= 20
    terms = list((s[big] - e[big]) ** 2 / var[big])
    terms.append((s[~big].sum() - e[~big].sum()) ** 2 / var[~big].sum())
    chi2 = float(np.sum(terms))
    assert chi2 <= stats.chi2.ppf(1 - 1e-4, len(terms)), (chi2, len(terms))


def _microsim_averted(tb, ts, seed, replicates):
    out = []
    for rep in range(replicates):
        b = engines.microsim(tb, seed, replicate=rep)[:, DEATHS].sum()
        s = engines.microsim(ts, seed, replicate=rep)[:, DEATHS].sum()
        out.append(b - s)
    return np.array(out, dtype=float)


def test_microsim_deaths_averted_matches_expected(warm):
    """Paired (CRN) deaths averted of a strategy portfolio: microsim mean vs exact expectation.

    The variance of the paired difference is estimated from R replicates, so the tolerance is a
    t quantile with R - 1 degrees of freedom at the same two-sided level as z = 4 (6.3e-5).
    """
    spec = {"name": "t", "years": [2013, 2015], "states": FEW_STATES,
            "strategies": STRATEGY_SPEC}
    _, _, base, scen = scenario_arms(spec)
    tb, ts = build_tables(base), build_tables(scen)
    averted_exp = (engines.expected(tb)[:, DEATHS].sum() - engines.expected(ts)[:, DEATHS].sum())
    assert averted_exp > 50        # the portfolio must do something for the test to mean anything
    R = 24
    d = _microsim_averted(tb, ts, seed=77, replicates=R)
    t_crit = stats.t.ppf(1 - 6.3e-5 / 2, R - 1)
    se = d.std(ddof=1) / np.sqrt(R)
    assert abs(d.mean() - averted_exp) <= t_crit * se, (d.mean(), averted_exp, se)
    # CRN pays off: the paired spread is far below that of two independent arms (Poisson bound).
    deaths_b = engines.expected(tb)[:, DEATHS].sum()
    assert d.std(ddof=1) < 0.5 * np.sqrt(2 * deaths_b)


def test_microsim_deaths_averted_single_replicate_via_run(warm):
    """The runner's own replicate-0 paired difference lies within z = 4 of the expectation,
    using the variance of the paired difference measured over replicates 1..R (independent of
    replicate 0)."""
    spec = {"name": "t", "years": [2014, 2014], "states": FEW_STATES,
            "strategies": STRATEGY_SPEC, "seed": 5}
    sc = parse_scenario(spec)
    r_exp = imsim.run(sc, engine="expected")
    r_sim = imsim.run(sc, engine="microsim")
    av_exp = (r_exp.arms.baseline[0][:, DEATHS] - r_exp.arms.scenario[0][:, DEATHS]).sum()
    av_sim = (r_sim.arms.baseline[0][:, DEATHS] - r_sim.arms.scenario[0][:, DEATHS]).sum()
    _, _, base, scen = scenario_arms(spec)
    tb, ts = build_tables(base), build_tables(scen)
    np.testing.assert_array_equal(engines.microsim(tb, 5), r_sim.arms.baseline[0])
    others = _microsim_averted(tb, ts, seed=5, replicates=21)[1:]
    # 20 replicates estimate the sd to ~16%; z = 4 * 1.5 covers that (still ~1e-4 level).
    assert abs(av_sim - av_exp) <= 1.5 * Z * others.std(ddof=1), (av_sim, av_exp)


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_tables():
    _, _, base, _ = scenario_arms({"name": "t", "years": [2013, 2015], "states": FEW_STATES})
    return build_tables(base)


def test_same_seed_bit_identical_and_seed_changes_counts(warm, small_tables):
    a = engines.microsim(small_tables, 12345)
    b = engines.microsim(small_tables, 12345)
    assert a.dtype == np.int64 and np.array_equal(a, b)
    for k in (0, 12345, 2**32 - 1, 2**32, 2**62):
        c0 = engines.microsim(small_tables, k)
        c1 = engines.microsim(small_tables, k + 1)
        assert not np.array_equal(c0[:, DEATHS], c1[:, DEATHS]), k
        assert not np.array_equal(c0[:, :N_BANDS], c1[:, :N_BANDS]), k
        np.testing.assert_array_equal(c0[:, :N_BANDS].sum(1), c1[:, :N_BANDS].sum(1))


def test_run_same_seed_reproduces_tables(warm):
    sc = parse_scenario({"name": "t", "years": [2015, 2015], "states": ["VT", "AL"],
                         "strategies": {"safe_sleep": {"coverage": 0.5}}})
    r1 = imsim.run(sc, engine="microsim", seed=9)
    r2 = imsim.run(sc, engine="microsim", seed=9)
    r3 = imsim.run(sc, engine="microsim", seed=10)
    for arm in ("baseline", "scenario"):
        assert np.array_equal(getattr(r1.arms, arm), getattr(r2.arms, arm))
        assert not np.array_equal(getattr(r1.arms, arm), getattr(r3.arms, arm))
    assert r1.summary.equals(r2.summary)


def test_replicate_changes_counts(warm, small_tables):
    a = engines.microsim(small_tables, 3, replicate=0)
    b = engines.microsim(small_tables, 3, replicate=1)
    assert not np.array_equal(a[:, DEATHS], b[:, DEATHS])
    np.testing.assert_array_equal(a[:, :N_BANDS].sum(1), b[:, :N_BANDS].sum(1))


@pytest.mark.parametrize("chunk", [1000, 777, 1])
def test_chunk_size_independence(warm, chunk):
    params = random_params(21, n_cells=5, births=(3000, 9000))
    tb = build_tables(params)
    np.testing.assert_array_equal(engines.microsim(tb, 4, chunk_births=chunk),
                                  engines.microsim(tb, 4))


def test_chunks_cover_every_birth_once():
    births = np.array([0, 1, 999, 1000, 1001, 5000])
    cell, start, length = engines.chunks(births, 1000)
    assert (length > 0).all() and (length <= 1000).all()
    for c, n in enumerate(births):
        sel = cell == c
        idx = np.concatenate([np.arange(s, s + m) for s, m in zip(start[sel], length[sel])]
                             + [np.array([], dtype=np.int64)])
        np.testing.assert_array_equal(np.sort(idx), np.arange(n))


_THREAD_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, numba
    sys.path.insert(0, {tests!r})
    from conftest import random_params
    from imsim.birth import engines
    from imsim.birth.params import build_tables
    assert numba.get_num_threads() == int({threads!r}), numba.get_num_threads()
    params = random_params(31, n_cells=8, births=(20000, 60000))
    np.save({out!r}, engines.microsim(build_tables(params), 2024, chunk_births=4096))
""")


def test_one_thread_equals_two_threads(tmp_path):
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"counts_{threads}.npy"
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        script = _THREAD_SCRIPT.format(tests=str(Path(__file__).parent), threads=threads,
                                       out=str(out))
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(np.load(out))
    assert outs[0].shape[1] == N_OUT and outs[0].sum() > 0
    np.testing.assert_array_equal(outs[0], outs[1])


# ---------------------------------------------------------------------------------------------
# Two worlds: a birth whose parameters are unchanged meets the same fate
# ---------------------------------------------------------------------------------------------

def test_changing_one_cell_changes_no_other_cell(warm):
    params = random_params(41, n_cells=7)
    base = engines.microsim(build_tables(params), 8)
    changed = params.copy()
    changed.p_us[3] = np.minimum(changed.p_us[3] * 2.0, 1.0)     # more unsafe sleep in cell 3
    scen = engines.microsim(build_tables(changed), 8)
    others = np.arange(params.n) != 3
    np.testing.assert_array_equal(scen[others], base[others])
    assert scen[3, 29] > base[3, 29]                               # unsafe sleep tally rose
    # Exposures drawn before unsafe sleep are untouched in cell 3 too.
    np.testing.assert_array_equal(scen[3, 24:29], base[3, 24:29])


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_lower_death_probability_is_monotone_per_cell(warm, seed):
    """Only SUID risk falls: per cell, deaths never rise, neonatal deaths and everything before
    death are bit-identical (the same births die of the same neonatal causes)."""
    params = random_params(50 + seed, n_cells=6)
    lower = params.copy()
    lower.q_suid *= 0.5
    b = engines.microsim(build_tables(params), seed)
    s = engines.microsim(build_tables(lower), seed)
    dead_b = b[:, DEATHS].sum(axis=1)
    dead_s = s[:, DEATHS].sum(axis=1)
    assert (dead_s <= dead_b).all()
    assert (dead_s < dead_b).any()
    neo = slice(OUT_DEATHS, OUT_DEATHS + N_BANDS)
    np.testing.assert_array_equal(s[:, neo], b[:, neo])
    np.testing.assert_array_equal(s[:, :N_BANDS], b[:, :N_BANDS])
    np.testing.assert_array_equal(s[:, 24:], b[:, 24:])
    suid = slice(OUT_DEATHS + N_BANDS, OUT_DEATHS + 2 * N_BANDS)
    assert (s[:, suid] <= b[:, suid]).all()


def test_zero_coverage_gives_bit_identical_arms(warm):
    """Every lever applied at coverage 0 leaves the microsim counts bit-identical."""
    _, effects, base, _ = scenario_arms({"name": "t", "years": [2015, 2015],
                                         "states": FEW_STATES})
    scen = base.copy()
    zero = np.zeros(scen.n)
    attrs = S.CellAttributes(np.full(scen.n, 0.4))
    for k, lever in S.LEVERS.items():
        opts = ({"components": ["hard_stop", "vaginal_progesterone", "ohpc"], "ohpc_effect": "meis"}
                if k == "preterm_prevention" else {})
        lever(scen, zero, effects, opts, attrs)
    for seed in (0, 1):
        np.testing.assert_array_equal(engines.microsim(build_tables(scen), seed),
                                      engines.microsim(build_tables(base), seed))
    # And via the runner: a scenario whose strategies all have coverage 0.
    spec = {"name": "t", "years": [2015, 2015], "states": ["DE", "WY"],
            "strategies": {k: {"coverage": 0.0} for k in STRATEGY_SPEC}}
    r = imsim.run(parse_scenario(spec), engine="microsim", seed=3)
    assert np.array_equal(r.arms.baseline, r.arms.scenario)


def test_cells_run_together_or_alone_are_identical(warm):
    params = random_params(61, n_cells=5)
    together = engines.microsim(build_tables(params), 17)
    for c in range(params.n):
        alone = engines.microsim(build_tables(params.take([c])), 17)
        np.testing.assert_array_equal(alone[0], together[c])
    # Reordering cells moves rows and nothing else.
    perm = np.array([4, 2, 0, 3, 1])
    np.testing.assert_array_equal(engines.microsim(build_tables(params.take(perm)), 17),
                                  together[perm])


def test_strategy_changes_only_covered_states(warm):
    """Strategies in one state leave every cell of the other states bit-identical."""
    spec = {"name": "t", "years": [2015, 2015], "states": ["AL", "MS", "VT"],
            "strategies": {}, "by_state": {"MS": {"strategies": STRATEGY_SPEC}}}
    inputs, _, base, scen = scenario_arms(spec)
    b = engines.microsim(build_tables(base), 6)
    s = engines.microsim(build_tables(scen), 6)
    ms = np.asarray(inputs.cells.s_idx) == 24          # MS
    assert ms.sum() == 5
    np.testing.assert_array_equal(s[~ms], b[~ms])
    assert not np.array_equal(s[ms], b[ms])
