"""The cost library of ``imsim recommend``: USD per birth reached per strategy, with a range.

``costs.csv`` (built by ``scripts/build_data.py``, listed by ``imsim data costs``) gives per
strategy the cost per birth reached, a ``low``-``high`` range, the price year, a ``status``
(``sourced``: a published programme cost; ``derived``: our arithmetic on published figures with a
labelled ASSUMPTION; ``illustrative``: no published programme cost found, a reasoned default) and
the source with URL and quoted figures. A plan uses it with ``costs: library``
(:mod:`imsim.config.plan`); the probabilistic analysis draws library costs from
triangular(low, value, high) with the keyed stream ``cost_draw`` (:func:`library_cost_draws`).
The table is not in ``tables.json`` (nor the data hash): costs never feed the birth model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

#: Columns of the packaged cost library (``src/imsim/inputs/data/costs.csv``, built by
#: ``scripts/build_data.py``; not in ``tables.json`` because costs never feed the birth model).
COST_LIBRARY_COLUMNS = ["strategy", "usd_per_birth_reached", "low", "high", "price_year", "status",
                        "birth_reached", "priced_option", "source", "url", "quote", "note"]
#: ``status`` values: a published programme cost, our arithmetic on published figures with a
#: labelled assumption, or a reasoned default that is not data.
COST_STATUSES = ("sourced", "derived", "illustrative")
def load_cost_library() -> pd.DataFrame:
    """Return the cost library, one row per strategy in ``STRATEGIES`` order, checked.

    Returns
    -------
    pandas.DataFrame
        :data:`COST_LIBRARY_COLUMNS`; ``usd_per_birth_reached``, ``low`` and ``high`` in USD of
        ``price_year`` (empty for illustrative rows).

    Raises
    ------
    InputError
        If the packaged table is malformed (a column missing, a strategy missing or repeated, an
        unknown status, or not ``0 <= low <= usd_per_birth_reached <= high``).
    """
    from imsim.core.constants import STRATEGIES
    from imsim.core.errors import InputError
    from imsim.inputs.data import load_table

    df = load_table("costs")
    missing = [c for c in COST_LIBRARY_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"the cost library lacks columns {', '.join(missing)}", file="costs.csv")
    if sorted(df.strategy) != sorted(STRATEGIES):
        raise InputError("the cost library must have one row per strategy; allowed: "
                         f"{', '.join(STRATEGIES)}", file="costs.csv")
    bad = df[~df.status.isin(COST_STATUSES) | (df.low < 0) | (df.low > df.usd_per_birth_reached)
             | (df.usd_per_birth_reached > df.high)]
    if len(bad):
        raise InputError(f"cost of {bad.strategy.iloc[0]}: need status in {COST_STATUSES} and "
                         "0 <= low <= usd_per_birth_reached <= high", file="costs.csv")
    order = {k: i for i, k in enumerate(STRATEGIES)}
    df = df.sort_values("strategy", key=lambda c: c.map(order)).reset_index(drop=True)
    return df[COST_LIBRARY_COLUMNS]


def library_costs() -> dict[str, float]:
    """Return the library's base value of each strategy, USD per birth reached."""
    lib = load_cost_library()
    return {r.strategy: float(r.usd_per_birth_reached) for r in lib.itertuples(index=False)}


def triangular_ppf(u, low, mode, high):
    """Return the quantile ``u`` of the triangular distribution on [low, high] with mode ``mode``.

    Parameters
    ----------
    u : array_like of float
        Probabilities in [0, 1].
    low, mode, high : float
        ``low <= mode <= high``; ``low == high`` gives the constant.

    Returns
    -------
    numpy.ndarray
        float, same shape as ``u``.
    """
    u = np.asarray(u, dtype=float)
    a, c, b = float(low), float(mode), float(high)
    if b <= a:
        return np.full(u.shape, a)
    fc = (c - a) / (b - a)
    left = a + np.sqrt(u * (b - a) * (c - a))
    right = b - np.sqrt((1.0 - u) * (b - a) * (b - c))
    return np.where(u < fc, left, right)


def library_cost_draws(strategies, seed: int, n_draws: int) -> np.ndarray:
    """Return the cost per birth reached of each strategy in every uncertainty draw.

    Draw 0 is the library's value (the point, like the evidence point values); draw d >= 1 is
    the triangular(low, value, high) quantile of the uniform d of the keyed stream
    ``cost_draw`` indexed by the strategy id (:mod:`imsim.core.streams`): a strategy's draws do
    not depend on which other strategies are candidates or on how many draws were asked for.

    Parameters
    ----------
    strategies : list of str
        Strategy ids (axis K).
    seed : int
        The plan's seed.
    n_draws : int
        Number of draws D (the point plus the sampled draws).

    Returns
    -------
    numpy.ndarray
        float ``[D, K]``, USD per birth reached.
    """
    from imsim.core.streams import uniforms

    lib = load_cost_library().set_index("strategy")
    out = np.empty((int(n_draws), len(strategies)))
    for j, k in enumerate(strategies):
        r = lib.loc[k]
        u = uniforms(seed, "cost_draw", k, int(n_draws))
        out[:, j] = triangular_ppf(u, r.low, r.usd_per_birth_reached, r.high)
        out[0, j] = float(r.usd_per_birth_reached)
    return out


def priced_option_warnings(options: dict) -> list[str]:
    """Return one line per candidate whose options differ from what the library's cost prices.

    Parameters
    ----------
    options : dict of str to dict
        Candidate strategy -> its options (``program``, ``components``, ``policy``...).

    Returns
    -------
    list of str
        E.g. the library prices smoking cessation as counselling but the plan uses incentives.
    """
    lib = load_cost_library().set_index("strategy")
    out = []
    for k, opts in options.items():
        priced = lib.loc[k, "priced_option"] if k in lib.index else ""
        if not isinstance(priced, str) or "=" not in priced:
            continue
        key, want = priced.split("=", 1)
        have = opts.get(key)
        have = "+".join(have) if isinstance(have, (list, tuple)) else have
        if have is not None and str(have) != want:
            out.append(f"costs: library prices {k} as {key}={want} but the plan uses {key}={have}; "
                       f"give your own cost for it, e.g. costs: {{{k}: <USD per birth reached>, "
                       f"<the others>: library}}")
    return out
