"""imsim detect: probabilities of observing and of detecting a decline, power and MDE.

Statistical tolerances: a probability estimated as the share of N independent draws has
standard error sqrt(p (1 - p) / N); the tests allow 4 standard errors (a false failure about
once in 16,000 runs; the seeds are fixed, so a run either always passes or always fails).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from imsim.analysis.detect import (DETECT_COLUMNS, baseline_periods, detect, mde_pct,
                                   observed_decline, p_value_decline, power)
from imsim.cli import main
from imsim.config.scenario import parse_scenario
from imsim.core.errors import InputError


def test_p_value_is_scipy_binomtest():
    rng = np.random.default_rng(1)
    for _ in range(40):
        x, y = rng.integers(0, 60, 2)
        be, bb = rng.integers(1000, 9000, 2)
        want = stats.binomtest(int(x), int(x + y), be / (be + bb), alternative="less").pvalue \
            if x + y > 0 else 1.0
        assert p_value_decline(x, be, y, bb) == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_observed_decline_rule():
    # 9/1000 vs 10/1000 is exactly 10% below: counted; 9.01/1000 is not; baseline 0: never.
    assert observed_decline(9, 1000, 10, 1000, 10.0)
    assert not observed_decline(9.01, 1000, 10, 1000, 10.0)
    assert not observed_decline(0, 1000, 0, 1000, 10.0)


def test_power_is_exact_against_simulated_poisson_counts():
    """Exact power (Poisson total, binomial split) equals the rejection rate of simulated
    Poisson counts tested with binomtest's p-value."""
    rng = np.random.default_rng(7)
    n = 20_000
    mu_b, bb, be = 60.0, 10_000.0, 9_000.0
    for decline in (0.0, 20.0, 40.0):
        p = power(decline, mu_b, bb, be)
        xb = rng.poisson(mu_b, n)
        xe = rng.poisson(be * mu_b / bb * (1 - decline / 100), n)
        sim = (p_value_decline(xe, be, xb, bb) < 0.05).mean()
        assert abs(sim - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-12, (decline, sim, p)
    # The test keeps its size: with no decline it rejects at most 5% of the time.
    assert power(0.0, mu_b, bb, be) <= 0.05


def test_mde_solves_power_80():
    m = mde_pct(200.0, 50_000.0, 50_000.0)
    assert power(m, 200.0, 50_000.0, 50_000.0) == pytest.approx(0.8, abs=2e-3)
    # Roughly the normal approximation (z_0.95 + z_0.8) sqrt(1/mu_e + 1/mu_b) on the log scale.
    approx = 100 * (1 - np.exp(-(1.645 + 0.842) * np.sqrt(2 / 200.0)))
    assert m == pytest.approx(approx, rel=0.1)
    # More deaths, smaller MDE; too few deaths: none.
    assert mde_pct(2000.0, 5e5, 5e5) < m
    assert np.isnan(mde_pct(1.0, 500.0, 500.0))


def test_single_cell_microsim_against_exact_binomial_sums():
    """One cell simulated by the microsim in R replicates: the share of replicates whose rate is
    at least 10% below a second cell's, and whose test is significant, equal the exact sums over
    the two cells' binomial death counts (each birth dies independently with the cell's expected
    probability)."""
    from conftest import random_params
    from imsim.birth.engines import expected, microsim
    from imsim.birth.params import build_tables

    params = random_params(3, n_cells=2, births=(400, 401), death_range=(0.01, 0.03))
    tables = build_tables(params)
    q = expected(tables)
    from imsim.analysis.detect import _births, _deaths

    births = _births(q)
    prob = _deaths(q) / births
    R = 3000
    sims = np.array([_deaths(microsim(tables, 11, replicate=d)) for d in range(R)])   # [R, 2]
    be, bb = births[1], births[0]
    obs = observed_decline(sims[:, 1], be, sims[:, 0], bb, 10.0).mean()
    sig = (p_value_decline(sims[:, 1], be, sims[:, 0], bb) < 0.05).mean()
    xb = np.arange(int(bb) + 1)
    xe = np.arange(int(be) + 1)
    pb = stats.binom.pmf(xb, int(bb), prob[0])
    pe = stats.binom.pmf(xe, int(be), prob[1])
    # P(xe / be <= 0.9 xb / bb, xb > 0): the cdf of xe at floor(0.9 xb be / bb).
    cut = np.floor(0.9 * xb * be / bb + 1e-9)
    exact_obs = float(np.sum(pb[1:] * stats.binom.cdf(cut[1:], int(be), prob[1])))
    grid = stats.binom.cdf(xe[:, None], xe[:, None] + xb[None, :], be / (be + bb)) < 0.05
    exact_sig = float(pe @ grid @ pb)
    for sim, exact in ((obs, exact_obs), (sig, exact_sig)):
        assert abs(sim - exact) < 4 * np.sqrt(exact * (1 - exact) / R), (sim, exact)
    assert 0.05 < exact_obs < 0.95 and exact_sig > 0.01     # the test can tell


SMALL = {"name": "det", "years": [2027, 2029], "states": ["DE"], "seed": 4}


def _det(coverage, **kw):
    sc = dict(SMALL, strategies={"safe_sleep": {"coverage": coverage}})
    return detect(parse_scenario(sc), windows=(1, 3), replicates=12, **kw)


@pytest.fixture(scope="module")
def weak_strong():
    return _det(0.2), _det(0.9)


def test_stronger_scenario_never_lowers_the_probabilities(weak_strong):
    """Same seed: the same parameter draws and the same random numbers for every birth (common
    random numbers keyed by seed, replicate, cell and birth). Safe sleep only lowers each birth's
    unsafe-sleep probability, and an unsafe-sleep birth's death thresholds are at least its safe
    twin's, so with the same uniforms every birth that dies under stronger coverage also dies
    under weaker coverage: deaths per draw are monotone, and so are the decline indicator and the
    p-value (increasing in the window's deaths). The tolerance is therefore 0, draw by draw; the
    baseline period (no strategy) is the same in both runs."""
    weak, strong = weak_strong
    ws = weak.result.arms.scenario[1:, :, 6:24].sum(axis=-1)
    ss = strong.result.arms.scenario[1:, :, 6:24].sum(axis=-1)
    assert (ss <= ws).all() and (ss < ws).any()
    np.testing.assert_array_equal(weak.baseline_result.arms.baseline,
                                  strong.baseline_result.arms.baseline)
    a, b = weak.table, strong.table
    assert list(a.columns[:8]) == DETECT_COLUMNS
    for col in ("p_observed_decline_scenario", "p_significant"):
        assert (b[col].to_numpy() >= a[col].to_numpy()).all(), col
    assert (b.p_significant > a.p_significant).any()          # and the test can tell
    # No strategy is the same run in both.
    np.testing.assert_array_equal(a.p_observed_decline_baseline, b.p_observed_decline_baseline)
    assert (b.expected_decline_pct_scenario >= a.expected_decline_pct_scenario - 1e-9).all()


def test_table_shape_and_periods(weak_strong):
    t = weak_strong[0].table
    assert set(t.state) == {"DE", "ALL"} and set(t.window_years) == {1, 3}
    assert len(t) == 2 * 6 * 2
    r = t[(t.state == "DE") & (t.race == "ALL")].set_index("window_years")
    assert r.loc[1, "eval_years"] == "2029-2029" and r.loc[1, "baseline_years"] == "2026-2026"
    assert r.loc[3, "eval_years"] == "2027-2029" and r.loc[3, "baseline_years"] == "2024-2026"
    assert (t.draws == 12).all()
    assert t[["p_observed_decline_scenario", "p_significant"]].stack().between(0, 1).all()


def test_bad_input_is_one_line_before_work():
    with pytest.raises(InputError, match="--windows 4 is not possible"):
        baseline_periods((2027, 2029), [1, 4])
    with pytest.raises(InputError, match="before the first data year 2013"):
        baseline_periods((2015, 2019), [3])
    with pytest.raises(InputError, match="--decline 0 is out of range"):
        detect(parse_scenario(SMALL), decline_pct=0)
    with pytest.raises(InputError, match="--replicates 1 is out of range"):
        detect(parse_scenario(SMALL), replicates=1)


def test_cli_writes_the_folder(tmp_path, capsys):
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(dict(SMALL, strategies={"safe_sleep": {"coverage": 0.5}})))
    out = tmp_path / "det"
    assert main(["detect", str(f), "--replicates", "3", "--windows", "1,2", "--out", str(out),
                 "--quiet"]) == 0
    t = pd.read_csv(out / "detectability.csv")
    assert list(t.columns[:8]) == DETECT_COLUMNS
    assert (out / "figures" / "detectability.png").stat().st_size > 0
    assert 'id="detectability"' in (out / "report.html").read_text(encoding="utf-8")
    assert "detect" in (out / "manifest.json").read_text(encoding="utf-8")
    assert main(["detect", str(f), "--windows", "1,9", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--windows 9" in err[0]
    assert not (tmp_path / "x").exists()
