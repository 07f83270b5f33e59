"""Hostile and careless input (issue 17, part A): every case refused with exit 2, one line on
stderr naming the file, no traceback, nothing written -- and property-based fuzzing of every
input surface (scenario, collaborative block, sweep, plan, targets CSV, WONDER export).

The CLI is called in-process (:func:`imsim.cli.main`) so the default suite stays fast; the
fuzzers are bounded here (``max_examples``) and run longer under ``-m slow``.
"""
from __future__ import annotations

import copy
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from imsim.cli import main
from imsim.core.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from test_wonder import STATE_HDR, export, state_rows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

SCENARIO = {"name": "t", "years": [2026, 2027], "states": ["AL", "GA"], "seed": 3,
            "replicates": 1,
            "strategies": {"safe_sleep": {"coverage": {2026: 0.2, 2027: 0.5},
                                          "reach": {"nh_black": 0.8}},
                           "preterm_prevention": {"coverage": 0.4,
                                                  "components": ["hard_stop"]}},
            "by_state": {"GA": {"strategies": {"smoking_cessation": {"coverage": 0.3}}}},
            "exposures": {"smoking": {"scale": 0.5}},
            "effects": {"unsafe_sleep_suid_or": 2.6}}
COLLABORATIVE = {"name": "c", "years": [2026, 2028], "states": ["AL", "GA"],
                 "collaborative": {"start": 2026, "support_ends": 2027,
                                   "teams": {"AL": ["safe_sleep"], "GA": ["smoking_cessation"]},
                                   "peer_learning": 0.3, "capacity": {"default": 0.5, "AL": 0.7},
                                   "ceiling": {"safe_sleep": 0.8}, "base_rate": 0.1}}
PLAN = {"name": "p", "years": [2026, 2027], "states": ["AL", "GA"], "max_strategies": 2,
        "strategies": {"safe_sleep": {"coverage": 0.5}, "smoking_cessation": {"coverage": 0.3}},
        "objective": {"deaths_averted": 1.0, "disparity_reduction": 1.0}, "draws": 5,
        "seed": 1}
SWEEP = {"name": "w", "scenario": "s.yaml", "method": "psa", "samples": 4, "seed": 1,
         "outputs": ["deaths_averted"],
         "parameters": {"unsafe_sleep_suid_or": {},
                        "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}}
SWEEP_SCENARIO = {k: v for k, v in SCENARIO.items() if k != "effects"}
TARGETS_HEADER = "state,race,year_start,year_end,measure,deaths,births,rate,flag"
TARGETS_ROW = ["AL", "nh_black", "2013", "2015", "imr", "800", "58000", "13.79", "ok"]


def _dump(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def cli(argv, capsys, cwd: Path):
    """Run ``imsim`` in-process in ``cwd``; return (exit code, stdout, stderr)."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        code = main([str(a) for a in argv])
    finally:
        os.chdir(old)
    out, err = capsys.readouterr()
    return code, out, err


def refused(code, err, *needles):
    """Exit 2, one line on stderr, no traceback, every needle in the message."""
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("imsim: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"


def nothing_new(folder: Path, before: set[str]) -> None:
    now = {p.name for p in folder.iterdir()}
    assert now <= before | {f".{n}.lock" for n in ("out",)}, now - before


# ---------------------------------------------------------------------------------------------
# Item 1: domain-checked values everywhere
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "0", "-1"])
def test_effect_override_outside_domain_refused_by_run(tmp_path, capsys, value):
    text = ("name: t\nyears: [2026, 2026]\nstates: [AL]\nstrategies:\n  safe_sleep: {coverage: "
            f"0.5}}\neffects: {{unsafe_sleep_suid_or: {value}}}\n")
    (tmp_path / "s.yaml").write_text(text)
    code, _, err = cli(["run", "s.yaml", "--out", "out", "--no-figures"], capsys, tmp_path)
    refused(code, err, "s.yaml", "effects.unsafe_sleep_suid_or")
    assert not (tmp_path / "out").exists()


def test_probability_effect_above_one_refused(tmp_path, capsys):
    data = copy.deepcopy(SCENARIO)
    data["effects"] = {"safe_sleep_unsafe_reduction": 1.5}
    _dump(tmp_path / "s.yaml", data)
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "effects.safe_sleep_unsafe_reduction", "[0, 1]")


def test_effect_inf_in_plan_refused_by_recommend(tmp_path, capsys):
    data = copy.deepcopy(PLAN)
    data["effects"] = {"unsafe_sleep_suid_or": math.inf}
    _dump(tmp_path / "p.yaml", data)
    code, _, err = cli(["recommend", "p.yaml", "--out", "out"], capsys, tmp_path)
    refused(code, err, "p.yaml", "effects.unsafe_sleep_suid_or", "finite")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change", [{"scale": math.inf}, {"scale": -0.5}, {"set": 1.5},
                                    {"set": math.nan}])
def test_exposure_change_outside_domain_refused(tmp_path, capsys, change):
    data = copy.deepcopy(SCENARIO)
    data["exposures"] = {"smoking": change}
    _dump(tmp_path / "s.yaml", data)
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, f"exposures.smoking.{next(iter(change))}")


def _sweep_files(tmp_path, spec, pid="unsafe_sleep_suid_or"):
    _dump(tmp_path / "s.yaml", {k: v for k, v in SCENARIO.items() if k != "effects"})
    data = copy.deepcopy(SWEEP)
    data["parameters"] = {pid: spec, "strategies.safe_sleep.coverage": {"low": 0.2, "high": 0.8}}
    return _dump(tmp_path / "w.yaml", data)


@pytest.mark.parametrize("spec,needles", [
    ({"dist": "normal", "mean": 0.1, "sd": 5}, ["leaves", "a ratio > 0", "truncate: true"]),
    ({"dist": "lognormal", "median": 2, "sdlog": 1000}, ["overflows"]),
    ({"dist": "lognormal", "median": 2, "sdlog": 1000, "truncate": True}, ["overflows"]),
    ({"dist": "normal", "mean": -100, "sd": 1, "truncate": True}, ["almost no probability"]),
    ({"low": 0.5, "high": 2, "truncate": True}, ["truncate applies to normal and lognormal"]),
])
def test_sweep_distribution_leaving_the_domain_refused(tmp_path, capsys, spec, needles):
    _sweep_files(tmp_path, spec)
    code, _, err = cli(["sweep", "w.yaml", "--out", "out"], capsys, tmp_path)
    refused(code, err, "w.yaml", "parameters.unsafe_sleep_suid_or", *needles)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_sweep_normal_over_coverage_needs_truncate(tmp_path, capsys):
    _sweep_files(tmp_path, {"dist": "normal", "mean": 0.5, "sd": 0.3},
                 pid="strategies.preterm_prevention.coverage")
    code, _, err = cli(["sweep", "w.yaml", "--out", "out"], capsys, tmp_path)
    refused(code, err, "bounded", "truncate: true")


def test_truncated_sweep_distribution_stays_in_domain_and_keeps_its_shape(tmp_path):
    from scipy import stats

    from imsim.config.sweepfile import load_sweep

    path = _sweep_files(tmp_path, {"dist": "normal", "mean": 0.1, "sd": 5, "truncate": True})
    sw = load_sweep(path)
    d = sw.dists[0]
    assert d.truncate is not None and d.truncate[0] > 0
    q = np.linspace(0, 1, 2001)
    x = sw.transform(np.column_stack([q, q]))[:, 0]
    assert np.all(np.isfinite(x)) and np.all(x > 0) and np.all(np.diff(x) >= 0)
    # The truncated quantile function: F(x(q)) = F(a) + q (F(b) - F(a)) for the normal's F.
    a, b = d.truncate
    fa, fb = stats.norm.cdf([a, b], 0.1, 5)
    inner = (q > 1e-6) & (q < 1 - 1e-6)
    np.testing.assert_allclose(stats.norm.cdf(x[inner], 0.1, 5), fa + q[inner] * (fb - fa),
                               rtol=1e-9, atol=1e-12)
    assert "truncate" in sw.resolved()["parameters"]["unsafe_sleep_suid_or"]


def test_sweep_refuses_non_finite_outputs_and_writes_no_results(tmp_path):
    from imsim.analysis.sweep import run_sweep
    from imsim.config.sweepfile import load_sweep

    sw = load_sweep(_sweep_files(tmp_path, {}))
    with pytest.raises(InputError, match="non-finite outputs"):
        run_sweep(sw, out=tmp_path / "out", workers=1, progress=False,
                  evaluator=_NanEvaluator())
    assert not (tmp_path / "out").exists()


class _NanEvaluator:
    """A picklable stand-in for the model that returns NaN for one row."""

    def __call__(self, X):
        Y = np.sum(X, axis=1, keepdims=True)
        Y[1] = np.nan
        return Y

    def point_values(self):
        return np.array([2.6, 0.5])


def test_run_with_non_finite_table_writes_nothing(tmp_path):
    import pandas as pd

    from imsim.output.runfolder import check_finite

    class Fake:
        class scenario:
            source = "s.yaml"

        def table(self, name):
            return pd.DataFrame({"state": ["AL"], "race": ["nh_black"], "births": [10],
                                 "deaths_averted": [math.inf if name == "summary" else 1.0]})

    with pytest.raises(InputError, match="non-finite deaths_averted") as info:
        check_finite(Fake())
    assert "s.yaml" in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Item 2: strict YAML and CSV
# ---------------------------------------------------------------------------------------------

def test_duplicate_ramp_year_refused(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: t\nyears: [2026, 2026]\nstates: [AL]\nstrategies:\n"
                                     "  safe_sleep: {coverage: {2026: 0.1, 2026: 0.9}}\n")
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "s.yaml", "duplicate key 2026", "line 5")


@pytest.mark.parametrize("kind,file,prefix", [
    ("scenario", "s.yaml", "name: t\nyears: [2026, 2026]\ndescription: "),
    ("sweep", "w.yaml", "name: w\nscenario: s.yaml\ndescription: "),
    ("plan", "p.yaml", "name: p\nyears: [2026, 2026]\ndescription: "),
])
@pytest.mark.parametrize("nest", ["[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000])
def test_deep_nesting_gives_one_line(tmp_path, capsys, kind, file, prefix, nest):
    (tmp_path / file).write_text(prefix + nest + "\n")
    argv = {"scenario": ["validate", file], "sweep": ["sweep", file, "--out", "out"],
            "plan": ["recommend", file, "--out", "out"]}[kind]
    code, _, err = cli(argv, capsys, tmp_path)
    refused(code, err, file, "nested more than 32 levels")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("states,needle", [
    ("[\u0131a]", "'\\u0131a'"), ("[\u017fc]", "'\\u017fc'"), ("[\u0410labama]", "\\u0410labama"),
    ("[al]", "did you mean 'AL'"), ("[Alabama]", "'Alabama'"), ("[AL, AL]", "listed twice"),
])
def test_state_codes_are_exact(tmp_path, capsys, states, needle):
    (tmp_path / "s.yaml").write_text(f"name: t\nyears: [2026, 2026]\nstates: {states}\n",
                                     encoding="utf-8")
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "states", needle)


@pytest.mark.parametrize("where", ["by_state", "collaborative_teams", "capacity"])
def test_homoglyph_state_keys_refused_everywhere(tmp_path, capsys, where):
    data = copy.deepcopy(COLLABORATIVE if where != "by_state" else SCENARIO)
    if where == "by_state":
        data["by_state"] = {"G\u0391": data["by_state"]["GA"]}      # Greek capital alpha
    elif where == "collaborative_teams":
        data["collaborative"]["teams"]["\u0131A"] = ["safe_sleep"]
    else:
        data["collaborative"]["capacity"]["\u017fC"] = 0.5
    _dump(tmp_path / "s.yaml", data)
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "s.yaml", "unknown state")


@pytest.mark.parametrize("text,needle", [
    ("seed: '7'", "seed: expected a whole number, got '7' (quoted, so text"),
    ("replicates: '3'", "replicates: expected a whole number, got '3' (quoted, so text"),
    ("strategies: {safe_sleep: {coverage: '0.5'}}", "got '0.5' (quoted, so text"),
    ("effects: {unsafe_sleep_suid_or: '2.6'}", "got '2.6' (quoted, so text"),
    ("years: ['2026', 2026]", "got '2026' (quoted, so text"),
    ("seed: 1.5e3", "expected a whole number, got 1500.0"),
])
def test_one_rule_for_numbers_written_as_text(tmp_path, capsys, text, needle):
    body = "name: t\nyears: [2026, 2026]\nstates: [AL]\n"
    if not text.startswith("years"):
        body += "strategies: {safe_sleep: {coverage: 0.5}}\n" if "strategies" not in text else ""
    else:
        body = "name: t\nstates: [AL]\n"
    (tmp_path / "s.yaml").write_text(body + text + "\n")
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, needle)


def test_exponent_numbers_are_numbers(tmp_path):
    from imsim.core.validation import parse_yaml

    assert parse_yaml("a: 1e6\nb: 2.5E-3\nc: '1e6'\nd: -3e+2") == {
        "a": 1e6, "b": 2.5e-3, "c": "1e6", "d": -300.0}
    data = copy.deepcopy(SCENARIO)
    text = yaml.safe_dump(data, sort_keys=False).replace("unsafe_sleep_suid_or: 2.6",
                                                         "unsafe_sleep_suid_or: 26e-1")
    (tmp_path / "s.yaml").write_text(text)
    from imsim.config.scenario import load_scenario

    assert load_scenario(tmp_path / "s.yaml").effects == {"unsafe_sleep_suid_or": 2.6}


@pytest.mark.parametrize("case", ["safe_sleep_empty", "components_empty", "team_outside_states",
                                  "capacity_outside_states", "sweep_unused_strategy"])
def test_silent_no_ops_refused(tmp_path, capsys, case):
    if case == "safe_sleep_empty":
        data = {"name": "t", "years": [2026, 2026], "states": ["AL"],
                "strategies": {"safe_sleep": {}}}
        needle = "strategies.safe_sleep.coverage: coverage is missing"
    elif case == "components_empty":
        data = {"name": "t", "years": [2026, 2026], "states": ["AL"],
                "strategies": {"preterm_prevention": {"coverage": 0.5, "components": []}}}
        needle = "components is empty"
    elif case == "team_outside_states":
        data = copy.deepcopy(COLLABORATIVE)
        data["collaborative"]["teams"]["TX"] = ["safe_sleep"]
        needle = "collaborative.teams.TX: team for TX, which is not in states"
    elif case == "capacity_outside_states":
        data = copy.deepcopy(COLLABORATIVE)
        data["collaborative"]["capacity"]["WY"] = 0.9
        needle = "collaborative.capacity.WY: capacity for WY, which is not in states"
    else:
        _sweep_files(tmp_path, {}, pid="strategies.social_determinants.coverage")
        code, _, err = cli(["sweep", "w.yaml", "--out", "out"], capsys, tmp_path)
        refused(code, err, "does not use social_determinants")
        return
    _dump(tmp_path / "s.yaml", data)
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "s.yaml", needle)


def test_plan_with_collaborative_keeps_coverage_optional(tmp_path):
    from imsim.config.plan import load_plan

    data = copy.deepcopy(PLAN)
    data["strategies"] = {"safe_sleep": {}, "smoking_cessation": {"program": "counselling"}}
    data["collaborative"] = {k: v for k, v in COLLABORATIVE["collaborative"].items()
                             if k != "teams"}
    assert load_plan(_dump(tmp_path / "p.yaml", data)).candidates == ["safe_sleep",
                                                                      "smoking_cessation"]


# -- files that are not regular, too big, unreadable or oddly named ---------------------------

@pytest.mark.parametrize("path,needle", [("/dev/zero", "got a device"),
                                         ("/dev/urandom", "got a device"),
                                         ("/dev/null", "got a device")])
def test_devices_refused_without_reading(tmp_path, capsys, path, needle):
    if not Path(path).exists():
        pytest.skip(f"{path} missing")
    code, _, err = cli(["validate", path], capsys, tmp_path)
    refused(code, err, path, needle)


@pytest.mark.parametrize("argv", [["validate", "{f}"], ["sweep", "{f}", "--out", "out"],
                                  ["recommend", "{f}", "--out", "out"],
                                  ["calibrate", "--targets", "{f}", "--out", "out"],
                                  ["data", "import-wonder", "{f}", "--out", "t.csv"]])
def test_fifo_refused_without_hanging(tmp_path, capsys, argv):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, _, err = cli([a.format(f=fifo) for a in argv], capsys, tmp_path)
    refused(code, err, str(fifo), "FIFO")
    assert not (tmp_path / "out").exists() and not (tmp_path / "t.csv").exists()


def test_size_limit_reads_at_most_the_limit(tmp_path, capsys, monkeypatch):
    """A file over the limit is refused having read limit + 1 bytes, whatever st_size says."""
    from imsim.core import validation

    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:          # sparse: 4 GB of zeros on disk in no time
        fh.truncate(4_000_000_000)
    reads = []
    real_read = os.read

    def counting_read(fd, n):
        data = real_read(fd, n)
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", counting_read)
    code, _, err = cli(["validate", "big.yaml"], capsys, tmp_path)
    refused(code, err, "big.yaml", "limited to 1,000,000 bytes")
    assert sum(reads) == validation.MAX_FILE_BYTES + 1


def test_proc_file_with_zero_st_size_is_bounded(tmp_path, capsys):
    p = Path("/proc/self/status")
    if not p.exists():
        pytest.skip("no /proc")
    code, _, err = cli(["validate", str(p)], capsys, tmp_path)
    refused(code, err, str(p))


@pytest.mark.parametrize("name,needle", [("a" * 300 + ".yaml", "too long"),
                                         ("missing.yaml", "not found"),
                                         (".", "got a directory")])
def test_odd_names(tmp_path, capsys, name, needle):
    code, _, err = cli(["validate", name], capsys, tmp_path)
    refused(code, err, needle)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path, capsys):
    p = _dump(tmp_path / "s.yaml", SCENARIO)
    p.chmod(0)
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "cannot read")


def test_not_utf8_scenario(tmp_path, capsys):
    (tmp_path / "s.yaml").write_bytes(b"name: caf\xe9\nyears: [2026, 2026]\n")
    code, _, err = cli(["validate", "s.yaml"], capsys, tmp_path)
    refused(code, err, "not UTF-8")


# -- targets CSV (calibrate --targets) --------------------------------------------------------

def _targets(tmp_path, **changes) -> Path:
    row = list(TARGETS_ROW)
    cols = TARGETS_HEADER.split(",")
    for k, v in changes.items():
        row[cols.index(k)] = v
    p = tmp_path / "t.csv"
    p.write_text(TARGETS_HEADER + "\n" + ",".join(row) + "\n")
    return p


@pytest.mark.parametrize("col", ["deaths", "births", "year_start", "year_end", "rate"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity", "9" * 400, "1e400",
                                   "0x10", "1_000"])
def test_targets_non_numbers_refused(tmp_path, capsys, col, value):
    _targets(tmp_path, **{col: value})
    code, _, err = cli(["calibrate", "--targets", "t.csv", "--out", "out"], capsys, tmp_path)
    refused(code, err, "t.csv", "row 2", col)
    assert len(err) < 400
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("changes,needle", [
    ({"deaths": "500", "births": "10", "rate": "50000"}, "out of range"),
    ({"deaths": "500", "births": "10", "rate": ""}, "exceed births"),
    ({"rate": "19.79"}, "contradicts deaths/births"),
    ({"deaths": "0", "births": "0", "rate": "0"}, "births is 0"),
    ({"year_start": "1995", "year_end": "1995"}, "out of range; allowed: a year from 2007"),
    ({"year_end": "2999"}, "out of range"),
    ({"state": "\u0131a"}, "unknown state"),
])
def test_targets_inconsistent_rows_refused(tmp_path, capsys, changes, needle):
    _targets(tmp_path, **changes)
    code, _, err = cli(["calibrate", "--targets", "t.csv", "--out", "out"], capsys, tmp_path)
    refused(code, err, "t.csv", needle)


def test_targets_rate_within_rounding_accepted(tmp_path):
    from imsim.inputs.wonder import validate_targets

    # 800 / 58000 = 13.793...; shown as 13.79 (2 decimals) or 14 (whole) is fine
    for rate in ("13.79", "13.793", "14"):
        assert len(validate_targets(_targets(tmp_path, rate=rate))) == 1


@pytest.mark.parametrize("content,needle", [
    (b"state,race\n\xe9,x\n", "not UTF-8"),
    (TARGETS_HEADER.encode() + b'\nAL,nh_black,"2013,2015,imr,8,58000,13.79,ok\n',
     "cannot read targets CSV"),
    (TARGETS_HEADER.encode() + b"\nAL,nh_black,2013,2015,imr,800,58000,13.79,ok,extra\n",
     "10 fields but the header has 9"),
])
def test_targets_malformed_csv_one_line(tmp_path, capsys, content, needle):
    (tmp_path / "t.csv").write_bytes(content)
    code, _, err = cli(["calibrate", "--targets", "t.csv", "--out", "out"], capsys, tmp_path)
    refused(code, err, "t.csv", needle)


def test_targets_directory_says_directory(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code, _, err = cli(["calibrate", "--targets", "d", "--out", "out"], capsys, tmp_path)
    refused(code, err, "got a directory")


# -- WONDER exports ---------------------------------------------------------------------------

def test_wonder_year_out_of_range_refused_with_file(tmp_path, capsys):
    export(tmp_path, "w.txt", STATE_HDR, state_rows(), params='"Year of Death: 1995"\n')
    code, _, err = cli(["data", "import-wonder", "w.txt", "--out", "t.csv"], capsys, tmp_path)
    refused(code, err, "w.txt", "year 1995 is out of range")
    assert not (tmp_path / "t.csv").exists()


def test_wonder_deaths_above_births_refused(tmp_path, capsys):
    rows = state_rows()
    rows[0][3:6] = ["900", "100", "9000"]
    export(tmp_path, "w.txt", STATE_HDR, rows)
    code, _, err = cli(["data", "import-wonder", "w.txt", "--out", "t.csv"], capsys, tmp_path)
    refused(code, err, "w.txt", "row 2", "exceed Births")


def test_wonder_not_utf8_names_file(tmp_path, capsys):
    p = export(tmp_path, "w.txt", STATE_HDR, state_rows())
    p.write_bytes(p.read_bytes().replace(b"Alabama", b"Alab\xe9ma"))
    code, _, err = cli(["data", "import-wonder", "w.txt", "--out", "t.csv"], capsys, tmp_path)
    refused(code, err, "w.txt", "not UTF-8")


# ---------------------------------------------------------------------------------------------
# Item 4: resource guards, before any work
# ---------------------------------------------------------------------------------------------

def test_huge_run_refused_before_work_with_estimate_and_flag(tmp_path, capsys, monkeypatch):
    import imsim.analysis.runner as runner

    def boom(*a, **k):
        raise AssertionError("the run started")

    monkeypatch.setattr(runner, "run", boom)
    (tmp_path / "s.yaml").write_text("name: t\nyears: [2026, 2030]\nstates: all\n")
    code, _, err = cli(["run", "s.yaml", "--engine", "microsim", "--replicates", "10000",
                        "--out", "out"], capsys, tmp_path)
    refused(code, err, "s.yaml", "microsim engine", "10,000 replicate(s)", "--allow-large",
            "the limits are 30 min")
    assert not (tmp_path / "out").exists()


def test_estimate_scales_with_the_work():
    from imsim.analysis.budget import LIMIT_SECONDS, estimate_run
    from imsim.config.scenario import parse_scenario

    sc = parse_scenario({"name": "t", "years": [2026, 2027], "states": ["AL", "GA"]})
    one = estimate_run(sc, "expected", 10)
    assert one.cells == 2 * 2 * 5 and one.births > 100_000
    assert estimate_run(sc, "expected", 20).seconds == pytest.approx(2 * one.seconds)
    micro = estimate_run(sc, "microsim", 10)
    assert micro.seconds > one.seconds and micro.bytes > one.bytes
    big = parse_scenario({"name": "t", "years": [2026, 2030], "states": "all"})
    assert estimate_run(big, "microsim", 10_000).seconds > 2 * LIMIT_SECONDS
    assert estimate_run(big, "expected", 200).seconds < LIMIT_SECONDS / 10   # a usual run


def test_bad_replicates_flag_refused(tmp_path, capsys):
    _dump(tmp_path / "s.yaml", SCENARIO)
    for flag in (["--replicates", "0"], ["--replicates", "10001"], ["--seed", "-1"]):
        code, _, err = cli(["run", "s.yaml", "--out", "out", *flag], capsys, tmp_path)
        refused(code, err, flag[0])
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# Item 5: property-based fuzzing of every surface
# ---------------------------------------------------------------------------------------------

#: Values a hostile or careless user puts where something else belongs.
HOSTILE = hs.one_of(
    hs.sampled_from([math.inf, -math.inf, math.nan, -1, 0, 1e308, -1e-308, 2**70, True, None,
                     "", "0.5", "7", "1e6", "nan", "\u0131a", "\u017fc", "AL ", "al", "all",
                     "\u0410labama", [], {}, [1, 2, 3], {"a": 1}, "x" * 500, 2026, 1995,
                     0.5, 1.5, "safe_sleep"]),
    hs.floats(allow_nan=True, allow_infinity=True),
    hs.integers(min_value=-2**70, max_value=2**70),
    hs.text(max_size=20),
)


def _paths(data, prefix=()):
    """Every key path of a nested mapping/list (each dict key and list position)."""
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _get(data, path):
    for k in path:
        data = data[k]
    return data


@hs.composite
def mutated(draw, base):
    """A copy of ``base`` with one value replaced, one key renamed or deleted, or a key added."""
    data = copy.deepcopy(base)
    paths = _paths(data)
    path = draw(hs.sampled_from(paths))
    parent = _get(data, path[:-1])
    key = path[-1]
    action = draw(hs.sampled_from(["replace", "replace", "replace", "delete", "rename", "add"]))
    old = parent[key]
    if action == "replace" or isinstance(parent, list) and action != "delete":
        new = draw(HOSTILE)
        parent[key] = new
    elif action == "delete":
        del parent[key]
        new = None
    elif action == "rename":
        del parent[key]
        parent[draw(hs.sampled_from(["\u0131a", "TX", "covrage", "2026", "x" * 90, "ALL"]))] = old
        new = old
    else:
        if isinstance(parent, dict):
            parent[draw(hs.text(min_size=1, max_size=12))] = draw(HOSTILE)
        new = old
    return data, path, old, new


def _must_refuse(old, new) -> bool:
    """A number replaced by a non-finite number or by text must be refused."""
    was_number = isinstance(old, (int, float)) and not isinstance(old, bool)
    bad_number = isinstance(new, float) and not math.isfinite(new)
    return was_number and (bad_number or isinstance(new, str))


def _check_loader(load, path, old, new):
    """The loader returns or raises a one-line InputError naming the file; nothing else."""
    try:
        load(path)
    except InputError as exc:
        msg = str(exc)
        assert "\n" not in msg and path.name in msg, msg
        return
    assert not _must_refuse(old, new), f"accepted {new!r} in place of {old!r}"


FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(hs.data())
def test_fuzz_scenario(tmp_path, data):
    from imsim.config.scenario import load_scenario

    doc, _, old, new = data.draw(mutated(SCENARIO))
    _check_loader(load_scenario, _dump(tmp_path / "s.yaml", doc), old, new)


@FUZZ
@given(hs.data())
def test_fuzz_collaborative(tmp_path, data):
    from imsim.config.scenario import load_scenario

    doc, _, old, new = data.draw(mutated(COLLABORATIVE))
    _check_loader(load_scenario, _dump(tmp_path / "s.yaml", doc), old, new)


@FUZZ
@given(hs.data())
def test_fuzz_plan(tmp_path, data):
    from imsim.config.plan import load_plan

    doc, _, old, new = data.draw(mutated(PLAN))
    _check_loader(load_plan, _dump(tmp_path / "p.yaml", doc), old, new)


@FUZZ
@given(hs.data())
def test_fuzz_sweep(tmp_path, data):
    from imsim.config.sweepfile import load_sweep

    _dump(tmp_path / "s.yaml", SWEEP_SCENARIO)
    doc, _, old, new = data.draw(mutated(SWEEP))
    _check_loader(load_sweep, _dump(tmp_path / "w.yaml", doc), old, new)


CELL_VALUES = hs.one_of(
    hs.sampled_from(["", "nan", "inf", "-1", "9" * 40, "1e400", "0", "13.79", "AL", "ALL",
                     "\u0131a", "imr", "births", "ok", "suppressed", "2013", "1995", "3000",
                     "\xe9", '"', "a,b", " 800 ", "800.5", "0x1f"]),
    hs.text(max_size=8),
)


@FUZZ
@given(hs.lists(hs.tuples(hs.integers(0, 8), CELL_VALUES), min_size=1, max_size=3))
def test_fuzz_targets(tmp_path, changes):
    import pandas as pd

    from imsim.inputs.wonder import validate_targets

    row = list(TARGETS_ROW)
    for col, value in changes:
        row[col] = value
    p = tmp_path / "t.csv"
    p.write_text(TARGETS_HEADER + "\n" + ",".join(row) + "\n", encoding="utf-8")
    try:
        df = validate_targets(p)
    except InputError as exc:
        assert "\n" not in str(exc) and "t.csv" in str(exc)
        return
    r = df.iloc[0]           # accepted: then it is internally consistent
    for col in ("year_start", "year_end"):
        assert 2007 <= r[col] <= 2100
    if not (pd.isna(r["deaths"]) or pd.isna(r["births"])):
        assert r["deaths"] <= r["births"]
    assert not (isinstance(r["rate"], float) and math.isinf(r["rate"]))


WONDER_CELLS = hs.sampled_from(["", "Suppressed", "-5", "nan", "inf", "1e9", "9" * 30, "12",
                                "99999999", "\u0131", '"Alabama"', '"Al\u0430bama"', '"99"',
                                "8.60 (Unreliable)", "Not Applicable", "0"])


@FUZZ
@given(hs.lists(hs.tuples(hs.integers(0, 2), hs.integers(1, 5), WONDER_CELLS), min_size=1,
                max_size=3),
       hs.sampled_from(['"Year of Death: 2013; 2014; 2015"\n', '"Year of Death: 1995"\n',
                        '"Year of Death: 2013; 2015"\n', '"Year of Death: 3000"\n', ""]))
def test_fuzz_wonder(tmp_path, changes, params):
    from imsim.inputs.wonder import import_wonder, write_targets

    rows = state_rows()
    for r, c, v in changes:
        rows[r][c] = v
    p = export(tmp_path, "w.txt", STATE_HDR, rows, params=params)
    out = tmp_path / "t.csv"
    if out.exists():
        out.unlink()
    try:
        write_targets(import_wonder(p), out)
    except InputError as exc:
        assert "\n" not in str(exc) and "w.txt" in str(exc), str(exc)
        assert not out.exists()


@pytest.mark.parametrize("surface,base,argv", [
    ("scenario", SCENARIO, ["run", "s.yaml", "--out", "out", "--no-figures", "--quiet"]),
    ("plan", PLAN, ["recommend", "p.yaml", "--out", "out", "--no-figures", "--quiet"]),
    ("sweep", SWEEP, ["sweep", "w.yaml", "--out", "out", "--workers", "1", "--quiet"]),
])
def test_cli_refuses_hostile_numbers_and_writes_nothing(tmp_path, capsys, surface, base, argv):
    """Through the command line: a non-finite or quoted number anywhere a number goes is
    refused with exit 2 and one line, and no output folder appears."""
    _dump(tmp_path / "s.yaml", SWEEP_SCENARIO if surface == "sweep" else SCENARIO)
    file = argv[1]
    numbers = [p for p in _paths(base) if isinstance(_get(base, p), (int, float))
               and not isinstance(_get(base, p), bool)]
    rng = np.random.default_rng(17)
    for path in numbers:
        bad = [math.inf, math.nan, "0.5"][rng.integers(3)]
        doc = copy.deepcopy(base)
        _get(doc, path[:-1])[path[-1]] = bad
        _dump(tmp_path / file, doc)
        code, _, err = cli(argv, capsys, tmp_path)
        refused(code, err, file)
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


@pytest.mark.slow
@settings(max_examples=2000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hs.data(), hs.sampled_from(["scenario", "collaborative", "plan", "sweep"]))
def test_fuzz_long(tmp_path, data, surface):
    from imsim.config.plan import load_plan
    from imsim.config.scenario import load_scenario
    from imsim.config.sweepfile import load_sweep

    base, load, name = {"scenario": (SCENARIO, load_scenario, "s.yaml"),
                        "collaborative": (COLLABORATIVE, load_scenario, "s.yaml"),
                        "plan": (PLAN, load_plan, "p.yaml"),
                        "sweep": (SWEEP, load_sweep, "w.yaml")}[surface]
    _dump(tmp_path / "s.yaml", SWEEP_SCENARIO)
    doc, _, old, new = data.draw(mutated(base))
    _check_loader(load, _dump(tmp_path / name, doc), old, new)


def test_recommend_with_non_finite_deaths_averted_writes_nothing():
    import pandas as pd

    from imsim.output.recommendation import _check_finite

    class Plan:
        file = "p.yaml"

    ok = pd.DataFrame({"state": ["AL"], "portfolio": ["safe_sleep"], "deaths_averted": [3.0]})
    _check_finite(Plan(), {"portfolios": ok})
    bad = ok.assign(deaths_averted=[math.nan])
    with pytest.raises(InputError, match="non-finite deaths_averted") as info:
        _check_finite(Plan(), {"portfolios": ok, "recommendations": bad})
    assert "p.yaml" in str(info.value) and "AL" in str(info.value)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(hs.data(), hs.sampled_from(["scenario", "collaborative", "plan", "sweep"]))
def test_fuzz_through_the_command_line_writes_nothing(tmp_path_factory, data, surface):
    """A fuzzed file the loader refuses is refused by its command too: exit 2, one line naming
    the file, no traceback, and no output folder (nor ``.partial``, nor temporary sibling)."""
    from imsim.config.plan import load_plan
    from imsim.config.scenario import load_scenario
    from imsim.config.sweepfile import load_sweep

    base, load, name, argv = {
        "scenario": (SCENARIO, load_scenario, "s.yaml", ["run", "s.yaml", "--no-figures"]),
        "collaborative": (COLLABORATIVE, load_scenario, "s.yaml", ["run", "s.yaml"]),
        "plan": (PLAN, load_plan, "p.yaml", ["recommend", "p.yaml"]),
        "sweep": (SWEEP, load_sweep, "w.yaml", ["sweep", "w.yaml"])}[surface]
    tmp = tmp_path_factory.mktemp("cli")
    _dump(tmp / "s.yaml", SWEEP_SCENARIO)
    doc, _, old, new = data.draw(mutated(base))
    _dump(tmp / name, doc)
    try:
        load(tmp / name)
        return                        # still valid: running it is not this test's business
    except InputError:
        pass
    before = {p.name for p in tmp.iterdir()}
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err, out = io.StringIO(), io.StringIO()
    old_cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with redirect_stderr(err), redirect_stdout(out):
            code = main([*argv, "--out", "out"])
    finally:
        os.chdir(old_cwd)
    refused(code, err.getvalue(), name)
    assert {p.name for p in tmp.iterdir()} - before <= {".out.lock"}


def test_huge_sweep_refused_before_work(tmp_path, capsys):
    _dump(tmp_path / "s.yaml", SWEEP_SCENARIO)
    data = copy.deepcopy(SWEEP)
    data.update(method="sobol", samples=1 << 16)
    _dump(tmp_path / "w.yaml", data)
    code, _, err = cli(["sweep", "w.yaml", "--out", "out", "--workers", "1"], capsys, tmp_path)
    refused(code, err, "w.yaml", "262,144 evaluations", "--allow-large")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    from imsim.analysis.budget import sweep_rows
    from imsim.config.sweepfile import load_sweep

    sw = load_sweep(tmp_path / "w.yaml")
    assert sweep_rows(sw) == sw.unit_sample().shape[0] if sw.samples <= 1024 else True
    small = copy.deepcopy(data)
    small.update(samples=64)
    sw = load_sweep(_dump(tmp_path / "w2.yaml", small))
    assert sweep_rows(sw) == sw.unit_sample().shape[0] == 64 * 4


@pytest.mark.parametrize("flags,needle", [(["--draws", "100000000"], "--draws 100000000"),
                                          (["--draws", "1"], "--draws 1"),
                                          (["--seed", "-1"], "--seed -1")])
def test_calibrate_flags_bounded(tmp_path, capsys, flags, needle):
    code, _, err = cli(["calibrate", "--out", "out", *flags], capsys, tmp_path)
    refused(code, err, needle, "out of range")
    assert not (tmp_path / "out").exists()


def test_sweep_workers_count_is_bounded_by_the_memory_guard(tmp_path, capsys):
    _sweep_files(tmp_path, {})
    code, _, err = cli(["sweep", "w.yaml", "--out", "out", "--workers", "100000"], capsys,
                       tmp_path)
    refused(code, err, "100000 worker(s)", "--allow-large")
