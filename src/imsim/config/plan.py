"""The plan file of ``imsim recommend``: its format, its strict validation, and the resolved plan.

A *plan* (YAML, validated as strictly as a scenario) names the states, the horizon, the coverage
each strategy would reach if a state chose it (or a learning-collaborative block), the most
strategies per state, optional costs and budgets, the objective's weights and the number of
uncertainty draws. Keys it shares with scenarios (name, years, states, seed, strategies, effects,
births_change_per_year) are checked by the scenario parser, so a plan and a scenario can never
disagree on what a key means. See docs/recommend.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from imsim.core.constants import STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.config.scenario import _short, _Strict, _to_input_error, keyed_mapping, parse_scenario, read_yaml


def _money(v, what="a cost"):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise PydanticCustomError("not_number", "expected {what} in US dollars (a number >= 0), "
                                  "got {value}", {"what": what, "value": _short(v)})
    if not (float(v) >= 0 and np.isfinite(float(v))):
        raise PydanticCustomError("out_of_range", "{what} must be a finite number >= 0, got "
                                  "{value}", {"what": what, "value": v})
    return float(v)


class PlanCosts(_Strict):
    """Cost per birth reached (USD) of each strategy: the user's inputs (imsim ships none)."""

    safe_sleep: float | None = None
    smoking_cessation: float | None = None
    preterm_prevention: float | None = None
    preconception_care: float | None = None
    risk_appropriate_care: float | None = None
    social_determinants: float | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _cost(cls, v):
        return None if v is None else _money(v, "a cost per birth reached")


class PlanBudget(_Strict):
    """Budgets (USD over the horizon): national (allocation), per state (recommendations)."""

    national: float | None = None
    per_state: float | None = None
    by_state: dict[str, float] | None = None

    @field_validator("national", "per_state", mode="before")
    @classmethod
    def _b(cls, v):
        return None if v is None else _money(v, "a budget")

    @field_validator("by_state", mode="before")
    @classmethod
    def _by_state(cls, v):
        if v is None:
            return v
        keyed_mapping(v, STATES, "by_state", "{AL: 250000}", "state")
        out = {}
        for k, x in v.items():
            out[k] = _money(x, f"the budget of {k}")
        return out


class PlanObjective(_Strict):
    """Weights of the objective: w1 x deaths averted + w2 x excess NH black deaths averted."""

    deaths_averted: float = Field(default=1.0, ge=0, le=1e6)
    disparity_reduction: float = Field(default=0.0, ge=0, le=1e6)

    @model_validator(mode="after")
    def _some(self):
        if self.deaths_averted == 0 and self.disparity_reduction == 0:
            raise PydanticCustomError("objective", "at least one objective weight must be > 0",
                                      {})
        return self


class Plan(_Strict):
    """A validated plan (see docs/recommend.md). Scenario-like keys are checked as in scenarios."""

    name: str
    description: str = ""
    states: Any = "all"
    years: Any
    max_strategies: int = Field(default=3, ge=1, le=6)
    strategies: Any = None
    collaborative: dict[str, Any] | None = None
    costs: PlanCosts | None = None
    budget: PlanBudget | None = None
    objective: PlanObjective = Field(default_factory=PlanObjective)
    draws: int = Field(default=200, ge=1, le=5000)
    seed: int = Field(default=0, ge=0, lt=2**63)
    effects: Any = None
    births_change_per_year: Any = 0.0


@dataclass
class ResolvedPlan:
    plan: Plan
    scenario: Any                      # imsim.config.scenario.Scenario carrying the shared keys
    candidates: list[str]
    file: str | None = None

    @property
    def states(self) -> list[str]:
        return self.scenario.state_list

    def state_budget(self, state: str) -> float | None:
        b = self.plan.budget
        if b is None:
            return None
        if b.by_state and state in b.by_state:
            return b.by_state[state]
        return b.per_state

    def resolved(self) -> dict:
        out = self.plan.model_dump(mode="json", exclude_none=True)
        sc = self.scenario.resolved()
        for k in ("name", "description", "years", "states", "seed", "strategies", "effects",
                  "births_change_per_year"):
            if k in sc:
                out[k] = sc[k]
        out["candidates"] = list(self.candidates)
        return out


def parse_plan(data: Any, file: str | None = None) -> ResolvedPlan:
    """Validate a mapping as a plan; raise InputError naming the file and key path."""
    if not isinstance(data, dict):
        raise InputError("a plan must be a mapping of keys", file=file)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as err:
        raise _to_input_error(err, file) from None
    shared = {k: data[k] for k in ("name", "description", "years", "states", "seed", "strategies",
                                   "effects", "births_change_per_year") if k in data}
    scenario = parse_scenario(shared, file=file)
    active = scenario.strategies.active() if scenario.strategies is not None else {}
    collab = plan.collaborative
    if collab is None:
        if not active:
            raise InputError("give the coverage each strategy would reach if chosen, e.g. "
                             "strategies: {safe_sleep: {coverage: 0.5}} (or a collaborative "
                             "block)", file=file, where="strategies")
        for k, block in active.items():
            if block.coverage is None:
                raise InputError("required key is missing: the coverage this strategy would "
                                 "reach if chosen (a number or a {year: share} ramp)",
                                 file=file, where=f"strategies.{k}.coverage")
        candidates = [k for k in STRATEGIES if k in active]
    else:
        if "teams" in collab:
            raise InputError("recommend sets the teams itself (every plan state works on the "
                             "strategy being evaluated); remove teams", file=file,
                             where="collaborative.teams")
        for k, block in active.items():
            if block.coverage is not None:
                raise InputError("with a collaborative block coverage comes from the "
                                 "collaborative model; keep only options here (program, "
                                 "components, policy, reach)", file=file,
                                 where=f"strategies.{k}.coverage")
        from imsim.collaborative.abm import parse_collaborative

        parse_collaborative({**collab, "teams": {"AL": ["safe_sleep"]}}, file=file)
        candidates = [k for k in STRATEGIES if k in active] if active else list(STRATEGIES)
    if plan.costs is not None:
        for k in candidates:
            if getattr(plan.costs, k) is None:
                raise InputError(f"no cost given for candidate strategy {k}; give a cost per "
                                 "birth reached for every strategy in the plan (or no costs)",
                                 file=file, where=f"costs.{k}")
    if plan.budget is not None:
        if plan.costs is None:
            raise InputError("a budget needs costs per birth reached for the strategies",
                             file=file, where="budget")
        if plan.budget.by_state and scenario.states != "all":
            for s in plan.budget.by_state:
                if s not in scenario.states:
                    raise InputError(f"{s} is not in states {list(scenario.states)}", file=file,
                                     where=f"budget.by_state.{s}")
    return ResolvedPlan(plan, scenario, candidates, file)


def load_plan(path: str | Path) -> ResolvedPlan:
    """Read and validate a plan file."""
    data = read_yaml(path, what="plan")
    return parse_plan(data, file=str(path))
