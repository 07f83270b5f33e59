"""Tests of the learning-collaborative ABM (imsim.collaborative.abm)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from imsim.collaborative.abm import (
    COIIN_2013_2017_COUNTS,
    PARAMETERS,
    CollaborativeConfig,
    CollaborativeModel,
    StateTeam,
    annual_coverage,
    apply_parameters,
    coiin_2013_2017_teams,
    parse_collaborative,
    plot_coverage,
    run_collaborative,
)
from imsim.core.constants import STATES, STRATEGIES
from imsim.core.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "start": 2026,
    "support_ends": 2029,
    "teams": {"AL": ["safe_sleep", "preconception_care"], "GA": ["smoking_cessation"], "MS": ["safe_sleep"]},
    "peer_learning": 0.3,
    "capacity": {"default": 0.5, "AL": 0.7},
}
YEARS = (2026, 2030)


def cfg(**over):
    return parse_collaborative({**SMALL, **over})


def coiin(**over):
    return parse_collaborative({**SMALL, "teams": "coiin_2013_2017", **over})


def merged(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    keys = ["year", "quarter", "state", "strategy"]
    m = a.merge(b, on=keys, suffixes=("_a", "_b"), validate="one_to_one")
    assert len(m) == len(a) == len(b)
    return m


# ----------------------------------------------------------------------------- output shape
def test_output_columns_rows_and_order():
    df = run_collaborative(cfg(), YEARS, seed=1)
    assert list(df.columns) == ["year", "quarter", "state", "strategy", "coverage"]
    # 4 team-strategy pairs x 5 years x 4 quarters
    assert len(df) == 4 * 5 * 4
    assert set(df["quarter"]) == {1, 2, 3, 4}
    assert set(zip(df["state"], df["strategy"])) == {
        ("AL", "safe_sleep"), ("AL", "preconception_care"), ("GA", "smoking_cessation"), ("MS", "safe_sleep")
    }
    assert df["year"].min() == 2026 and df["year"].max() == 2030


def test_annual_is_mean_of_quarters():
    df = run_collaborative(cfg(), YEARS, seed=2)
    ann = annual_coverage(df)
    assert list(ann.columns) == ["year", "state", "strategy", "coverage"]
    assert len(ann) == 4 * 5
    sel = df[(df.year == 2027) & (df.state == "AL") & (df.strategy == "safe_sleep")]
    got = ann[(ann.year == 2027) & (ann.state == "AL") & (ann.strategy == "safe_sleep")]["coverage"].item()
    assert got == pytest.approx(sel["coverage"].mean())


def test_mesa_agents_and_networks():
    model = CollaborativeModel(coiin(), YEARS, seed=0)
    teams = list(model.agents_by_type[StateTeam])
    assert len(teams) == 51
    assert len({t.unique_id for t in teams}) == 51
    for s, n in COIIN_2013_2017_COUNTS.items():
        assert len(model.networks[s].members) == n


# ----------------------------------------------------------------------------- reproducibility
def test_same_seed_identical():
    a = run_collaborative(coiin(stall_probability=0.3), YEARS, seed=42)
    b = run_collaborative(coiin(stall_probability=0.3), YEARS, seed=42)
    pd.testing.assert_frame_equal(a, b)


def test_different_seeds_differ_with_stalls():
    a = run_collaborative(coiin(stall_probability=0.3), YEARS, seed=1)
    b = run_collaborative(coiin(stall_probability=0.3), YEARS, seed=2)
    assert not np.allclose(a["coverage"].to_numpy(), b["coverage"].to_numpy())


def test_no_stalls_no_seed_dependence():
    a = run_collaborative(coiin(stall_probability=0.0), YEARS, seed=1)
    b = run_collaborative(coiin(stall_probability=0.0), YEARS, seed=2)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_coverage_within_start_and_ceiling_while_supported(seed):
    c = coiin(
        starting_coverage={"default": 0.05, "safe_sleep": 0.2, "TX": {"smoking_cessation": 0.3}},
        ceiling={"preconception_care": 0.35},
        base_rate=0.5, capacity=1.0, peer_learning=1.0, session_boost=2.0, stall_probability=0.2,
    )
    df = run_collaborative(c, (2026, 2029), seed)
    start = np.array([c.starting(s, k) for s, k in zip(df.state, df.strategy)])
    ceil = np.array([c.ceiling[k] for k in df.strategy])
    assert (df["coverage"].to_numpy() >= start - 1e-15).all()
    assert (df["coverage"].to_numpy() <= ceil + 1e-15).all()
    assert (df["coverage"].to_numpy() > start).any()  # it did learn
    tx = df[(df.state == "TX") & (df.strategy == "smoking_cessation")]
    if len(tx):
        assert tx["coverage"].min() >= 0.3


def test_coverage_non_decreasing_while_supported():
    df = run_collaborative(coiin(stall_probability=0.2), (2026, 2029), seed=3)
    for _, g in df.groupby(["state", "strategy"]):
        assert (np.diff(g["coverage"].to_numpy()) >= 0).all()


def test_years_before_start_stay_at_start():
    df = run_collaborative(cfg(starting_coverage=0.1), (2024, 2027), seed=0)
    before = df[df.year < 2026]
    assert len(before) == 4 * 2 * 4
    assert (before["coverage"] == 0.1).all()
    assert (df[df.year == 2027]["coverage"] > 0.1).any()


def test_zero_learning_leaves_coverage_unchanged():
    c = coiin(base_rate=0.0, starting_coverage={"default": 0.1, "safe_sleep": 0.25}, decay_rate=0.2)
    df = run_collaborative(c, YEARS, seed=5)
    start = np.array([c.starting(s, k) for s, k in zip(df.state, df.strategy)])
    np.testing.assert_array_equal(df["coverage"].to_numpy(), start)


# ----------------------------------------------------------------------------- monotonicity
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("low,high", [(0.2, 0.5), (0.5, 0.9), (0.0, 1.0)])
def test_higher_capacity_never_lowers_coverage(seed, low, high):
    a = run_collaborative(coiin(capacity=low, stall_probability=0.3), YEARS, seed)
    b = run_collaborative(coiin(capacity=high, stall_probability=0.3), YEARS, seed)
    m = merged(a, b)
    assert (m["coverage_b"] >= m["coverage_a"]).all()
    assert (m["coverage_b"] > m["coverage_a"]).any()


@pytest.mark.parametrize("seed", [0, 5])
def test_higher_capacity_of_one_state_never_lowers_anyone(seed):
    a = run_collaborative(coiin(capacity={"default": 0.5}), YEARS, seed)
    b = run_collaborative(coiin(capacity={"default": 0.5, "CA": 1.0}), YEARS, seed)
    m = merged(a, b)
    assert (m["coverage_b"] >= m["coverage_a"]).all()
    assert (m[m.state == "CA"]["coverage_b"] > m[m.state == "CA"]["coverage_a"]).any()
    # peers of CA gain too (through the network)
    assert (m[m.state != "CA"]["coverage_b"] > m[m.state != "CA"]["coverage_a"]).any()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("low,high", [(0.0, 0.3), (0.3, 0.8), (0.0, 1.0)])
def test_higher_peer_learning_never_lowers_coverage(seed, low, high):
    a = run_collaborative(coiin(peer_learning=low, stall_probability=0.3), YEARS, seed)
    b = run_collaborative(coiin(peer_learning=high, stall_probability=0.3), YEARS, seed)
    m = merged(a, b)
    assert (m["coverage_b"] >= m["coverage_a"]).all()
    assert (m["coverage_b"] > m["coverage_a"]).any()


def test_peer_learning_irrelevant_for_single_member_networks():
    teams = {"AL": ["safe_sleep"], "GA": ["smoking_cessation"]}
    a = run_collaborative(cfg(teams=teams, peer_learning=0.0), YEARS, 3)
    b = run_collaborative(cfg(teams=teams, peer_learning=1.0), YEARS, 3)
    pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- decay
def test_decay_after_support_ends():
    df = run_collaborative(cfg(decay_rate=0.1, stall_probability=0.0), (2026, 2031), 0)
    for _, g in df.groupby(["state", "strategy"]):
        end = g[(g.year == 2029) & (g.quarter == 4)]["coverage"].item()
        after = g[g.year >= 2030]["coverage"].to_numpy()
        assert end > 0
        assert (np.diff(after) < 0).all()
        assert after[0] == pytest.approx(end * 0.9)


def test_no_decay_when_rate_zero():
    df = run_collaborative(cfg(decay_rate=0.0), (2026, 2031), 0)
    for _, g in df.groupby(["state", "strategy"]):
        end = g[(g.year == 2029) & (g.quarter == 4)]["coverage"].item()
        assert end > 0
        assert (g[g.year >= 2030]["coverage"] == end).all()


# ----------------------------------------------------------------------------- COIIN
@pytest.mark.parametrize("seed", [0, 1, 2, 17])
def test_coiin_assignment_counts_exact(seed):
    teams = coiin_2013_2017_teams(seed)
    assert set(teams) == set(STATES)
    counts = Counter(s for v in teams.values() for s in v)
    assert dict(counts) == COIIN_2013_2017_COUNTS
    assert all(1 <= len(v) <= 3 and len(set(v)) == len(v) for v in teams.values())
    assert all(s in STRATEGIES for v in teams.values() for s in v)


def test_coiin_assignment_deterministic_and_default_seed():
    assert coiin_2013_2017_teams(3) == coiin_2013_2017_teams(3)
    assert coiin().teams == coiin_2013_2017_teams(0)
    assert coiin_2013_2017_teams(0) != coiin_2013_2017_teams(1)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "over,where,words",
    [
        ({"teams": {"XX": ["safe_sleep"]}}, "collaborative.teams.XX", ["unknown state 'XX'"]),
        ({"teams": {"Al": ["safe_sleep"]}}, "collaborative.teams.Al", ["did you mean 'AL'"]),
        ({"teams": {"AL": ["safe_slep"]}}, "collaborative.teams.AL[0]", ["safe_slep", "did you mean 'safe_sleep'"]),
        (
            {"teams": {"AL": ["safe_sleep", "smoking_cessation", "preterm_prevention", "preconception_care"]}},
            "collaborative.teams.AL[3]", ["at most 3", "4"],
        ),
        ({"teams": {"AL": []}}, "collaborative.teams.AL", ["1 to 3"]),
        ({"teams": {"AL": ["safe_sleep", "safe_sleep"]}}, "collaborative.teams.AL[1]", ["twice"]),
        ({"teams": "coiin_2013"}, "collaborative.teams", ["did you mean 'coiin_2013_2017'"]),
        ({"peer_learning": 1.5}, "collaborative.peer_learning", ["1.5", "0 to 1"]),
        ({"peer_learning": -0.1}, "collaborative.peer_learning", ["-0.1"]),
        ({"peer_learning": "high"}, "collaborative.peer_learning", ["high"]),
        ({"support_ends": 2025}, "collaborative.support_ends", ["2025", "2026"]),
        ({"capacity": {"default": 0.5, "XX": 0.7}}, "collaborative.capacity.XX", ["XX"]),
        ({"capacity": {"AL": 1.7}}, "collaborative.capacity.AL", ["1.7"]),
        ({"ceiling": {"safe_slep": 0.5}}, "collaborative.ceiling.safe_slep", ["did you mean 'safe_sleep'"]),
        ({"starting_coverage": {"safe_sleep": 0.95}}, "collaborative.starting_coverage.safe_sleep", ["0.95", "ceiling"]),
        (
            {"starting_coverage": {"AL": {"preconception_care": 0.6}}},
            "collaborative.starting_coverage.AL.preconception_care", ["0.6", "ceiling 0.5"],
        ),
        ({"base_rate": 0.9}, "collaborative.base_rate", ["0.9", "0.5"]),
        ({"stall_probability": 2}, "collaborative.stall_probability", ["2"]),
        ({"sessions_per_year": 2.5}, "collaborative.sessions_per_year", ["2.5"]),
        ({"sesions_per_year": 2}, "collaborative.sesions_per_year", ["did you mean 'sessions_per_year'"]),
    ],
)
def test_invalid_block_refused_with_key_path(over, where, words):
    with pytest.raises(InputError) as info:
        parse_collaborative({**SMALL, **over}, file="scen.yaml")
    err = info.value
    assert err.where == where
    assert err.file == "scen.yaml"
    text = str(err)
    assert text.startswith(f"scen.yaml: {where}: ")
    for w in words:
        assert w in text


def test_missing_required_key():
    bad = {k: v for k, v in SMALL.items() if k != "teams"}
    with pytest.raises(InputError) as info:
        parse_collaborative(bad)
    assert info.value.where == "collaborative.teams"


def test_bad_run_arguments():
    with pytest.raises(InputError) as info:
        run_collaborative(cfg(), (2030, 2026), 0)
    assert info.value.where == "years"
    with pytest.raises(InputError) as info:
        run_collaborative(cfg(), YEARS, -1)
    assert info.value.where == "seed"


# ----------------------------------------------------------------------------- parameters, files
def test_parameters_table_consistent_with_config():
    default = cfg()
    for name, (value, low, high, description) in PARAMETERS.items():
        assert low <= value <= high, name
        assert "ASSUMPTION" in description, name
        if name.startswith("ceiling."):
            assert default.ceiling[name.split(".", 1)[1]] == value
        elif name == "starting_coverage":
            assert default.starting_coverage["default"] == value
        elif name != "capacity":
            assert getattr(default, name) == value, name
    assert parse_collaborative({k: SMALL[k] for k in ("start", "support_ends", "teams")}).capacity_of("AL") == PARAMETERS["capacity"][0]


def test_apply_parameters_validates_and_changes():
    c = apply_parameters(cfg(), {"base_rate": 0.2, "ceiling.safe_sleep": 0.6, "capacity": 0.9})
    assert c.base_rate == 0.2 and c.ceiling["safe_sleep"] == 0.6
    assert c.capacity_of("GA") == 0.9 and c.capacity_of("AL") == 0.7
    with pytest.raises(InputError):
        apply_parameters(cfg(), {"base_rate": 5})
    with pytest.raises(InputError):
        apply_parameters(cfg(), {"bse_rate": 0.1})


def test_example_scenario_block_parses():
    scen = yaml.safe_load((REPO / "scenarios" / "collaborative_coiin.yaml").read_text())
    assert set(scen) <= {"name", "description", "years", "states", "seed", "engine", "replicates", "collaborative"}
    c = parse_collaborative(scen["collaborative"], file="collaborative_coiin.yaml")
    assert isinstance(c, CollaborativeConfig)
    assert len(c.teams) == 51
    df = run_collaborative(c, tuple(scen["years"]), scen["seed"])
    assert len(df) == 145 * 4 * (scen["years"][1] - scen["years"][0] + 1)


def test_plot_coverage_writes_png(tmp_path):
    df = run_collaborative(cfg(), YEARS, 0)
    out = plot_coverage(df, tmp_path / "cov.png")
    assert out.exists() and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
