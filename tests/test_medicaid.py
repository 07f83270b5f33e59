"""Medicaid expansion is a lever only where and when it is still a choice.

``states.csv`` records which states had expanded Medicaid under the ACA and when (KFF); a cell
(state, year) whose state had already expanded gets no effect from ``social_determinants`` with
``policy: medicaid_expansion`` (its coverage counts as 0 there), through every caller -- a run,
the sweep evaluator and ``imsim recommend`` -- and the scenario gets a one-line warning (printed
by ``imsim run``, listed in manifest.json and the report, noted per state by ``recommend``).
The effect itself is race-specific (Hispanic, NH black, all races).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.birth.strategies import CellAttributes, Levers, apply
from imsim.config.scenario import parse_scenario
from imsim.core.constants import ALL, RACES, STATES
from imsim.inputs.baseline import get_baseline
from imsim.inputs.data import load_table
from imsim.inputs.evidence import EvidenceLibrary

REPO = Path(__file__).resolve().parents[1]
YEARS = [2026, 2027]
# OH expanded on 2014-01-01; MS had not expanded (KFF, states.csv).
MEDICAID = {"social_determinants": {"coverage": 0.5, "policy": "medicaid_expansion"}}


def _spec(strategies, states=("OH", "MS"), years=YEARS, **extra) -> dict:
    return {"name": "medicaid", "years": list(years), "states": list(states),
            "strategies": strategies, **extra}


def _run(spec, **kw):
    return imsim.run(parse_scenario(spec), **{"replicates": 1, **kw})


def _rows(summary: pd.DataFrame, state: str) -> pd.DataFrame:
    return summary[summary.state == state]


# ---------------------------------------------------------------------------------------------
# states.csv
# ---------------------------------------------------------------------------------------------

def test_states_table_has_every_jurisdiction_with_a_source():
    st = load_table("states")
    assert len(st) == 51 and sorted(st.state) == sorted(STATES) and st.state.is_unique
    assert st.source.str.contains("kff.org", regex=False).all()
    assert st.source.str.contains("Status of State Medicaid Expansion Decisions").all()
    assert st.note.astype(str).str.len().gt(0).all()
    expanded = st[st.medicaid_expansion.astype(str) == "True"]
    # As of the source date: 41 jurisdictions (incl. DC) adopted, 10 not.
    assert len(expanded) == 41
    dates = pd.to_datetime(expanded.expansion_effective_date, format="%Y-%m-%d")
    assert dates.min() == pd.Timestamp("2014-01-01")
    assert (dates == pd.Timestamp("2014-01-01")).sum() == 25          # first wave, DC included
    not_expanded = st[st.medicaid_expansion.astype(str) == "False"]
    assert not_expanded.expansion_effective_date.isna().all()
    assert {"AL", "FL", "GA", "MS", "TX", "WI"} <= set(not_expanded.state)
    assert "DC" in set(expanded.state) and "OH" in set(expanded.state)


@pytest.mark.parametrize("state,year,expanded", [
    ("OH", 2013, False), ("OH", 2014, True), ("OH", 2030, True),
    ("LA", 2015, False), ("LA", 2016, True),          # 2016-07-01: expanded from 2016 on
    ("NC", 2022, False), ("NC", 2023, True),
    ("MS", 2013, False), ("MS", 2050, False),
])
def test_expansion_rule_by_calendar_year(state, year, expanded):
    b = get_baseline()
    assert bool(b.medicaid_expanded(year, STATES.index(state))) is expanded
    cells = b.cells([year], [state])
    attrs = b.cell_attributes(cells)
    assert attrs.n == cells.n == len(RACES)
    assert (attrs.medicaid_expanded == expanded).all()
    np.testing.assert_array_equal(attrs.race, np.arange(len(RACES)))


# ---------------------------------------------------------------------------------------------
# The lever: no effect where expansion is no longer a choice
# ---------------------------------------------------------------------------------------------

def test_expanded_state_gets_no_effect_non_expansion_state_does():
    r = _run(_spec(MEDICAID), replicates=5, seed=2)
    s = r.summary
    oh = _rows(s, "OH")
    for col in ("deaths_averted", "deaths_averted_lo", "deaths_averted_hi", "preterm_averted"):
        assert (oh[col] == 0.0).all(), col
    oh_cells = np.asarray(r.inputs.cells.s_idx) == STATES.index("OH")
    np.testing.assert_array_equal(r.arms.scenario[:, oh_cells], r.arms.baseline[:, oh_cells])
    ms = _rows(s, "MS").set_index("race")
    # Hispanic: a benefit in every draw's interval (its range excludes no effect) ...
    assert ms.loc["hispanic", "deaths_averted"] > 0 and ms.loc["hispanic", "deaths_averted_lo"] > 0
    # ... and every MS group is changed (the all-race and NH black effects are not 1 either).
    assert (ms.deaths_averted != 0).all()
    ms_cells = np.asarray(r.inputs.cells.s_idx) == STATES.index("MS")
    assert not np.array_equal(r.arms.scenario[0, ms_cells], r.arms.baseline[0, ms_cells])


def test_no_effect_from_the_policy_inside_a_portfolio_and_with_the_microsim():
    """OH: safe sleep + Medicaid expansion is exactly safe sleep alone (both engines)."""
    both = {**MEDICAID, "safe_sleep": {"coverage": 0.4}}
    alone = {"safe_sleep": {"coverage": 0.4}}
    for engine in ("expected", "microsim"):
        a = _run(_spec(both, states=["OH"]), engine=engine, seed=5)
        b = _run(_spec(alone, states=["OH"]), engine=engine, seed=5)
        np.testing.assert_array_equal(a.arms.scenario, b.arms.scenario)
        assert a.summary.deaths_averted.iloc[-1] > 0
        att = a.table("attribution")
        sd = att[(att.strategy == "social_determinants")]
        assert (sd.deaths_averted == 0).all()


def test_expansion_year_inside_the_horizon():
    """Cells of one state that differ only by year are not merged across the expansion date."""
    r = _run(_spec(MEDICAID, states=["OH"], years=[2013, 2015]))
    by = r.table("by_year")
    oh = by[(by.state == "OH") & (by.race == ALL)].set_index("year").deaths_averted
    assert oh[2013] != 0                                     # OH expanded on 2014-01-01
    assert (oh[[2014, 2015]] == 0).all()
    # The same total, year by year.
    per_year = sum(_run(_spec(MEDICAID, states=["OH"], years=[y, y])).summary
                   .deaths_averted.iloc[-1] for y in (2013, 2014, 2015))
    np.testing.assert_allclose(r.summary.deaths_averted.iloc[-1], per_year, rtol=1e-10)


def test_income_support_is_unaffected_by_expansion():
    r = _run(_spec({"social_determinants": {"coverage": 0.5, "policy": "income_support"}},
                   states=["OH"]))
    assert r.summary.preterm_averted.iloc[-1] > 0
    assert r.warnings == []


def test_sweep_evaluator_agrees_with_run_across_the_expansion_year():
    from imsim.analysis.evaluate import Evaluator

    spec = _spec(MEDICAID, years=[2013, 2015])
    r = _run(spec)
    s = r.summary
    ev = Evaluator(parse_scenario(spec), ["medicaid_expansion_death_rr_hispanic"],
                   ["deaths_averted", "deaths_averted.OH", "deaths_averted.MS"])
    y = ev(ev.point_values()[None, :])[0]
    want = [s[(s.state == st) & (s.race == ALL)].deaths_averted.iloc[0] for st in (ALL, "OH", "MS")]
    np.testing.assert_allclose(y, want, rtol=1e-9)
    # OH's effect comes from 2013 only; a larger Hispanic effect changes OH and MS.
    y2 = ev(np.array([[0.5]]))[0]
    assert y2[1] > y[1] > 0 and y2[2] > y[2]


# ---------------------------------------------------------------------------------------------
# Race-specific effects
# ---------------------------------------------------------------------------------------------

def test_race_specific_effects_per_cell():
    ev = EvidenceLibrary.load()
    pt = ev.point()
    for k in ("medicaid_expansion_death_rr", "medicaid_expansion_death_rr_hispanic",
              "medicaid_expansion_death_rr_nh_black"):
        e = ev.effects[k]
        assert e.dist == "normal" and e.lo < e.point < e.hi, k
        # Validate, don't tune: the two papers `imsim check` compares against are not the source.
        assert "Constantin" not in e.citation and "Bhatt" not in e.citation, k
    # The pooled all-race estimate is null (its range includes no effect); the Hispanic one is not.
    assert ev.effects["medicaid_expansion_death_rr"].lo < 1.0 < ev.effects[
        "medicaid_expansion_death_rr"].hi
    assert ev.effects["medicaid_expansion_death_rr_hispanic"].hi < 1.0
    fit = None                                   # the direct (uncalibrated) baseline suffices
    b = get_baseline()
    cells = b.cells([2026], ["MS"])
    attrs = b.cell_attributes(cells)
    n = cells.n
    base = b.params(cells, pt, fit)
    levers = Levers.uniform({"social_determinants": np.full(n, 0.5)},
                            {"social_determinants": {"policy": "medicaid_expansion"}}, attrs)
    scen = apply(base.copy(), levers, pt)
    want = {"hispanic": pt["medicaid_expansion_death_rr_hispanic"],
            "nh_black": pt["medicaid_expansion_death_rr_nh_black"]}
    for i, race in enumerate(RACES):
        assert scen.rr_sd_death[i] == want.get(race, pt["medicaid_expansion_death_rr"]), race
    np.testing.assert_array_equal(scen.p_sd, 0.5)
    # Per-cell effect arrays (stacked draws) work too; unknown race (-1) takes the all-race id.
    arr = dict(pt, medicaid_expansion_death_rr_hispanic=np.linspace(0.7, 0.9, n))
    scen = apply(base.copy(), levers, arr)
    assert scen.rr_sd_death[RACES.index("hispanic")] == arr[
        "medicaid_expansion_death_rr_hispanic"][RACES.index("hispanic")]
    plain = Levers.uniform(levers.coverage, {"social_determinants": {}},
                           CellAttributes(attrs.short_cervix_share))
    scen = apply(base.copy(), plain, pt)
    np.testing.assert_array_equal(scen.rr_sd_death, pt["medicaid_expansion_death_rr"])


def test_deaths_move_with_each_race_point_effect_births_unchanged():
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS

    r = _run(_spec(MEDICAID, states=["AL", "MS", "TX"]))
    pt = r.inputs.evidence.point()
    b, s = r.arms.baseline[0], r.arms.scenario[0]
    births = slice(OUT_BIRTHS, OUT_BIRTHS + N_BANDS)
    np.testing.assert_allclose(s[:, births].sum(axis=1), b[:, births].sum(axis=1), rtol=1e-12)
    db = b[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1)
    ds = s[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1)
    for i, ri in enumerate(r.inputs.cells.r_idx):
        race = RACES[ri]
        rr = pt.get(f"medicaid_expansion_death_rr_{race}", pt["medicaid_expansion_death_rr"])
        assert np.sign(ds[i] - db[i]) == np.sign(rr - 1.0), (i, race)


def test_hispanic_override_changes_only_hispanic_deaths():
    a = _run(_spec(MEDICAID, states=["MS"])).summary.set_index("race")
    b = _run(_spec(MEDICAID, states=["MS"],
                   effects={"medicaid_expansion_death_rr_hispanic": 0.5})).summary.set_index("race")
    for race in RACES:
        if race == "hispanic":
            assert b.loc[race, "deaths_averted"].iloc[0] > a.loc[race, "deaths_averted"].iloc[0]
        else:
            np.testing.assert_allclose(b.loc[race, "deaths_averted"], a.loc[race, "deaths_averted"],
                                       rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Warnings: run (manifest, report, console) and recommend
# ---------------------------------------------------------------------------------------------

def test_warning_names_states_and_years_and_lands_in_manifest_and_report(tmp_path):
    r = _run(_spec(MEDICAID, states=["OH", "MS", "LA"], years=[2015, 2017]))
    assert len(r.warnings) == 1
    w = r.warnings[0]
    assert "medicaid_expansion" in w and "OH 2015-2017" in w and "LA 2016-2017" in w
    assert "MS" not in w and "\n" not in w
    out = r.save(tmp_path / "run", figures=False)
    man = json.loads((out / "manifest.json").read_text())
    assert man["warnings"] == r.warnings
    assert "OH 2015-2017" in (out / "report.html").read_text()
    # No warning where expansion is still a choice.
    quiet = _run(_spec(MEDICAID, states=["MS"]))
    assert quiet.warnings == []
    assert json.loads((quiet.save(tmp_path / "quiet", figures=False) / "manifest.json")
                      .read_text())["warnings"] == []


IMSIM = Path(sys.executable).parent / ("imsim.exe" if os.name == "nt" else "imsim")


@pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")
def test_imsim_run_prints_the_warning_once(tmp_path):
    import yaml

    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(_spec(MEDICAID, states=["OH", "MS"])))
    proc = subprocess.run([str(IMSIM), "run", str(f), "--out", str(tmp_path / "o"),
                           "--no-figures", "--quiet"], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if "medicaid_expansion" in x]
    assert len(lines) == 1 and "OH 2026-2027" in lines[0] and "warning" in lines[0]
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert len(man["warnings"]) == 1


def test_recommend_gives_no_effect_in_expanded_state_and_notes_it(tmp_path):
    from imsim.analysis.recommend import parse_plan, recommend
    from imsim.output.recommendation import save

    plan = {"name": "m", "states": ["OH", "MS"], "years": list(YEARS), "max_strategies": 2,
            "strategies": {"safe_sleep": {"coverage": 0.4}, **MEDICAID}, "draws": 4, "seed": 3}
    rec = recommend(parse_plan(plan))
    ev = rec.evaluation
    ports = [tuple(p) for p in ev.portfolios]
    oh, ms = ev.states.index("OH"), ev.states.index("MS")
    sd = ports.index(("social_determinants",))
    both = ports.index(("safe_sleep", "social_determinants"))
    ss = ports.index(("safe_sleep",))
    assert (ev.deaths_averted[:, sd, oh] == 0).all()
    np.testing.assert_array_equal(ev.deaths_averted[:, both, oh], ev.deaths_averted[:, ss, oh])
    assert (ev.deaths_averted[:, sd, ms] != 0).all()
    # The same numbers as `imsim run` for the same seed and draws.
    r = _run(_spec(MEDICAID), replicates=4, seed=3)
    s = r.summary
    np.testing.assert_allclose(ev.deaths_averted[0, sd, ms],
                               s[(s.state == "MS") & (s.race == ALL)].deaths_averted.iloc[0],
                               rtol=1e-9)
    assert set(rec.notes) == {"OH"} and "already expanded" in rec.notes["OH"]
    assert len(rec.warnings) == 1 and "OH 2026-2027" in rec.warnings[0]
    out = save(rec, tmp_path / "rec", figures=False)
    recs = pd.read_csv(out / "recommendations.csv", keep_default_na=False).set_index("state")
    assert "already expanded" in recs.loc["OH", "note"] and recs.loc["MS", "note"] == ""
    assert json.loads((out / "manifest.json").read_text())["warnings"] == rec.warnings
