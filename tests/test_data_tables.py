"""Checks on the packaged data tables in src/imsim/data (no shared data needed, except the rebuild test)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from imsim.core.constants import GA_BANDS, RACES, STATES

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "src" / "imsim" / "inputs" / "data"
SHARED = REPO.parent / "shared" / "data"
COLUMNS = {
    "births": ["state", "race", "year", "births", "estimated", "method", "source"],
    "targets": ["target", "state", "race", "period", "value", "unit", "deaths", "births", "lo", "hi", "source_tier", "source", "note"],
    "ga_structure": ["race", "ga_band", "births_share", "births_share_lo", "births_share_hi", "deaths_neonatal", "deaths_suid",
                     "deaths_other_postneonatal", "imr_neonatal", "imr_suid", "imr_other_postneonatal", "births_ga_measure",
                     "deaths_ga_measure", "source", "note"],
    "exposures": ["exposure", "state", "race", "prevalence", "lo", "hi", "period", "source", "assumption", "note"],
    "associations": ["id", "from_exposure", "to_exposure", "odds_ratio", "lo", "hi", "source", "assumption", "note"],
    "evidence": ["id", "description", "point", "dist", "lo", "hi", "scale", "applies_to", "outcome", "area", "citation", "url",
                 "source_row", "assumption", "note"],
    "states": ["state", "medicaid_expansion", "expansion_effective_date", "status_as_of", "source", "note"],
    "births_trend": ["state", "fit_start", "fit_end", "base_year", "base_births", "slope", "slope_se", "resid_sd", "source",
                     "note"],
}
FILES = sorted(f"{n}.csv" for n in COLUMNS) + ["tables.json"]
#: Tables derived by imsim modules or kept by hand (listed in tables.json, not rebuilt by build_data.py).
MODULE_COLUMNS = {
    "national_imr_series": ["year", "deaths", "births", "extra_sd", "source"],
    "race_imr_blocks": ["period", "year_mid", "race", "deaths", "births", "all_deaths", "all_births",
                        "extra_sd", "source"],
    "exposure_trends": ["exposure", "race", "year", "percent", "source", "note"],
    "region_imr_blocks": ["period", "year_first", "year_last", "region", "deaths", "births", "source"],
}


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"{name}.csv", keep_default_na=False, na_values=[""])


@pytest.mark.parametrize("name", sorted(COLUMNS))
def test_columns_exact(name):
    assert list(load(name).columns) == COLUMNS[name]


def test_catalogue_matches_files():
    cat = json.loads((DATA / "tables.json").read_text(encoding="utf-8"))
    assert sorted(t["name"] for t in cat) == sorted({**COLUMNS, **MODULE_COLUMNS})
    for name, cols in MODULE_COLUMNS.items():
        assert list(load(name).columns) == cols, name
    for t in cat:
        assert t["sources"] and t["description"]
        assert t["rows"] == len(load(t["name"]))


def test_births_complete_and_sum_to_state_totals():
    b = load("births")
    assert len(b) == 51 * 5 * 11  # 2013-2023
    assert not b.duplicated(["state", "race", "year"]).any()
    assert set(b.state) == set(STATES) and set(b.race) == set(RACES) and set(b.year) == set(range(2013, 2024))
    assert (b.births >= 0).all() and b.estimated.astype(str).eq("True").all()
    b = b[b.year <= 2017]  # NVSR final totals (2018-2023: tests/test_births_projection.py)
    t = load("targets")
    tot = t[(t.target == "imr_year") & (t.state != "ALL")].set_index(["state", "period"]).births
    sums = b.groupby(["state", "year"]).births.sum()
    assert len(tot) == 255
    for (s, y), v in sums.items():
        assert v == tot[(s, str(y))], (s, y)
    us = {2013: 3932181, 2014: 3988076, 2015: 3978497, 2016: 3945875, 2017: 3855500}  # NVSR final totals
    assert b.groupby("year").births.sum().to_dict() == us


def test_vocabularies_valid():
    for name in ("targets", "exposures"):
        df = load(name)
        assert set(df.state) <= set(STATES) | {"ALL"}
        assert set(df.race) <= set(RACES) | {"ALL"}
    g = load("ga_structure")
    assert set(g.race) == set(RACES) | {"ALL"} and set(g.ga_band) == set(GA_BANDS)
    assert len(g) == 36


def test_ids_unique():
    assert load("evidence").id.is_unique
    assert load("associations").id.is_unique
    assert not load("exposures").duplicated(["exposure", "state", "race"]).any()


def test_evidence_sourced_and_ordered():
    e = load("evidence")
    for r in e.itertuples():
        assert (isinstance(r.citation, str) and r.citation.strip()) or str(r.assumption) == "True", r.id
        assert r.dist in {"lognormal", "normal", "uniform", "triangular", "fixed"}
        assert r.scale in {"ratio", "probability", "difference"}
        if pd.notna(r.lo) and pd.notna(r.hi):
            assert r.lo <= r.point <= r.hi, r.id
        if r.dist == "lognormal":
            assert r.lo > 0
        if r.scale == "probability":
            assert 0 <= r.point <= 1 and (pd.isna(r.lo) or 0 <= r.lo) and (pd.isna(r.hi) or r.hi <= 1)
    required = {"smoking_ga_lt32_or", "smoking_ga_lt34_or", "smoking_ga_lt37_or", "prior_preterm_ptb_or", "short_ipi_ptb_or",
                "low_income_ptb_or", "nonlevel3_neonatal_or", "unsafe_sleep_suid_or", "smoking_suid_rr",
                "unsafe_sleep_smoking_interaction", "low_income_postneonatal_rr", "safe_sleep_unsafe_reduction",
                "cessation_control_quit", "cessation_counselling_rr", "cessation_incentives_rr", "cessation_feedback_rr",
                "cessation_education_rr", "hard_stop_eed_reduction", "vaginal_progesterone_ptb_rr", "ohpc_ptb_rr",
                "ohpc_meis_ptb_rr", "larc_short_ipi_reduction", "medicaid_expansion_death_rr", "income_support_ptb_or",
                "early_term_imr_rr"}
    assert required <= set(e.id)
    for i in ("medicaid_expansion_death_rr", "income_support_ptb_or", "low_income_ptb_or", "low_income_postneonatal_rr"):
        r = e.set_index("id").loc[i]
        assert r.lo <= 1.0 <= r.hi, i


def test_exposures_and_associations_ranges():
    x = load("exposures")
    assert x.prevalence.between(0, 1).all() and x.lo.between(0, 1).all() and x.hi.between(0, 1).all()
    assert (x.lo <= x.prevalence).all() and (x.prevalence <= x.hi).all()
    assert x.source.astype(str).str.len().gt(0).all()
    for e in x.exposure.unique():  # every exposure has a national value for every race
        assert set(x[(x.exposure == e) & (x.state == "ALL")].race) >= set(RACES) | {"ALL"}, e
    a = load("associations")
    assert ((a.lo <= a.odds_ratio) & (a.odds_ratio <= a.hi) & (a.lo > 0)).all()


def test_targets_intervals_and_ga():
    t = load("targets")
    has = t.lo.notna()
    assert ((t.lo[has] <= t.value[has]) & (t.value[has] <= t.hi[has])).all()
    assert t.source.astype(str).str.len().gt(0).all()
    assert set(t.source_tier.astype(str)) <= {"1", "2", "3"}
    g = load("ga_structure")
    al = g[g.race == "ALL"]
    assert abs(al.births_share.sum() - 1) < 1e-4
    assert ((al.births_share_lo <= al.births_share) & (al.births_share <= al.births_share_hi)).all()
    s = t[t.target == "ga_death_share"].groupby("race").value.sum()
    assert ((s - 1).abs() < 1e-4).all()


def test_rebuild_is_byte_identical(tmp_path):
    if not SHARED.is_dir():
        pytest.skip("../shared/data not present")
    subprocess.run([sys.executable, str(REPO / "scripts" / "build_data.py"), "--shared", str(SHARED), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for f in FILES:
        assert (tmp_path / f).read_bytes() == (DATA / f).read_bytes(), f
