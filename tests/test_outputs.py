"""Outputs people decide on: every documented file, its columns, totals, intervals from paired
draws, attribution, manifest, reproducibility and atomic saving."""
from __future__ import annotations

import json
import re
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imsim
from imsim.analysis import results as R
from imsim.core.constants import ALL, CAUSES, GA_BANDS, RACES
from imsim.core.errors import InputError
from imsim.output.figures import FIGURES
from imsim.birth.kernels import N_BANDS, OUT_DEATHS
from imsim.config.scenario import parse_scenario

README = Path(__file__).resolve().parents[1] / "README.md"
STATES_ = ["AL", "GA", "MS"]
SPEC = {
    "name": "outputs-test",
    "description": "Several strategies in three states",
    "years": [2016, 2017],
    "states": STATES_,
    "seed": 5,
    "engine": "expected",
    "replicates": 30,
    "strategies": {
        "safe_sleep": {"coverage": {2016: 0.2, 2017: 0.6}, "reach": {"nh_black": 0.8}},
        "smoking_cessation": {"coverage": 0.3, "program": "counselling"},
        "preterm_prevention": {"coverage": 0.5,
                               "components": ["hard_stop", "vaginal_progesterone"]},
        "risk_appropriate_care": {"coverage": 0.9},
    },
    "by_state": {"MS": {"strategies": {"preconception_care": {"coverage": 0.4},
                                       "social_determinants": {"coverage": 0.5}}}},
}
# Same portfolio without a coverage ramp (see test_resolved_scenario_with_ramp_reloads).
SPEC_NO_RAMP = {**SPEC, "name": "outputs-flat",
                "strategies": {**SPEC["strategies"],
                               "safe_sleep": {"coverage": 0.4, "reach": {"nh_black": 0.8}}}}
DOCUMENTED_FILES = ["summary.csv", "by_year.csv", "by_cause.csv", "preterm.csv",
                    "disparities.csv", "attribution.csv", "coverage.csv",
                    "scenario.resolved.yaml", "manifest.json", "report.html"]
CORE_FIGURES = ["deaths_averted_by_state.png", "imr_by_race.png", "disparities.png",
                "attribution.png", "coverage.png"]
SUM_COLS = ["births", "deaths_baseline", "deaths_scenario", "deaths_averted",
            "preterm_baseline", "preterm_scenario", "preterm_averted", "deaths_at_white_rate"]


def _readme_columns(filename: str) -> list[str]:
    """Backticked column names of a row of the README "Outputs" table."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"| `{filename}` |"):
            cell = line.split("|")[2]
            for span in re.findall(r"`([^`]*)`", cell):   # the first list of plain names
                if re.fullmatch(r"[a-z_]+(, [a-z_]+)+", span):
                    return span.split(", ")
            raise AssertionError(f"no column list for {filename} in README: {cell}")
    raise AssertionError(f"{filename} not documented in README")


@pytest.fixture(scope="module")
def result():
    return imsim.run(parse_scenario(SPEC))


@pytest.fixture(scope="module")
def saved(result, tmp_path_factory):
    return result.save(tmp_path_factory.mktemp("out") / "run")


def _tot(df, state=ALL, race=ALL):
    return df[(df.state == state) & (df.race == race)].iloc[0]


# ---------------------------------------------------------------------------------------------
# Files and columns
# ---------------------------------------------------------------------------------------------

def test_every_documented_file_exists(saved):
    for name in DOCUMENTED_FILES:
        assert (saved / name).is_file(), name
        assert (saved / name).stat().st_size > 0, name
    written = sorted(p.name for p in (saved / "figures").iterdir())
    for name in CORE_FIGURES:                 # the collaborative figure needs a collaborative
        assert name in written, name
    for name in written:
        assert name in FIGURES, name
        assert (saved / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not [p for p in saved.parent.iterdir() if ".partial" in p.name]


def test_documented_column_lists_match_readme():
    assert R.SUMMARY_COLUMNS == _readme_columns("summary.csv")
    assert R.BY_CAUSE_COLUMNS == _readme_columns("by_cause.csv")
    pre = _readme_columns("preterm.csv")
    assert pre == ["state", "race", "births", "preterm_baseline", "preterm_scenario",
                   "preterm_averted"]
    assert _readme_columns("attribution.csv") == ["state", "strategy", "deaths_averted",
                                                  "share_pct"]
    assert _readme_columns("coverage.csv")[:4] == ["year", "state", "strategy", "coverage"]
    # The minimum for disparities.csv.
    for c in ["state", "race", "rate_ratio_baseline", "rate_ratio_scenario",
              "rate_difference_baseline", "rate_difference_scenario", "excess_deaths_baseline",
              "excess_deaths_scenario", "rate_difference_change"]:
        assert c in R.DISPARITY_COLUMNS, c


def _csv(saved, name):
    return pd.read_csv(saved / name, keep_default_na=False, na_values=[""])


def test_csv_columns_start_with_documented_lists(saved):
    def starts(name, cols):
        got = list(_csv(saved, name).columns)
        assert got[:len(cols)] == cols, (name, got)

    starts("summary.csv", R.SUMMARY_COLUMNS)
    starts("by_year.csv", ["year"] + R.SUMMARY_COLUMNS[:R.SUMMARY_COLUMNS.index("deaths_at_white_rate")])
    starts("by_cause.csv", R.BY_CAUSE_COLUMNS)
    starts("disparities.csv", R.DISPARITY_COLUMNS)
    starts("preterm.csv", _readme_columns("preterm.csv"))
    starts("attribution.csv", _readme_columns("attribution.csv"))
    starts("coverage.csv", ["year", "state", "strategy", "coverage"])


def test_by_cause_rows_are_causes_by_bands(saved, result):
    bc = _csv(saved, "by_cause.csv")
    assert list(zip(bc.cause, bc.ga_band)) == list(product(CAUSES, GA_BANDS))
    assert GA_BANDS[0] == "<28" and GA_BANDS[-1] == "39+"
    s = result.summary
    t = _tot(s)
    mem = result.table("by_cause")
    np.testing.assert_allclose(mem.deaths_baseline.sum(), t.deaths_baseline, rtol=1e-9)
    np.testing.assert_allclose(mem.deaths_averted.sum(), t.deaths_averted, rtol=1e-9)
    np.testing.assert_allclose(bc.deaths_averted, mem.deaths_averted, rtol=1e-5, atol=1e-9)


def test_summary_rows_and_totals(saved, result):
    s = result.summary
    keys = set(zip(s.state, s.race))
    assert keys == set(product(STATES_ + [ALL], list(RACES) + [ALL]))
    assert len(s) == len(keys)
    per_state = s[(s.state != ALL) & (s.race == ALL)]
    cells = s[(s.state != ALL) & (s.race != ALL)]
    for col in SUM_COLS:
        t = _tot(s)[col]
        np.testing.assert_allclose(per_state[col].sum(), t, rtol=1e-9, err_msg=col)
        np.testing.assert_allclose(cells[col].sum(), t, rtol=1e-9, err_msg=col)
        for st in STATES_:
            np.testing.assert_allclose(cells[cells.state == st][col].sum(), _tot(s, st)[col],
                                       rtol=1e-9, err_msg=(st, col))
    t = _tot(s)
    assert t.births == int(result.inputs.cells.births.sum())
    np.testing.assert_allclose(t.deaths_averted, t.deaths_baseline - t.deaths_scenario,
                               rtol=1e-12)
    np.testing.assert_allclose(t.imr_baseline, 1000 * t.deaths_baseline / t.births, rtol=1e-12)
    # The CSV carries the same numbers (6 significant digits).
    csv = _csv(saved, "summary.csv")
    assert list(zip(csv.state, csv.race)) == list(zip(s.state, s.race))
    np.testing.assert_allclose(_tot(csv).deaths_averted, t.deaths_averted, rtol=1e-5)
    np.testing.assert_allclose(csv.births, s.births)


def test_by_year_sums_to_summary(result):
    by = result.table("by_year")
    s = result.summary
    assert sorted(set(by.year)) == [2016, 2017]
    rows = by[(by.state == ALL) & (by.race == ALL)]
    for col in ("births", "deaths_baseline", "deaths_averted"):
        np.testing.assert_allclose(rows[col].sum(), _tot(s)[col], rtol=1e-9)
    # The safe-sleep ramp (0.2 -> 0.6) averts more in 2017 than in 2016.
    assert rows[rows.year == 2017].deaths_averted.iloc[0] > rows[rows.year == 2016].deaths_averted.iloc[0]


def test_intervals_bracket_point_for_totals(result):
    s = result.summary
    for st in STATES_ + [ALL]:
        t = _tot(s, st)
        assert t.deaths_averted_lo < t.deaths_averted_hi, st
        assert t.deaths_averted_lo <= t.deaths_averted <= t.deaths_averted_hi, st
    d = result.table("disparities")
    for _, row in d.iterrows():
        if row.state == ALL:
            assert row.rate_difference_scenario_lo <= row.rate_difference_scenario_hi


def test_attribution_sums_to_deaths_averted(saved, result):
    attr = result.table("attribution")
    s = result.summary
    assert set(attr.strategy) == {"safe_sleep", "smoking_cessation", "preterm_prevention",
                                  "risk_appropriate_care", "preconception_care",
                                  "social_determinants"}
    for st in STATES_ + [ALL]:
        a = attr[attr.state == st]
        np.testing.assert_allclose(a.deaths_averted.sum(), _tot(s, st).deaths_averted,
                                   rtol=1e-6, err_msg=st)
        np.testing.assert_allclose(a.share_pct.sum(), 100.0, rtol=1e-6, err_msg=st)
    # MS has its own portfolio: strategies not offered there get no credit, and vice versa.
    ms = attr[attr.state == "MS"].set_index("strategy").deaths_averted
    assert abs(ms["safe_sleep"]) < 1e-9 and ms["preconception_care"] > 0
    al = attr[attr.state == "AL"].set_index("strategy").deaths_averted
    assert abs(al["preconception_care"]) < 1e-9 and al["safe_sleep"] > 0
    csv = _csv(saved, "attribution.csv")
    np.testing.assert_allclose(csv[csv.state == ALL].deaths_averted.sum(),
                               _tot(s).deaths_averted, rtol=1e-5)


def test_disparities_rows_and_definitions(result):
    d = result.table("disparities")
    assert set(zip(d.state, d.race)) == set(product(STATES_ + [ALL],
                                                    [r for r in RACES if r != "nh_white"]))
    s = result.summary
    row = d[(d.state == ALL) & (d.race == "nh_black")].iloc[0]
    b, w = _tot(s, ALL, "nh_black"), _tot(s, ALL, "nh_white")
    np.testing.assert_allclose(row.rate_ratio_baseline, b.imr_baseline / w.imr_baseline,
                               rtol=1e-9)
    np.testing.assert_allclose(row.rate_difference_scenario, b.imr_scenario - w.imr_scenario,
                               rtol=1e-9)
    np.testing.assert_allclose(row.excess_deaths_baseline,
                               b.deaths_baseline - b.births * w.imr_baseline / 1000, rtol=1e-9)


def test_coverage_table_follows_ramp(result):
    cov = result.table("coverage")
    ss = cov[(cov.strategy == "safe_sleep") & (cov.state == "AL")].set_index("year").coverage
    np.testing.assert_allclose(ss.loc[[2016, 2017]].to_numpy(), [0.2, 0.6])
    # MS has its own portfolio without safe sleep.
    ms = cov[(cov.strategy == "safe_sleep") & (cov.state == "MS")]
    assert (ms.coverage == 0).all()
    ms_pc = cov[(cov.strategy == "preconception_care") & (cov.state == "MS")]
    np.testing.assert_allclose(ms_pc.coverage, 0.4)


def test_manifest(saved, result):
    m = json.loads((saved / "manifest.json").read_text())
    assert m["seed"] == 5 and m["engine"] == "expected" and m["replicates"] == 30
    assert m["draws"] == 31
    assert isinstance(m["data_hash"], str) and len(m["data_hash"]) >= 8
    deps = m["dependencies"]
    assert deps["numpy"] == np.__version__ and deps["pandas"] == pd.__version__
    assert m["imsim_version"] == imsim.__version__
    t = m["timings_s"]
    for k in ("resolve_s", "draws_s", "engine_s", "save_s"):
        assert isinstance(t[k], (int, float)) and t[k] >= 0, k
    assert m["births"] == int(result.inputs.cells.births.sum())


def test_resolved_scenario_reloads_to_same_results(tmp_path):
    r1 = imsim.run(parse_scenario(SPEC_NO_RAMP))
    out = r1.save(tmp_path / "run", figures=False, report=False)
    again = imsim.load_scenario(out / "scenario.resolved.yaml")
    assert again.resolved() == r1.scenario.resolved()
    r2 = imsim.run(again)
    pd.testing.assert_frame_equal(r1.summary, r2.summary)
    np.testing.assert_array_equal(r1.arms.scenario, r2.arms.scenario)
    np.testing.assert_array_equal(r1.arms.baseline, r2.arms.baseline)



def test_resolved_scenario_records_run_overrides(tmp_path):
    r1 = imsim.run(parse_scenario(SPEC_NO_RAMP), engine="microsim", seed=9, replicates=2)
    out = r1.save(tmp_path / "run", figures=False, report=False)
    again = imsim.load_scenario(out / "scenario.resolved.yaml")
    assert (again.engine, again.seed, again.replicates) == ("microsim", 9, 2)



def test_resolved_scenario_with_ramp_reloads(saved, result):
    again = imsim.run(imsim.load_scenario(saved / "scenario.resolved.yaml"))
    pd.testing.assert_frame_equal(result.summary, again.summary)


# ---------------------------------------------------------------------------------------------
# Atomic, non-overwriting saves
# ---------------------------------------------------------------------------------------------

def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_saving_twice_is_refused_and_first_is_intact(result, tmp_path):
    out = result.save(tmp_path / "run", figures=False, report=False)
    before = _snapshot(out)
    assert "summary.csv" in before
    with pytest.raises(InputError):
        result.save(tmp_path / "run", figures=False, report=False)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_two_saves_in_the_same_second_get_distinct_folders(result, tmp_path, monkeypatch):
    import imsim.core.folders

    monkeypatch.setattr(imsim.core.folders, "timestamp", lambda: "20260101-120000")
    monkeypatch.chdir(tmp_path)
    a = result.save(figures=False, report=False)
    b = result.save(figures=False, report=False)
    assert (a.as_posix(), b.as_posix()) == ("results/outputs-test-20260101-120000",
                                            "results/outputs-test-20260101-120000-2")
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [a.name, b.name]


def test_cli_refuses_existing_out_before_running(tmp_path, monkeypatch, capsys):
    import imsim.analysis.runner
    from imsim.cli import main

    def fail(*a, **k):
        raise AssertionError("the run started although --out exists")

    monkeypatch.setattr(imsim.analysis.runner, "run", fail)
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    path = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failed_save_leaves_nothing(result, tmp_path, monkeypatch):
    import imsim.output.figures

    def boom(*a, **k):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(imsim.output.figures, "write_figures", boom)
    parent = tmp_path / "results"
    with pytest.raises(RuntimeError, match="simulated"):
        result.save(parent / "run")
    assert not (parent / "run").exists()
    leftovers = list(parent.iterdir()) if parent.exists() else []
    assert leftovers == [], leftovers


def test_failed_report_leaves_nothing(result, tmp_path, monkeypatch):
    import imsim.output.report

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(imsim.output.report, "write_report", boom)
    with pytest.raises(KeyboardInterrupt):
        result.save(tmp_path / "run", figures=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Paired draws
# ---------------------------------------------------------------------------------------------

def _national_deaths(arm):
    return arm[:, :, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=(1, 2))


def _width(x):
    lo, hi = np.percentile(x, [2.5, 97.5])
    return hi - lo


def test_summary_interval_is_percentile_of_paired_draws(result):
    db, ds = _national_deaths(result.arms.baseline), _national_deaths(result.arms.scenario)
    paired = (db - ds)[1:]
    assert len(paired) == 30
    t = _tot(result.summary)
    np.testing.assert_allclose([t.deaths_averted_lo, t.deaths_averted_hi],
                               np.percentile(paired, [2.5, 97.5]), rtol=1e-12)
    np.testing.assert_allclose(t.deaths_averted, db[0] - ds[0], rtol=1e-12)


@pytest.fixture(scope="module")
def micro():
    return imsim.run(parse_scenario({**SPEC, "engine": "microsim"}), replicates=30)


def test_paired_intervals_narrower_than_unpaired(micro):
    """Both arms of a draw share effects, fit and random numbers: pairing removes the
    baseline's Monte Carlo and parameter noise from the difference."""
    db, ds = _national_deaths(micro.arms.baseline)[1:], _national_deaths(micro.arms.scenario)[1:]
    paired = db - ds
    rng = np.random.default_rng(20240601)
    unpaired = db - ds[rng.permutation(len(ds))]
    assert _width(paired) < 0.8 * _width(unpaired)
    t = _tot(micro.summary)
    np.testing.assert_allclose([t.deaths_averted_lo, t.deaths_averted_hi],
                               np.percentile(paired, [2.5, 97.5]), rtol=1e-12)



def test_microsim_attribution_sums_to_its_total(micro):
    attr = micro.table("attribution")
    t = _tot(micro.summary)
    np.testing.assert_allclose(attr[attr.state == ALL].deaths_averted.sum(), t.deaths_averted,
                               rtol=1e-6)


def test_microsim_reproducible_by_seed(tmp_path):
    spec = {**SPEC, "engine": "microsim", "replicates": 2}

    def summary_bytes(seed, name):
        r = imsim.run(parse_scenario(spec), seed=seed)
        out = r.save(tmp_path / name, figures=False, report=False)
        return (out / "summary.csv").read_bytes()

    a, b, c = summary_bytes(3, "a"), summary_bytes(3, "b"), summary_bytes(4, "c")
    assert a == b
    assert a != c
