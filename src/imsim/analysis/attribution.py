"""Attribution: deaths averted credited to each strategy of a portfolio (Shapley values).

Strategies interact through the model (two strategies can reach the same birth), so effects do
not add. The Shapley value of a strategy is its marginal contribution averaged over every order
in which the portfolio could be assembled; the values sum exactly to the portfolio's total.
Evaluated with the expected engine at the evidence's point values (2**k scenario evaluations for
k active strategies; counterfactual exposure changes count as one more "strategy"). The shares are
then applied to the run's own headline deaths averted per state, so for a microsim run the
credits also sum to its (simulated) total.
"""
from __future__ import annotations

from itertools import combinations
from math import factorial

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, STATES, STRATEGIES
from imsim.birth.engines import expected
from imsim.birth.kernels import N_BANDS, OUT_DEATHS
from imsim.birth.params import build_tables
from imsim.birth.strategies import scenario_arm

EXPOSURE_PLAYER = "exposure_changes"


def _players(result) -> list[str]:
    inputs = result.inputs
    players = [k for k in STRATEGIES if np.any(inputs.coverage[k] > 0)]
    sc = inputs.scenario
    if any(sc.exposure_changes(s) for s in sc.state_list):
        players.append(EXPOSURE_PLAYER)
    return players


def attribution(result) -> pd.DataFrame:
    """Return the Shapley deaths averted per state (and ``ALL``) and strategy.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run (its point-draw effects and calibration are used).

    Returns
    -------
    pandas.DataFrame
        ``state, strategy, deaths_averted, share_pct``: credits (deaths over the horizon) that
        sum to the state's total, and their percentage of it; ``exposure_changes`` is a
        "strategy" when the scenario changes exposures. Empty when nothing is active.
    """
    from imsim.inputs.fit import fit_for

    inputs = result.inputs
    players = _players(result)
    cols = ["state", "strategy", "deaths_averted", "share_pct"]
    if not players:
        return pd.DataFrame(columns=cols)
    effects = result.effects[0]
    fit = fit_for(inputs.baseline, effects, inputs.calibration)
    base = inputs.baseline.params(inputs.cells, effects, fit)
    s_idx = inputs.cells.s_idx
    n_states = len(STATES)

    def deaths(params):
        c = expected(build_tables(params))
        d = c[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1)
        return np.bincount(s_idx, d, minlength=n_states)

    d0 = deaths(base)
    value = {}
    k = len(players)
    for size in range(k + 1):
        for subset in combinations(players, size):
            only = {p for p in subset if p != EXPOSURE_PLAYER}
            scen = scenario_arm(base, inputs.levers, effects, strategies=only,
                                exposures=EXPOSURE_PLAYER in subset)
            value[frozenset(subset)] = d0 - deaths(scen)
    phi = {p: np.zeros(n_states) for p in players}
    for p in players:
        others = [q for q in players if q != p]
        for size in range(k):
            w = factorial(size) * factorial(k - size - 1) / factorial(k)
            for subset in combinations(others, size):
                s = frozenset(subset)
                phi[p] += w * (value[s | {p}] - value[s])
    present = sorted(set(s_idx.tolist()))
    rows = []
    total = value[frozenset(players)]
    summary = result.summary
    headline = summary[summary.race == ALL].set_index("state")["deaths_averted"]
    for si in present + [None]:
        st = STATES[si] if si is not None else ALL
        tot = total[si] if si is not None else total.sum()
        for p in players:
            v = phi[p][si] if si is not None else phi[p].sum()
            share = v / tot if abs(tot) > 1e-12 else np.nan
            if result.engine != "expected" and np.isfinite(share):
                credit = share * float(headline[st])
            else:
                credit = v
            rows.append({"state": st, "strategy": p, "deaths_averted": credit,
                         "share_pct": 100.0 * share})
    if result.engine != "expected":
        # National credits are the sum of the state credits (each scaled to its state total).
        df = pd.DataFrame(rows, columns=cols)
        nat = df[df.state != ALL].groupby("strategy", sort=False)["deaths_averted"].sum()
        mask = df.state == ALL
        df.loc[mask, "deaths_averted"] = df.loc[mask, "strategy"].map(nat).to_numpy()
        tot_nat = df.loc[mask, "deaths_averted"].sum()
        df.loc[mask, "share_pct"] = 100.0 * df.loc[mask, "deaths_averted"] / tot_nat \
            if abs(tot_nat) > 1e-12 else np.nan
        return df
    return pd.DataFrame(rows, columns=cols)
