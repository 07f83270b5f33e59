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

Module layout: the scenario block (:data:`PARAMETERS`, :class:`CollaborativeConfig`,
:func:`parse_collaborative`, :func:`apply_parameters`) lives in :mod:`imsim.collaborative.config`
and the CoIIN 2013-2017 team composition in :mod:`imsim.collaborative.teams`; both are re-exported
here, so ``from imsim.collaborative.abm import ...`` works for every public name.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mesa  # StateTeam and CollaborativeModel subclass Mesa classes, so Mesa is needed at import
import numpy as np

from imsim.core.streams import uniforms
import pandas as pd

from imsim.collaborative.config import (
    DEFAULT_CEILINGS,
    PARAMETERS,
    ROOT,  # noqa: F401 -- re-exported: importable from here as before the split
    CollaborativeConfig,
    apply_parameters,
    parse_collaborative,
)
from imsim.collaborative.teams import (
    STRATEGY_INDEX,
    COIIN_2013_2017,
    COIIN_2013_2017_COUNTS,
    MAX_STRATEGIES_PER_TEAM,  # noqa: F401 -- re-exported, as above
    check_seed,
    coiin_2013_2017_teams,
)
from imsim.core.constants import FIRST_YEAR, STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.core.validation import max_year

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

_STATE_INDEX = {s: i for i, s in enumerate(STATES)}


# ---------------------------------------------------------------------------------------------
# Agent-based model
# ---------------------------------------------------------------------------------------------

class LearningNetwork:
    """The teams working on one strategy; holds the start-of-quarter progress of each member.

    Parameters
    ----------
    strategy : str
        The strategy id.
    ceiling : float
        The highest coverage a team can reach (share of the eligible, 0..1).
    """

    def __init__(self, strategy: str, ceiling: float):
        self.strategy = strategy
        self.ceiling = float(ceiling)
        self.members: list[StateTeam] = []
        self._progress: dict[str, float] = {}
        self._total = 0.0

    def progress_of(self, team: StateTeam) -> float:
        """Return a team's progress toward the ceiling, coverage / ceiling (0 if the ceiling is 0).

        Parameters
        ----------
        team : StateTeam
            A member.

        Returns
        -------
        float
            Its current progress, 0..1.
        """
        return team.coverage[self.strategy] / self.ceiling if self.ceiling > 0 else 0.0

    def snapshot(self) -> None:
        """Record every member's progress at the start of the quarter (synchronous update)."""
        self._progress = {m.state: self.progress_of(m) for m in self.members}
        self._total = sum(self._progress.values())

    def peer_progress(self, team: StateTeam) -> float:
        """Return the mean start-of-quarter progress of the *other* members (0 if alone).

        Parameters
        ----------
        team : StateTeam
            A member (its own progress is left out).

        Returns
        -------
        float
            Mean progress, 0..1, from the last :meth:`snapshot`.
        """
        n = len(self.members)
        if n <= 1:
            return 0.0
        return max(0.0, (self._total - self._progress[team.state]) / (n - 1))


class StateTeam(mesa.Agent):
    """One state's team: its strategies, capacity and coverage per strategy.

    Parameters
    ----------
    model : CollaborativeModel
        The model (its config gives capacity, starting coverage and ceilings).
    state : str
        USPS code.
    strategies : tuple of str
        The strategies the team works on.

    Attributes
    ----------
    coverage : dict of str to float
        Current coverage per strategy (share of the eligible, 0..1).
    stalled : dict of str to bool
        Whether the strategy stalled in the last support quarter.
    """

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
                u = m.stall_draws[m.support_q, self.state_index, STRATEGY_INDEX[s]]
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
    config : CollaborativeConfig or mapping
        A validated :class:`CollaborativeConfig` (or a mapping, validated here).
    years : tuple of (int, int)
        ``(first, last)`` calendar years reported, inclusive. The model steps from
        ``min(first, config.start)`` to the fourth quarter of ``last``.
    seed : int
        Non-negative integer. Seeds Mesa's RNGs (``rng=seed``; used for the activation shuffle)
        and, separately, the stall draws, which are drawn per (quarter since ``start``,
        state, strategy) from keyed streams so they do not depend on any parameter or on the
        team list.

    Raises
    ------
    InputError
        For a bad seed, bad years or an invalid configuration mapping.
    """

    def __init__(self, config: CollaborativeConfig | Mapping, years: tuple[int, int], seed: int):
        seed = check_seed(seed)
        first, last = _check_years(years)
        super().__init__(rng=seed)
        self.config = config if isinstance(config, CollaborativeConfig) else parse_collaborative(config)
        cfg = self.config
        self.years = (first, last)
        self.seed = seed
        self.sim_first = min(first, cfg.start)
        n_support_draw = max(0, (last - cfg.start + 1) * 4)
        # Keyed by quarter (imsim.core.streams): a longer horizon only appends quarters, and
        # the draws of a (quarter, state, strategy) never depend on the teams or parameters.
        shape = (len(STATES), len(STRATEGIES))
        self.stall_draws = np.array(
            [uniforms(seed, "collaborative_stalls", q, shape[0] * shape[1]).reshape(shape)
             for q in range(n_support_draw)]).reshape(n_support_draw, *shape)
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
        """Advance one quarter: snapshot network progress, step teams, record coverage."""
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
        """Return the quarterly coverage recorded so far.

        Returns
        -------
        pandas.DataFrame
            ``year`` (int64), ``quarter`` (int64, 1-4), ``state``, ``strategy``, ``coverage``
            (float64 share of the eligible, 0..1).
        """
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
    if first < FIRST_YEAR or last > max_year():
        raise InputError(
            f"years must lie within {FIRST_YEAR} to {max_year()}; got {list(years)}", where="years"
        )
    return first, last


def run_collaborative(config: CollaborativeConfig | Mapping, years: tuple[int, int], seed: int) -> pd.DataFrame:
    """Run the ABM and return quarterly coverage.

    Columns exactly ``year, quarter, state, strategy, coverage`` (quarter 1-4; coverage at the end
    of the quarter), one row per reported quarter x team x chosen strategy, sorted by year,
    quarter, state (fixed order) and strategy. Strategies a state did not choose are omitted
    (their coverage is 0). Same ``seed`` -> identical DataFrame.

    Parameters
    ----------
    config : CollaborativeConfig or mapping
        The collaborative block.
    years : tuple of (int, int)
        ``(first, last)`` calendar years reported, inclusive.
    seed : int
        Non-negative integer seed.

    Returns
    -------
    pandas.DataFrame
        Coverage as a share of each strategy's eligible population, 0..1.

    Raises
    ------
    InputError
        For a bad seed, bad years or an invalid configuration.
    """
    model = CollaborativeModel(config, years, seed)
    model.run_model()
    return model.results()


def annual_coverage(df: pd.DataFrame) -> pd.DataFrame:
    """Return annual coverage: the mean of each year's quarters.

    Parameters
    ----------
    df : pandas.DataFrame
        Quarterly coverage (:func:`run_collaborative`).

    Returns
    -------
    pandas.DataFrame
        ``year, state, strategy, coverage`` (share, 0..1).

    Raises
    ------
    InputError
        If a column is missing.
    """
    missing = {"year", "state", "strategy", "coverage"} - set(df.columns)
    if missing:
        raise InputError(f"coverage table lacks columns {sorted(missing)}", where="coverage")
    out = (
        df.groupby(["year", "state", "strategy"], sort=False, as_index=False)["coverage"].mean()
    )
    return out[["year", "state", "strategy", "coverage"]].reset_index(drop=True)


def plot_coverage(df: pd.DataFrame, path: str | Path) -> Path:
    """Save a PNG of coverage trajectories: one panel per strategy, one line per state.

    Parameters
    ----------
    df : pandas.DataFrame
        Quarterly (or annual) coverage.
    path : str or path
        The PNG to write (its folder is created).

    Returns
    -------
    Path
        ``path``.
    """
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
