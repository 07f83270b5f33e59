"""Scenario language: every planner mistake gives one clear message, exit code 2, no output."""
from __future__ import annotations

import subprocess
import sys

import pytest

from imsim.core.errors import InputError
from imsim.config.scenario import json_schema, load_scenario

GOOD = """\
name: t
years: [2026, 2030]
states: [AL, GA]
strategies:
  safe_sleep:
    coverage: {2026: 0.2, 2028: 0.5, 2030: 0.6}
    reach: {nh_black: 0.8}
  smoking_cessation: {coverage: 0.3, program: counselling}
exposures:
  smoking: {scale: 0.5}
effects:
  unsafe_sleep_suid_or: 2.6
"""

BAD = [
    # (scenario text, substrings the one-line message must contain)
    ("name: t\nyears: [2026, 2030]\nstates: [AL]\nstrategis: {}\n",
     ["strategis", "did you mean 'strategies'"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {covrage: 0.2}\n",
     ["strategies.safe_sleep.covrage", "did you mean 'coverage'"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: 0.2, reach: {nh_blak: 0.5}}\n",
     ["strategies.safe_sleep.reach", "nh_blak", "did you mean 'nh_black'"]),
    ("name: t\nyears: [2026, 2030]\nstates: [AL, XX]\n", ["states", "XX", "USPS"]),
    ("name: t\nyears: [2026, 2030]\nstates: [AL, GAA]\n", ["GAA", "did you mean 'GA'"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_slep: {coverage: 0.2}\n",
     ["strategies.safe_slep", "did you mean 'safe_sleep'"]),
    ("name: t\nyears: [2026, 2030]\nexposures:\n  smokng: {scale: 0.5}\n",
     ["exposures.smokng", "did you mean 'smoking'"]),
    ("name: t\nyears: [2026, 2030]\neffects:\n  unsafe_sleep_suid: 2.0\n",
     ["effects.unsafe_sleep_suid", "did you mean 'unsafe_sleep_suid_or'"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: 1.5}\n",
     ["strategies.safe_sleep.coverage", "1.5", "outside [0, 1]"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: -0.1}\n",
     ["strategies.safe_sleep.coverage", "-0.1"]),
    ("name: t\nyears: [2026, 2030]\nexposures:\n  smoking: {set: 1.2}\n",
     ["exposures.smoking", "1.2", "[0, 1]"]),
    ("name: t\nyears: [2026, 2030]\nexposures:\n  smoking: {scale: -1}\n",
     ["exposures.smoking.scale", "-1", "allowed: a number >= 0"]),
    ("name: t\nyears: [2030, 2026]\n", ["years", "reversed"]),
    ("name: t\nyears: [2010, 2026]\n", ["years", "2010", "out of range"]),
    ("name: t\nyears: [2026, 2099]\n", ["years", "2099", "out of range"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: {2028: 0.5, 2026: 0.2}}\n",
     ["strategies.safe_sleep.coverage", "increasing", "2028"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: {1999: 0.5}}\n",
     ["strategies.safe_sleep.coverage", "1999"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  safe_sleep: {coverage: high}\n",
     ["strategies.safe_sleep.coverage", "'high'"]),
    ("name: t\nyears: [2026, 2030]\nreplicates: many\n", ["replicates", "many"]),
    ("name: t\nyears: [2026, 2030]\nseed: -3\n", ["seed", "-3"]),
    ("name: t\nyears: [2026, 2030]\nengine: turbo\n", ["engine", "turbo", "expected"]),
    ("name: t\nyears: [2026, 2030]\nstrategies:\n  smoking_cessation: {coverage: 0.2, program: hypnosis}\n",
     ["strategies.smoking_cessation.program", "hypnosis", "counselling"]),
    ("name: t\nyears: [2026, 2030]\nstrategies: [safe_sleep]\n",
     ["strategies", "expected a mapping", "list"]),
    ("name: t\nyears: [2026, 2030]\nstates: [AL]\nby_state:\n  GA: {strategies: {safe_sleep: {coverage: 0.2}}}\n",
     ["by_state", "GA is not in states"]),
    ("name: t\nyears: [2026, 2030]\nby_state:\n  AL: {strategies: {safe_sleep: {coverage: 0.2, extra: 1}}}\n",
     ["by_state.AL.strategies.safe_sleep.extra", "unknown key"]),
    ("years: [2026, 2030]\n", ["name", "required"]),
    ("name: t\nyears: [2026, 2030\n", ["invalid YAML", "line"]),
    ("", ["empty"]),
    ("   \n# only a comment\n", ["empty"]),
    ("- name: t\n- years: [2026, 2030]\n", ["mapping", "list"]),
    ("a: &a [1, 2]\nb: [*a, *a]\n", ["aliases", "not allowed"]),
    ("name: t\nyears: [2026, 2030]\ncollaborative:\n  start: 2026\n  support_ends: 2029\n  teams: {AL: [safe_sleep, smoking_cessation, preconception_care, social_determinants]}\n",
     ["collaborative.teams.AL"]),
]


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_scenario_loads(tmp_path):
    sc = load_scenario(_write(tmp_path, GOOD))
    assert sc.years == (2026, 2030)
    assert sc.state_list == ["AL", "GA"]
    assert sc.strategies.safe_sleep.coverage == {2026: 0.2, 2028: 0.5, 2030: 0.6}
    assert sc.portfolio("GA").smoking_cessation.program == "counselling"


@pytest.mark.parametrize("text,needles", BAD)
def test_bad_scenario_message(tmp_path, text, needles):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_huge_file_refused(tmp_path):
    path = _write(tmp_path, "name: t\nyears: [2026, 2030]\n" + "# x\n" * 400_000)
    with pytest.raises(InputError, match="limited to"):
        load_scenario(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text,needles", [BAD[0], BAD[8], BAD[12], BAD[27], BAD[30]])
def test_cli_exit_2_no_traceback_nothing_written(tmp_path, text, needles):
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "imsim.cli", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_validate_ok(tmp_path):
    path = _write(tmp_path, GOOD)
    proc = subprocess.run([sys.executable, "-m", "imsim.cli", "validate", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_schema_is_json_schema():
    schema = json_schema()
    assert schema["type"] == "object"
    for key in ("name", "years", "states", "strategies", "exposures", "effects", "by_state"):
        assert key in schema["properties"]
    assert set(schema["required"]) >= {"name", "years"}


def test_ramp_interpolation():
    from imsim.analysis.runner import ramp_value

    ramp = {2026: 0.2, 2028: 0.5, 2030: 0.6}
    assert ramp_value(ramp, 2025) == 0.0
    assert ramp_value(ramp, 2026) == 0.2
    assert ramp_value(ramp, 2027) == pytest.approx(0.35)
    assert ramp_value(ramp, 2031) == 0.6
    assert ramp_value(0.4, 2040) == 0.4
