"""Team composition of a learning collaborative: which state works on which strategy.

A collaborative is made of state teams, each choosing one to three strategy areas. For the
2013-2017 Infant Mortality CoIIN only the number of jurisdictions per strategy is published, not
which state chose which; :func:`coiin_2013_2017_teams` builds one assignment that reproduces those
counts exactly (illustrative, not historical). The ``teams`` key of a ``collaborative`` block is
validated against the rules here (see :mod:`imsim.collaborative.config`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from imsim.core.streams import generator
from imsim.core.constants import STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.core.validation import short

__all__ = [
    "COIIN_2013_2017",
    "COIIN_2013_2017_COUNTS",
    "MAX_STRATEGIES_PER_TEAM",
    "STRATEGY_INDEX",
    "check_seed",
    "coiin_2013_2017_teams",
]

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
#: Position of each strategy in the fixed order (teams list their strategies in this order).
STRATEGY_INDEX: dict[str, int] = {s: i for i, s in enumerate(STRATEGIES)}


def check_seed(seed: Any) -> int:
    """Return ``seed`` as an ``int`` if it is a whole number >= 0; else raise InputError.

    Parameters
    ----------
    seed : Any
        The value given (booleans and floats are refused).

    Returns
    -------
    int
        The seed.

    Raises
    ------
    InputError
        For anything else (``where="seed"``).
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)) or seed < 0:
        raise InputError(f"expected a whole number >= 0, got {short(seed)}", where="seed")
    return int(seed)




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
    """Return a stand-in for the 2013-2017 IM CoIIN team composition (51 jurisdictions).

    Published: how many jurisdictions worked on each strategy (safe_sleep 37,
    preconception_care 29, social_determinants 23, smoking_cessation 21, preterm_prevention 21,
    risk_appropriate_care 14; 145 team-strategy pairs) and that each chose 1 to 3 strategies.
    *Not* published here: which state chose which. This function builds one assignment that
    reproduces the counts exactly; it is illustrative, not historical.

    Construction (deterministic for a given ``seed``, through the keyed generator
    ``imsim.core.streams.generator(seed, "collaborative_assignment")``):

    1. Team sizes. 145 pairs over 51 teams of size 1-3 means ``t`` teams of 3, ``94 - 2t`` of 2
       and ``t - 43`` of 1, with ``43 <= t <= 47``; ``t`` is drawn uniformly from that range and
       the sizes are dealt to the states in a random order.
    2. Strategies. States are visited in a random order; each draws its strategies without
       replacement with probability proportional to the strategy's remaining quota. A draw is
       kept only if the remaining quotas can still be met (Gale-Ryser condition); after 200
       rejected draws the state takes the strategies with the largest remaining quotas
       (always feasible). The result therefore meets the counts exactly.

    Parameters
    ----------
    seed : int
        Whole number >= 0.

    Returns
    -------
    dict of str to tuple of str
        ``{state: (strategy, ...)}`` in the fixed state and strategy order (a copy of a cached
        result).

    Raises
    ------
    InputError
        For a bad seed.
    """
    seed = check_seed(seed)
    if seed in _COIIN_CACHE:
        return dict(_COIIN_CACHE[seed])
    rng = generator(seed, "collaborative_assignment")
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
        chosen[state] = tuple(sorted((strategies[c] for c in pick), key=STRATEGY_INDEX.__getitem__))
    assert all(q == 0 for q in quotas), "COIIN assignment did not meet the published counts"
    result = {st: chosen[st] for st in STATES}
    _COIIN_CACHE[seed] = result
    return dict(result)
