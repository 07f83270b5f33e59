"""``imsim check``: the published figures, the comparison, and the command end to end."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imsim.analysis.check import (
    CHECK_COLUMNS,
    QUANTITIES,
    VALIDATION_COLUMNS,
    compare,
    load_validation,
    run_check,
    within,
)
from imsim.core.constants import RACES
from imsim.core.errors import InputError
from imsim.inputs.data import load_table

REPO = Path(__file__).resolve().parents[1]
IMSIM = Path(sys.executable).parent / ("imsim.exe" if os.name == "nt" else "imsim")


# -- the packaged table of published figures ------------------------------------------------------

def test_validation_table_has_the_columns_and_a_source_on_every_row():
    val = load_table("validation")
    assert list(val.columns) == VALIDATION_COLUMNS
    assert len(val) >= 30
    assert val["source"].notna().all() and (val["source"].str.len() > 20).all()
    # every source names where it comes from: a URL or a ../shared/data file
    assert val["source"].str.contains(r"https?://|shared (?:observed|external|evidence)/").all()
    assert val["unit"].notna().all()
    assert set(val["quantity"]) <= set(QUANTITIES)
    assert set(val["population"]) <= {"ALL", *RACES}
    pub, lo, hi = val["published"], val["published_lo"], val["published_hi"]
    assert (lo <= pub).all() and (pub <= hi).all()
    # our own arithmetic says so
    derived = val["quantity"].isin(["death_share_ga_32_38", "very_preterm_share_of_preterm",
                                    "very_preterm_ratio_vs_nh_white", "coiin_preterm_change_diff"])
    assert val.loc[derived, "note"].str.contains("DERIVED").all()


def test_validation_table_covers_the_required_figures():
    val = load_table("validation")
    q = set(val["quantity"])
    for band in ("lt28", "28_31", "lt32", "39plus"):
        assert f"death_share_ga_{band}" in q
    assert {"imr_ga_lt28", "imr_ga_28_31", "imr_ga_34_36", "imr_ga_37_38", "imr_ga_39plus"} <= q
    assert {"very_preterm_share_of_preterm", "very_preterm_ratio_vs_nh_white", "preterm_rate"} <= q
    assert {"neonatal_share", "suid_rate"} <= q
    assert "nonlevel3_neonatal_or" in q
    med = val[val["quantity"].str.startswith("medicaid_")]
    assert {"ALL", "nh_black", "hispanic"} <= set(med["population"])
    assert med["source"].str.contains("Constantin").any() and med["source"].str.contains("Bhatt").any()
    assert val.loc[val["quantity"].str.startswith("coiin_"), "source"].str.contains("Hirai").all()


def test_validation_rows_that_are_model_inputs_say_so():
    """The level III OR is the evidence value nonlevel3_neonatal_or: its row must be marked."""
    val = load_table("validation")
    ev = load_table("evidence").set_index("id")
    row = val[val["quantity"] == "nonlevel3_neonatal_or"].iloc[0]
    if "Lasswell" in ev.at["nonlevel3_neonatal_or", "citation"] and \
            abs(ev.at["nonlevel3_neonatal_or", "point"] - row["published"]) < 1e-9:
        assert row["note"].startswith("INPUT")


def test_docs_list_every_quantity():
    text = (REPO / "docs" / "check.md").read_text(encoding="utf-8")
    for q in set(load_table("validation")["quantity"]):
        assert f"`{q}`" in text, q


def test_load_validation_refuses_unknown_quantities():
    bad = load_table("validation").head(2).copy()
    bad.loc[0, "quantity"] = "no_such_quantity"
    with pytest.raises(InputError, match="no_such_quantity"):
        load_validation(bad)


# -- the comparison -----------------------------------------------------------------------------

def test_within_is_interval_overlap():
    assert within(1.0, 2.0, 2.5, 3.0) == np.False_           # disjoint, modelled above
    assert within(1.0, 2.0, -1.0, 0.5) == np.False_          # disjoint, modelled below
    assert within(1.0, 2.0, 1.9, 3.0) == np.True_            # overlapping
    assert within(1.0, 2.0, 2.0, 3.0) == np.True_            # touching counts as overlap
    assert within(1.0, 2.0, 1.2, 1.4) == np.True_            # nested
    assert within(np.nan, 2.0, 1.2, 1.4) == np.False_        # a missing bound is not an overlap


def test_compare_disjoint_synthetic_row_is_not_within_and_gets_a_reason():
    rows = pd.DataFrame([
        {"quantity": "imr_ga_37_38", "published": 3.01, "published_lo": 3.005, "published_hi": 3.015,
         "modelled": 3.5, "modelled_lo": 3.4, "modelled_hi": 3.6, "source": "s", "population": "ALL",
         "period": "2013"},
        {"quantity": "imr_ga_37_38", "published": 3.01, "published_lo": 3.005, "published_hi": 3.015,
         "modelled": 3.0, "modelled_lo": 2.9, "modelled_hi": 3.1, "source": "s", "population": "ALL",
         "period": "2013"},
        # no published interval: the point is used
        {"quantity": "suid_share", "published": 0.15, "published_lo": np.nan, "published_hi": np.nan,
         "modelled": 0.2, "modelled_lo": 0.16, "modelled_hi": 0.25, "source": "s", "population": "ALL",
         "period": "2013"},
    ])
    out = compare(rows)
    assert list(out.columns) == CHECK_COLUMNS
    assert out["within"].tolist() == [False, True, False]
    assert out.loc[0, "reason"] == QUANTITIES["imr_ga_37_38"].differs
    assert out.loc[1, "reason"] == ""


def test_run_check_computes_every_row_from_the_model():
    res = run_check(replicates=3, seed=5)
    t = res.table
    val = load_table("validation")
    assert list(t.columns) == CHECK_COLUMNS and len(t) == len(val)
    assert np.isfinite(t["modelled"]).all(), t[~np.isfinite(t["modelled"])]
    assert (t["modelled_lo"] <= t["modelled"] + 1e-12).all()
    assert (t["modelled"] <= t["modelled_hi"] + 1e-12).all()
    assert (t.loc[~t["within"], "reason"].str.len() > 0).all()
    assert res.summary() == f"{int(t['within'].sum())} of {len(t)} published figures within their interval"
    # a few values that must hold whatever the calibration: shares in (0, 1), ORs above 1
    shares = t[t["quantity"].str.startswith("death_share")]
    assert ((shares["modelled"] > 0) & (shares["modelled"] < 1)).all()
    assert (t.loc[t["quantity"] == "nonlevel3_neonatal_or", "modelled"] > 1).all()


def test_medicaid_did_is_the_runner_difference_in_the_expansion_states():
    """Recompute one DiD row independently: imsim.run of the same strategy, its summary table."""
    from imsim.analysis.check import MEDICAID_COVERAGE, MEDICAID_YEAR
    from imsim.analysis.runner import run
    from imsim.config.scenario import parse_scenario

    val = load_validation()
    rows = val[(val["quantity"] == "medicaid_did_imr_2014_expanders") & (val["population"] == "ALL")]
    res = run_check(replicates=1, seed=0, validation=rows)
    states = load_table("states")
    first = states[states["expansion_effective_date"].fillna("").astype(str).str.startswith("2014")]
    sc = parse_scenario({"name": "t", "years": [MEDICAID_YEAR, MEDICAID_YEAR],
                         "states": sorted(first["state"]),
                         "strategies": {"social_determinants": {"coverage": MEDICAID_COVERAGE[0],
                                                                "policy": "medicaid_expansion"}}})
    s = run(sc, replicates=1).summary
    tot = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
    assert res.table.loc[0, "modelled"] == pytest.approx(tot.imr_scenario - tot.imr_baseline, rel=1e-9)
    # with the point only, the interval is the coverage ASSUMPTION range (0.5 .. 1.0)
    assert res.table.loc[0, "modelled_lo"] <= res.table.loc[0, "modelled"] <= res.table.loc[0, "modelled_hi"]


# -- the command ------------------------------------------------------------------------------------

@pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")
def test_imsim_check_command_writes_the_folder(tmp_path):
    out = tmp_path / "c"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(IMSIM), "check", "--replicates", "3", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=180, env=env)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    n = len(load_table("validation"))
    assert proc.stdout.count("\n") == 1 and f"of {n} published figures within their interval" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["check.csv", "check.md", "check.png"]
    table = pd.read_csv(out / "check.csv", keep_default_na=False, na_values=[""])
    assert list(table.columns) == CHECK_COLUMNS
    assert len(table) == n
    assert set(table["within"].astype(str)) <= {"True", "False"}
    assert (out / "check.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "within" in (out / "check.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]          # no temporary folder left
    # ~12 s alone (numba cache warm); the bound leaves room for a machine busy with other tests
    assert elapsed < 45, f"imsim check --replicates 3 took {elapsed:.1f} s"
    # an existing, non-empty folder is refused before any work: one line, exit 2
    again = subprocess.run([str(IMSIM), "check", "--out", str(out)], cwd=REPO, capture_output=True,
                           text=True, timeout=60, env=env)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    assert again.stderr.count("\n") == 1


@pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")
def test_imsim_check_help_teaches_and_bad_replicates_are_refused(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([str(IMSIM), "check", "--help"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0
    for word in ("within", "check.csv", "validation.csv", "--replicates", "--seed", "--out"):
        assert word in proc.stdout
    bad = subprocess.run([str(IMSIM), "check", "--replicates", "0", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "replicates" in bad.stderr
    assert not (tmp_path / "x").exists()
