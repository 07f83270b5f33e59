"""Back-test framework: several origins, naive forecasts, metrics, honest verdicts."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from imsim.calibration.backtest import (
    DEFAULT_ORIGINS, backtest, error_metrics, metrics, naive_forecasts, national_trend)


def _synthetic(slope=-0.03, years=range(2007, 2018), seed=11, births=400_000):
    """A state series with a planted log-linear decline shared by all states, Poisson deaths."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, s in enumerate(["AA", "BB", "CC", "DD", "EE", "FF"]):
        base = 5.0 + 0.6 * k
        for y in years:
            rate = base * math.exp(slope * (y - 2007))
            d = int(rng.poisson(rate * births / 1000))
            rows.append({"state": s, "year": y, "deaths": d, "births": births,
                         "observed": 1000 * d / births})
    return pd.DataFrame(rows)


def test_metrics_equal_hand_computation():
    obs = [5.0, 6.0, 7.0, 8.0]
    fc = [5.5, 5.0, 7.0, 10.0]         # errors +0.5, -1, 0, +2
    lo = [5.2, 4.0, 6.0, 9.0]
    hi = [6.0, 7.0, 8.0, 11.0]         # inside: no, yes, yes, no
    m = error_metrics(obs, fc, lo, hi)
    assert m["n"] == 4
    assert m["mae"] == pytest.approx((0.5 + 1 + 0 + 2) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 0 + 4) / 4), abs=1e-4)
    assert m["bias"] == pytest.approx((0.5 - 1 + 0 + 2) / 4)
    assert m["coverage"] == pytest.approx(0.5)
    assert error_metrics(obs, fc)["coverage"] is None
    # NaN pairs are dropped, not counted as zero
    m2 = error_metrics(obs + [np.nan], fc + [1.0])
    assert m2["n"] == 4 and m2["mae"] == m["mae"]


def test_naive_forecasts_hand_computed():
    s = _synthetic()
    f = naive_forecasts(s, 2012)
    aa = s[s.state == "AA"].set_index("year")["observed"]
    carry = aa.loc[[2010, 2011, 2012]].mean()
    g = s[s.year <= 2012].groupby("year")[["deaths", "births"]].sum()
    b = np.polyfit(g.index.to_numpy(float), np.log(g.deaths / g.births), 1)[0]
    assert national_trend(s, 2012) == pytest.approx(b)
    r = f[(f.state == "AA") & (f.year == 2015)].iloc[0]
    assert r.naive == pytest.approx(carry)
    assert r.trend == pytest.approx(carry * math.exp(b * (2015 - 2011)))
    assert r.horizon == 3
    assert set(f.year) == set(range(2013, 2018))
    assert r.naive_lo < r.naive < r.naive_hi


def test_planted_trend_is_recovered_and_trend_beats_carry_forward():
    slope = -0.03
    s = _synthetic(slope=slope)
    # the slope's standard error: Poisson log-rate sd per year is 1/sqrt(national deaths)
    g = s[s.year <= 2012].groupby("year")[["deaths"]].sum()
    x = np.arange(2007, 2013, dtype=float)
    se = (1 / math.sqrt(g.deaths.min())) / math.sqrt(((x - x.mean()) ** 2).sum())
    assert abs(national_trend(s, 2012) - slope) < 4 * se
    for origin in DEFAULT_ORIGINS:
        f = naive_forecasts(s, origin)
        mae_carry = np.mean(np.abs(f.naive - f.observed))
        mae_trend = np.mean(np.abs(f.trend - f.observed))
        assert mae_trend < mae_carry, (origin, mae_trend, mae_carry)
        # carry-forward lags a falling rate: it over-predicts
        assert np.mean(f.naive - f.observed) > 0


def _table(f, predicted):
    t = f.assign(origin=2012, predicted=predicted, predicted_lo=predicted - 0.1,
                 predicted_hi=predicted + 0.1, model_in_sample=False)
    t["error"] = t.predicted - t.observed
    t["naive_error"] = t.naive - t.observed
    t["trend_error"] = t.trend - t.observed
    t["within_interval"] = (t.predicted_lo <= t.observed) & (t.observed <= t.predicted_hi)
    t["rel_error"] = t.predicted / t.observed - 1
    return t


def test_metrics_blocks_and_verdict_on_a_table():
    f = naive_forecasts(_synthetic(), 2012)
    # a perfect forecast beats carry-forward
    o = metrics(_table(f, f.observed))["origins"]["2012"]
    assert o["beats_naive"] is True and o["blocks"]["2013-2017"]["mae"] == 0
    assert o["blocks"]["2013-2017"]["coverage"] == 1.0
    for y in range(2013, 2018):
        assert o["blocks"][str(y)]["n"] == 6
    # carry-forward + 0.5 does not, and the verdict says so
    o2 = metrics(_table(f, f.naive + 0.5))["origins"]["2012"]
    assert o2["beats_naive"] is False and "does NOT beat" in o2["verdict"]
    assert o2["blocks"]["2013-2017"]["bias"] == pytest.approx(
        np.mean(f.naive + 0.5 - f.observed), abs=1e-4)


@pytest.fixture(scope="module")
def default_backtest():
    return backtest()


def test_backtest_json_has_keys_for_every_origin(default_backtest, tmp_path):
    res = default_backtest
    res.save(tmp_path)
    m = json.loads((tmp_path / "backtest.json").read_text())
    assert set(m["origins"]) == {str(o) for o in DEFAULT_ORIGINS}
    for o, om in m["origins"].items():
        assert isinstance(om["beats_naive"], bool) and om["verdict"]
        assert om["horizon"] in om["blocks"]
        for name, b in om["blocks"].items():
            for k in ("mae", "naive_mae", "trend_mae", "rmse", "bias", "coverage", "n"):
                assert k in b, (o, name, k)
            for k in ("coverage", "naive_coverage", "trend_coverage"):
                assert 0.0 <= b[k] <= 1.0
            assert b["n"] > 0 and b["mae"] >= 0 and b["rmse"] >= b["mae"]
    # 2012 -> 2013-2017, 2015 -> 2016-2017; the trend model is refitted through each origin,
    # so every block is a true forecast, and it beats carry-forward at every origin.
    assert m["origins"]["2012"]["horizon"] == "2013-2017"
    assert m["origins"]["2015"]["horizon"] == "2016-2017"
    for om in m["origins"].values():
        assert om["model_in_sample"] is False
        assert om["beats_naive"] is True, om["verdict"]
    # old layout kept for readers of calibration.json
    assert m["all"]["states"] == m["origins"]["2015"]["blocks"]["2016-2017"]["n"]
    t = pd.read_csv(tmp_path / "backtest.csv")
    st = t[t.state != "ALL"]
    assert not st.duplicated(["origin", "state", "year"]).any()
    assert st[["observed", "predicted", "naive", "trend"]].notna().all().all()
    assert (tmp_path / "backtest.png").stat().st_size > 10_000


def test_verdict_matches_numbers(default_backtest):
    for o, om in default_backtest.metrics["origins"].items():
        full = om["blocks"][om["horizon"]]
        assert om["beats_naive"] == (full["mae"] < full["naive_mae"])
        if not om["beats_naive"]:
            assert "does NOT beat carry-forward" in om["verdict"]
        if om["model_in_sample"]:
            assert "in-sample" in om["verdict"]


def test_packaged_series_is_the_derivation_of_the_shared_exports():
    from pathlib import Path

    from imsim.calibration.series import derive_series, packaged_series, state_series

    shared = Path(__file__).parents[2] / "shared" / "data"
    if not (shared / "external").is_dir():
        pytest.skip("../shared/data not present")
    new, old = derive_series(shared), packaged_series()
    assert list(new.state) == list(old.state) and list(new.year) == list(old.year)
    assert np.allclose(new.observed, old.observed, rtol=1e-5)
    assert (new.deaths == old.deaths).all() and (new.births == old.births).all()
    # the mislabeled "2015" file (a 2016 query) is not read as 2015; the series is 2007-2017
    s = state_series()
    assert sorted(s.year.unique()) == list(range(2007, 2018))
    assert s.groupby("year").size().eq(51).all()
