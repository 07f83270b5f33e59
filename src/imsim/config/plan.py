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
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from imsim.core.constants import STRATEGIES
from imsim.core.errors import InputError
from imsim.core.validation import (
    Invalid,
    NonNegativeNumber,
    StateKey,
    StrictModel,
    between,
    number,
    read_yaml,
    validate_model,
)
from imsim.config.scenario import parse_scenario

#: Keys a plan shares with scenarios; they are checked by the scenario parser.
SHARED_KEYS = ("name", "description", "years", "states", "seed", "strategies", "effects",
               "births_change_per_year")


#: The word that takes a cost from imsim's cost library (costs.csv) instead of a number.
LIBRARY = "library"


def _cost_value(v: Any) -> Any:
    if v == LIBRARY:
        return v
    if isinstance(v, str) or v is None or isinstance(v, bool):
        raise Invalid(f"expected a number or '{LIBRARY}', got {v!r}; allowed: a cost in USD per "
                      f"birth reached (>= 0) or '{LIBRARY}' (imsim's cost library, see imsim "
                      "data costs)")
    return number(v, 0.0)


#: A cost per birth reached (USD, >= 0) or ``"library"``.
CostValue = Annotated[float | str, BeforeValidator(_cost_value)]


class PlanCosts(StrictModel):
    """Cost per birth reached (USD) of each strategy: a number, or ``library`` (imsim's cost
    library, costs.csv: sourced, derived or illustrative values with a low-high range)."""

    safe_sleep: CostValue | None = None
    smoking_cessation: CostValue | None = None
    preterm_prevention: CostValue | None = None
    preconception_care: CostValue | None = None
    risk_appropriate_care: CostValue | None = None
    social_determinants: CostValue | None = None


class PlanBudget(StrictModel):
    """Budgets (USD over the horizon): national (allocation), per state (recommendations)."""

    national: NonNegativeNumber | None = None
    per_state: NonNegativeNumber | None = None
    by_state: dict[StateKey, NonNegativeNumber] | None = None


class PlanObjective(StrictModel):
    """Weights of the objective: w1 x deaths averted + w2 x excess NH black deaths averted."""

    deaths_averted: between(0, 1e6) = 1.0
    disparity_reduction: between(0, 1e6) = 0.0

    @model_validator(mode="after")
    def _some(self):
        if self.deaths_averted == 0 and self.disparity_reduction == 0:
            raise Invalid("at least one objective weight must be > 0, got 0 and 0")
        return self


class Plan(StrictModel):
    """A validated plan (see docs/recommend.md). Scenario-like keys are checked as in scenarios.

    Attributes
    ----------
    name, description, states, years, strategies, seed, effects, births_change_per_year
        As in a scenario (:class:`imsim.config.scenario.Scenario`); validated by
        :func:`imsim.config.scenario.parse_scenario`.
    max_strategies : int
        Most strategies per state (1..6).
    collaborative : dict or None
        A learning-collaborative block (its coverage replaces the strategies' coverage).
    costs : PlanCosts or None
        USD per birth reached, per strategy (``library`` for imsim's cost library); the whole
        key may also be ``library`` (every candidate from the library).
    budget : PlanBudget or None
        Budgets in USD over the horizon.
    objective : PlanObjective
        Weights of the objective.
    draws : int
        Uncertainty draws (1..5000).
    """

    name: Any
    description: Any = ""
    states: Any = "all"
    years: Any
    max_strategies: between(1, len(STRATEGIES), integer=True) = 3
    strategies: Any = None
    collaborative: dict[str, Any] | None = None
    costs: PlanCosts | None = None
    budget: PlanBudget | None = None
    objective: PlanObjective = Field(default_factory=PlanObjective)
    draws: between(1, 5000, integer=True) = 200
    seed: Any = 0
    effects: Any = None
    births_change_per_year: Any = None

    @model_validator(mode="before")
    @classmethod
    def _costs_library(cls, data):
        """``costs: library`` = every strategy's cost from the cost library."""
        if isinstance(data, dict) and data.get("costs") == LIBRARY:
            data = {**data, "costs": {k: LIBRARY for k in STRATEGIES}}
        return data


@dataclass
class ResolvedPlan:
    """A plan with its shared keys parsed as a scenario and its candidate strategies.

    Attributes
    ----------
    plan : Plan
        The validated plan.
    scenario : imsim.config.scenario.Scenario
        A scenario carrying the shared keys (states, years, strategies, effects...).
    candidates : list of str
        Strategies a state may choose, in ``STRATEGIES`` order.
    file : str or None
        The plan file, if read from one.
    library_costs : tuple of str
        Candidates whose cost comes from the cost library (``plan.costs`` then holds the
        library's value; :mod:`imsim.analysis.decision` draws them from the library's range).
    """

    plan: Plan
    scenario: Any                      # imsim.config.scenario.Scenario carrying the shared keys
    candidates: list[str]
    file: str | None = None
    library_costs: tuple = ()

    @property
    def states(self) -> list[str]:
        """The plan's states (USPS codes, in ``STATES`` order)."""
        return self.scenario.state_list

    def state_budget(self, state: str) -> float | None:
        """Return a state's budget in USD over the horizon (its own entry, else ``per_state``).

        Parameters
        ----------
        state : str
            USPS code.

        Returns
        -------
        float or None
            None when the plan has no budget for it.
        """
        b = self.plan.budget
        if b is None:
            return None
        if b.by_state and state in b.by_state:
            return b.by_state[state]
        return b.per_state

    def resolved(self) -> dict:
        """Return the plan as a plain mapping, every default filled in, with ``candidates``."""
        out = self.plan.model_dump(mode="json", exclude_none=True)
        sc = self.scenario.resolved()
        for k in SHARED_KEYS:
            if k in sc:
                out[k] = sc[k]
        out["candidates"] = list(self.candidates)
        if self.library_costs:
            out["costs_from_library"] = list(self.library_costs)
        return out


def parse_plan(data: Any, file: str | None = None) -> ResolvedPlan:
    """Validate a mapping as a plan.

    Parameters
    ----------
    data : Any
        The plan's mapping (as read from YAML).
    file : str, optional
        The file to name in errors.

    Returns
    -------
    ResolvedPlan
        The validated plan.

    Raises
    ------
    InputError
        For the first problem, naming the file, the key path, the bad value and what is allowed
        (including coverage missing without a collaborative, ``teams`` in a collaborative,
        costs missing for a candidate, a budget without costs).
    """
    if not isinstance(data, dict):
        raise InputError("a plan must be a mapping of keys", file=file)
    plan = validate_model(Plan, data, file)
    shared = {k: data[k] for k in SHARED_KEYS if k in data}
    scenario = parse_scenario(shared, file=file, coverage_optional=True)
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
        from imsim.collaborative.config import parse_collaborative

        parse_collaborative({**collab, "teams": {"AL": ["safe_sleep"]}}, file=file)
        candidates = [k for k in STRATEGIES if k in active] if active else list(STRATEGIES)
    library: tuple = ()
    if plan.costs is not None:
        given = plan.costs.model_dump()
        for k in candidates:
            if given.get(k) is None:
                raise InputError(f"no cost given for candidate strategy {k}; give a cost per "
                                 f"birth reached for every strategy in the plan, '{LIBRARY}' for "
                                 f"imsim's cost library (or no costs)",
                                 file=file, where=f"costs.{k}")
        library = tuple(k for k in candidates if given.get(k) == LIBRARY)
        if any(v == LIBRARY for v in given.values()):
            from imsim.inputs.costs import library_costs

            values = library_costs()
            plan = plan.model_copy(update={"costs": PlanCosts(**{
                k: (values[k] if v == LIBRARY else v) for k, v in given.items()
                if v is not None and (v != LIBRARY or k in candidates)})})
    if plan.budget is not None:
        if plan.costs is None:
            raise InputError(f"a budget needs costs per birth reached for the strategies: give "
                             f"costs (USD per birth reached) or costs: {LIBRARY} (imsim's cost "
                             "library, see imsim data costs)", file=file, where="budget")
        if plan.budget.by_state and scenario.states != "all":
            for s in plan.budget.by_state:
                if s not in scenario.states:
                    raise InputError(f"{s} is not in states; allowed: "
                                     f"{', '.join(scenario.states)}", file=file,
                                     where=f"budget.by_state.{s}")
    return ResolvedPlan(plan, scenario, candidates, file, library)


def load_plan(path: str | Path) -> ResolvedPlan:
    """Read and validate a plan file.

    Parameters
    ----------
    path : str or path
        A plan YAML file.

    Returns
    -------
    ResolvedPlan
        The validated plan.

    Raises
    ------
    InputError
        If the file cannot be read or is invalid (see :func:`parse_plan`).
    """
    data = read_yaml(path, what="plan")
    return parse_plan(data, file=str(path))
