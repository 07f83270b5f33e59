"""One strategy pipeline and keyed randomness: run, sweep evaluation and recommend agree; draws
are a pure function of (seed, stream, index); the microsim's arms are paired on replicate d."""
from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import imsim
from imsim.analysis.draws import draw_plan
from imsim.analysis.evaluate import Evaluator
from imsim.analysis.recommend import parse_plan, recommend
from imsim.analysis.runner import get_calibration, resolve_inputs
from imsim.birth import engines
from imsim.birth.kernels import N_BANDS, N_CAUSES, OUT_DEATHS
from imsim.birth.params import build_tables
from imsim.birth.strategies import scenario_arm
from imsim.config.scenario import parse_scenario
from imsim.core.constants import STRATEGIES
from imsim.core.streams import STREAMS, generator, stream_id, uniforms
from imsim.inputs.evidence import EvidenceLibrary
from imsim.inputs.fit import fit_for

DEATHS = slice(OUT_DEATHS, OUT_DEATHS + N_CAUSES * N_BANDS)
STATES_ = ["GA", "MS"]
YEARS = [2026, 2027]
COVERAGE = {
    "safe_sleep": {"coverage": {2026: 0.3, 2027: 0.6}},
    "smoking_cessation": {"coverage": 0.3, "program": "incentives"},
    "preterm_prevention": {"coverage": 0.5,
                           "components": ["hard_stop", "vaginal_progesterone", "ohpc"],
                           "ohpc_effect": "meis"},
    "preconception_care": {"coverage": 0.4},
    "risk_appropriate_care": {"coverage": 0.5},
    "social_determinants": {"coverage": 0.3, "policy": "income_support"},
}


def _random_portfolios(n: int, seed: int = 11):
    rng = np.random.default_rng(seed)
    ports = [p for k in (1, 2, 3) for p in itertools.combinations(STRATEGIES, k)]
    return [ports[i] for i in rng.choice(len(ports), size=n, replace=False)]


def _averted_per_draw(result) -> np.ndarray:
    b = result.arms.baseline[:, :, DEATHS].sum(axis=(1, 2))
    s = result.arms.scenario[:, :, DEATHS].sum(axis=(1, 2))
    return b - s


# -- keyed streams ----------------------------------------------------------------------------

def test_stream_ids_are_stable_and_distinct():
    ids = [stream_id(s) for s in STREAMS]
    assert len(set(ids)) == len(ids)
    assert stream_id("effects") == zlib.crc32(b"effects")      # fixed by name, not by order
    with pytest.raises(KeyError):
        stream_id("not_a_stream")


def test_uniforms_have_the_prefix_property_and_depend_only_on_their_key():
    a = uniforms(5, "effects", "x", 200)
    np.testing.assert_array_equal(a[:100], uniforms(5, "effects", "x", 100))
    assert not np.array_equal(a[:10], uniforms(6, "effects", "x", 10))        # seed
    assert not np.array_equal(a[:10], uniforms(5, "sweep_psa", "x", 10))      # stream
    assert not np.array_equal(a[:10], uniforms(5, "effects", "y", 10))        # index
    g1, g2 = generator(1, "backtest", 3), generator(1, "backtest", 3)
    np.testing.assert_array_equal(g1.random(5), g2.random(5))


# -- effect and calibration draws --------------------------------------------------------------

def test_first_draws_of_more_replicates_are_the_draws_of_fewer():
    ev = EvidenceLibrary.load()
    cal = get_calibration(None)
    small, big = draw_plan(ev, cal, 7, 100), draw_plan(ev, cal, 7, 200)
    assert len(small) == 101 and len(big) == 201
    for a, b in zip(small, big):
        assert a.effects == b.effects
        assert a.calibration_draw == b.calibration_draw
    # Draws differ from one another and from the point.
    assert small[1].effects["unsafe_sleep_suid_or"] != small[2].effects["unsafe_sleep_suid_or"]
    assert small[0].calibration_draw is None
    assert len({d.calibration_draw for d in big[1:]}) > 50


def test_overriding_one_effect_changes_no_other_effects_draws():
    ev = EvidenceLibrary.load()
    plain = draw_plan(ev, None, 3, 20)
    over = draw_plan(ev.with_overrides({"unsafe_sleep_suid_or": 2.6}), None, 3, 20)
    for a, b in zip(plain, over):
        assert b.effects["unsafe_sleep_suid_or"] == 2.6
        for k in a.effects:
            if k != "unsafe_sleep_suid_or":
                assert a.effects[k] == b.effects[k], k


def test_an_effect_added_to_the_library_changes_no_other_draws():
    from dataclasses import replace

    ev = EvidenceLibrary.load()
    some = next(iter(ev.effects.values()))
    extra = dict(ev.effects)
    extra["a_new_effect_or"] = replace(some, id="a_new_effect_or")
    grown = EvidenceLibrary(extra)
    a, b = ev.draws(9, 30), grown.draws(9, 30)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("engine", ["expected", "microsim"])
def test_replicate_prefix_property_through_run(engine):
    sc = parse_scenario({"name": "t", "states": ["DE", "VT"], "years": [2026, 2026],
                         "strategies": {"safe_sleep": {"coverage": 0.5},
                                        "smoking_cessation": {"coverage": 0.4}}})
    r3 = imsim.run(sc, engine=engine, seed=4, replicates=3)
    r5 = imsim.run(sc, engine=engine, seed=4, replicates=5)
    np.testing.assert_array_equal(r3.arms.baseline, r5.arms.baseline[:4])
    np.testing.assert_array_equal(r3.arms.scenario, r5.arms.scenario[:4])


# -- the microsim's pairing, deterministically ------------------------------------------------

def test_microsim_scenario_arm_of_draw_d_runs_on_replicate_d():
    """Each draw's arms equal the kernel run on that draw's tables with replicate d, exactly."""
    spec = {"name": "t", "states": ["DE", "VT"], "years": [2026, 2026],
            "strategies": {"safe_sleep": {"coverage": 0.6},
                           "risk_appropriate_care": {"coverage": 0.8}}}
    sc = parse_scenario(spec)
    seed, reps = 12, 3
    res = imsim.run(sc, engine="microsim", seed=seed, replicates=reps)
    inputs = resolve_inputs(sc)
    cal = get_calibration(None)
    for d, draw in enumerate(res.draws):
        fit = fit_for(inputs.baseline, draw.effects, cal, draw.calibration_draw)
        base = inputs.baseline.params(inputs.cells, draw.effects, fit)
        scen = scenario_arm(base, inputs.levers, draw.effects)
        np.testing.assert_array_equal(res.arms.baseline[d],
                                      engines.microsim(build_tables(base), seed, replicate=d))
        np.testing.assert_array_equal(res.arms.scenario[d],
                                      engines.microsim(build_tables(scen), seed, replicate=d))
        if d > 0:   # and not on any other replicate
            assert not np.array_equal(
                res.arms.scenario[d], engines.microsim(build_tables(scen), seed, replicate=d - 1))


# -- run, sweep evaluation and recommend agree ------------------------------------------------

@pytest.fixture(scope="module")
def recommended():
    plan = {"name": "t", "states": STATES_, "years": YEARS, "strategies": COVERAGE,
            "draws": 3, "seed": 5, "max_strategies": 3}
    return recommend(parse_plan(plan))


@pytest.mark.parametrize("portfolio", _random_portfolios(4))
def test_run_sweep_and_recommend_give_identical_deaths_averted(recommended, portfolio):
    ev = recommended.evaluation
    p = ev.portfolios.index(tuple(portfolio))
    sc = parse_scenario({"name": "t", "states": STATES_, "years": YEARS, "seed": 5,
                         "strategies": {k: COVERAGE[k] for k in portfolio}})
    res = imsim.run(sc, seed=5, replicates=3)
    by_run = _averted_per_draw(res)
    by_recommend = ev.deaths_averted[:, p, :].sum(axis=1)
    np.testing.assert_allclose(by_recommend, by_run, rtol=1e-9, atol=1e-9)
    # The sweep evaluator at each draw's effect values and calibration posterior draw. A sweep
    # varies named parameters only, so projected births stay at their point: compare with a run
    # whose births are held (no projection, hence no births draw).
    sc = parse_scenario({"name": "t", "states": STATES_, "years": YEARS, "seed": 5,
                         "births_change_per_year": 0.0,
                         "strategies": {k: COVERAGE[k] for k in portfolio}})
    res = imsim.run(sc, seed=5, replicates=3)
    by_run = _averted_per_draw(res)
    ids = EvidenceLibrary.load().ids
    evaluator = Evaluator(sc, ids + ["calibration"], ["deaths_averted"])
    cal = get_calibration(None)
    k = cal.imr_draws.shape[0]
    X = np.array([[dr.effects[e] for e in ids]
                  + [np.nan if dr.calibration_draw is None else (dr.calibration_draw + 0.5) / k]
                  for dr in res.draws])
    by_sweep = evaluator(X)[:, 0]
    np.testing.assert_allclose(by_sweep, by_run, rtol=1e-9, atol=1e-9)
    assert np.all(by_run[1:] != by_run[0])      # the draws really differ


# -- no state that can go stale -----------------------------------------------------------------

def test_recalibrating_into_the_same_folder_is_seen_in_the_same_process(tmp_path):
    """Caches key on content: a new calibration in the same folder gives a new fit."""
    from dataclasses import replace

    from imsim.inputs.baseline import get_baseline

    folder = tmp_path / "cal"
    cal = get_calibration(None)
    cal.save(folder)
    first = get_calibration(str(folder))
    effects = EvidenceLibrary.load().point()
    base = get_baseline()
    fit1 = fit_for(base, effects, first)
    # "Recalibrate": same folder, rates 10% higher.
    cells = cal.cells.copy()
    cells["imr"] = cells["imr"] * 1.1
    replace(cal, imr=cal.imr * 1.1, imr_draws=cal.imr_draws * 1.1, cells=cells).save(folder)
    second = get_calibration(str(folder))
    assert second.content_hash != first.content_hash
    fit2 = fit_for(base, effects, second)
    assert not np.allclose(fit1.m_cause, fit2.m_cause)
    # The same content is the same fit, whatever the object.
    assert fit_for(base, effects, get_calibration(str(folder))) is fit2


def test_sweep_evaluator_uses_the_scenarios_calibration_like_run():
    """A scenario with `calibration: direct` is evaluated on the direct fit by run and sweep alike."""
    sc = parse_scenario({"name": "t", "states": ["VT"], "years": [2026, 2026],
                         "calibration": "direct",
                         "strategies": {"safe_sleep": {"coverage": 0.5}}})
    res = imsim.run(sc, seed=1, replicates=1)
    ids = ["safe_sleep_unsafe_reduction"]
    y = Evaluator(sc, ids, ["deaths_averted"])(
        np.array([[res.draws[0].effects[ids[0]]]]))[0, 0]
    assert y == pytest.approx(_averted_per_draw(res)[0], rel=1e-9)
    default = imsim.run(parse_scenario({"name": "t", "states": ["VT"], "years": [2026, 2026],
                                        "strategies": {"safe_sleep": {"coverage": 0.5}}}),
                        seed=1, replicates=1)
    assert _averted_per_draw(default)[0] != pytest.approx(y, rel=1e-9)
