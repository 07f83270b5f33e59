"""Command-line problems a new user met, each fixed and checked through the console command."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IMSIM = Path(sys.executable).parent / ("imsim.exe" if os.name == "nt" else "imsim")
WONDER_BRIDGED = Path("/work/shared/data/external/azmelekin__data07_lbd_state_race_2007.txt")
if not WONDER_BRIDGED.is_file():
    WONDER_BRIDGED = REPO.parent / "shared" / "data" / "external" / WONDER_BRIDGED.name

pytestmark = pytest.mark.skipif(not IMSIM.exists(), reason="imsim console script not installed")

TINY = {"name": "tiny", "years": [2026, 2026], "states": ["VT"], "replicates": 1,
        "strategies": {"safe_sleep": {"coverage": 0.5}}}


def imsim(*args, cwd=REPO, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed ``imsim`` in ``cwd``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(IMSIM), *map(str, args)], cwd=cwd, capture_output=True, check=False,
                          text=True, timeout=timeout, env=env)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def copy_calibration(dest: Path) -> Path:
    """A real calibration folder (the committed default) under another name."""
    src = REPO / "calibration" / "default"
    if not (src / "calibration.json").is_file():
        src = REPO / "src" / "imsim" / "inputs" / "data" / "calibration" / "default"
    shutil.copytree(src, dest)
    return dest


def calibration_used(out: Path) -> Path:
    """The folder of the calibration a run used (from its manifest)."""
    return Path(json.loads((out / "manifest.json").read_text())["calibration_detail"]["path"])


# 1. A calibration name resolves from the working directory, the scenario's folder and the
#    repository's calibration/; a missing one says where it looked.

def test_calibration_name_relative_to_the_scenario_folder(tmp_path):
    project = tmp_path / "project"
    scenario = write(project / "tiny.yaml", TINY)
    copy_calibration(project / "my_state")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    proc = imsim("run", scenario, "--calibration", "my_state", "--out", out, "--no-figures",
                 "--quiet", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert calibration_used(out).resolve() == (project / "my_state").resolve()


def test_calibration_name_from_inside_the_repository(tmp_path):
    repo = tmp_path / "repo"
    copy_calibration(repo / "calibration" / "my_state")
    sub = repo / "scenarios"
    scenario = write(sub / "tiny.yaml", {**TINY, "calibration": "my_state"})
    out = tmp_path / "out"
    # Run from a subfolder of the repository: found in the parent's calibration/.
    proc = imsim("run", "tiny.yaml", "--out", out, "--no-figures", "--quiet", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert calibration_used(out).resolve() == (repo / "calibration" / "my_state").resolve()
    assert scenario.is_file()


def test_missing_calibration_lists_where_it_looked(tmp_path):
    project = tmp_path / "project"
    scenario = write(project / "tiny.yaml", TINY)
    out = tmp_path / "out"
    err = one_line_error(imsim("run", scenario, "--calibration", "nowhere", "--out", out,
                               "--quiet", cwd=tmp_path))
    assert "no calibration found" in err and "looked in:" in err
    assert str(project / "nowhere") in err                     # the scenario's folder
    assert os.path.join("calibration", "nowhere") in err        # ./calibration/NAME
    assert not out.exists()


def test_run_help_documents_the_search_order():
    proc = imsim("run", "--help")
    text = " ".join(proc.stdout.split())
    assert "relative to the working directory" in text
    assert "relative to the scenario file's folder" in text
    assert "the repository's calibration/" in text
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "relative to the scenario file's folder" in readme


# 2. `imsim data evidence FILTER` filters.

def test_data_evidence_filter():
    all_ids = [ln.split()[0] for ln in imsim("data", "evidence").stdout.splitlines()
               if ln and not ln.startswith(" ")]
    proc = imsim("data", "evidence", "SAFE_sleep")
    assert proc.returncode == 0, proc.stderr
    ids = [ln.split()[0] for ln in proc.stdout.splitlines() if ln and not ln.startswith(" ")]
    assert "unsafe_sleep_suid_or" in ids and "safe_sleep_unsafe_reduction" in ids
    assert "cessation_counselling_rr" not in ids
    assert 0 < len(ids) < len(all_ids)
    # Matched by strategy area (its id and description don't name it).
    areas = [ln.split()[0] for ln in imsim("data", "evidence", "social_determinants")
             .stdout.splitlines() if ln and not ln.startswith(" ")]
    assert "income_support_ptb_or" in areas
    err = one_line_error(imsim("data", "evidence", "xyzzy"))
    assert "xyzzy" in err and "safe_sleep" in err and "social_determinants" in err


# 3. Every subcommand's --help teaches: a description and an example.

@pytest.mark.parametrize("command", ["validate", "schema", "data", "run"])
def test_help_has_description_and_example(command):
    proc = imsim(command, "--help")
    assert proc.returncode == 0
    text = proc.stdout
    assert f"imsim {command} " in text.split("options:", 1)[1] or command == "run"
    body = text.split("\n\n", 2)[1]          # the paragraph after usage
    assert len(body.split()) >= 15, text


# 4. The WONDER import advice names a command-line flag, and the flag works.

@pytest.mark.skipif(not WONDER_BRIDGED.is_file(), reason="shared WONDER export not present")
def test_import_wonder_bridged_race_flag(tmp_path):
    err = one_line_error(imsim("data", "import-wonder", WONDER_BRIDGED, "--out",
                               tmp_path / "x.csv"))
    assert "--bridged-race-as-non-hispanic" in err
    assert not (tmp_path / "x.csv").exists()
    proc = imsim("data", "import-wonder", WONDER_BRIDGED, "--out", tmp_path / "y.csv",
                 "--bridged-race-as-non-hispanic")
    assert proc.returncode == 0, proc.stderr
    assert "mapped to non-Hispanic" in proc.stderr
    assert (tmp_path / "y.csv").is_file() and proc.stdout.startswith("wrote ")


# 5. reach is a multiplier of coverage from 0 to 1: README, schema and validation agree.

def test_reach_is_a_share_everywhere(tmp_path):
    bad = write(tmp_path / "bad.yaml", {**TINY, "strategies": {"safe_sleep": {
        "coverage": 0.5, "reach": {"nh_black": 1.2}}}})
    err = one_line_error(imsim("validate", bad))
    assert "strategies.safe_sleep.reach.nh_black" in err and "1.2" in err
    assert "multiplier of coverage from 0 to 1" in err
    ok = write(tmp_path / "ok.yaml", {**TINY, "strategies": {"safe_sleep": {
        "coverage": 0.5, "reach": {"nh_black": 1.0}}}})
    assert imsim("validate", ok).returncode == 0
    schema = json.loads(imsim("schema").stdout)
    reach = schema["$defs"]["SafeSleep"]["properties"]["reach"]
    obj = next(s for s in reach["anyOf"] if s.get("type") == "object")
    assert obj["additionalProperties"]["maximum"] == 1
    assert obj["additionalProperties"]["minimum"] == 0
    assert "0 to 1" in reach["description"]
    readme = (REPO / "README.md").read_text()
    assert "multiplier of coverage per race, 0 to 1" in readme
    assert "A reach above 1 is refused" in readme


# 6. A ramp year outside the horizon is a warning (not an error) in validate and run.

def test_ramp_outside_horizon_warns(tmp_path):
    sc = write(tmp_path / "ramp.yaml", {**TINY, "strategies": {"safe_sleep": {
        "coverage": {2020: 0.2, 2026: 0.5, 2035: 0.6}}}})
    proc = imsim("validate", sc)
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr
    assert "strategies.safe_sleep.coverage" in proc.stderr and "2020, 2035" in proc.stderr
    assert "2026-2026" in proc.stderr
    late = write(tmp_path / "late.yaml", {**TINY, "strategies": {"safe_sleep": {
        "coverage": {2028: 0.5}}}})
    proc = imsim("run", late, "--out", tmp_path / "out", "--no-figures", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "coverage is 0 in every year 2026-2026" in proc.stderr
    inside = write(tmp_path / "inside.yaml", {**TINY, "strategies": {"safe_sleep": {
        "coverage": {2026: 0.5}}}})
    proc = imsim("validate", inside)
    assert proc.returncode == 0 and "warning" not in proc.stderr


# 7. The full documented example's description matches what it runs.

def test_safe_sleep_south_description_matches_its_strategies():
    path = REPO / "scenarios" / "safe_sleep_south.yaml"
    data = yaml.safe_load(path.read_text())
    proc = imsim("validate", path)
    assert proc.returncode == 0, proc.stderr
    assert len(data["strategies"]) == 6
    assert "strategies: " + ", ".join(sorted(data["strategies"])) in proc.stdout
    assert "six strategy areas" in data["description"].lower()
    assert "full documented example (`safe_sleep_south.yaml`)" in " ".join(
        (REPO / "README.md").read_text().split())


# 8. `imsim calibrate` never overwrites an existing fit without --replace.

def test_calibrate_refuses_an_existing_fit(tmp_path):
    fit = copy_calibration(tmp_path / "fit")
    before = {p.name: p.read_bytes() for p in fit.iterdir() if p.is_file()}
    err = one_line_error(imsim("calibrate", "--out", fit, "--no-backtest"))
    assert "--replace" in err
    assert {p.name: p.read_bytes() for p in fit.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]
