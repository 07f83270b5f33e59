"""The sweep evaluator's grouped fast path against the general path, and its building blocks."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import imsim
from imsim.analysis import sweep as sweep_mod
from imsim.analysis.evaluate import Evaluator
from imsim.birth import strategies

SCENARIO = {
    "name": "fast-path", "years": [2026, 2028], "states": ["GA", "MS", "NY", "CA"], "seed": 4,
    "strategies": {
        "safe_sleep": {"coverage": 0.4},
        "smoking_cessation": {"coverage": 0.3, "program": "incentives"},
        "preterm_prevention": {"coverage": 0.5},
        "preconception_care": {"coverage": 0.4},
        "risk_appropriate_care": {"coverage": 0.9},
        "social_determinants": {"coverage": 0.5, "policy": "medicaid_expansion"},
    },
}
PARAMS = ["safe_sleep_unsafe_reduction", "cessation_incentives_rr", "vaginal_progesterone_ptb_rr",
          "larc_short_ipi_reduction", "medicaid_expansion_death_rr", "hard_stop_eed_reduction",
          "strategies.preterm_prevention.coverage", "strategies.smoking_cessation.coverage",
          "strategies.social_determinants.coverage"]
OUTPUTS = ["deaths_averted", "imr_change_pct", "bw_rate_ratio_change",
           "bw_rate_difference_change", "deaths_averted.nh_black", "deaths_averted.MS"]


def _scenario(tmp_path, data=SCENARIO):
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    return imsim.load_scenario(f)


def _rows(ev, n, seed):
    rng = np.random.default_rng(seed)
    p = ev.point_values()
    X = np.tile(p, (n, 1))
    for j, pid in enumerate(ev.parameters):
        if pid.kind == "coverage":
            X[:, j] = rng.uniform(0.0, 1.0, n)
        elif pid.kind == "effect":
            X[:, j] = p[j] * rng.uniform(0.7, 1.3, n) if p[j] < 1 else p[j]
    return X


def _close(a, b, scale):
    # Both paths sum the same expected deaths in different orders: agree to rounding.
    assert np.all(np.abs(a - b) <= 1e-10 * scale), np.max(np.abs(a - b) / scale)


def test_grouped_path_equals_general_path(tmp_path):
    sc = _scenario(tmp_path)
    ev = Evaluator(sc, PARAMS, OUTPUTS)
    X = _rows(ev, 24, 1)
    st = ev._state()
    grouped = ev(X)
    plain = np.vstack([st.evaluate_plain(X[a:a + 8]) for a in range(0, len(X), 8)])
    scale = np.maximum(np.abs(plain).max(axis=0), 1e-12)
    _close(grouped, plain, scale)
    g = st._base(dict(st.point_effects), None)[3]
    assert g.ng < st.nu          # years (and states) share groups: the path is not trivial


def test_grouped_path_with_calibration_draws_and_baseline_effects(tmp_path):
    sc = _scenario(tmp_path)
    params = PARAMS[:3] + ["unsafe_sleep_suid_or", "calibration"]
    ev = Evaluator(sc, params, OUTPUTS[:3])
    X = _rows(ev, 10, 2)
    X[:, 3] = ev.point_values()[3] * np.linspace(0.8, 1.2, 10)
    X[:, 4] = np.r_[np.nan, np.linspace(0.05, 0.95, 9)]
    st = ev._state()
    _close(ev(X), st.evaluate_plain(X), np.maximum(np.abs(st.evaluate_plain(X)).max(axis=0),
                                                   1e-12))


def test_rows_independent_of_batch(tmp_path):
    ev = Evaluator(_scenario(tmp_path), PARAMS, OUTPUTS, batch=7)
    X = _rows(ev, 15, 3)
    Y = ev(X)
    for i in (0, 6, 7, 14):
        assert ev(X[i:i + 1]).tobytes() == Y[i:i + 1].tobytes()
    ev2 = Evaluator(_scenario(tmp_path), PARAMS, OUTPUTS, batch=64)
    assert ev2(X).tobytes() == Y.tobytes()


def test_progesterone_solved_once_per_distinct_row_gives_the_same_bits():
    rng = np.random.default_rng(5)
    n = 40
    w = rng.dirichlet(np.ones(16), n)
    eta0 = rng.normal(-3.0, 1.0, (n, 16, 4))
    s = rng.uniform(0.2, 0.6, n)
    c = rng.uniform(0.1, 0.9, n)
    a, b = c * s, c * (1 - s)
    args = [w, eta0, s, a, b, a + b, np.full((n, 4), 0.7), np.ones((n, 4)),
            np.full((n, 4), 1.0), np.full((n, 4), np.log(3.0))]
    one = strategies._progesterone_shifts(*args)
    idx = np.r_[np.arange(n), np.arange(n)[::-1], np.arange(n)]      # every row three times
    many = strategies._progesterone_shifts(*[x[idx] for x in args])
    for x, y in zip(one, many):
        assert x[idx].tobytes() == y.tobytes()


def test_worker_keeps_its_prepared_evaluator(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_mod, "_WORKER_EVALUATOR", {})
    ev = Evaluator(_scenario(tmp_path), PARAMS[:2], OUTPUTS[:1])
    X = _rows(ev, 3, 4)
    first = pickle.loads(pickle.dumps(ev))           # each chunk arrives as a fresh copy
    y1 = sweep_mod._eval_chunk(first, X)
    assert first._st is not None
    second = pickle.loads(pickle.dumps(ev))
    assert second._st is None and second.token == first.token
    y2 = sweep_mod._eval_chunk(second, X)
    assert second._st is None                        # the kept, prepared copy did the work
    assert y1.tobytes() == y2.tobytes()
    assert sweep_mod._eval_chunk(first, None) is None  # warm-up task: prepares, returns nothing


def test_grouped_path_with_a_coverage_ramp(tmp_path):
    data = {**SCENARIO, "strategies": {**SCENARIO["strategies"],
                                       "safe_sleep": {"coverage": {2026: 0.2, 2028: 0.6}}}}
    ev = Evaluator(_scenario(tmp_path, data), PARAMS[1:], OUTPUTS)   # the ramp is kept
    X = _rows(ev, 8, 7)
    st = ev._state()
    plain = st.evaluate_plain(X)
    _close(ev(X), plain, np.maximum(np.abs(plain).max(axis=0), 1e-12))


@pytest.mark.parametrize("policy", ["income_support", "medicaid_expansion"])
def test_grouped_path_social_determinants_policies(tmp_path, policy):
    data = {**SCENARIO, "strategies": {**SCENARIO["strategies"],
                                       "social_determinants": {"coverage": 0.6,
                                                               "policy": policy}}}
    params = ["income_support_ptb_or", "medicaid_expansion_death_rr",
              "strategies.social_determinants.coverage"]
    ev = Evaluator(_scenario(tmp_path, data), params, OUTPUTS)
    X = _rows(ev, 8, 6)
    st = ev._state()
    plain = st.evaluate_plain(X)
    _close(ev(X), plain, np.maximum(np.abs(plain).max(axis=0), 1e-12))
