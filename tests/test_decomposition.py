"""Where the gap comes from: the Kitagawa split of each group's gap and the periods-of-risk table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.analysis.decomposition import (DECOMPOSITION_COLUMNS, PERIODS_COLUMNS, gap_sentence,
                                          kitagawa)
from imsim.config.scenario import parse_scenario

SCENARIO = {"name": "gap", "years": [2026, 2027], "states": ["AL", "DE"], "seed": 5,
            "strategies": {"safe_sleep": {"coverage": 0.6},
                           "preterm_prevention": {"coverage": 0.5,
                                                  "components": ["vaginal_progesterone"]}}}


def test_kitagawa_by_hand():
    # Two bands. Group: 20% preterm at 50/1000, 80% term at 2/1000 -> 11.6/1000.
    # Reference: 10% preterm at 40/1000, 90% term at 2/1000 -> 5.8/1000.
    gap, dist, mort = kitagawa([200, 800], [10, 1.6], [100, 900], [4, 1.8])
    assert gap == pytest.approx(5.8)
    # distribution: (0.2-0.1)(0.05+0.04)/2 + (0.8-0.9)(0.002+0.002)/2 = 0.0045 - 0.0002
    assert dist == pytest.approx(4.3)
    # mortality: (0.05-0.04)(0.2+0.1)/2 + 0 = 0.0015
    assert mort == pytest.approx(1.5)
    # A band without births in one group still sums exactly (its rate counts as 0).
    gap, dist, mort = kitagawa([0, 1000], [0, 3], [100, 900], [4, 1.8])
    assert dist + mort == pytest.approx(gap, abs=1e-12)
    assert gap == pytest.approx(3.0 - 5.8)


@pytest.fixture(scope="module", params=["expected", "microsim"])
def result(request):
    return imsim.run(parse_scenario(SCENARIO), engine=request.param, replicates=1)


def test_components_sum_to_gap_and_gap_is_the_rate_difference(result):
    d = result.table("decomposition")
    assert list(d.columns) == DECOMPOSITION_COLUMNS
    assert set(d.arm) == {"baseline", "scenario"}
    assert "nh_white" not in set(d.race)
    np.testing.assert_allclose(d.ga_distribution + d.ga_specific_mortality, d.gap_per_1000,
                               rtol=0, atol=1e-9)
    # The gap is the group's IMR minus the same state's NH white IMR (disparities.csv).
    disp = result.table("disparities").set_index(["state", "race"])
    base = d[(d.arm == "baseline") & (d.race != "ALL")].set_index(["state", "race"])
    scen = d[(d.arm == "scenario") & (d.race != "ALL")].set_index(["state", "race"])
    np.testing.assert_allclose(base.gap_per_1000, disp.loc[base.index].rate_difference_baseline,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(scen.gap_per_1000, disp.loc[scen.index].rate_difference_scenario,
                               rtol=1e-9, atol=1e-9)


def test_periods_of_risk_excess_adds_up_to_the_excess_deaths(result):
    p = result.table("periods_of_risk")
    assert list(p.columns) == PERIODS_COLUMNS
    assert set(p.ga_group) == {"<32", "32-36", "37+"}
    assert set(p.age_at_death) == {"neonatal", "postneonatal"}
    # The six periods partition a group's deaths, and the reference rates add up to NH white's
    # IMR, so the excess deaths add up to disparities.csv's excess deaths.
    disp = result.table("disparities").set_index(["state", "race"])
    for arm, col in (("baseline", "excess_deaths_baseline"), ("scenario", "excess_deaths_scenario")):
        tot = p[(p.arm == arm) & ~p.race.isin(["nh_white", "ALL"])].groupby(
            ["state", "race"]).excess_deaths.sum()
        np.testing.assert_allclose(tot, disp.loc[tot.index, col], rtol=1e-9, atol=1e-6)
    s = result.summary.set_index(["state", "race"])
    deaths = p[p.arm == "baseline"].groupby(["state", "race"]).deaths.sum()
    np.testing.assert_allclose(deaths, s.loc[deaths.index].deaths_baseline, rtol=1e-12)
    assert (p[p.race == "nh_white"].excess_deaths.abs() < 1e-9).all()


def test_preterm_prevention_moves_the_distribution_part(result):
    """Progesterone shifts births to later GA: the scenario's GA-distribution part of the NH
    black gap is smaller than the baseline's (expected engine: no Monte Carlo noise)."""
    if result.engine != "expected":
        pytest.skip("deterministic comparison")
    d = result.table("decomposition").set_index(["state", "race", "arm"])
    assert d.loc[("ALL", "nh_black", "scenario")].ga_distribution < \
        d.loc[("ALL", "nh_black", "baseline")].ga_distribution


def test_run_folder_and_report(tmp_path):
    r = imsim.run(parse_scenario(SCENARIO), engine="expected", replicates=1)
    out = r.save(tmp_path / "run", figures=False, report=True)
    d = pd.read_csv(out / "decomposition.csv")
    assert list(d.columns) == DECOMPOSITION_COLUMNS
    assert list(pd.read_csv(out / "periods_of_risk.csv").columns) == PERIODS_COLUMNS
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Where the gap comes from" in html and 'id="gap-sources"' in html
    row = d[(d.state == "ALL") & (d.race == "nh_black") & (d.arm == "baseline")].iloc[0]
    assert gap_sentence(row).split(" -- ")[0] in html


def test_gap_sentence_words():
    assert "mostly prematurity" in gap_sentence(
        {"gap_per_1000": 5.0, "ga_distribution": 4.0, "ga_specific_mortality": 1.0})
    assert "mostly mortality given gestational age" in gap_sentence(
        {"gap_per_1000": 5.0, "ga_distribution": 1.0, "ga_specific_mortality": 4.0})
    assert gap_sentence({"gap_per_1000": 0.02, "ga_distribution": 0.01,
                         "ga_specific_mortality": 0.01}).startswith("about the NH white rate")
    assert gap_sentence({"gap_per_1000": -1.0, "ga_distribution": -0.5,
                         "ga_specific_mortality": -0.5}).startswith("no gap")
