"""Agent-based model of a state-teams learning collaborative (CoIIN-style).

In the 2013-2017 Infant Mortality Collaborative Improvement and Innovation Network (CoIIN), state
teams each chose one to three of six strategy areas, joined a learning network per strategy, met at
learning sessions and tested changes in the action periods between them (the IHI Breakthrough
Series model). This module simulates, quarter by quarter, the *coverage* each team reaches for each
strategy it chose: the share of the strategy's eligible population in that state that the strategy
reaches. The result feeds the birth model.

Dynamics (one step = one calendar quarter)::

    progress_j   = coverage_j / ceiling                       (for every member j of the network)
    peer         = mean progress of the *other* members of the team's network (0 if alone)
    rate         = base_rate * capacity * (1 + peer_learning * peer)
                   * (1 + session_boost  if a learning session is held this quarter)
    rate         = min(rate, 1)
    coverage    += rate * (ceiling - coverage)                 (support years; 0 if the team stalls)
    coverage    -= decay_rate * (coverage - starting_coverage)  (after support ends)

Before ``start`` coverage stays at its starting value. All teams update synchronously from the
coverage at the start of the quarter, so the (shuffled) activation order never changes a result.

Monotonicity. The stall draws are made once per (quarter, state, strategy) from a numpy Generator
seeded by the run seed and do not depend on any parameter or on which teams exist. Every update is
a non-decreasing function of the team's own coverage and of its peers' coverage (because rate <= 1
and decay_rate <= 1), and ``rate`` is non-decreasing in capacity and peer learning. Hence, for the
same seed, raising any team's capacity or the peer-learning weight never lowers any coverage.

Every numerical parameter is an ASSUMPTION (no published source was found for the rate of spread
of a CoIIN strategy); :data:`PARAMETERS` lists each with its default and allowed range so that a
sensitivity analysis can vary them (see :func:`apply_parameters`).
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import mesa
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .constants import FIRST_YEAR, MAX_YEARS_AHEAD, STATES, STRATEGIES
from .errors import InputError, did_you_mean

__all__ = [
    "PARAMETERS",
    "COIIN_2013_2017",
    "COIIN_2013_2017_COUNTS",
    "DEFAULT_CEILINGS",
    "CollaborativeConfig",
    "CollaborativeModel",
    "StateTeam",
    "LearningNetwork",
    "parse_collaborative",
    "apply_parameters",
    "run_collaborative",
    "annual_coverage",
    "plot_coverage",
    "coiin_2013_2017_teams",
]

ROOT = "collaborative"
#: Value of ``teams`` that expands to :func:`coiin_2013_2017_teams`.
COIIN_2013_2017 = "coiin_2013_2017"
#: Published number of jurisdictions (of 51) working on each strategy in the 2013-2017 IM CoIIN.
COIIN_2013_2017_COUNTS: dict[str, int] = {
    "safe_sleep": 37,
    "preconception_care": 29,
    "social_determinants": 23,
    "smoking_cessation": 21,
    "preterm_prevention": 21,
    "risk_appropriate_care": 14,
}
MAX_STRATEGIES_PER_TEAM = 3
_STATE_INDEX = {s: i for i, s in enumerate(STATES)}
_STRATEGY_INDEX = {s: i for i, s in enumerate(STRATEGIES)}
#: Fixed stream tag so the stall draws never share a stream with other uses of the seed.
_STALL_STREAM = 0xC011AB

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


# ---------------------------------------------------------------------------------------------
# COIIN 2013-2017 team composition
# ---------------------------------------------------------------------------------------------

def _feasible(sizes: list[int], quotas: list[int]) -> bool:
    """Gale-Ryser: can rows with ``sizes`` and columns with ``quotas`` form a 0/1 matrix?"""
    if sum(sizes) != sum(quotas) or any(q < 0 for q in quotas):
        return False
    cols = sorted(quotas, reverse=True)
    total = 0
    for k in range(1, len(cols) + 1):
        total += cols[k - 1]
        if total > sum(min(r, k) for r in sizes):
            return False
    return True


_COIIN_CACHE: dict[int, dict[str, tuple[str, ...]]] = {}


def coiin_2013_2017_teams(seed: int = 0) -> dict[str, tuple[str, ...]]:
    """A stand-in for the 2013-2017 IM CoIIN team composition (51 jurisdictions).

    Published: how many jurisdictions worked on each strategy (safe_sleep 37,
    preconception_care 29, social_determinants 23, smoking_cessation 21, preterm_prevention 21,
    risk_appropriate_care 14; 145 team-strategy pairs) and that each chose 1 to 3 strategies.
    *Not* published here: which state chose which. This function builds one assignment that
    reproduces the counts exactly; it is illustrative, not historical.

    Construction (deterministic for a given ``seed``, numpy Generator ``default_rng(seed)``):

    1. Team sizes. 145 pairs over 51 teams of size 1-3 means ``t`` teams of 3, ``94 - 2t`` of 2
       and ``t - 43`` of 1, with ``43 <= t <= 47``; ``t`` is drawn uniformly from that range and
       the sizes are dealt to the states in a random order.
    2. Strategies. States are visited in a random order; each draws its strategies without
       replacement with probability proportional to the strategy's remaining quota. A draw is
       kept only if the remaining quotas can still be met (Gale-Ryser condition); after 200
       rejected draws the state takes the strategies with the largest remaining quotas
       (always feasible). The result therefore meets the counts exactly.

    Returns ``{state: (strategy, ...)}`` in the fixed state and strategy order.
    """
    seed = _check_seed(seed)
    if seed in _COIIN_CACHE:
        return dict(_COIIN_CACHE[seed])
    rng = np.random.default_rng([seed, 2013])
    n = len(STATES)
    total = sum(COIIN_2013_2017_COUNTS.values())
    extra = total - n  # pairs beyond one per team
    t_low, t_high = max(0, extra - n), extra // 2  # s = t - (extra - n) >= 0; d = extra - 2t >= 0
    t = int(rng.integers(t_low, t_high + 1))
    d = extra - 2 * t
    s = n - t - d
    sizes_list = [3] * t + [2] * d + [1] * s
    order = rng.permutation(n)
    size_of = {STATES[order[i]]: sizes_list[i] for i in range(n)}

    strategies = list(COIIN_2013_2017_COUNTS)
    quotas = [COIIN_2013_2017_COUNTS[x] for x in strategies]
    visit = [STATES[i] for i in rng.permutation(n)]
    chosen: dict[str, tuple[str, ...]] = {}
    for pos, state in enumerate(visit):
        k = size_of[state]
        rest = [size_of[x] for x in visit[pos + 1:]]
        pick = None
        for _ in range(200):
            q = np.array(quotas, dtype=float)
            if (q > 0).sum() < k:
                break
            cand = rng.choice(len(strategies), size=k, replace=False, p=q / q.sum())
            left = list(quotas)
            for c in cand:
                left[c] -= 1
            if _feasible(rest, left):
                pick = [int(c) for c in cand]
                break
        if pick is None:  # Ryser greedy: largest remaining quotas
            pick = sorted(range(len(strategies)), key=lambda j: (-quotas[j], j))[:k]
        for c in pick:
            quotas[c] -= 1
        chosen[state] = tuple(sorted((strategies[c] for c in pick), key=_STRATEGY_INDEX.__getitem__))
    assert all(q == 0 for q in quotas), "COIIN assignment did not meet the published counts"
    result = {st: chosen[st] for st in STATES}
    _COIIN_CACHE[seed] = result
    return dict(result)


# ---------------------------------------------------------------------------------------------
# Agent-based model
# ---------------------------------------------------------------------------------------------

class LearningNetwork:
    """The teams working on one strategy; holds the start-of-quarter progress of each member."""

    def __init__(self, strategy: str, ceiling: float):
        self.strategy = strategy
        self.ceiling = float(ceiling)
        self.members: list[StateTeam] = []
        self._progress: dict[str, float] = {}
        self._total = 0.0

    def progress_of(self, team: StateTeam) -> float:
        """Progress toward the ceiling, coverage / ceiling (0 if the ceiling is 0)."""
        return team.coverage[self.strategy] / self.ceiling if self.ceiling > 0 else 0.0

    def snapshot(self) -> None:
        """Record every member's progress at the start of the quarter (synchronous update)."""
        self._progress = {m.state: self.progress_of(m) for m in self.members}
        self._total = sum(self._progress.values())

    def peer_progress(self, team: StateTeam) -> float:
        """Mean start-of-quarter progress of the *other* members (0 if the team is alone)."""
        n = len(self.members)
        if n <= 1:
            return 0.0
        return max(0.0, (self._total - self._progress[team.state]) / (n - 1))


class StateTeam(mesa.Agent):
    """One state's team: its strategies, capacity and coverage per strategy."""

    def __init__(self, model: CollaborativeModel, state: str, strategies: tuple[str, ...]):
        super().__init__(model)
        cfg = model.config
        self.state = state
        self.state_index = _STATE_INDEX[state]
        self.strategies = tuple(strategies)
        self.capacity = cfg.capacity_of(state)
        self.starting = {s: cfg.starting(state, s) for s in self.strategies}
        self.ceiling = {s: float(cfg.ceiling[s]) for s in self.strategies}
        self.coverage = dict(self.starting)
        self.stalled = {s: False for s in self.strategies}

    def step(self) -> None:
        """Advance this team's coverage by one quarter (reads peers from the network snapshot)."""
        m = self.model
        cfg = m.config
        phase = m.phase
        if phase == "before":
            return
        for s in self.strategies:
            c = self.coverage[s]
            if phase == "support":
                u = m.stall_draws[m.support_q, self.state_index, _STRATEGY_INDEX[s]]
                self.stalled[s] = bool(u < cfg.stall_probability)
                if self.stalled[s]:
                    continue
                peer = m.networks[s].peer_progress(self)
                rate = cfg.base_rate * self.capacity * (1.0 + cfg.peer_learning * peer)
                if m.session:
                    rate *= 1.0 + cfg.session_boost
                rate = min(rate, 1.0)
                ceil = self.ceiling[s]
                self.coverage[s] = min(ceil, max(c, c + rate * (ceil - c)))
            else:  # after support: decay toward the starting coverage
                s0 = self.starting[s]
                self.coverage[s] = max(s0, c - cfg.decay_rate * (c - s0))


class CollaborativeModel(mesa.Model):
    """Quarterly ABM of a learning collaborative.

    Parameters
    ----------
    config
        A validated :class:`CollaborativeConfig` (or a mapping, validated here).
    years
        ``(first, last)`` calendar years reported, inclusive. The model steps from
        ``min(first, config.start)`` to the fourth quarter of ``last``.
    seed
        Non-negative integer. Seeds Mesa's RNGs (``rng=seed``; used for the activation shuffle)
        and, separately, the stall draws, which are pre-drawn per (quarter since ``start``,
        state, strategy) so they do not depend on any parameter or on the team list.
    """

    def __init__(self, config: CollaborativeConfig | Mapping, years: tuple[int, int], seed: int):
        seed = _check_seed(seed)
        first, last = _check_years(years)
        super().__init__(rng=seed)
        self.config = config if isinstance(config, CollaborativeConfig) else parse_collaborative(config)
        cfg = self.config
        self.years = (first, last)
        self.seed = seed
        self.sim_first = min(first, cfg.start)
        n_support_draw = max(0, (last - cfg.start + 1) * 4)
        stall_rng = np.random.default_rng([seed, _STALL_STREAM])
        # Shape (quarter, state, strategy), C order: a longer horizon only appends quarters.
        self.stall_draws = stall_rng.random((n_support_draw, len(STATES), len(STRATEGIES)))
        self._session_quarters = set(cfg.session_quarters())

        self.networks: dict[str, LearningNetwork] = {
            s: LearningNetwork(s, cfg.ceiling[s]) for s in STRATEGIES
        }
        for state, strategies in cfg.teams.items():
            team = StateTeam(self, state, strategies)
            for s in strategies:
                self.networks[s].members.append(team)
        self.teams = self.agents_by_type[StateTeam]
        self._team_list: list[StateTeam] = sorted(self.teams, key=lambda a: a.state_index)

        self.year = self.sim_first
        self.quarter = 1
        self.phase = "before"
        self.session = False
        self.support_q = -1
        self._rows: list[tuple[int, int, str, str, float]] = []

    def _set_phase(self) -> None:
        cfg = self.config
        if self.year < cfg.start:
            self.phase, self.session, self.support_q = "before", False, -1
        elif self.year <= cfg.support_ends:
            self.phase = "support"
            self.session = self.quarter in self._session_quarters
            self.support_q = (self.year - cfg.start) * 4 + self.quarter - 1
        else:
            self.phase, self.session, self.support_q = "after", False, -1

    def step(self) -> None:
        """One quarter: snapshot network progress, activate teams, record coverage, advance time."""
        self._set_phase()
        if self.phase == "support":
            for net in self.networks.values():
                if net.members:
                    net.snapshot()
        self.teams.shuffle_do("step")
        if self.year >= self.years[0]:
            y, q = self.year, self.quarter
            self._rows.extend(
                (y, q, t.state, s, t.coverage[s]) for t in self._team_list for s in t.strategies
            )
        self.quarter += 1
        if self.quarter > 4:
            self.quarter = 1
            self.year += 1
        if self.year > self.years[1]:
            self.running = False

    def results(self) -> pd.DataFrame:
        """Quarterly coverage recorded so far: ``year, quarter, state, strategy, coverage``."""
        if not self._rows:
            return pd.DataFrame(
                {
                    "year": pd.Series(dtype="int64"), "quarter": pd.Series(dtype="int64"),
                    "state": pd.Series(dtype="object"), "strategy": pd.Series(dtype="object"),
                    "coverage": pd.Series(dtype="float64"),
                }
            )
        year, quarter, state, strategy, coverage = zip(*self._rows)
        return pd.DataFrame(
            {
                "year": np.asarray(year, dtype=np.int64),
                "quarter": np.asarray(quarter, dtype=np.int64),
                "state": list(state),
                "strategy": list(strategy),
                "coverage": np.asarray(coverage, dtype=np.float64),
            }
        )


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer; got {seed!r}", where="seed")
    return int(seed)


def _check_years(years: Any) -> tuple[int, int]:
    ok = (
        isinstance(years, (tuple, list)) and len(years) == 2
        and all(isinstance(y, (int, np.integer)) and not isinstance(y, bool) for y in years)
    )
    if not ok:
        raise InputError(f"years must be [first, last] (two integers); got {years!r}", where="years")
    first, last = int(years[0]), int(years[1])
    if last < first:
        raise InputError(f"years must be [first, last] with last >= first; got {list(years)}", where="years")
    if first < FIRST_YEAR or last > _max_year():
        raise InputError(
            f"years must lie within {FIRST_YEAR} to {_max_year()}; got {list(years)}", where="years"
        )
    return first, last


def run_collaborative(config: CollaborativeConfig | Mapping, years: tuple[int, int], seed: int) -> pd.DataFrame:
    """Run the ABM and return quarterly coverage.

    Columns exactly ``year, quarter, state, strategy, coverage`` (quarter 1-4; coverage at the end
    of the quarter), one row per reported quarter x team x chosen strategy, sorted by year,
    quarter, state (fixed order) and strategy. Strategies a state did not choose are omitted
    (their coverage is 0). Same ``seed`` -> identical DataFrame.
    """
    model = CollaborativeModel(config, years, seed)
    model.run_model()
    return model.results()


def annual_coverage(df: pd.DataFrame) -> pd.DataFrame:
    """Annual coverage ``year, state, strategy, coverage``: mean of the year's quarters."""
    missing = {"year", "state", "strategy", "coverage"} - set(df.columns)
    if missing:
        raise InputError(f"coverage table lacks columns {sorted(missing)}", where="coverage")
    out = (
        df.groupby(["year", "state", "strategy"], sort=False, as_index=False)["coverage"].mean()
    )
    return out[["year", "state", "strategy", "coverage"]].reset_index(drop=True)


def plot_coverage(df: pd.DataFrame, path: str | Path) -> Path:
    """Save a PNG of coverage trajectories: one panel per strategy, one line per state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    strategies = [s for s in STRATEGIES if s in set(df["strategy"])]
    n = max(1, len(strategies))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False, sharey=True)
    t = df["year"] + (df["quarter"] - 1) / 4.0 if "quarter" in df.columns else df["year"]
    df = df.assign(_t=t)
    for ax, s in zip(axes.flat, strategies):
        sub = df[df["strategy"] == s]
        states = [x for x in STATES if x in set(sub["state"])]
        for st in states:
            line = sub[sub["state"] == st]
            ax.plot(line["_t"], line["coverage"], lw=1, alpha=0.7, label=st)
        ax.set_title(f"{s} ({len(states)} states)")
        ax.set_xlabel("year")
        if len(states) <= 8:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(strategies):]:
        ax.set_visible(False)
    axes[0][0].set_ylabel("coverage")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
