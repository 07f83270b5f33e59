"""Configuration of the learning-collaborative ABM: the ``collaborative`` block of a scenario.

Every number that drives the collaborative model (peer learning, capacity, ceilings, learning
rate, stall and decay rates, learning sessions) is an ASSUMPTION with a default and an allowed
range, listed once in :data:`PARAMETERS`. A scenario's block is validated strictly here -- unknown
keys, wrong types, values out of range and unknown states or strategies raise :class:`InputError`
with a key path such as ``collaborative.teams.AL[3]`` -- into a frozen
:class:`CollaborativeConfig`, which :func:`apply_parameters` copies with parameters replaced for a
sensitivity analysis. The model itself is in :mod:`imsim.collaborative.abm`.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imsim.collaborative.teams import (
    _STRATEGY_INDEX,
    COIIN_2013_2017,
    MAX_STRATEGIES_PER_TEAM,
    coiin_2013_2017_teams,
)
from imsim.core.constants import FIRST_YEAR, MAX_YEARS_AHEAD, STATES, STRATEGIES
from imsim.core.errors import InputError, did_you_mean

__all__ = [
    "DEFAULT_CEILINGS",
    "PARAMETERS",
    "CollaborativeConfig",
    "apply_parameters",
    "parse_collaborative",
]

ROOT = "collaborative"

#: Default maximum coverage reachable per strategy. All ASSUMPTIONS (no published source).
DEFAULT_CEILINGS: dict[str, float] = {
    "safe_sleep": 0.8,
    "smoking_cessation": 0.5,
    "preterm_prevention": 0.6,
    "preconception_care": 0.5,
    "risk_appropriate_care": 0.9,
    "social_determinants": 0.4,
}

_CEILING_NOTES: dict[str, str] = {
    "safe_sleep": "share of infants whose caregivers are reached by safe-sleep education/practice",
    "smoking_cessation": "share of pregnant smokers reached by cessation support",
    "preterm_prevention": "share of eligible pregnancies reached (e.g. prior preterm birth, early elective delivery policies)",
    "preconception_care": "share of women of reproductive age reached by preconception/interconception care",
    "risk_appropriate_care": "share of very-low-birth-weight births delivered at a level III+ facility that is attributable to the strategy",
    "social_determinants": "share of low-income births reached by social-determinant interventions",
}

#: Machine-readable parameter table: name -> (default, low, high, description).
#: ``low``..``high`` is the range enforced by validation and the range a sensitivity analysis
#: may sample. Names with a dot (``ceiling.safe_sleep``) are per-strategy entries.
PARAMETERS: dict[str, tuple[float, float, float, str]] = {
    "peer_learning": (
        0.3, 0.0, 1.0,
        "ASSUMPTION (no published source), range 0-1: relative increase of a team's learning rate "
        "per unit of mean progress (coverage/ceiling) of the other teams in its strategy network.",
    ),
    "capacity": (
        0.5, 0.0, 1.0,
        "ASSUMPTION (no published source), range 0-1: default team capacity (staff, data, "
        "leadership) multiplying the learning rate; can be set per state.",
    ),
    "base_rate": (
        0.10, 0.0, 0.5,
        "ASSUMPTION (no published source), range 0-0.5: quarterly share of the gap to the ceiling "
        "closed by a team at capacity 1 with no peer effect and no learning session.",
    ),
    "stall_probability": (
        0.10, 0.0, 0.5,
        "ASSUMPTION (no published source), range 0-0.5: chance per quarter that a team makes no "
        "progress on a strategy (staff turnover, competing priorities).",
    ),
    "decay_rate": (
        0.05, 0.0, 0.5,
        "ASSUMPTION (no published source), range 0-0.5: quarterly relative decay of the coverage "
        "gained (coverage minus starting coverage) after support ends.",
    ),
    "sessions_per_year": (
        2, 0, 4,
        "ASSUMPTION, range 0-4 (integer): learning sessions per support year, spread evenly over "
        "the quarters; structure informed by the IHI Breakthrough Series (a few learning sessions "
        "separated by action periods), the exact number per year is not published for CoIIN.",
    ),
    "session_boost": (
        0.5, 0.0, 2.0,
        "ASSUMPTION (no published source), range 0-2: relative increase of the learning rate in a "
        "quarter with a learning session.",
    ),
    "starting_coverage": (
        0.0, 0.0, 1.0,
        "ASSUMPTION, range 0-1 and at most the ceiling: coverage before support starts (default 0, "
        "i.e. coverage is measured as the increment due to the collaborative); can be set per "
        "strategy or per state.",
    ),
}
for _s in STRATEGIES:
    PARAMETERS[f"ceiling.{_s}"] = (
        DEFAULT_CEILINGS[_s], 0.0, 1.0,
        f"ASSUMPTION (no published source), range 0-1: maximum coverage of {_s} ({_CEILING_NOTES[_s]}).",
    )
del _s


def _default(name: str) -> Any:
    return PARAMETERS[name][0]


def _max_year() -> int:
    return _dt.date.today().year + MAX_YEARS_AHEAD


# ---------------------------------------------------------------------------------------------
# Validation helpers (raise InputError with a key path)
# ---------------------------------------------------------------------------------------------

def _suggest(value: Any, allowed) -> str:
    allowed = list(allowed)
    text = str(value)
    for a in allowed:
        if text.lower() == str(a).lower() and text != str(a):
            return f" (did you mean '{a}'?)"
    return did_you_mean(text, allowed)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _fraction(value: Any, where: str, low: float = 0.0, high: float = 1.0, what: str = "a number") -> float:
    if not _is_number(value) or math.isnan(float(value)):
        raise InputError(f"{what} must be a number from {low:g} to {high:g}; got {value!r}", where=where)
    value = float(value)
    if not low <= value <= high:
        raise InputError(f"{what} must be from {low:g} to {high:g}; got {value:g}", where=where)
    return value


def _state_key(key: Any, where: str, extra: tuple[str, ...] = ()) -> str:
    if not isinstance(key, str) or key not in STATES:
        allowed = list(extra) + list(STATES)
        extra_txt = (" or " + ", ".join(f"'{e}'" for e in extra)) if extra else ""
        raise InputError(
            f"unknown state {key!r}; allowed: a USPS state code (e.g. 'AL', 'DC'){extra_txt}"
            f"{_suggest(key, allowed)}",
            where=where,
        )
    return key


def _teams_from(value: Any) -> dict[str, tuple[str, ...]]:
    where = f"{ROOT}.teams"
    if isinstance(value, str):
        if value == COIIN_2013_2017:
            return coiin_2013_2017_teams()
        raise InputError(
            f"unknown team set {value!r}; allowed: '{COIIN_2013_2017}' or a mapping "
            f"{{state: [strategy, ...]}}{_suggest(value, [COIIN_2013_2017])}",
            where=where,
        )
    if not isinstance(value, Mapping):
        raise InputError(
            f"must be '{COIIN_2013_2017}' or a mapping {{state: [strategy, ...]}}; got {type(value).__name__}",
            where=where,
        )
    if not value:
        raise InputError("at least one team is needed; got an empty mapping", where=where)
    for key in value:
        _state_key(key, f"{where}.{key}")
    teams: dict[str, tuple[str, ...]] = {}
    for state in STATES:  # fixed order
        if state not in value:
            continue
        chosen = value[state]
        w = f"{where}.{state}"
        if isinstance(chosen, str):
            chosen = [chosen]
        if not isinstance(chosen, (list, tuple)):
            raise InputError(
                f"must be a list of 1 to {MAX_STRATEGIES_PER_TEAM} strategies; got {chosen!r}", where=w
            )
        if len(chosen) == 0:
            raise InputError(
                f"a team must choose 1 to {MAX_STRATEGIES_PER_TEAM} strategies; got none "
                f"(allowed: {', '.join(STRATEGIES)})",
                where=w,
            )
        seen: list[str] = []
        for i, strategy in enumerate(chosen):
            wi = f"{w}[{i}]"
            if i >= MAX_STRATEGIES_PER_TEAM:
                raise InputError(
                    f"a team may choose at most {MAX_STRATEGIES_PER_TEAM} strategies; got {len(chosen)} "
                    f"({', '.join(map(str, chosen))})",
                    where=wi,
                )
            if not isinstance(strategy, str) or strategy not in STRATEGIES:
                raise InputError(
                    f"unknown strategy {strategy!r}; allowed: {', '.join(STRATEGIES)}"
                    f"{_suggest(strategy, STRATEGIES)}",
                    where=wi,
                )
            if strategy in seen:
                raise InputError(f"strategy {strategy!r} is listed twice for {state}", where=wi)
            seen.append(strategy)
        teams[state] = tuple(sorted(seen, key=_STRATEGY_INDEX.__getitem__))
    return teams


def _capacity_from(value: Any) -> dict[str, float]:
    where = f"{ROOT}.capacity"
    _, low, high, _ = PARAMETERS["capacity"]
    if _is_number(value):
        return {"default": _fraction(value, where, low, high, "capacity")}
    if not isinstance(value, Mapping):
        raise InputError(
            f"must be a number from {low:g} to {high:g} or a mapping {{default: x, STATE: x}}; got {value!r}",
            where=where,
        )
    out = {"default": float(_default("capacity"))}
    for key, v in value.items():
        w = f"{where}.{key}"
        if key != "default":
            _state_key(key, w, extra=("default",))
        out[key] = _fraction(v, w, low, high, "capacity")
    return out


def _ceiling_from(value: Any) -> dict[str, float]:
    where = f"{ROOT}.ceiling"
    if _is_number(value):
        v = _fraction(value, where, 0.0, 1.0, "ceiling")
        return {s: v for s in STRATEGIES}
    if not isinstance(value, Mapping):
        raise InputError(
            f"must be a number from 0 to 1 or a mapping {{default: x, strategy: x}}; got {value!r}",
            where=where,
        )
    out = dict(DEFAULT_CEILINGS)
    if "default" in value:
        d = _fraction(value["default"], f"{where}.default", 0.0, 1.0, "ceiling")
        out = {s: d for s in STRATEGIES}
    for key, v in value.items():
        if key == "default":
            continue
        w = f"{where}.{key}"
        if key not in STRATEGIES:
            raise InputError(
                f"unknown key {key!r}; allowed: 'default' or a strategy ({', '.join(STRATEGIES)})"
                f"{_suggest(key, ('default',) + STRATEGIES)}",
                where=w,
            )
        out[key] = _fraction(v, w, 0.0, 1.0, "ceiling")
    return out


def _starting_from(value: Any) -> dict[str, Any]:
    """Normalise to ``{"default": x, strategy: x, STATE: {strategy: x} | x}``."""
    where = f"{ROOT}.starting_coverage"
    if _is_number(value):
        return {"default": _fraction(value, where, 0.0, 1.0, "starting coverage")}
    if not isinstance(value, Mapping):
        raise InputError(
            "must be a number from 0 to 1 or a mapping with keys 'default', strategies and states; "
            f"got {value!r}",
            where=where,
        )
    out: dict[str, Any] = {"default": float(_default("starting_coverage"))}
    for key, v in value.items():
        w = f"{where}.{key}"
        if key == "default" or key in STRATEGIES:
            out[key] = _fraction(v, w, 0.0, 1.0, "starting coverage")
            continue
        if not isinstance(key, str) or key not in STATES:
            raise InputError(
                f"unknown key {key!r}; allowed: 'default', a strategy ({', '.join(STRATEGIES)}) or a state"
                f"{_suggest(key, ('default',) + STRATEGIES + STATES)}",
                where=w,
            )
        if _is_number(v):
            out[key] = _fraction(v, w, 0.0, 1.0, "starting coverage")
        elif isinstance(v, Mapping):
            sub = {}
            for s, x in v.items():
                ws = f"{w}.{s}"
                if s not in STRATEGIES:
                    raise InputError(
                        f"unknown strategy {s!r}; allowed: {', '.join(STRATEGIES)}{_suggest(s, STRATEGIES)}",
                        where=ws,
                    )
                sub[s] = _fraction(x, ws, 0.0, 1.0, "starting coverage")
            out[key] = sub
        else:
            raise InputError(f"must be a number from 0 to 1 or a mapping {{strategy: x}}; got {v!r}", where=w)
    return out


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def _rng(name: str, *, integer: bool = False):
    default, low, high, description = PARAMETERS[name]
    kind = int if integer else float
    return Annotated[kind, Field(strict=True, ge=low, le=high, description=description)], kind(default)


_PeerT, _PEER_D = _rng("peer_learning")
_BaseT, _BASE_D = _rng("base_rate")
_StallT, _STALL_D = _rng("stall_probability")
_DecayT, _DECAY_D = _rng("decay_rate")
_SessT, _SESS_D = _rng("sessions_per_year", integer=True)
_BoostT, _BOOST_D = _rng("session_boost")
_YearT = Annotated[int, Field(strict=True, ge=FIRST_YEAR)]


class CollaborativeConfig(BaseModel):
    """The ``collaborative`` block of a scenario (validated; extra keys are refused).

    Fields
    ------
    start
        First calendar year of support (support starts in its first quarter).
    support_ends
        Last calendar year of support, inclusive (support ends after its fourth quarter);
        must be >= ``start``. Coverage decays afterwards at ``decay_rate``.
    teams
        ``{STATE: [strategy, ...]}`` with 1-3 distinct strategies per team, or the string
        ``"coiin_2013_2017"`` (expanded by :func:`coiin_2013_2017_teams`). Stored expanded, in the
        fixed state and strategy order.
    peer_learning
        ASSUMPTION, default 0.3, range 0-1 (see :data:`PARAMETERS`).
    capacity
        A number or ``{default: x, STATE: x}``; ASSUMPTION, default 0.5, range 0-1.
    ceiling
        A number or ``{default: x, strategy: x}``; ASSUMPTION, per-strategy defaults in
        :data:`DEFAULT_CEILINGS`, range 0-1.
    starting_coverage
        A number or ``{default: x, strategy: x, STATE: x | {strategy: x}}``; ASSUMPTION, default 0,
        range 0-1 and not above the ceiling. Most specific entry wins (state+strategy, state,
        strategy, default).
    base_rate
        ASSUMPTION, default 0.10, range 0-0.5: quarterly learning rate at capacity 1, no peers.
    stall_probability
        ASSUMPTION, default 0.10, range 0-0.5: per-quarter chance a team stalls on a strategy.
    decay_rate
        ASSUMPTION, default 0.05, range 0-0.5: quarterly relative decay after support ends.
    sessions_per_year
        ASSUMPTION, default 2, range 0-4: learning sessions per support year.
    session_boost
        ASSUMPTION, default 0.5, range 0-2: relative rate increase in a session quarter.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: _YearT
    support_ends: _YearT
    teams: dict[str, tuple[str, ...]]
    peer_learning: _PeerT = _PEER_D
    capacity: dict[str, float] = Field(default_factory=lambda: {"default": float(_default("capacity"))})
    ceiling: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CEILINGS))
    starting_coverage: dict[str, Any] = Field(
        default_factory=lambda: {"default": float(_default("starting_coverage"))}
    )
    base_rate: _BaseT = _BASE_D
    stall_probability: _StallT = _STALL_D
    decay_rate: _DecayT = _DECAY_D
    sessions_per_year: _SessT = _SESS_D
    session_boost: _BoostT = _BOOST_D

    @field_validator("start", "support_ends")
    @classmethod
    def _year_not_too_far(cls, v: int, info) -> int:
        if v > _max_year():
            raise ValueError(f"must be at most {_max_year()} ({MAX_YEARS_AHEAD} years ahead)")
        return v

    @field_validator("teams", mode="before")
    @classmethod
    def _teams(cls, v: Any) -> dict[str, tuple[str, ...]]:
        return _teams_from(v)

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, v: Any) -> dict[str, float]:
        return _capacity_from(v)

    @field_validator("ceiling", mode="before")
    @classmethod
    def _ceiling(cls, v: Any) -> dict[str, float]:
        return _ceiling_from(v)

    @field_validator("starting_coverage", mode="before")
    @classmethod
    def _starting(cls, v: Any) -> dict[str, Any]:
        return _starting_from(v)

    @model_validator(mode="after")
    def _cross_checks(self) -> CollaborativeConfig:
        if self.support_ends < self.start:
            raise InputError(
                f"support_ends ({self.support_ends}) must be the same as or after start ({self.start})",
                where=f"{ROOT}.support_ends",
            )
        for state, strategies in self.teams.items():
            for s in strategies:
                x0 = self.starting(state, s)
                if x0 > self.ceiling[s]:
                    raise InputError(
                        f"starting coverage {x0:g} of {state} {s} is above the ceiling {self.ceiling[s]:g}; "
                        "it must be from 0 to the ceiling",
                        where=self._starting_where(state, s),
                    )
        return self

    # -- lookups -------------------------------------------------------------------------------
    def capacity_of(self, state: str) -> float:
        """Capacity of a state's team (its own entry, else ``default``)."""
        return float(self.capacity.get(state, self.capacity["default"]))

    def starting(self, state: str, strategy: str) -> float:
        """Starting coverage of a (state, strategy): most specific entry wins."""
        sc = self.starting_coverage
        entry = sc.get(state)
        if isinstance(entry, Mapping) and strategy in entry:
            return float(entry[strategy])
        if _is_number(entry):
            return float(entry)
        if strategy in sc:
            return float(sc[strategy])
        return float(sc["default"])

    def _starting_where(self, state: str, strategy: str) -> str:
        sc, base = self.starting_coverage, f"{ROOT}.starting_coverage"
        entry = sc.get(state)
        if isinstance(entry, Mapping) and strategy in entry:
            return f"{base}.{state}.{strategy}"
        if _is_number(entry):
            return f"{base}.{state}"
        if strategy in sc:
            return f"{base}.{strategy}"
        return f"{base}.default" if "default" in sc else base

    def session_quarters(self) -> tuple[int, ...]:
        """Quarters (1-4) of a support year that hold a learning session, spread evenly."""
        k = self.sessions_per_year
        return tuple(sorted({1 + (i * 4) // k for i in range(k)})) if k else ()


def _join_loc(loc: tuple) -> str:
    out = ROOT
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


def _from_validation_error(err: ValidationError, file: str | None) -> InputError:
    first = err.errors()[0]
    loc = tuple(p for p in first.get("loc", ()) if p not in ("function-after", "function-before"))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        allowed = list(CollaborativeConfig.model_fields)
        return InputError(
            f"unknown key {key!r}; allowed: {', '.join(allowed)}{_suggest(key, allowed)}",
            file=file, where=_join_loc(loc),
        )
    if kind == "missing":
        return InputError("this key is required", file=file, where=_join_loc(loc))
    msg = first.get("msg", "invalid value")
    msg = msg[0].lower() + msg[1:] if msg else msg
    msg = msg.replace("Value error, ", "").replace("value error, ", "")
    name = str(loc[0]) if loc else ""
    rng = ""
    if name in PARAMETERS:
        _, low, high, _ = PARAMETERS[name]
        rng = f" (allowed: {low:g} to {high:g})"
    return InputError(f"{msg}; got {first.get('input')!r}{rng}", file=file, where=_join_loc(loc))


def parse_collaborative(mapping: Any, file: str | Path | None = None) -> CollaborativeConfig:
    """Validate a ``collaborative`` block; every problem is raised as :class:`InputError`.

    ``mapping`` is the block's content (``{start: ..., teams: ...}``); a mapping whose only key is
    ``collaborative`` is unwrapped. The error's ``where`` is a key path such as
    ``collaborative.teams.AL[3]`` or ``collaborative.capacity.XX``.
    """
    file = None if file is None else str(file)
    if isinstance(mapping, Mapping) and set(mapping) == {ROOT}:
        mapping = mapping[ROOT]
    if not isinstance(mapping, Mapping):
        raise InputError(
            f"must be a mapping with keys start, support_ends, teams, ...; got {type(mapping).__name__}",
            file=file, where=ROOT,
        )
    try:
        return CollaborativeConfig.model_validate(dict(mapping))
    except ValidationError as err:
        raise _from_validation_error(err, file) from None
    except InputError as err:
        if file is not None and err.file is None:
            raise InputError(err.message, file=file, where=err.where) from None
        raise


def apply_parameters(config: CollaborativeConfig, values: Mapping[str, float]) -> CollaborativeConfig:
    """Return a validated copy of ``config`` with :data:`PARAMETERS` entries replaced.

    ``values`` maps parameter names (``base_rate``, ``capacity``, ``ceiling.safe_sleep`` ...) to
    numbers; ``capacity`` sets the default capacity (state entries are kept) and
    ``starting_coverage`` the default starting coverage. Out-of-range values raise InputError.
    """
    data = config.model_dump()
    for name, value in values.items():
        if name not in PARAMETERS:
            raise InputError(
                f"unknown parameter {name!r}; allowed: {', '.join(PARAMETERS)}{_suggest(name, PARAMETERS)}",
                where=f"{ROOT}.{name}",
            )
        if name.startswith("ceiling."):
            data["ceiling"] = {**data["ceiling"], name.split(".", 1)[1]: value}
        elif name in ("capacity", "starting_coverage"):
            data[name] = {**data[name], "default": value}
        elif name == "sessions_per_year":
            data[name] = int(round(value))
        else:
            data[name] = value
    data["teams"] = {k: list(v) for k, v in data["teams"].items()}
    return parse_collaborative(data)
