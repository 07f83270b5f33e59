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
value and what is allowed; the checks (strict keys and types, shares, states, the safe YAML reader)
are those of :mod:`imsim.core.validation`, shared with plans, sweeps and collaborative blocks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from imsim.core.constants import (
    ENGINES,
    EXPOSURES,
    OHPC_EFFECTS,
    PRETERM_COMPONENTS,
    PRETERM_DEFAULT_COMPONENTS,
    RACES,
    SD_POLICIES,
    SMOKING_PROGRAMS,
    STATES,
    STRATEGIES,
)
from imsim.core.errors import InputError
from imsim.core.validation import (
    MAX_FILE_BYTES,
    STATE_CHOICES,
    Fraction,
    Invalid,
    Name,
    NonNegativeNumber,
    StrictModel,
    between,
    fraction,
    keyed_mapping,
    max_year,
    number,
    read_yaml,
    short,
    suggest,
    validate_model,
    year,
)

__all__ = [
    "MAX_FILE_BYTES", "STRATEGY_MODELS", "ExposureChange", "PreconceptionCare",
    "PretermPrevention", "RiskAppropriateCare", "SafeSleep", "Scenario", "SmokingCessation",
    "SocialDeterminants", "StateBlock", "Strategies", "json_schema", "load_scenario", "max_year",
    "parse_scenario", "read_yaml",
]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def _ramp(value: Any) -> float | dict[int, float]:
    """A coverage: one share, or a ramp ``{year: share}`` with increasing years."""
    if not isinstance(value, dict):
        return fraction(value)
    if not value:
        raise Invalid("a coverage ramp needs at least one {year: share} point, got {}")
    out: dict[int, float] = {}
    for y, share in value.items():
        try:
            year(y)
            out[y] = fraction(share)
        except Invalid as exc:
            raise exc.under(str(y)) from None
    years = list(out)
    if years != sorted(years):
        raise Invalid(f"ramp years must be increasing, got {years}")
    return out


class _StrategyBase(StrictModel):
    coverage: float | dict[int, float] | None = Field(
        default=None,
        description="Share of the eligible population reached: one number, or a ramp "
                    "{year: share} (linear between points, 0 before the first, held after the "
                    "last). Omit when a collaborative block produces coverage.")
    reach: dict[str, float] | None = Field(
        default=None,
        description="Optional multiplier of coverage per race id, a share from 0 to 1: the "
                    "race's coverage is coverage x reach (races not listed: 1). To reach one "
                    "race more than others, raise coverage and lower the others' reach.",
        json_schema_extra=lambda schema: [
            sub.update(additionalProperties={"type": "number", "minimum": 0, "maximum": 1})
            for sub in schema.get("anyOf", []) if sub.get("type") == "object"])

    @field_validator("coverage", mode="before")
    @classmethod
    def _coverage(cls, v):
        return None if v is None else _ramp(v)

    @field_validator("reach", mode="before")
    @classmethod
    def _reach(cls, v):
        return keyed_mapping(v, RACES, "reach", "{nh_black: 0.8}", "race id", check=_reach_share)


def _reach_share(value: Any) -> float:
    """A reach: a multiplier of coverage from 0 to 1 (coverage x reach must stay a share)."""
    try:
        return fraction(value)
    except Invalid as exc:
        raise Invalid(f"{exc.message.split(';')[0]}; allowed: reach is a multiplier of coverage "
                      "from 0 to 1 (coverage x reach is the race's share reached); to reach "
                      "this race more, raise coverage and lower the other races' reach") from None


class SafeSleep(_StrategyBase):
    """Safe-sleep education/messaging: lowers unsafe-sleep prevalence among families reached."""


class SmokingCessation(_StrategyBase):
    """Cessation programme for pregnant smokers: turns some smokers into early quitters."""

    program: Literal[SMOKING_PROGRAMS] = SMOKING_PROGRAMS[0]


class PretermPrevention(_StrategyBase):
    """Hard-stop policies and progesterone for eligible births."""

    components: list[Literal[PRETERM_COMPONENTS]] = Field(
        default_factory=lambda: list(PRETERM_DEFAULT_COMPONENTS), min_length=1)

    @field_validator("components", mode="before")
    @classmethod
    def _components(cls, v):
        if isinstance(v, list) and not v:
            raise Invalid("components is empty, so the strategy would do nothing; allowed: one "
                          f"or more of {', '.join(PRETERM_COMPONENTS)} (or leave the key out "
                          f"for {', '.join(PRETERM_DEFAULT_COMPONENTS)})")
        if isinstance(v, list):
            for i, c in enumerate(v):
                if c in v[:i]:
                    raise Invalid(f"component {short(c)} is listed twice", at=(i,))
        return v
    ohpc_effect: Literal[OHPC_EFFECTS] = Field(
        default=OHPC_EFFECTS[0], description="17-OHPC: no effect (base case, after PROLONG and "
                                             "the 2023 FDA withdrawal) or the Meis trial effect "
                                             "(sensitivity).")


class PreconceptionCare(_StrategyBase):
    """Postpartum contraception access (immediate LARC): fewer short interpregnancy intervals."""


class RiskAppropriateCare(_StrategyBase):
    """Perinatal regionalisation: more births under 32 weeks at level III+ hospitals."""


class SocialDeterminants(_StrategyBase):
    """Policies for low-income births; effects have ranges that include no effect."""

    policy: Literal[SD_POLICIES] = SD_POLICIES[0]


STRATEGY_MODELS: dict[str, type[_StrategyBase]] = {
    "safe_sleep": SafeSleep,
    "smoking_cessation": SmokingCessation,
    "preterm_prevention": PretermPrevention,
    "preconception_care": PreconceptionCare,
    "risk_appropriate_care": RiskAppropriateCare,
    "social_determinants": SocialDeterminants,
}


class Strategies(StrictModel):
    """The portfolio: any of the six strategy areas."""

    safe_sleep: SafeSleep | None = None
    smoking_cessation: SmokingCessation | None = None
    preterm_prevention: PretermPrevention | None = None
    preconception_care: PreconceptionCare | None = None
    risk_appropriate_care: RiskAppropriateCare | None = None
    social_determinants: SocialDeterminants | None = None

    def active(self) -> dict[str, _StrategyBase]:
        """Return the strategies given, by id, in ``STRATEGIES`` order (blocks as parsed)."""
        return {k: getattr(self, k) for k in STRATEGIES if getattr(self, k) is not None}


class ExposureChange(StrictModel):
    """Counterfactual prevalence: ``{scale: x}`` (x >= 0) or ``{set: p}`` (0..1)."""

    scale: NonNegativeNumber | None = None
    set: Fraction | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.scale is None) == (self.set is None):
            raise Invalid("give exactly one of scale (a number >= 0) or set (a prevalence from "
                          "0 to 1)")
        return self


def _exposures(v):
    return keyed_mapping(v, EXPOSURES, "exposures", "{smoking: {scale: 0.5}}", "exposure id")


class StateBlock(StrictModel):
    """Per-state settings; ``strategies`` replaces the top-level portfolio for that state."""

    strategies: Strategies | None = None
    exposures: dict[str, ExposureChange] | None = None

    @field_validator("exposures", mode="before")
    @classmethod
    def _exp_keys(cls, v):
        return _exposures(v)


def _effect(value: Any, effect) -> float:
    """An effect override: finite, > 0 for a ratio, in [0, 1] for a probability."""
    if effect.scale == "probability":
        return fraction(value)
    return number(value, 0.0, open_low=effect.scale == "ratio")


class Scenario(StrictModel):
    """A validated scenario (see module docstring)."""

    name: Name = Field(description="Short name; used for the results folder.")
    description: str = ""
    years: tuple[int, int] = Field(description="Horizon [first, last], inclusive.")
    states: Literal["all"] | list[str] = Field(default="all", description="USPS codes or 'all'.")
    seed: between(0, 2**63 - 1, integer=True) = 0
    engine: Literal[ENGINES] = ENGINES[0]
    replicates: between(1, 10_000, integer=True) = Field(
        default=1, description="Uncertainty draws (1 = point estimate only).")
    strategies: Strategies | None = None
    by_state: dict[str, StateBlock] | None = None
    exposures: dict[str, ExposureChange] | None = None
    effects: dict[str, float] | None = None
    births_change_per_year: between(-0.2, 0.2) | None = Field(
        default=None, description="Relative change in births per year after the latest data "
                                  "year 2023 (0 = held at 2023; unset = the projected state "
                                  "trend).")
    collaborative: dict[str, Any] | None = Field(
        default=None, description="A learning-collaborative block (see docs/collaborative.md).")
    calibration: str | None = Field(
        default=None, description="Calibration to use: 'default' (the packaged fit), a name "
                                  "under calibration/, a folder, or 'direct'.")

    _source: str | None = PrivateAttr(default=None)

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v, v]
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise Invalid(f"years must be [first, last], e.g. [2026, 2030]; got {short(v)}")
        for i, y in enumerate(v):
            try:
                year(y)
            except Invalid as exc:
                raise exc.under(i) from None
        if v[0] > v[1]:
            raise Invalid(f"years are reversed: {v[0]} is after {v[1]}")
        return tuple(v)

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, v):
        # Exact codes only: no case folding, so no Unicode look-alike ('ıa', 'ſc') can turn
        # into a state code.
        if isinstance(v, str):
            if v in ("all", "ALL"):
                return "all"
            v = [v]
        if not isinstance(v, list) or not v:
            raise Invalid(f"states must be 'all' or a list of USPS codes, e.g. [AL, GA]; got "
                          f"{short(v)}")
        out = []
        for i, s in enumerate(v):
            code = s
            if code not in STATES:
                hint = suggest(s, STATES) if isinstance(s, str) and s.isascii() else ""
                raise Invalid(f"unknown state {short(s) if not isinstance(s, str) else ascii(s)[:60]}"
                              f"{hint}; allowed: {STATE_CHOICES} (exact upper-case codes), "
                              f"or 'all'", at=(i,))
            if code in out:
                raise Invalid(f"state {code} is listed twice", at=(i,))
            out.append(code)
        return out

    @field_validator("by_state", mode="before")
    @classmethod
    def _by_state(cls, v):
        return keyed_mapping(v, STATES, "by_state", "{GA: {strategies: ...}}", "state")

    @field_validator("exposures", mode="before")
    @classmethod
    def _exposures(cls, v):
        return _exposures(v)

    @field_validator("effects", mode="before")
    @classmethod
    def _effects(cls, v):
        if v is None:
            return v
        from imsim.inputs.evidence import EvidenceLibrary

        lib = EvidenceLibrary.load()
        checked = keyed_mapping(v, lib.effects, "effects", "{unsafe_sleep_suid_or: 2.6}",
                                "effect id", listed="the ids `imsim data evidence` lists")
        out = {}
        for k, val in checked.items():
            try:
                out[k] = _effect(val, lib.effects[k])
            except Invalid as exc:
                raise exc.under(k) from None
        return out

    @model_validator(mode="after")
    def _cross(self, info: ValidationInfo):
        optional = (info.context or {}).get("coverage_optional", False)
        if self.collaborative is None and not optional:
            # Without a collaborative block, a strategy without coverage does nothing.
            blocks = [(("strategies",), self.strategies)]
            blocks += [(("by_state", st, "strategies"), b.strategies)
                       for st, b in (self.by_state or {}).items()]
            for where, strategies in blocks:
                for k, block in (strategies.active() if strategies is not None else {}).items():
                    if block.coverage is None:
                        raise Invalid("coverage is missing, so the strategy would do nothing; "
                                      "allowed: a share from 0 to 1 or a ramp {year: share} "
                                      "(coverage may be left out only when a collaborative "
                                      "block supplies it)", at=where + (k, "coverage"))
        if self.by_state and self.states != "all":
            for s in self.by_state:
                if s not in self.states:
                    raise Invalid(f"{s} is not in states; allowed: {', '.join(self.states)} "
                                  f"(or add {s} to states)", at=("by_state", s))
        return self

    def horizon_warnings(self) -> list[str]:
        """Return one line per coverage ramp with a year outside ``years`` (not an error).

        A ramp may deliberately start before the horizon (its earlier points still shape the
        interpolated coverage), so points outside ``years`` are allowed; ``imsim run`` and
        ``imsim validate`` print these lines as warnings.

        Returns
        -------
        list of str
            Empty when every ramp year lies within ``years``.
        """
        first, last = self.years
        blocks = [("strategies", self.strategies)]
        blocks += [(f"by_state.{st}.strategies", b.strategies)
                   for st, b in (self.by_state or {}).items()]
        out = []
        for where, strategies in blocks:
            for k, block in (strategies.active() if strategies is not None else {}).items():
                ramp = block.coverage
                if not isinstance(ramp, dict):
                    continue
                outside = [y for y in ramp if y < first or y > last]
                if not outside:
                    continue
                if all(y > last for y in ramp):
                    effect = f"coverage is 0 in every year {first}-{last}"
                elif all(y < first for y in ramp):
                    effect = (f"coverage is held at {ramp[max(ramp)]:g} (its last point) in "
                              f"every year {first}-{last}")
                else:
                    effect = "the ramp is still interpolated through them"
                out.append(f"{self.source or 'scenario'}: {where}.{k}.coverage: ramp year(s) "
                           f"{', '.join(map(str, outside))} lie outside years {first}-{last}; "
                           f"{effect}")
        return out

    @property
    def source(self) -> str | None:
        """The file the scenario was read from, if any."""
        return self._source

    # -- derived -----------------------------------------------------------------------------
    @property
    def state_list(self) -> list[str]:
        """The scenario's states as USPS codes (``all``: the 51 jurisdictions, STATES order)."""
        return list(STATES) if self.states == "all" else list(self.states)

    @property
    def year_list(self) -> list[int]:
        """Every calendar year of the horizon, first to last inclusive."""
        return list(range(self.years[0], self.years[1] + 1))

    def portfolio(self, state: str) -> Strategies:
        """Return the strategies that apply in ``state``.

        Parameters
        ----------
        state : str
            USPS code.

        Returns
        -------
        Strategies
            The state's ``by_state`` portfolio when it has one, else the top-level portfolio
            (empty if none).
        """
        if self.by_state and state in self.by_state and self.by_state[state].strategies is not None:
            return self.by_state[state].strategies
        return self.strategies or Strategies()

    def exposure_changes(self, state: str) -> dict[str, ExposureChange]:
        """Return the counterfactual exposure changes of ``state``, by exposure id.

        The top-level ``exposures`` updated with the state's ``by_state`` exposures.

        Parameters
        ----------
        state : str
            USPS code.

        Returns
        -------
        dict of str to ExposureChange
            Empty when there is none.
        """
        out = dict(self.exposures or {})
        if self.by_state and state in self.by_state and self.by_state[state].exposures:
            out.update(self.by_state[state].exposures)
        return out

    def resolved(self, **overrides) -> dict:
        """Return a plain mapping of the scenario with every default filled in.

        ``overrides`` (e.g. the engine, seed and replicates a run actually used) replace the
        file's values, so the resolved file reproduces the run. Ramp years stay integers.

        Parameters
        ----------
        **overrides
            Top-level keys to replace (None values are ignored).

        Returns
        -------
        dict
            Lists instead of tuples, unset (None) keys omitted; ready for YAML.
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
# Loading
# ---------------------------------------------------------------------------------------------

def parse_scenario(data: Any, file: str | None = None, *,
                   coverage_optional: bool = False) -> Scenario:
    """Validate a mapping as a scenario (and its collaborative block, if any).

    Parameters
    ----------
    data : Any
        The scenario's mapping (as read from YAML).
    file : str, optional
        The file to name in errors.
    coverage_optional : bool
        Allow strategies without coverage and without a collaborative block (a plan whose
        collaborative block supplies coverage, checked by the plan's own parser).

    Returns
    -------
    Scenario
        The validated scenario.

    Raises
    ------
    InputError
        For the first problem, naming the file, the key path, the bad value and what is
        allowed.
    """
    if not isinstance(data, dict):
        raise InputError("a scenario must be a mapping of keys", file=file)
    scenario = validate_model(Scenario, data, file,
                              context={"coverage_optional": coverage_optional})
    if scenario.collaborative is not None:
        from imsim.collaborative.config import parse_collaborative

        parse_collaborative(scenario.collaborative, file=file)
        if scenario.states != "all":        # a setting for a state outside `states` is never used
            for key, what in (("teams", "team"), ("capacity", "capacity"),
                              ("starting_coverage", "starting coverage")):
                block = scenario.collaborative.get(key)
                for st in (block if isinstance(block, dict) else ()):
                    if st in STATES and st not in scenario.states:
                        raise InputError(f"{what} for {st}, which is not in states; allowed: "
                                         f"{', '.join(scenario.states)} (or add {st} to states)",
                                         file=file, where=f"collaborative.{key}.{st}")
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Parameters
    ----------
    path : str or path
        A scenario YAML file.

    Returns
    -------
    Scenario
        The validated scenario; ``source`` is ``str(path)``.

    Raises
    ------
    InputError
        If the file cannot be read, is not safe YAML, or is invalid (see
        :func:`parse_scenario`).
    """
    data = read_yaml(path)
    scenario = parse_scenario(data, file=str(path))
    scenario._source = str(path)
    return scenario


def json_schema() -> dict:
    """Return the JSON Schema (draft 2020-12) of scenario files, for editors."""
    schema = Scenario.model_json_schema()
    schema["title"] = "imsim scenario"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
