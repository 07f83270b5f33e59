"""The Numba table builders implement exactly the model's NumPy formulation."""
from __future__ import annotations

import numpy as np

from conftest import random_params as make_params
from imsim.birth.params import (
    build_tables,
    death_probabilities,
    exposure_marginals,
    expit,
    ga_linear_predictor,
)


def test_tables_match_numpy_formulation():
    p = make_params(3, n_cells=7)
    t = build_tables(p)
    cum = np.maximum.accumulate(expit(ga_linear_predictor(p)), axis=2)
    np.testing.assert_allclose(t.ga_cum, cum, rtol=1e-12, atol=1e-15)
    p_neo, p_suid, p_oth = death_probabilities(p)
    t1 = p_neo + (1 - p_neo) * p_suid
    t2 = t1 + (1 - p_neo) * (1 - p_suid) * p_oth
    np.testing.assert_allclose(t.death_cum[..., 0], p_neo, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t.death_cum[..., 1], t1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(t.death_cum[..., 2], t2, rtol=1e-12, atol=1e-15)


def test_marginals_survive_correlation():
    """Conditional exposure probabilities keep the marginals they were solved for."""
    from imsim.birth.params import conditional_on_income

    rng = np.random.default_rng(0)
    marg = rng.uniform(0.01, 0.5, 20)
    p_li = rng.uniform(0.2, 0.7, 20)
    cond = conditional_on_income(marg, p_li, 3.0)
    np.testing.assert_allclose((1 - p_li) * cond[:, 0] + p_li * cond[:, 1], marg, rtol=1e-9)
    odds = cond / (1 - cond)
    np.testing.assert_allclose(odds[:, 1] / odds[:, 0], 3.0, rtol=1e-6)
    p = make_params(1, n_cells=4)
    m = exposure_marginals(p)
    assert set(m) >= {"smoking", "unsafe_sleep", "low_income", "short_ipi"}
