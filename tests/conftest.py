"""Shared fixtures of the engine tests: random valid cell parameters and scenario arms."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))   # make tests/reference.py importable


def random_params(seed: int, n_cells: int = 6, births=(2000, 4000), death_range=(0.05, 0.3)):
    """Random but valid :class:`imsim.birth.params.CellParams` with large death probabilities.

    Exposures are correlated with low income, progesterone and social-determinants coverage are
    non-zero, GA effects differ by cut (some make the cumulative logit non-monotone, so the
    cumulative-max step matters), uids are arbitrary 64-bit-safe values.
    """
    from imsim.birth.params import CellParams, logit

    rng = np.random.default_rng(seed)
    n = n_cells
    p_li = rng.uniform(0.2, 0.6, n)
    p_exp = np.empty((n, 4, 2))
    p_exp[:, :, 0] = rng.uniform(0.05, 0.3, (n, 4))
    p_exp[:, :, 1] = np.clip(p_exp[:, :, 0] * rng.uniform(1.2, 2.5, (n, 4)), 0.0, 0.9)
    p_us = np.empty((n, 2, 2))
    p_us[:, 0, 0] = rng.uniform(0.1, 0.3, n)
    p_us[:, 0, 1] = p_us[:, 0, 0] * 1.5
    p_us[:, 1, 0] = p_us[:, 0, 0] * 1.3
    p_us[:, 1, 1] = np.clip(p_us[:, 0, 0] * 2.2, 0, 0.95)
    # Cut-points around a high-preterm GA distribution so every band is populated.
    base_cum = np.array([0.03, 0.07, 0.12, 0.25, 0.55])
    theta = logit(base_cum)[None, :] + rng.normal(0, 0.2, (n, 5))

    def beta(lo, hi):
        return rng.uniform(lo, hi, (n, 5))

    def q():
        return rng.uniform(*death_range, (n, 6))

    return CellParams(
        births=rng.integers(*births, n).astype(np.int64),
        uid=rng.integers(1, 2**32 - 1, n).astype(np.uint64),
        p_li=p_li, p_exp=p_exp, p_us=p_us,
        p_prog=rng.uniform(0.3, 0.8, n), p_sd=rng.uniform(0.3, 0.8, n),
        p_l3=rng.uniform(0.5, 0.9, n), theta=theta,
        beta_smk=beta(0.0, 0.8), beta_pp=beta(0.3, 1.5), beta_ipi=beta(0.0, 0.5),
        beta_li=beta(0.0, 0.5), beta_prog=beta(-1.5, 0.0), beta_sd=beta(-0.5, 0.2),
        q_neo=q(), q_suid=q(), q_oth=q(),
        or_nonl3=rng.uniform(1.2, 2.5, n), or_us_suid=rng.uniform(1.5, 4.0, n),
        rr_smk_suid=rng.uniform(1.2, 2.5, n), or_us_smk=rng.uniform(0.8, 1.8, n),
        rr_li_pn=rng.uniform(1.1, 2.0, n), rr_sd_death=rng.uniform(0.6, 0.95, n),
        rr_eet_death=rng.uniform(1.0, 2.0, n),
        rr_smk_neo=rng.uniform(1.0, 2.0, n),
    )


def scenario_arms(spec: dict, seed_for_fit: int = 0):
    """Baseline and scenario :class:`CellParams` of draw 0 (point effects), as ``imsim.run``."""
    from imsim.analysis.runner import get_calibration, resolve_inputs, scenario_params
    from imsim.inputs.fit import fit_for
    from imsim.config.scenario import parse_scenario

    inputs = resolve_inputs(parse_scenario(spec))
    effects = inputs.evidence.point()
    fit = fit_for(inputs.baseline, effects, get_calibration(None))
    base = inputs.baseline.params(inputs.cells, effects, fit)
    return inputs, effects, base, scenario_params(inputs, base, effects)


@pytest.fixture(scope="session")
def warm():
    """Compile (or load from cache) the kernels once per session."""
    from imsim.birth.engines import warm_up

    warm_up()
