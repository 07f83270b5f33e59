"""Honest headlines: the headline and its interval come from the same paired draws.

With at least ``MIN_INTERVAL_DRAWS`` uncertainty draws the headline is the median of the paired
draws with their 2.5th-97.5th percentiles; below it the point (draw 0) with no interval and a
message saying why. Each run folder also has ``results.json`` and ``evidence_used.csv``.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import imsim
from imsim.analysis.results import MIN_INTERVAL_DRAWS, _deaths
from imsim.config.scenario import parse_scenario
from imsim.inputs.evidence import EvidenceLibrary

OVERRIDE = {"unsafe_sleep_suid_or": 2.6}
SPEC = {
    "name": "headline-test",
    "years": [2026, 2027],
    "states": ["AL", "GA", "MS"],
    "seed": 5,
    "engine": "expected",
    "replicates": MIN_INTERVAL_DRAWS,
    "effects": OVERRIDE,
    "strategies": {"safe_sleep": {"coverage": 0.5},
                   "smoking_cessation": {"coverage": 0.4, "program": "incentives"}},
}
INTERVAL_TABLES = ("summary", "by_year", "by_cause", "preterm", "disparities")


@pytest.fixture(scope="module")
def run40(tmp_path_factory):
    result = imsim.run(parse_scenario(SPEC))
    out = result.save(tmp_path_factory.mktemp("headline") / "run", figures=False)
    return result, out


def _tot(df):
    return df[(df.state == "ALL") & (df.race == "ALL")].iloc[0]


def _interval_names(df):
    return [c[:-3] for c in df.columns if c.endswith("_lo") and f"{c[:-3]}_hi" in df.columns]


def test_headline_inside_its_interval_in_every_row(run40):
    _, out = run40
    checked = 0
    for name in INTERVAL_TABLES:
        df = pd.read_csv(out / f"{name}.csv")
        assert df["interval_reliable"].all(), name
        names = _interval_names(df)
        assert names, name
        for x in names:
            shown = df[f"{x}_lo"].notna()
            assert df.loc[shown, f"{x}_median"].notna().all(), (name, x)
            # CSVs are written with 6 significant digits: compare with that tolerance
            tol = 1e-5 * df.loc[shown, [f"{x}_lo", f"{x}_hi"]].abs().max(axis=1) + 1e-12
            lo, med, hi = (df.loc[shown, f"{x}_{k}"] for k in ("lo", "median", "hi"))
            assert (lo - tol <= med).all() and (med <= hi + tol).all(), (name, x)
            checked += int(shown.sum())
    assert checked > 100


def test_median_and_interval_are_of_the_same_paired_draws(run40):
    result, _ = run40
    averted = (_deaths(result.arms.baseline) - _deaths(result.arms.scenario)).sum(axis=1)
    assert averted.shape == (MIN_INTERVAL_DRAWS + 1,)
    draws = averted[1:]
    tot = _tot(result.summary)
    assert tot.deaths_averted == pytest.approx(averted[0], rel=1e-12)
    assert tot.deaths_averted_median == pytest.approx(np.median(draws), rel=1e-12)
    assert tot.deaths_averted_lo == pytest.approx(np.percentile(draws, 2.5), rel=1e-12)
    assert tot.deaths_averted_hi == pytest.approx(np.percentile(draws, 97.5), rel=1e-12)


def test_results_json_agrees_with_tables(run40):
    result, out = run40
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    s = pd.read_csv(out / "summary.csv")
    tot = _tot(s)
    h = res["deaths_averted"]
    assert h["statistic"] == "median" and h["interval_reliable"] is True
    assert h["draws"] == res["draws"] == MIN_INTERVAL_DRAWS
    assert h["value"] == pytest.approx(tot.deaths_averted_median, rel=1e-5)
    assert h["lo"] == pytest.approx(tot.deaths_averted_lo, rel=1e-5)
    assert h["hi"] == pytest.approx(tot.deaths_averted_hi, rel=1e-5)
    assert h["point"] == pytest.approx(tot.deaths_averted, rel=1e-5)
    assert h["lo"] <= h["value"] <= h["hi"]
    assert (res["seed"], res["engine"], res["replicates"]) == (5, "expected", MIN_INTERVAL_DRAWS)
    assert res["births"] == tot.births
    nat = s[s.state == "ALL"].set_index("race")
    assert {r["race"] for r in res["imr_by_race"]} == set(nat.index)
    for r in res["imr_by_race"]:
        assert r["imr_baseline"] == pytest.approx(nat.loc[r["race"], "imr_baseline"], rel=1e-5)
        assert r["imr_scenario"] == pytest.approx(nat.loc[r["race"], "imr_scenario"], rel=1e-5)
    d = pd.read_csv(out / "disparities.csv")
    d = d[d.state == "ALL"].set_index("race")
    assert {r["race"] for r in res["disparities"]} == set(d.index)
    for r in res["disparities"]:
        for c in ("rate_difference_baseline", "rate_difference_scenario",
                  "rate_difference_change", "rate_difference_change_lo",
                  "rate_difference_change_hi"):
            assert r[c] == pytest.approx(d.loc[r["race"], c], rel=1e-5, abs=1e-9), c


def test_evidence_used_lists_every_id_and_the_override(run40):
    result, out = run40
    ev = pd.read_csv(out / "evidence_used.csv")
    lib = EvidenceLibrary.load()
    assert list(ev["id"]) == lib.ids
    ev = ev.set_index("id")
    assert set(ev.index[ev["overridden"]]) == set(OVERRIDE)
    for k, v in OVERRIDE.items():
        assert ev.loc[k, "value"] == v
        assert lib.effects[k].point != v          # the override really changed something
    rest = ev[~ev["overridden"]]
    assert np.allclose(rest["value"], rest["point"])
    for k in rest.index:
        assert rest.loc[k, "value"] == pytest.approx(result.effects[0].get(k, lib.effects[k].point))
        assert rest.loc[k, "dist"] == lib.effects[k].dist


def test_report_headline_is_the_median_as_a_whole_number(run40):
    result, out = run40
    tot = _tot(result.summary)
    html = (out / "report.html").read_text(encoding="utf-8")
    head = html.split("id=\"headline\">", 1)[1].split("</p>", 1)[0]
    assert f"<b>{round(tot.deaths_averted_median):,}</b>" in head
    assert f"median of {MIN_INTERVAL_DRAWS} paired draws" in head
    assert f"{round(tot.deaths_averted_lo):,} to {round(tot.deaths_averted_hi):,}" in head
    assert "interval not shown" not in html
    # the disparities table carries intervals
    disp = html.split("<h2>Disparities", 1)[1].split("<h2>", 1)[0]
    assert disp.count("95% low") == 4 and disp.count("95% high") == 4


def test_console_run_below_threshold_says_interval_unreliable(tmp_path):
    spec = {**SPEC, "replicates": 5}
    path = tmp_path / "few.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    out = tmp_path / "run"
    exe = Path(sys.executable).parent / "imsim"
    proc = subprocess.run([str(exe), "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    msg = "interval not shown: 5 draws are too few for a 95% interval"
    assert msg in proc.stdout
    assert "95% interval " not in proc.stdout.replace("95% interval,", "")
    s = pd.read_csv(out / "summary.csv")
    tot = _tot(s)
    assert not s["interval_reliable"].any()
    assert {"deaths_averted_lo", "deaths_averted_hi"} <= set(s.columns)   # columns stay
    assert f"{round(tot.deaths_averted):,} deaths averted (point estimate" in proc.stdout
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    h = res["deaths_averted"]
    assert h["statistic"] == "point" and h["lo"] is None and h["hi"] is None
    assert h["interval_reliable"] is False and h["draws"] == 5 and msg in h["note"]
    assert h["value"] == pytest.approx(tot.deaths_averted, rel=1e-5)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert msg in html and "95% low" not in html
    assert math.isfinite(pd.read_csv(out / "evidence_used.csv")["value"].sum())
