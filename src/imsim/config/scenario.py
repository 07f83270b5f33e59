"""The scenario language: what a planner writes, validated strictly at every depth.

A scenario is a YAML mapping (see README "Scenario files" and ``imsim schema``)::

    name: safe-sleep-south
    years: [2026, 2030]
    states: [AL, GA, MS]          # or: all
    seed: 7
    engine: expected              # or microsim
    replicates: 200
    strategies:
      safe_sleep: {coverage: {2026: 0.2, 2028: 0.5, 2030: 0.6}, reach: {nh_black: 0.8}}
      smoking_cessation: {coverage: 0.3, program: counselling}
    by_state:                     # a different portfolio for some states
      GA: {strategies: {preconception_care: {coverage: 0.4}}}
    exposures: {smoking: {scale: 0.5}}
    effects: {unsafe_sleep_suid_or: 2.6}

Every mistake becomes one :class:`imsim.core.errors.InputError` naming the file, the key path, the bad
value and what is allowed. YAML is read with a loader that refuses aliases (no "billion laughs")
and files larger than :data:`MAX_FILE_BYTES`.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from imsim.core.constants import EXPOSURES, FIRST_YEAR, MAX_YEARS_AHEAD, RACES, STATES, STRATEGIES
from imsim.core.errors import InputError, did_you_mean

MAX_FILE_BYTES = 1_000_000
SMOKING_PROGRAMS = ("counselling", "incentives", "feedback", "education")
PRETERM_COMPONENTS = ("hard_stop", "vaginal_progesterone", "ohpc")
OHPC_EFFECTS = ("none", "meis")
SD_POLICIES = ("medicaid_expansion", "income_support")


def max_year() -> int:
    """The last year a scenario may reach: this calendar year + 30."""
    return _dt.date.today().year + MAX_YEARS_AHEAD


# ---------------------------------------------------------------------------------------------
# Safe YAML
# ---------------------------------------------------------------------------------------------

class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors/aliases (they enable exponential 'alias bombs')."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, "YAML aliases (*name) are not allowed in scenario files",
                event.start_mark)
        return super().compose_node(parent, index)


def read_yaml(path: str | Path, what: str = "scenario") -> Any:
    """Read a YAML file safely; raise InputError for anything wrong with the file itself."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file not found", file=str(p))
    if p.is_dir():
        raise InputError(f"expected a {what} file, got a directory", file=str(p))
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise InputError(f"file is {size:,} bytes; {what} files are limited to "
                         f"{MAX_FILE_BYTES:,} bytes", file=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(p)) from None
    if not text.strip():
        raise InputError(f"the {what} file is empty", file=str(p))
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML: {problem}", file=str(p), where=where) from None
    if data is None:
        raise InputError(f"the {what} file is empty", file=str(p))
    if not isinstance(data, dict):
        raise InputError(f"a {what} must be a mapping of keys (name: ..., years: ...), "
                         f"got a {type(data).__name__}", file=str(p))
    return data


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

class _Strict(BaseModel):
    """Base: unknown keys refused with a 'did you mean', non-mappings refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data):
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise PydanticCustomError(
                "not_mapping", "expected a mapping (key: value), got {kind} {value}",
                {"kind": type(data).__name__, "value": _short(data)})
        allowed = list(cls.model_fields)
        for key in data:
            if key not in allowed:
                raise PydanticCustomError(
                    "unknown_key", "unknown key '{key}'{hint}; allowed keys: {allowed}",
                    {"key": key, "hint": did_you_mean(str(key), allowed),
                     "allowed": ", ".join(allowed), "bad_key": key})
        return data


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fraction(value: Any, what: str = "a share") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("not_number", "expected {what} between 0 and 1, got {value}",
                                  {"what": what, "value": _short(value)})
    if not 0.0 <= float(value) <= 1.0:
        raise PydanticCustomError("out_of_range", "{value} is outside [0, 1]; {what} is a "
                                  "fraction of the eligible population",
                                  {"value": value, "what": what})
    return float(value)


class _StrategyBase(_Strict):
    coverage: float | dict[int, float] | None = Field(
        default=None,
        description="Share of the eligible population reached: one number, or a ramp "
                    "{year: share} (linear between points, 0 before the first, held after the "
                    "last). Omit when a collaborative block produces coverage.")
    reach: dict[str, float] | None = Field(
        default=None, description="Optional multiplier of coverage per race id (0..1).")

    @field_validator("coverage", mode="before")
    @classmethod
    def _coverage(cls, v):
        if v is None:
            return v
        if isinstance(v, dict):
            if not v:
                raise PydanticCustomError("empty_ramp", "a coverage ramp needs at least one "
                                          "{year: share} point", {})
            years = []
            out = {}
            for y, share in v.items():
                if isinstance(y, bool) or not isinstance(y, int):
                    raise PydanticCustomError("ramp_year", "ramp year {year} is not a whole year",
                                              {"year": _short(y)})
                if not FIRST_YEAR <= y <= max_year():
                    raise PydanticCustomError(
                        "ramp_year", "ramp year {year} is outside {lo}-{hi}",
                        {"year": y, "lo": FIRST_YEAR, "hi": max_year()})
                years.append(y)
                out[y] = _fraction(share, f"coverage in {y}")
            if years != sorted(years) or len(set(years)) != len(years):
                raise PydanticCustomError("ramp_order", "ramp years must be increasing, got "
                                          "{years}", {"years": years})
            return out
        return _fraction(v, "coverage")

    @field_validator("reach", mode="before")
    @classmethod
    def _reach(cls, v):
        if v is None:
            return v
        keyed_mapping(v, RACES, "reach", "{nh_black: 0.8}", "race id")
        out = {}
        for race, share in v.items():
            out[race] = _fraction(share, f"reach for {race}")
        return out


class SafeSleep(_StrategyBase):
    """Safe-sleep education/messaging: lowers unsafe-sleep prevalence among families reached."""


class SmokingCessation(_StrategyBase):
    """Cessation programme for pregnant smokers: turns some smokers into early quitters."""

    program: Literal["counselling", "incentives", "feedback", "education"] = "counselling"


class PretermPrevention(_StrategyBase):
    """Hard-stop policies and progesterone for eligible births."""

    components: list[Literal["hard_stop", "vaginal_progesterone", "ohpc"]] = Field(
        default_factory=lambda: ["hard_stop", "vaginal_progesterone"])
    ohpc_effect: Literal["none", "meis"] = Field(
        default="none", description="17-OHPC: no effect (base case, after PROLONG and the 2023 "
                                    "FDA withdrawal) or the Meis trial effect (sensitivity).")


class PreconceptionCare(_StrategyBase):
    """Postpartum contraception access (immediate LARC): fewer short interpregnancy intervals."""


class RiskAppropriateCare(_StrategyBase):
    """Perinatal regionalisation: more births under 32 weeks at level III+ hospitals."""


class SocialDeterminants(_StrategyBase):
    """Policies for low-income births; effects have ranges that include no effect."""

    policy: Literal["medicaid_expansion", "income_support"] = "medicaid_expansion"


STRATEGY_MODELS: dict[str, type[_StrategyBase]] = {
    "safe_sleep": SafeSleep,
    "smoking_cessation": SmokingCessation,
    "preterm_prevention": PretermPrevention,
    "preconception_care": PreconceptionCare,
    "risk_appropriate_care": RiskAppropriateCare,
    "social_determinants": SocialDeterminants,
}


class Strategies(_Strict):
    """The portfolio: any of the six strategy areas."""

    safe_sleep: SafeSleep | None = None
    smoking_cessation: SmokingCessation | None = None
    preterm_prevention: PretermPrevention | None = None
    preconception_care: PreconceptionCare | None = None
    risk_appropriate_care: RiskAppropriateCare | None = None
    social_determinants: SocialDeterminants | None = None

    def active(self) -> dict[str, _StrategyBase]:
        return {k: getattr(self, k) for k in STRATEGIES if getattr(self, k) is not None}


class ExposureChange(_Strict):
    """Counterfactual prevalence: ``{scale: x}`` (x >= 0) or ``{set: p}`` (0..1)."""

    scale: float | None = None
    set: float | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.scale is None) == (self.set is None):
            raise PydanticCustomError("exposure_change", "give exactly one of scale (>= 0) or "
                                      "set (0..1)", {})
        if self.scale is not None and not self.scale >= 0:
            raise PydanticCustomError("negative_scale", "scale must be >= 0, got {value}",
                                      {"value": self.scale})
        if self.set is not None and not 0.0 <= self.set <= 1.0:
            raise PydanticCustomError("out_of_range", "set must be a prevalence in [0, 1], got "
                                      "{value}", {"value": self.set})
        return self


class StateBlock(_Strict):
    """Per-state settings; ``strategies`` replaces the top-level portfolio for that state."""

    strategies: Strategies | None = None
    exposures: dict[str, ExposureChange] | None = None

    @field_validator("exposures", mode="before")
    @classmethod
    def _exp_keys(cls, v):
        return _check_exposure_keys(v)


def keyed_mapping(v, allowed, what: str, example: str, kind: str):
    """Check that ``v`` is None or a mapping whose keys are all in ``allowed``.

    Raises a pydantic error naming the bad key (added to the key path) with a "did you mean";
    ``what`` names the mapping, ``example`` shows its shape, ``kind`` its keys (e.g. "state").
    """
    if v is None:
        return v
    if not isinstance(v, dict):
        raise PydanticCustomError("not_mapping", "{what} must be a mapping like {example}, got "
                                  "{value}", {"what": what, "example": example,
                                              "value": _short(v)})
    allowed = tuple(allowed)
    upper = kind == "state"
    for k in v:
        if k not in allowed:
            listed = ("the 50 state USPS codes and DC" if upper else ", ".join(allowed))
            raise PydanticCustomError(
                f"unknown_{kind.replace(' ', '_')}", "unknown {kind} '{key}'{hint}; allowed: "
                "{allowed}", {"kind": kind, "key": k, "allowed": listed, "bad_key": k,
                              "hint": did_you_mean(str(k).upper() if upper else str(k), allowed)})
    return v


def _check_exposure_keys(v):
    return keyed_mapping(v, EXPOSURES, "exposures", "{smoking: {scale: 0.5}}", "exposure id")


class Scenario(_Strict):
    """A validated scenario (see module docstring)."""

    name: str = Field(description="Short name; used for the results folder.")
    description: str = ""
    years: tuple[int, int] = Field(description="Horizon [first, last], inclusive.")
    states: Literal["all"] | list[str] = Field(default="all", description="USPS codes or 'all'.")
    seed: int = Field(default=0, ge=0, lt=2**63)
    engine: Literal["expected", "microsim"] = "expected"
    replicates: int = Field(default=1, ge=1, le=10_000,
                            description="Uncertainty draws (1 = point estimate only).")
    strategies: Strategies | None = None
    by_state: dict[str, StateBlock] | None = None
    exposures: dict[str, ExposureChange] | None = None
    effects: dict[str, float] | None = None
    births_change_per_year: float = Field(
        default=0.0, ge=-0.2, le=0.2,
        description="Relative change in births per year after 2017 (0 = held constant).")
    collaborative: dict[str, Any] | None = Field(
        default=None, description="A learning-collaborative block (see docs/collaborative.md).")
    calibration: str | None = Field(
        default=None, description="Calibration to use: 'default' (the packaged fit), a name "
                                  "under calibration/, a folder, or 'direct'.")

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", v):
            raise PydanticCustomError("bad_name", "name must be 1-80 letters, digits, '-', '_' "
                                      "or '.', starting with a letter or digit; got {value}",
                                      {"value": _short(v)})
        return v

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v, v]
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise PydanticCustomError("years", "years must be [first, last], e.g. [2026, 2030]; "
                                      "got {value}", {"value": _short(v)})
        for y in v:
            if isinstance(y, bool) or not isinstance(y, int):
                raise PydanticCustomError("years", "years must be whole years, got {value}",
                                          {"value": _short(y)})
            if not FIRST_YEAR <= y <= max_year():
                raise PydanticCustomError(
                    "years", "year {year} is out of range: allowed {lo}-{hi} (data start in "
                    "{lo}; projections reach at most {n} years ahead)",
                    {"year": y, "lo": FIRST_YEAR, "hi": max_year(), "n": MAX_YEARS_AHEAD})
        if v[0] > v[1]:
            raise PydanticCustomError("years", "years are reversed: {a} is after {b}",
                                      {"a": v[0], "b": v[1]})
        return tuple(v)

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, v):
        if isinstance(v, str):
            if v.lower() == "all":
                return "all"
            v = [v]
        if not isinstance(v, list) or not v:
            raise PydanticCustomError("states", "states must be 'all' or a list of USPS codes, "
                                      "e.g. [AL, GA]; got {value}", {"value": _short(v)})
        out = []
        for i, s in enumerate(v):
            code = str(s).upper() if isinstance(s, str) else s
            if code not in STATES:
                raise PydanticCustomError(
                    "unknown_state", "unknown state '{value}' (item {i}){hint}; allowed: the 50 "
                    "state USPS codes and DC, or 'all'",
                    {"value": s, "i": i, "hint": did_you_mean(str(s).upper(), STATES)})
            if code in out:
                raise PydanticCustomError("duplicate_state", "state {value} is listed twice",
                                          {"value": code})
            out.append(code)
        return out

    @field_validator("by_state", mode="before")
    @classmethod
    def _by_state(cls, v):
        if v is None:
            return v
        keyed_mapping(v, STATES, "by_state", "{GA: {strategies: ...}}", "state")
        return v

    @field_validator("exposures", mode="before")
    @classmethod
    def _exposures(cls, v):
        return _check_exposure_keys(v)

    @field_validator("effects", mode="before")
    @classmethod
    def _effects(cls, v):
        if v is None:
            return v
        if not isinstance(v, dict):
            raise PydanticCustomError("not_mapping", "effects must map effect ids to numbers, "
                                      "got {value}", {"value": _short(v)})
        from imsim.inputs.evidence import EvidenceLibrary

        lib = EvidenceLibrary.load()
        for k, val in v.items():
            if k not in lib.effects:
                raise PydanticCustomError(
                    "unknown_effect", "unknown effect id '{key}'{hint}; `imsim data evidence` "
                    "lists them", {"key": k, "hint": did_you_mean(str(k), lib.effects),
                                   "bad_key": k})
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise PydanticCustomError("not_number", "effect {key} must be a number, got "
                                          "{value}", {"key": k, "value": _short(val)})
            eff = lib.effects[k]
            if eff.scale == "ratio" and not val > 0:
                raise PydanticCustomError("out_of_range", "effect {key} is a ratio and must be "
                                          "> 0, got {value}", {"key": k, "value": val})
            if eff.scale == "probability" and not 0 <= val <= 1:
                raise PydanticCustomError("out_of_range", "effect {key} is a probability and "
                                          "must be in [0, 1], got {value}",
                                          {"key": k, "value": val})
        return v

    @model_validator(mode="after")
    def _cross(self):
        if self.by_state and self.states != "all":
            for s in self.by_state:
                if s not in self.states:
                    raise PydanticCustomError(
                        "by_state", "by_state.{s}: {s} is not in states {states}",
                        {"s": s, "states": list(self.states)})
        return self

    # -- derived -----------------------------------------------------------------------------
    @property
    def state_list(self) -> list[str]:
        return list(STATES) if self.states == "all" else list(self.states)

    @property
    def year_list(self) -> list[int]:
        return list(range(self.years[0], self.years[1] + 1))

    def portfolio(self, state: str) -> Strategies:
        """The strategies that apply in ``state``."""
        if self.by_state and state in self.by_state and self.by_state[state].strategies is not None:
            return self.by_state[state].strategies
        return self.strategies or Strategies()

    def exposure_changes(self, state: str) -> dict[str, ExposureChange]:
        out = dict(self.exposures or {})
        if self.by_state and state in self.by_state and self.by_state[state].exposures:
            out.update(self.by_state[state].exposures)
        return out

    def resolved(self, **overrides) -> dict:
        """A plain mapping of the scenario with every default filled in.

        ``overrides`` (e.g. the engine, seed and replicates a run actually used) replace the
        file's values, so the resolved file reproduces the run. Ramp years stay integers.
        """
        data = _plain(self.model_dump(mode="python", exclude_none=True))
        data.update({k: v for k, v in overrides.items() if v is not None})
        return data


def _plain(value):
    """Tuples to lists, recursively (for YAML), keeping integer keys of ramps."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Loading and errors
# ---------------------------------------------------------------------------------------------

def _loc_path(loc: tuple, ctx: dict | None) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]") if parts else parts.append(str(item))
        elif item in STRATEGY_MODELS and parts and parts[-1].endswith("strategies"):
            parts.append(f".{item}")
        elif str(item).startswith(("function-", "tagged-union", "union[")) \
                or item in ("float", "dict[int,float]", "int", "list[str]", "str", "tuple",
                            "literal['all']", "list", "dict"):
            continue
        else:
            parts.append(f".{item}" if parts else str(item))
    path = "".join(parts)
    if ctx and "bad_key" in ctx:
        path = f"{path}.{ctx['bad_key']}" if path else str(ctx["bad_key"])
    return path or "(top level)"


def _to_input_error(err: ValidationError, file: str | None) -> InputError:
    errors = err.errors(include_url=False)
    # Prefer our own messages over pydantic's union bookkeeping.
    custom = [e for e in errors if e["type"] not in ("float_type", "dict_type", "int_type",
                                                       "literal_error", "string_type",
                                                       "model_type", "list_type")]
    e = (custom or errors)[0]
    path = _loc_path(tuple(e["loc"]), e.get("ctx"))
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if e["type"] == "missing":
        msg = "required key is missing"
    elif e["type"] == "literal_error":
        msg = f"{_short(e.get('input'))} is not allowed; expected {e['ctx']['expected']}"
    elif e["type"] in ("int_type", "int_parsing", "int_from_float"):
        msg = f"expected a whole number, got {_short(e.get('input'))}"
    elif e["type"] in ("greater_than_equal", "less_than_equal", "less_than", "greater_than"):
        msg = f"{_short(e.get('input'))} is out of range ({e['msg'].lower()})"
    elif e["type"] in ("string_type",):
        msg = f"expected text, got {_short(e.get('input'))}"
    return InputError(msg, file=file, where=path)


def parse_scenario(data: Any, file: str | None = None) -> Scenario:
    """Validate a mapping as a scenario; raise InputError naming the key path."""
    if not isinstance(data, dict):
        raise InputError("a scenario must be a mapping of keys", file=file)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise _to_input_error(err, file) from None
    if scenario.collaborative is not None:
        from imsim.collaborative.config import parse_collaborative

        parse_collaborative(scenario.collaborative, file=file)
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    data = read_yaml(path)
    scenario = parse_scenario(data, file=str(path))
    object.__setattr__(scenario, "_source", str(path))
    return scenario


def json_schema() -> dict:
    """The JSON Schema of scenario files (for editors)."""
    schema = Scenario.model_json_schema()
    schema["title"] = "imsim scenario"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
