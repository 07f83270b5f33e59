"""Kernel vs reference: the Numba engines against the slow NumPy model of tests/reference.py.

The microsim must equal the reference *exactly* on the same Philox draws (every output column of
every cell), and the expected engine must equal a brute-force enumeration of all exposure and
treatment combinations.
"""
from __future__ import annotations

import numpy as np
import pytest

import reference as ref
from conftest import random_params
from imsim.birth import engines
from imsim.birth.kernels import N_OUT, ROUNDS, philox4x32, philox4x32_7
from imsim.birth.kernels import _fill_uniforms as _fill_uniforms_py
from imsim.birth.params import build_tables

# Random123 known-answer vectors (the ``kat_vectors`` file of the Random123 distribution, D. E.
# Shaw Research, https://github.com/DEShawResearch/random123/blob/main/tests/kat_vectors):
# (counter, key) -> output, for Philox4x32-10 (the default) and Philox4x32-7 (the microsim's).
KAT_10 = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
KAT_7 = [
    ((0, 0, 0, 0), (0, 0), (0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A)),
]
KAT = [(10, *v) for v in KAT_10] + [(7, *v) for v in KAT_7]
KERNEL = {10: philox4x32, 7: philox4x32_7}


def test_microsim_generator_is_philox4x32_7():
    assert ROUNDS == 7 and ref.ROUNDS == ROUNDS


@pytest.mark.parametrize("rounds,ctr,key,expect", KAT)
def test_philox_known_answers_kernel(rounds, ctr, key, expect):
    words = KERNEL[rounds](*(np.uint64(x) for x in ctr), *(np.uint64(k) for k in key))
    assert tuple(int(w) for w in words) == expect


@pytest.mark.parametrize("rounds,ctr,key,expect", KAT)
def test_philox_known_answers_reference(rounds, ctr, key, expect):
    words = ref.philox4x32(ctr, key, rounds)
    assert tuple(int(w) for w in words) == expect


@pytest.mark.parametrize("rounds", [7, 10])
def test_philox_reference_matches_kernel_on_random_counters(rounds):
    rng = np.random.default_rng(11)
    ctr = rng.integers(0, 2**32, (4, 200), dtype=np.uint64)
    key = rng.integers(0, 2**32, (2, 200), dtype=np.uint64)
    got = np.array(ref.philox4x32(ctr, key, rounds))
    for j in range(200):
        want = KERNEL[rounds](*(ctr[:, j]), *(key[:, j]))
        assert tuple(int(w) for w in want) == tuple(int(w) for w in got[:, j])


def test_kernel_uniforms_are_philox4x32_7_words():
    """The tile generator the microsim reads fills (x + 0.5) / 2**32 of Philox4x32-7's words."""
    m, uid, block, rep, k0, k1 = 300, 12345, 1, 2, 0xDEADBEEF, 7
    bufs = [np.empty(m) for _ in range(4)]
    _fill_uniforms_py(5, m, np.uint64(uid), np.uint64(block), np.uint64(rep), np.uint64(k0),
                      np.uint64(k1), *bufs)
    words = ref.philox4x32((np.arange(5, 5 + m, dtype=np.uint64), uid, block, rep), (k0, k1), 7)
    for b, w in zip(bufs, words):
        np.testing.assert_array_equal(b, (w.astype(np.float64) + 0.5) / 2.0**32)


# Seeds span both 32-bit key words; replicate > 0 exercises counter word 3.
CASES = [(101, 7, 0), (202, 2**40 + 12345, 3), (303, 2**63 - 1, 1)]


@pytest.mark.parametrize("pseed,seed,replicate", CASES)
def test_microsim_equals_reference_exactly(warm, pseed, seed, replicate):
    params = random_params(pseed, n_cells=6)
    want = ref.simulate_counts(params, seed, replicate)
    # The random parameters must make every outcome column informative.
    assert want[:, :24].sum(axis=0).min() > 0, "some band x cause never occurs; raise q_*"
    assert want[:, 24:].min() > 0
    got = engines.microsim(build_tables(params), seed, replicate=replicate)
    assert got.shape == (params.n, N_OUT)
    np.testing.assert_array_equal(got, want)
    # Small work items (crossing the kernel's 256-birth tiles) give the same counts.
    np.testing.assert_array_equal(
        engines.microsim(build_tables(params), seed, replicate=replicate, chunk_births=300), want)


def test_microsim_reference_zero_coverage_and_edge_probabilities(warm):
    """Probabilities 0 and 1 and no treatments: the kernel's shortcuts agree with the model."""
    params = random_params(404, n_cells=4)
    params.p_prog[:] = 0.0
    params.p_sd[:] = 0.0
    params.p_exp[0, 3, :] = 1.0          # every birth elective early term in cell 0
    params.p_l3[1] = 1.0                 # all < 32 wk at level III+ in cell 1
    params.p_li[2] = 0.0
    params.p_li[3] = 1.0
    want = ref.simulate_counts(params, 99)
    got = engines.microsim(build_tables(params), 99)
    np.testing.assert_array_equal(got, want)
    assert got[0, 5] == 0 and got[1, 33] == got[1, 32]


@pytest.mark.parametrize("pseed", [5, 6])
def test_expected_equals_brute_force_enumeration(warm, pseed):
    params = random_params(pseed, n_cells=4, death_range=(0.001, 0.3))
    want = ref.expected_counts(params)
    got = engines.expected(build_tables(params))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    # Consistency of the enumeration itself: births by band sum to all births.
    np.testing.assert_allclose(want[:, :6].sum(axis=1), params.births, rtol=1e-12)


def test_reference_microsim_mean_matches_reference_expectation():
    """The two halves of the reference agree with each other (guards the reference itself)."""
    params = random_params(8, n_cells=2, births=(150_000, 150_001))
    sim = ref.simulate_counts(params, 5).astype(float)
    exp = ref.expected_counts(params)
    births = params.births[:, None].astype(float)
    var = exp * (1.0 - exp / births)          # binomial variance per cell and column
    z = np.abs(sim - exp) / np.sqrt(np.maximum(var, 1e-12))
    # 2 x 34 tests at z = 4.5: false-failure probability < 68 * 6.8e-6 ~ 5e-4 (normal approx).
    assert z.max() < 4.5, np.unravel_index(z.argmax(), z.shape)
