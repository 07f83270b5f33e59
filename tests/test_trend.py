"""The IMR trend model (imsim.calibration.trend): recovery, in-data fit, back-test skill, runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.calibration.backtest import naive_forecasts
from imsim.calibration.targets import load_calibration
from imsim.calibration.trend import (fit_local_level, fit_race_trends,
                                     fit_state_trends, forecast_states, national_series,
                                     race_blocks)
from imsim.config.scenario import parse_scenario
from imsim.core.constants import ALL, RACES, STATES
from imsim.inputs.baseline import get_baseline


def _simulate(seed, n_states=51, years=range(2006, 2020), sigma_b=0.01, sigma_a=0.18,
              sigma_e=0.02, q=0.0004, births_mean=60000):
    """A state series with known national random walk, state levels and slopes."""
    rng = np.random.default_rng(seed)
    years = np.array(list(years))
    nat = np.log(6.0) + np.cumsum(rng.normal(0, np.sqrt(q), len(years)))
    a = rng.normal(0, sigma_a, n_states)
    b = rng.normal(0, sigma_b, n_states)
    births = np.exp(rng.normal(np.log(births_mean), 1.0, n_states)).round() + 5000
    rows = []
    for i in range(n_states):
        for t, y in enumerate(years):
            lam = np.exp(nat[t] + a[i] + b[i] * (y - years[-1]) + rng.normal(0, sigma_e))
            d = rng.poisson(lam * births[i] / 1000.0)
            rows.append({"state": f"S{i:02d}", "year": int(y), "deaths": float(d),
                         "births": float(births[i]), "observed": 1000.0 * d / births[i]})
    return pd.DataFrame(rows), nat, a, b


def _nat_log(series):
    g = series.groupby("year")[["deaths", "births"]].sum()
    return {int(y): float(np.log(1000.0 * r.deaths / r.births)) for y, r in g.iterrows()}


def test_state_slopes_are_recovered_with_nominal_coverage():
    """Across simulated series the 95% intervals of the state slopes cover the truth ~95%."""
    hits, n = 0, 0
    for seed in range(6):
        series, _, _, b = _simulate(seed)
        nat = _nat_log(series)
        st = fit_state_trends(series, nat, window=10, centre=2019)
        # Slopes are relative to the summed-states national series, whose own slope is the
        # births-weighted mean of the state slopes: compare centred truths.
        w = series[series.year == 2019].set_index("state")["births"].to_numpy()
        truth = b - np.sum(w * b) / w.sum()
        sd = np.sqrt(st.cov[:, 1, 1])
        hits += int(np.sum(np.abs(st.slope - truth) <= 1.96 * sd))
        n += len(truth)
    rate = hits / n
    # Binomial sd of the coverage at 95% over n intervals (states are nearly independent).
    tol = 3 * np.sqrt(0.95 * 0.05 / n)
    assert abs(rate - 0.95) < tol + 0.02, rate     # + 0.02: REML variance estimated from data


def test_local_level_recovers_a_known_level_and_widens_with_horizon():
    rng = np.random.default_rng(3)
    years = np.arange(2000, 2024)
    level = np.log(6.0) + np.cumsum(rng.normal(0, 0.02, len(years)))
    births = np.full(len(years), 3.8e6)
    deaths = rng.poisson(np.exp(level) * births / 1000.0)
    m = fit_local_level(years, deaths, births)
    mean, var = m.level(years)
    z = (mean - level) / np.sqrt(var + 1e-12)
    assert np.mean(np.abs(z) < 1.96) >= 0.8
    _, v = m.level(np.array([2024, 2026, 2030]))
    assert v[0] < v[1] < v[2]
    assert 0.005 < np.sqrt(m.q) < 0.05


def test_planted_state_trends_forecast_better_than_carry_forward():
    """With real state trends planted, the trend model beats carrying the last 3 years."""
    series, _, _, _ = _simulate(11, years=range(2006, 2021), sigma_b=0.03)
    origin = 2017
    naive = naive_forecasts(series, origin)
    fc = forecast_states(series, origin, [2018, 2019, 2020])
    t = naive.merge(fc[fc.state != ALL], on=["state", "year"])
    mae_model = np.mean(np.abs(t.predicted - t.observed))
    mae_naive = np.mean(np.abs(t.naive - t.observed))
    assert mae_model < mae_naive
    cover = np.mean((t.predicted_lo <= t.observed) & (t.observed <= t.predicted_hi))
    assert cover > 0.85


def test_race_slopes_are_pooled_towards_zero():
    rt = fit_race_trends(race_blocks())
    assert np.all(np.abs(rt.slope) <= np.abs(rt.raw) + 1e-12)
    assert np.all(rt.sd > 0)
    assert sorted(rt.blocks) == ["2018-2019", "2020-2022", "2023H1"]


def test_packaged_national_series_runs_2007_through_2023():
    n = national_series()
    assert n["year"].tolist() == list(range(2007, 2024))
    assert (n["deaths"] < n["births"]).all()
    assert n["source"].str.contains("CDC WONDER").all()


@pytest.fixture(scope="module")
def cal():
    c = load_calibration()
    assert c.trend is not None
    return c


def test_inside_the_data_the_projection_is_the_data_fit(cal):
    """For a data year, the cells' national IMR is L0 x smoothed(y) / mean smoothed 2013-2015."""
    base = get_baseline()
    years = np.array([2016, 2019, 2022])
    births = np.stack([base.births_grid(int(y)) for y in years])
    ref = sum(base.births[y] for y in (2013, 2014, 2015)).astype(float)
    lam0 = cal.cell_imr(None)
    mult = cal.trend.multipliers(years, births, lam0, ref, None)
    nat = np.sum(births * lam0[None] * mult, axis=(1, 2)) / births.sum(axis=(1, 2))
    l0 = np.sum(ref * lam0) / ref.sum()
    m = cal.trend.national
    ref = np.mean(np.exp(m.mean[np.arange(2013, 2016) - m.years[0]]))
    expected = l0 * np.exp(m.mean[years - m.years[0]]) / ref
    np.testing.assert_allclose(nat, expected, rtol=1e-12)


def test_run_2022_reproduces_the_observed_national_imr(cal):
    """imsim run for 2022: the observed national IMR (deaths / births) lies in the interval."""
    n = national_series().set_index("year")
    observed = 1000.0 * n.loc[2022, "deaths"] / n.loc[2022, "births"]
    sc = parse_scenario({"name": "y2022", "years": [2022, 2022], "states": "all", "seed": 3})
    res = imsim.run(sc, replicates=60)
    tab = res.table("summary").set_index(["state", "race"])
    row = tab.loc[(ALL, ALL)]
    assert row["imr_baseline_lo"] <= observed <= row["imr_baseline_hi"], (row, observed)
    assert abs(row["imr_baseline"] - observed) / observed < 0.03


def test_projection_uncertainty_widens_with_the_horizon_and_moves_rates(cal):
    sc = parse_scenario({"name": "t", "years": [2024, 2030], "states": ["TX", "OH"], "seed": 2})
    res = imsim.run(sc, replicates=40)
    by_year = res.table("by_year")
    nat = by_year[(by_year.state == ALL) & (by_year.race == ALL)].set_index("year")
    width = nat["imr_baseline_hi"] - nat["imr_baseline_lo"]
    assert width.loc[2030] > width.loc[2024]
    assert nat["projected"].all()
    # Rates move with time: two years of one state x race differ.
    tx = by_year[(by_year.state == "TX") & (by_year.race == "nh_black")].set_index("year")
    assert tx.loc[2024, "imr_baseline"] != tx.loc[2030, "imr_baseline"]


def test_births_projection_uncertainty_enters_draws_only_for_projected_years():
    base = get_baseline()
    cells = base.cells([2022, 2027], ["TX"])
    f0 = base.births_factor(cells, seed=1, draw=0)
    f1 = base.births_factor(cells, seed=1, draw=1)
    assert np.all(f0 == 1.0)
    assert np.all(f1[cells.year == 2022] == 1.0)
    assert np.all(f1[cells.year == 2027] != 1.0)
    np.testing.assert_array_equal(f1, base.births_factor(cells, seed=1, draw=1))


def _targets(path, rows):
    cols = ["state", "race", "year_start", "year_end", "measure", "deaths", "births", "rate", "flag"]
    rows = [tuple(round(v, 4) if isinstance(v, float) else v for v in r) for r in rows]
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return path


def test_a_users_single_years_update_the_trend_and_are_all_accounted_for(tmp_path, capsys):
    """Every single-year row is used, replaces a packaged value, or is ignored with a reason."""
    from imsim.calibration.calibrate import calibrate
    from imsim.cli import main

    f = _targets(tmp_path / "t.csv", [
        ("AK", "ALL", 2010, 2010, "imr", 40, 11000, 1000 * 40 / 11000, "ok"),       # replaced
        ("AK", "ALL", 2019, 2019, "imr", 110, 10000, 11.0, "ok"),                    # used
        ("AK", "ALL", 2020, 2020, "imr", 115, 9800, 1000 * 115 / 9800, "ok"),        # used
        ("AK", "nh_black", 2020, 2020, "imr", 5, 300, 1000 * 5 / 300, "unreliable"),  # ignored
        ("AK", "ALL", 2018, 2018, "imr", "", "", "", "suppressed"),                  # ignored
        ("ALL", "ALL", 2022, 2022, "imr", 20577, 3667758, 1000 * 20577 / 3667758, "ok"),  # repl.
    ])
    settings = {"sigma_alpha": 0.114, "sigma_eps": [0.103, 0.037, 0.05, 0.162, 0.265],
                "draws": 10}
    cal, _ = calibrate(f, tmp_path / "mine", settings=settings, backtest=False)
    sy = pd.read_csv(tmp_path / "mine" / "single_years.csv")
    assert len(sy) == 6
    status = dict(zip(zip(sy.state, sy.race, sy.year), sy.status))
    assert status[("AK", "ALL", 2010)] == "replaced"
    assert status[("AK", "ALL", 2019)] == "used"
    assert status[("AK", "nh_black", 2020)] == "ignored"
    assert status[("AK", "ALL", 2018)] == "ignored"
    assert status[("ALL", "ALL", 2022)] == "replaced"
    assert sy["reason"].str.len().min() > 10
    # The user's years moved AK's trend (rates much higher in 2019-2020) and the national 2022.
    default = load_calibration()
    ak = STATES.index("AK")
    assert cal.trend.states.slope_array()[0][ak] > default.trend.states.slope_array()[0][ak] + 0.005
    assert 2022 in cal.trend.national.years
    assert cal.trend.national.y[list(cal.trend.national.years).index(2022)] == pytest.approx(
        np.log(1000 * 20577 / 3667758), rel=1e-9)
    # The command line says it, one line per status and reason.
    rc = main(["calibrate", "--targets", str(f), "--out", str(tmp_path / "cli"), "--draws", "10",
               "--no-backtest"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 used, 2 replaced, 2 ignored" in out
    assert "ignored: 1 row(s), AK, 2020: a single year of one race" in out


def test_years_note_says_observed_and_projected():
    from imsim.output.report import years_note

    assert years_note([2013, 2015]).startswith("2013-2015: observed")
    assert years_note([2026, 2030]).startswith("2026-2030: projected")
    mixed = years_note([2022, 2026])
    assert mixed.startswith("2022-2023 observed, 2024-2026 projected")


def test_report_says_which_years_are_projected(tmp_path):
    from imsim.output.runfolder import save_result

    sc = parse_scenario({"name": "t", "years": [2022, 2025], "states": ["VT"], "seed": 1,
                         "strategies": {"safe_sleep": {"coverage": 0.5}}})
    out = save_result(imsim.run(sc), tmp_path / "r")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "2022-2023 observed, 2024-2025 projected" in html
    by_year = pd.read_csv(out / "by_year.csv")
    assert by_year.groupby("year")["projected"].first().to_dict() == {
        2022: False, 2023: False, 2024: True, 2025: True}


def test_state_trends_beat_carry_forward_on_census_regions_after_2017(cal):
    """Out of sample: the state series end in 2017; census regions run through 2022."""
    from imsim.calibration.trend import region_check
    from imsim.inputs.data import load_table

    rc = region_check(cal.trend, load_table("births"))
    assert rc["n"] == 8
    assert rc["mae_model_pct"] < rc["mae_carry_pct"]
    for rows in rc["blocks"].values():
        obs = [r["observed"] for r in rows.values()]
        assert 0.7 < min(obs) and max(obs) < 1.3


def test_a_state_year_without_a_national_value_is_ignored_with_its_reason(tmp_path):
    from imsim.calibration.observations import load_observations

    f = _targets(tmp_path / "t.csv", [
        ("AK", "ALL", 2019, 2019, "imr", 110, 10000, 11.0, "ok"),
        ("AK", "ALL", 2025, 2025, "imr", 60, 9500, 1000 * 60 / 9500, "ok"),
    ])
    obs = load_observations(f)
    sy = obs.single_years.set_index("year")
    assert sy.loc[2019, "status"] == "used"
    assert sy.loc[2025, "status"] == "ignored"
    assert "no national value for 2025" in sy.loc[2025, "reason"]
    assert 2025 not in set(obs.imr_year["year"])
