"""One validation mechanism for every input file (imsim.core.validation).

The same mistake -- an unknown key with a near-miss spelling, a wrong type, a share outside
[0, 1], an infinite number -- gives the same shape of one-line message in a scenario, its
collaborative block, a sweep file and a plan: ``FILE: KEY.PATH: what is wrong; what is allowed``,
exit code 2 from the command line, no traceback, nothing written.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest
from pydantic import ValidationError

from imsim.core.errors import InputError
from imsim.core.validation import (
    MAX_FILE_BYTES,
    Fraction,
    Invalid,
    StrictModel,
    between,
    fraction,
    key_path,
    keyed_mapping,
    number,
    read_yaml,
    state_key,
    suggest,
    to_input_error,
    validate_model,
)

SCENARIO = """\
name: t
years: [2026, 2030]
states: [AL, GA]
strategies:
  safe_sleep: {coverage: 0.5}
"""
COLLABORATIVE = """\
name: t
years: [2026, 2030]
states: [AL, GA]
collaborative:
  start: 2026
  support_ends: 2028
  teams: {AL: [safe_sleep], GA: [safe_sleep]}
"""
SWEEP = """\
name: t
scenario: base.yaml
method: psa
samples: 8
outputs: [deaths_averted]
parameters:
  strategies.safe_sleep.coverage: {low: 0.2, high: 0.8}
"""
PLAN = """\
name: t
years: [2026, 2030]
states: [AL, GA]
strategies:
  safe_sleep: {coverage: 0.5}
  smoking_cessation: {coverage: 0.3}
"""

# kind -> (valid file, command, the four mistakes as (old line, new line, key path, message))
# The messages are regular expressions; every one must match the whole message after the path.
UNKNOWN = r"unknown key '{bad}' \(did you mean '{good}'\?\); allowed keys: .*\b{good}\b.*"
WRONG_TYPE = r"expected (a number|a whole number|a share from 0 to 1), got 'many'"
FRACTION = r"1\.5 is outside \[0, 1\]; allowed: .+"
INFINITE = r"expected a finite number, got inf"

CASES = {
    "scenario": (SCENARIO, "validate", [
        ("states: [AL, GA]", "states: [AL, GA]\nreplicats: 3", "replicats",
         UNKNOWN.format(bad="replicats", good="replicates")),
        ("states: [AL, GA]", "states: [AL, GA]\nreplicates: many", "replicates", WRONG_TYPE),
        ("{coverage: 0.5}", "{coverage: 1.5}", "strategies.safe_sleep.coverage", FRACTION),
        ("states: [AL, GA]", "states: [AL, GA]\nbirths_change_per_year: .inf",
         "births_change_per_year", INFINITE),
    ]),
    "collaborative": (COLLABORATIVE, "validate", [
        ("  start: 2026", "  start: 2026\n  peer_learnin: 0.3", "collaborative.peer_learnin",
         UNKNOWN.format(bad="peer_learnin", good="peer_learning")),
        ("  start: 2026", "  start: 2026\n  sessions_per_year: many",
         "collaborative.sessions_per_year", WRONG_TYPE),
        ("  start: 2026", "  start: 2026\n  ceiling: {safe_sleep: 1.5}",
         "collaborative.ceiling.safe_sleep", FRACTION),
        ("  start: 2026", "  start: 2026\n  peer_learning: .inf", "collaborative.peer_learning",
         INFINITE),
    ]),
    "sweep": (SWEEP, "sweep", [
        ("samples: 8", "sampels: 8", "sampels", UNKNOWN.format(bad="sampels", good="samples")),
        ("samples: 8", "samples: many", "samples", WRONG_TYPE),
        ("high: 0.8", "high: 1.5", "parameters.strategies.safe_sleep.coverage.high", FRACTION),
        ("high: 0.8", "high: .inf", "parameters.strategies.safe_sleep.coverage.high", INFINITE),
    ]),
    "plan": (PLAN, "recommend", [
        ("states: [AL, GA]", "states: [AL, GA]\nmax_strategys: 2", "max_strategys",
         UNKNOWN.format(bad="max_strategys", good="max_strategies")),
        ("states: [AL, GA]", "states: [AL, GA]\ndraws: many", "draws", WRONG_TYPE),
        ("{coverage: 0.5}", "{coverage: 1.5}", "strategies.safe_sleep.coverage", FRACTION),
        ("states: [AL, GA]", "states: [AL, GA]\ncosts: {safe_sleep: .inf, smoking_cessation: 1}",
         "costs.safe_sleep", INFINITE),
    ]),
}
MISTAKES = ["unknown key", "wrong type", "fraction out of range", "inf"]


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "imsim.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.mark.parametrize("kind", list(CASES))
def test_valid_files_pass(tmp_path, kind):
    """The unchanged files are valid, so each mistake below is the only problem."""
    text, command, _ = CASES[kind]
    (tmp_path / "base.yaml").write_text(SCENARIO)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    if command == "validate":
        proc = _cli("validate", str(path), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    elif kind == "sweep":
        from imsim.config.sweepfile import load_sweep

        assert load_sweep(path).param_ids == ["strategies.safe_sleep.coverage"]
    else:
        from imsim.config.plan import load_plan

        assert load_plan(path).candidates == ["safe_sleep", "smoking_cessation"]


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("mistake", range(4), ids=MISTAKES)
def test_same_mistake_same_message_in_every_file_kind(tmp_path, kind, mistake):
    text, command, mistakes = CASES[kind]
    old, new, where, message = mistakes[mistake]
    assert old in text
    (tmp_path / "base.yaml").write_text(SCENARIO)
    path = tmp_path / f"{kind}.yaml"
    path.write_text(text.replace(old, new, 1))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out"
    args = [command, str(path)] + ([] if command == "validate" else ["--out", str(out)])
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stdout == ""
    line = proc.stderr.rstrip("\n")
    shape = rf"imsim: error: {re.escape(str(path))}: {re.escape(where)}: {message}"
    assert re.fullmatch(shape, line), f"{line!r} does not match {shape!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == before     # nothing written


# -- the building blocks ---------------------------------------------------------------------

class _Block(StrictModel):
    share: Fraction = 0.5
    count: between(1, 10, integer=True) = 1


class _Outer(StrictModel):
    block: _Block
    items: list[_Block] = []


def _error(model, data, root=None) -> InputError:
    with pytest.raises(InputError) as exc:
        validate_model(model, data, "f.yaml", root=root)
    return exc.value


def test_unknown_key_names_the_full_path_and_suggests():
    err = _error(_Outer, {"block": {"shares": 0.1}})
    assert err.file == "f.yaml" and err.where == "block.shares"
    assert err.message.startswith("unknown key 'shares' (did you mean 'share'?)")
    err = _error(_Outer, {"block": {}, "items": [{}, {"cont": 2}]}, root="top")
    assert err.where == "top.items[1].cont"
    assert "did you mean 'count'" in err.message


@pytest.mark.parametrize("value,needle", [
    ("x", "expected a share from 0 to 1, got 'x'"), (True, "got True"), (1.5, "outside [0, 1]"),
    (-0.1, "-0.1 is outside [0, 1]"), (math.inf, "expected a finite number, got inf"),
    (math.nan, "expected a finite number, got nan"),
])
def test_fraction_refuses_non_shares(value, needle):
    err = _error(_Outer, {"block": {"share": value}})
    assert err.where == "block.share"
    assert needle in err.message


@pytest.mark.parametrize("value,needle", [
    (0, "0 is out of range; allowed: 1 to 10"), (2.0, "expected a whole number, got 2.0"),
    ("3", "expected a whole number, got '3' (quoted, so text: write numbers without quotes)"),
    (math.inf, "expected a finite number, got inf"),
])
def test_between_is_strict_and_names_the_range(value, needle):
    err = _error(_Outer, {"block": {"count": value}})
    assert err.where == "block.count" and err.message == needle


def test_not_a_mapping_and_missing_key():
    assert _error(_Outer, {"block": [1]}).message == "expected a mapping (key: value), got list [1]"
    err = _error(_Outer, {})
    assert (err.where, err.message) == ("block", "required key is missing")


def test_number_bounds_and_messages():
    assert number(3, 0, 5) == 3.0 and number(4, 0, 5, integer=True) == 4
    with pytest.raises(Invalid, match=r"allowed: \(0, 1\)"):
        number(1.0, 0, 1, open_low=True, open_high=True)
    with pytest.raises(Invalid, match="allowed: a number > 0"):
        number(0, 0, open_low=True)
    with pytest.raises(Invalid, match="allowed: a number <= 2"):
        number(3, high=2)
    with pytest.raises(Invalid, match="expected a number, got None"):
        number(None)


def test_keyed_mapping_reports_below_the_key():
    with pytest.raises(Invalid) as exc:
        keyed_mapping({"AL": 0.2, "GA": 2}, ("AL", "GA"), "x", "{AL: 0.5}", "state",
                      check=fraction)
    assert exc.value.at == ("GA",) and "2 is outside [0, 1]" in exc.value.message
    with pytest.raises(Invalid) as exc:
        keyed_mapping({"AL": 0.2, "GAA": 0.1}, ("AL", "GA"), "x", "{AL: 0.5}", "state")
    assert exc.value.at == ("GAA",)
    assert "did you mean 'GA'" in exc.value.message and "USPS" in exc.value.message
    with pytest.raises(Invalid, match=r"x must be a mapping like \{AL: 0.5\}, got \[1\]"):
        keyed_mapping([1], ("AL",), "x", "{AL: 0.5}", "state")


def test_state_key_and_suggestions():
    assert state_key("DC") == "DC"
    with pytest.raises(Invalid, match="did you mean 'AL'"):
        state_key("Al")
    assert state_key("default", extra=("default",)) == "default"
    assert suggest("Sobol", ("sobol", "morris")) == " (did you mean 'sobol'?)"
    assert suggest("zzz", ("sobol", "morris")) == ""


def test_key_path_skips_pydantic_bookkeeping():
    assert key_path("a", "function-before[_x(), dict[str,float]]", "b", 2, "c") == "a.b[2].c"
    assert key_path("by_state", "AL", "[key]") == "by_state.AL"
    assert key_path() == ""


def test_to_input_error_prefers_our_message():
    class M(StrictModel):
        x: Fraction

    with pytest.raises(ValidationError) as exc:
        M.model_validate({"x": 2})
    err = to_input_error(exc.value, "f.yaml", root="r")
    assert str(err) == "f.yaml: r.x: 2 is outside [0, 1]; allowed: a share from 0 to 1"


# -- the safe YAML reader -----------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    ("", "the plan file is empty"),
    ("# only a comment\n", "the plan file is empty"),
    ("- a\n- b\n", "must be a mapping of keys (key: value), got a list"),
    ("a: [1\n", "invalid YAML"),
    ("a: &x 1\nb: *x\n", "aliases (*name) are not allowed"),
    ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'"),
    ("a:\n  b: 1\n  b: 2\n", "duplicate key 'b'"),
])
def test_read_yaml_refuses_bad_files(tmp_path, text, needle):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        read_yaml(p, what="plan")
    assert needle in str(exc.value) and str(p) in str(exc.value)


def test_read_yaml_file_problems(tmp_path):
    with pytest.raises(InputError, match="sweep file not found"):
        read_yaml(tmp_path / "nope.yaml", what="sweep")
    with pytest.raises(InputError, match="expected a sweep file, got a directory"):
        read_yaml(tmp_path, what="sweep")
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" + "#" * MAX_FILE_BYTES)
    with pytest.raises(InputError, match="limited to"):
        read_yaml(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        read_yaml(latin)
    good = tmp_path / "good.yaml"
    good.write_text("a: 1\nb: {c: [1, 2]}\n")
    assert read_yaml(good) == {"a": 1, "b": {"c": [1, 2]}}


# -- every option list is defined once ----------------------------------------------------------

def test_option_lists_come_from_constants():
    from imsim.config import scenario, sweepfile
    from imsim.core import constants

    schema = scenario.json_schema()["$defs"]
    assert tuple(schema["SmokingCessation"]["properties"]["program"]["enum"]) == \
        constants.SMOKING_PROGRAMS
    assert tuple(schema["SocialDeterminants"]["properties"]["policy"]["enum"]) == \
        constants.SD_POLICIES
    assert tuple(schema["PretermPrevention"]["properties"]["ohpc_effect"]["enum"]) == \
        constants.OHPC_EFFECTS
    assert tuple(scenario.json_schema()["properties"]["engine"]["enum"]) == constants.ENGINES
    assert sweepfile.METHODS is constants.METHODS and sweepfile.DISTS is constants.DISTS
    assert set(constants.DISTS.values()) == set(constants.SWEEP_DISTRIBUTIONS)
    assert set(constants.SWEEP_DISTRIBUTIONS) <= set(constants.DISTRIBUTIONS)
