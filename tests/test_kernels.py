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
from imsim.birth.kernels import N_OUT, philox4x32
from imsim.birth.params import build_tables

# Random123 known-answer vectors for Philox4x32-10: (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr,key,expect", KAT)
def test_philox_known_answers_kernel(ctr, key, expect):
    words = philox4x32(*(np.uint64(x) for x in ctr), *(np.uint64(k) for k in key))
    assert tuple(int(w) for w in words) == expect


@pytest.mark.parametrize("ctr,key,expect", KAT)
def test_philox_known_answers_reference(ctr, key, expect):
    words = ref.philox4x32_10(ctr, key)
    assert tuple(int(w) for w in words) == expect


def test_philox_reference_matches_kernel_on_random_counters():
    rng = np.random.default_rng(11)
    ctr = rng.integers(0, 2**32, (4, 200), dtype=np.uint64)
    key = rng.integers(0, 2**32, (2, 200), dtype=np.uint64)
    got = np.array(ref.philox4x32_10(ctr, key))
    for j in range(200):
        want = philox4x32(*(ctr[:, j]), *(key[:, j]))
        assert tuple(int(w) for w in want) == tuple(int(w) for w in got[:, j])


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
