"""``imsim replay``: 2013-2017 replayed against the observed change (a validation, not a fit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.analysis.replay import (
    COLUMNS,
    NATIONAL_RACE,
    replay_scenario,
    run_replay,
)
from imsim.calibration.series import state_series
from imsim.core.constants import STATES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def point():
    return run_replay(replicates=0)


def test_scenario_file_is_the_replay_scenario():
    a = imsim.load_scenario(REPO / "scenarios" / "replay_2013_2017.yaml").resolved()
    assert a == replay_scenario().resolved()


def test_table_rows_and_observed_values(point):
    t = point.table
    assert list(t.columns) == COLUMNS
    assert list(t.state[:51]) == list(STATES)
    ser = state_series().set_index(["state", "year"])
    for st in ("AL", "CA", "WY"):
        row = t[(t.state == st) & (t.race == "ALL")].iloc[0]
        assert row.observed_2013 == ser.loc[(st, 2013), "observed"]
        assert row.observed_2017 == ser.loc[(st, 2017), "observed"]
        assert row.observed_change == pytest.approx(row.observed_2017 - row.observed_2013)
    nat = t[(t.state == "ALL") & (t.race == "ALL")].iloc[0]
    assert (nat.observed_2013, nat.observed_2017) == (5.96, 5.79)       # NVSR 64-9, 68-10
    for race, (o13, o17, _src) in NATIONAL_RACE.items():
        row = t[(t.state == "ALL") & (t.race == race)].iloc[0]
        assert (row.observed_2013, row.observed_2017) == (o13, o17)
    assert t.within.isna().all()                    # no draws: no interval, no verdict


def test_parts_add_up_and_levers_act_where_the_history_put_them(point):
    p = point.parts.merge(point.table, on=["state", "race"])
    assert np.allclose(p.trend_change + p.levers_change, p.modelled_change)
    assert np.allclose(p.modelled_2017 - p.modelled_2013, p.modelled_change)
    # Every state had CoIIN teams or expanded Medicaid, or both: the levers lower its IMR.
    st = p[p.state != "ALL"]
    assert (st.levers_change < 0).all()


def test_forecast_trend_differs_from_the_in_sample_trend(point):
    packaged = run_replay(replicates=0, trend="packaged")
    a = point.parts.set_index(["state", "race"]).trend_change
    b = packaged.parts.set_index(["state", "race"]).trend_change
    assert not np.allclose(a, b)
    # The levers do not depend on the trend model much (same coverage, same evidence).
    la = point.parts.set_index(["state", "race"]).levers_change
    lb = packaged.parts.set_index(["state", "race"]).levers_change
    assert np.allclose(la, lb, atol=0.05)


def test_predictive_intervals_and_command(tmp_path, capsys):
    from imsim.cli import main

    out = tmp_path / "r"
    assert main(["replay", "--replicates", "12", "--out", str(out)]) == 0
    assert "states" in capsys.readouterr().out
    t = pd.read_csv(out / "replay.csv")
    assert list(t.columns) == COLUMNS
    st = t[t.state != "ALL"]
    assert (st.modelled_lo <= st.modelled_change + 1e-9).sum() >= 45
    assert (st.modelled_lo < st.modelled_hi).all()
    inside = (st.modelled_lo <= st.observed_change) & (st.observed_change <= st.modelled_hi)
    assert (inside == st.within.astype(bool)).all()
    # Observation noise: a small state's interval is wider than California's.
    w = (st.modelled_hi - st.modelled_lo).to_numpy()
    assert w[list(st.state).index("WY")] > w[list(st.state).index("CA")]
    for f in ("replay_parts.csv", "replay.md", "replay.json", "figures/replay.png"):
        assert (out / f).is_file()
    assert "in-sample" in (out / "replay.md").read_text().lower()
    assert main(["replay", "--replicates", "-1"]) == 2
