"""Configuration of the learning-collaborative ABM: the ``collaborative`` block of a scenario.

Every number that drives the collaborative model (peer learning, capacity, ceilings, learning
rate, stall and decay rates, learning sessions) is an ASSUMPTION with a default and an allowed
range, listed once in :data:`PARAMETERS`. A scenario's block is validated strictly here, with the
checks shared by every input file (:mod:`imsim.core.validation`) -- unknown keys, wrong types,
values out of range and unknown states or strategies raise :class:`InputError` with a key path
such as ``collaborative.teams.AL[3]`` -- into a frozen :class:`CollaborativeConfig`, which :func:`apply_parameters` copies with parameters replaced for a
sensitivity analysis. The model itself is in :mod:`imsim.collaborative.abm`.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from imsim.collaborative.teams import (
    COIIN_2013_2017,
    MAX_STRATEGIES_PER_TEAM,
    STRATEGY_INDEX,
    coiin_2013_2017_teams,
)
from imsim.core.constants import STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.core.validation import (
    Invalid,
    StrictModel,
    Year,
    between,
    fraction,
    keyed_mapping,
    number,
    one_of,
    short,
    state_key,
    suggest,
    validate_model,
)

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


# ---------------------------------------------------------------------------------------------
# Validation of the keys that are not plain numbers (raise Invalid with the path below the key)
# ---------------------------------------------------------------------------------------------

def _in_range(name: str):
    """A validator of a value of PARAMETERS[name]: a number within its documented range."""
    _, low, high, _ = PARAMETERS[name]
    return lambda value: number(value, low, high)


def _teams_from(value: Any) -> dict[str, tuple[str, ...]]:
    if isinstance(value, str):
        if value == COIIN_2013_2017:
            return coiin_2013_2017_teams()
        raise Invalid(f"unknown team set {short(value)}{suggest(value, [COIIN_2013_2017])}; "
                      f"allowed: '{COIIN_2013_2017}' or a mapping {{state: [strategy, ...]}}")
    if not isinstance(value, Mapping):
        raise Invalid(f"expected '{COIIN_2013_2017}' or a mapping {{state: [strategy, ...]}}, "
                      f"got {type(value).__name__} {short(value)}")
    if not value:
        raise Invalid("at least one team is needed; got an empty mapping")
    for key in value:
        try:
            state_key(key)
        except Invalid as exc:
            raise exc.under(str(key)) from None
    teams: dict[str, tuple[str, ...]] = {}
    for state in STATES:  # fixed order
        if state not in value:
            continue
        chosen = value[state]
        if isinstance(chosen, str):
            chosen = [chosen]
        if not isinstance(chosen, (list, tuple)) or not chosen:
            raise Invalid(f"a team must choose 1 to {MAX_STRATEGIES_PER_TEAM} strategies, got "
                          f"{short(chosen)}; allowed: {', '.join(STRATEGIES)}", at=(state,))
        seen: list[str] = []
        for i, strategy in enumerate(chosen):
            if i >= MAX_STRATEGIES_PER_TEAM:
                raise Invalid(f"a team may choose at most {MAX_STRATEGIES_PER_TEAM} strategies; "
                              f"got {len(chosen)} ({', '.join(map(str, chosen))})", at=(state, i))
            try:
                one_of(strategy, STRATEGIES, "strategy")
            except Invalid as exc:
                raise exc.under(state, i) from None
            if strategy in seen:
                raise Invalid(f"strategy {strategy!r} is listed twice for {state}", at=(state, i))
            seen.append(strategy)
        teams[state] = tuple(sorted(seen, key=STRATEGY_INDEX.__getitem__))
    return teams


def _by_key(value: Any, check, allowed: tuple[str, ...], kind: str, listed: str, example: str,
            nested=None) -> dict[str, Any]:
    """A number (the default for every key) or a mapping ``{default: x, key: x}``.

    ``check`` validates each number; ``allowed`` are the keys besides ``default`` (``kind`` names
    one, ``listed`` describes them all); ``nested`` validates a state's value that is a mapping.
    """
    if not isinstance(value, Mapping):
        if isinstance(value, (str, bool, list, tuple)) or value is None:
            raise Invalid(f"expected a number or a mapping like {example}, got {short(value)}")
        return {"default": check(value)}
    out = {}
    for key, v in value.items():
        try:
            if key != "default":
                one_of(key, allowed, kind, listed=f"'default', {listed}")
            per_state = nested is not None and key in STATES and isinstance(v, Mapping)
            out[key] = nested(v) if per_state else check(v)
        except Invalid as exc:
            raise exc.under(str(key)) from None
    return out


def _capacity_from(value: Any) -> dict[str, float]:
    given = _by_key(value, _in_range("capacity"), STATES, "state",
                    "a USPS state code (e.g. AL, DC)", "{default: 0.5, AL: 0.7}")
    return {"default": float(_default("capacity")), **given}


def _ceiling_from(value: Any) -> dict[str, float]:
    given = _by_key(value, fraction, STRATEGIES, "strategy",
                    f"a strategy ({', '.join(STRATEGIES)})", "{default: 0.6, safe_sleep: 0.8}")
    out = dict(DEFAULT_CEILINGS)
    if "default" in given:
        out = {s: given["default"] for s in STRATEGIES}
    out.update({k: v for k, v in given.items() if k != "default"})
    return out


def _strategy_shares(value: Mapping) -> dict[str, float]:
    return keyed_mapping(value, STRATEGIES, "a state's starting coverage",
                         "{smoking_cessation: 0.3}", "strategy", check=fraction)


def _starting_from(value: Any) -> dict[str, Any]:
    """Normalise to ``{"default": x, strategy: x, STATE: {strategy: x} | x}``."""
    given = _by_key(value, fraction, STRATEGIES + STATES, "key",
                    f"a strategy ({', '.join(STRATEGIES)}) or a state",
                    "{default: 0, safe_sleep: 0.1, TX: {smoking_cessation: 0.3}}",
                    nested=_strategy_shares)
    return {"default": float(_default("starting_coverage")), **given}


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def _rng(name: str, *, integer: bool = False):
    default, low, high, description = PARAMETERS[name]
    kind = int if integer else float
    return between(low, high, integer=integer), Field(default=kind(default),
                                                      description=description)


_PeerT, _PEER_D = _rng("peer_learning")
_BaseT, _BASE_D = _rng("base_rate")
_StallT, _STALL_D = _rng("stall_probability")
_DecayT, _DECAY_D = _rng("decay_rate")
_SessT, _SESS_D = _rng("sessions_per_year", integer=True)
_BoostT, _BOOST_D = _rng("session_boost")


class CollaborativeConfig(StrictModel):
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

    start: Year
    support_ends: Year
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
            raise Invalid(f"{self.support_ends} is before start ({self.start}); allowed: a year "
                          f"from {self.start} on", at=("support_ends",))
        for state, strategies in self.teams.items():
            for s in strategies:
                x0 = self.starting(state, s)
                if x0 > self.ceiling[s]:
                    raise Invalid(f"starting coverage {x0:g} of {state} {s} is above the ceiling "
                                  f"{self.ceiling[s]:g}; allowed: 0 to the ceiling",
                                  at=self._starting_where(state, s))
        return self

    # -- lookups -------------------------------------------------------------------------------
    def capacity_of(self, state: str) -> float:
        """Return the capacity of a state's team (its own entry, else ``default``).

        Parameters
        ----------
        state : str
            USPS code.

        Returns
        -------
        float
            Multiplier of the base learning rate.
        """
        return float(self.capacity.get(state, self.capacity["default"]))

    def starting(self, state: str, strategy: str) -> float:
        """Return the starting coverage of a (state, strategy): the most specific entry wins.

        Order: the state's entry for the strategy, the state's single value, the strategy's
        entry, ``default``.

        Parameters
        ----------
        state : str
            USPS code.
        strategy : str
            Strategy id.

        Returns
        -------
        float
            Coverage (share of the eligible, 0..1).
        """
        sc = self.starting_coverage
        entry = sc.get(state)
        if isinstance(entry, Mapping) and strategy in entry:
            return float(entry[strategy])
        if entry is not None and not isinstance(entry, Mapping):
            return float(entry)
        if strategy in sc:
            return float(sc[strategy])
        return float(sc["default"])

    def _starting_where(self, state: str, strategy: str) -> tuple[str, ...]:
        """Key path (below the block) of the entry that sets a (state, strategy)'s start."""
        sc, base = self.starting_coverage, "starting_coverage"
        entry = sc.get(state)
        if isinstance(entry, Mapping) and strategy in entry:
            return (base, state, strategy)
        if entry is not None and not isinstance(entry, Mapping):
            return (base, state)
        if strategy in sc:
            return (base, strategy)
        return (base, "default")

    def session_quarters(self) -> tuple[int, ...]:
        """Return the quarters (1-4) of a support year that hold a learning session.

        The ``sessions_per_year`` sessions are spread evenly over the year.
        """
        k = self.sessions_per_year
        return tuple(sorted({1 + (i * 4) // k for i in range(k)})) if k else ()


def parse_collaborative(mapping: Any, file: str | Path | None = None) -> CollaborativeConfig:
    """Validate a ``collaborative`` block; every problem is raised as :class:`InputError`.

    Parameters
    ----------
    mapping : Any
        The block's content (``{start: ..., teams: ...}``); a mapping whose only key is
        ``collaborative`` is unwrapped.
    file : str or path, optional
        The file to name in errors.

    Returns
    -------
    CollaborativeConfig
        The frozen, validated configuration.

    Raises
    ------
    InputError
        For the first problem; its ``where`` is a key path such as
        ``collaborative.teams.AL[3]`` or ``collaborative.capacity.XX``.
    """
    if isinstance(mapping, Mapping) and set(mapping) == {ROOT}:
        mapping = mapping[ROOT]
    return validate_model(CollaborativeConfig, mapping, file, root=ROOT)


def apply_parameters(config: CollaborativeConfig, values: Mapping[str, float]) -> CollaborativeConfig:
    """Return a validated copy of ``config`` with :data:`PARAMETERS` entries replaced.

    Parameters
    ----------
    config : CollaborativeConfig
        The configuration (not modified).
    values : mapping of str to float
        Parameter names (``base_rate``, ``capacity``, ``ceiling.safe_sleep`` ...) to numbers;
        ``capacity`` sets the default capacity (state entries are kept),
        ``starting_coverage`` the default starting coverage, and ``sessions_per_year`` is
        rounded to a whole number.

    Returns
    -------
    CollaborativeConfig
        The validated copy.

    Raises
    ------
    InputError
        For an unknown parameter name or an out-of-range value.
    """
    data = config.model_dump()
    for name, value in values.items():
        if name not in PARAMETERS:
            raise InputError(f"unknown parameter {short(name)}{suggest(name, PARAMETERS)}; "
                             f"allowed: {', '.join(PARAMETERS)}", where=f"{ROOT}.{name}")
        if isinstance(value, np.generic):
            value = value.item()      # numpy scalars from a sweep's sample matrix
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
