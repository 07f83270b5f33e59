"""Cost-effectiveness of strategy portfolios, as health economists report it (``imsim recommend``).

From the per-draw deaths averted and the plan's costs (USD per birth reached x births reached)
this module computes, per state and nationally:

* ``life_years_gained`` = deaths averted x the discounted U.S. life expectancy at birth
  (:func:`discounted_life_expectancy`; 3% a year by default, 0% and 5% as sensitivity);
* ``cost_per_death_averted`` = cost / expected deaths averted;
* the efficient frontier (:func:`frontier`): strict and extended dominance and the incremental
  cost-effectiveness ratio (ICER, USD per life-year gained) of each frontier option against the
  next less effective one, from the expected values over draws, with "no new portfolio"
  (cost 0, effect 0) as the comparator;
* the cost-effectiveness acceptability curve (:func:`ceac`): for each willingness to pay per
  life-year, the probability over the paired draws that each option (including ``none``) has the
  highest net monetary benefit, WTP x life-years gained - cost.

Cited inputs are in :data:`SOURCES`. Costs and deaths over the horizon are not discounted to a
common year (ASSUMPTION: horizons of a few years; the discounting here is over the lifetime of
a child whose death is averted). See docs/recommend.md, "Cost-effectiveness".
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from imsim.inputs.costs import (  # noqa: F401  (the cost library, re-exported here)
    COST_LIBRARY_COLUMNS,
    COST_STATUSES,
    library_cost_draws,
    library_costs,
    load_cost_library,
    priced_option_warnings,
    triangular_ppf,
)

#: U.S. life expectancy at birth, total population, 2017 (years).
LIFE_EXPECTANCY_AT_BIRTH = 78.6
#: Base-case annual discount rate for life-years (Second Panel on Cost-Effectiveness).
DISCOUNT_RATE = 0.03
#: Sensitivity discount rates (lower and upper).
SENSITIVITY_RATES = (0.0, 0.05)
#: Willingness-to-pay grid of the acceptability curve, USD per life-year gained.
WTP_GRID = np.arange(0.0, 500_001.0, 10_000.0)
#: The comparator: no new portfolio (cost 0, nothing averted).
NONE = "none"
#: Assumed range of a plan's own (illustrative) costs for the user's sensitivity analyses, as
#: multiples of the plan value (reported in the manifest; library costs carry their own range).
COST_RANGE = (0.5, 2.0)

SOURCES = pd.DataFrame([
    {"quantity": "life_expectancy_at_birth", "value": LIFE_EXPECTANCY_AT_BIRTH,
     "unit": "years",
     "source": "Arias E, Xu J. United States Life Tables, 2017. National Vital Statistics "
               "Reports 68(7), June 24, 2019: 'In 2017, the overall expectation of life at birth "
               "was 78.6 years' (Abstract; Table A). "
               "https://www.cdc.gov/nchs/data/nvsr/nvsr68/nvsr68_07-508.pdf"},
    {"quantity": "discount_rate", "value": DISCOUNT_RATE, "unit": "per year",
     "source": "Sanders GD et al. Recommendations for conduct, methodological practices, and "
               "reporting of cost-effectiveness analyses: Second Panel on Cost-Effectiveness in "
               "Health and Medicine. JAMA 2016;316(10):1093-1103 (3% for costs and health "
               "effects). https://doi.org/10.1001/jama.2016.12195"},
    {"quantity": "discount_rate_sensitivity", "value": "0, 0.05", "unit": "per year",
     "source": "Sensitivity range conventional in U.S. analyses (Sanders et al. 2016, above)"},
    {"quantity": "cost_range_for_sensitivity", "value": f"{COST_RANGE[0]}x to {COST_RANGE[1]}x",
     "unit": "x plan cost",
     "source": "ASSUMPTION: a plan's own costs are illustrative, not data (library costs carry "
               "their own low-high range, costs.csv)"},
])

#: Columns added to portfolios.csv (after the existing ones, in this order).
PORTFOLIO_CE_COLUMNS = [
    "cost_per_death_averted", "life_years_gained", "life_years_gained_lo",
    "life_years_gained_hi", "life_years_gained_0pct", "life_years_gained_5pct", "icer",
    "dominance", "cost_note",
]
#: Columns of cost_effectiveness.csv (every state, and ``national``).
CE_COLUMNS = ["state", "portfolio", "cost", "deaths_averted", "cost_per_death_averted",
              "life_years_gained", "life_years_gained_0pct", "life_years_gained_5pct", "icer",
              "dominance", "cost_note"]
CEAC_COLUMNS = ["state", "wtp_per_life_year", "portfolio", "p_best"]

ILLUSTRATIVE_NOTE = ("costs are the plan's inputs (USD per birth reached x births reached); "
                     "the costs in the example plans are ILLUSTRATIVE ASSUMPTIONS")
NO_COST_NOTE = "no costs in the plan: cost-based quantities not computed"


LIBRARY_NOTE = ("costs from imsim's cost library (costs.csv: USD per birth reached x births reached; "
                "sourced, derived or ILLUSTRATIVE per strategy, see imsim data costs); the CEAC draws "
                "each strategy's cost from triangular(low, value, high)")


def discounted_life_expectancy(le: float = LIFE_EXPECTANCY_AT_BIRTH,
                               rate: float = DISCOUNT_RATE) -> float:
    """Return the present value at birth of ``le`` years of life, discounted annually at ``rate``.

    Year t (t = 0, 1, ...) of life counts (1 + rate)^-t; the final fractional year counts its
    fraction: sum_{t<n} (1+r)^-t + (le - n)(1+r)^-n with n = floor(le). At rate 0 it is ``le``.

    Parameters
    ----------
    le : float
        Life expectancy in years (>= 0).
    rate : float
        Annual discount rate (>= 0).

    Returns
    -------
    float
        Discounted life-years.
    """
    n = int(math.floor(le))
    v = 1.0 / (1.0 + rate)
    return float(sum(v ** t for t in range(n)) + (le - n) * v ** n)


def frontier(cost, effect):
    """Return the dominance class and ICER of each option against a zero-cost comparator.

    The comparator ("no new portfolio": cost 0, effect 0) is implicit. An option is ``strict``ly
    dominated when another option (or the comparator) costs no more and gains no less, and is
    better in one (an exact twin of an earlier option also counts as ``strict``); ``extended``
    when it is not strictly dominated but its ICER exceeds that of the next more effective
    option (a mix of its neighbours does better); otherwise ``frontier``. Along the frontier
    (sorted by cost) the ICER = (C_k - C_{k-1}) / (E_k - E_{k-1}) against the previous frontier
    option (the comparator for the first); it is non-decreasing.

    Parameters
    ----------
    cost : array_like of float
        ``[n]`` expected costs (USD).
    effect : array_like of float
        ``[n]`` expected effects (life-years gained).

    Returns
    -------
    dominance : numpy.ndarray
        object ``[n]``: ``"frontier"``, ``"strict"`` or ``"extended"`` (``""`` where cost or
        effect is NaN).
    icer : numpy.ndarray
        float ``[n]``: USD per unit of effect on the frontier, NaN elsewhere.
    """
    c = np.asarray(cost, dtype=float)
    e = np.asarray(effect, dtype=float)
    n = c.size
    dom = np.full(n, "", dtype=object)
    icer = np.full(n, np.nan)
    ok = np.flatnonzero(~(np.isnan(c) | np.isnan(e)))
    if ok.size == 0:
        return dom, icer
    # index -1 = the comparator
    cc = np.concatenate([c[ok], [0.0]])
    ee = np.concatenate([e[ok], [0.0]])
    m = ok.size
    strict = np.zeros(m + 1, dtype=bool)
    for i in range(m + 1):
        for j in range(m + 1):
            if i == j:
                continue
            if cc[j] <= cc[i] and ee[j] >= ee[i]:
                better = cc[j] < cc[i] or ee[j] > ee[i]
                twin_first = (not better) and (j == m or (i != m and j < i))
                if better or twin_first:
                    strict[i] = True
                    break
    cand = [i for i in range(m + 1) if not strict[i]]
    cand.sort(key=lambda i: (cc[i], ee[i]))
    extended = set()
    changed = True
    while changed:
        changed = False
        # the first candidate (cheapest) is the reference; ICERs between successive candidates
        ratios = [(cc[cand[k]] - cc[cand[k - 1]]) / (ee[cand[k]] - ee[cand[k - 1]])
                  for k in range(1, len(cand))]
        for k in range(len(ratios) - 1):
            if ratios[k] > ratios[k + 1]:
                extended.add(cand[k + 1])
                del cand[k + 1]
                changed = True
                break
    # the comparator heads the frontier unless dominated by a zero-cost option
    ref_c, ref_e = 0.0, 0.0
    for k, i in enumerate(cand):
        if i == m:
            continue
        if k == 0:      # the comparator is dominated: the cheapest option is the reference
            ref_c, ref_e = cc[i], ee[i]
            icer_i = np.nan if cc[i] > 0 else 0.0
        else:
            prev = cand[k - 1]
            ref_c, ref_e = cc[prev], ee[prev]
            icer_i = (cc[i] - ref_c) / (ee[i] - ref_e)
        icer[ok[i]] = icer_i
        dom[ok[i]] = "frontier"
    for i in range(m):
        if strict[i]:
            dom[ok[i]] = "strict"
        elif i in extended:
            dom[ok[i]] = "extended"
    return dom, icer


def ceac(lyg: np.ndarray, cost: np.ndarray, wtp=WTP_GRID) -> np.ndarray:
    """Return the probability that each option, or ``none``, has the highest net monetary benefit.

    Net monetary benefit of option p in draw r: NMB = wtp x lyg[r, p] - cost[p] (``none``: 0).
    Ties within a draw are split equally.

    Parameters
    ----------
    lyg : numpy.ndarray
        float ``[R, P]``: life-years gained per draw and option.
    cost : numpy.ndarray
        float ``[P]`` (or ``[R, P]``): cost of each option, USD.
    wtp : array_like of float
        ``[W]`` willingness to pay per life-year, USD.

    Returns
    -------
    numpy.ndarray
        float ``[W, P + 1]``; the last column is ``none``; each row sums to 1.
    """
    lyg = np.asarray(lyg, dtype=float)
    r, p = lyg.shape
    cst = np.broadcast_to(np.asarray(cost, dtype=float), (r, p))
    out = np.zeros((len(wtp), p + 1))
    for w, lam in enumerate(np.asarray(wtp, dtype=float)):
        nmb = np.concatenate([lam * lyg - cst, np.zeros((r, 1))], axis=1)
        best = nmb.max(axis=1, keepdims=True)
        tol = 1e-9 * np.maximum(1.0, np.abs(best))
        win = nmb >= best - tol
        out[w] = (win / win.sum(axis=1, keepdims=True)).mean(axis=0)
    return out


def cost_effectiveness(states, ids, da: np.ndarray, cost: np.ndarray, has_costs: bool,
                       wtp=WTP_GRID, cost_draws: np.ndarray | None = None):
    """Return the cost-effectiveness tables of a recommendation.

    Parameters
    ----------
    states : list of str
        The ``S`` states.
    ids : list of str
        The ``P`` portfolio ids.
    da : numpy.ndarray
        float ``[R, P, S]``: deaths averted per draw (the draws the statistics use).
    cost : numpy.ndarray
        float ``[P, S]``: cost in USD (NaN without costs).
    has_costs : bool
        Whether the plan gives costs; without them every cost-based quantity is NaN, the
        dominance empty and the CEAC empty.
    wtp : array_like of float
        Willingness-to-pay grid, USD per life-year.
    cost_draws : numpy.ndarray, optional
        float ``[R, P, S]``: cost in each draw (costs from the cost library); the CEAC then
        compares net monetary benefits with each draw's own cost (paired with its deaths
        averted). The frontier and ICERs use ``cost``.

    Returns
    -------
    per_state : pandas.DataFrame
        ``state, portfolio`` + :data:`PORTFOLIO_CE_COLUMNS`, one row per state x portfolio.
    table : pandas.DataFrame
        :data:`CE_COLUMNS` for every state and ``national`` (every state adopting the portfolio).
    ceac_df : pandas.DataFrame
        :data:`CEAC_COLUMNS` (empty without costs).
    """
    f3 = discounted_life_expectancy(rate=DISCOUNT_RATE)
    f0 = discounted_life_expectancy(rate=SENSITIVITY_RATES[0])
    f5 = discounted_life_expectancy(rate=SENSITIVITY_RATES[1])
    note = (NO_COST_NOTE if not has_costs else
            LIBRARY_NOTE if cost_draws is not None else ILLUSTRATIVE_NOTE)
    cost = np.asarray(cost, dtype=float) if has_costs else np.full(cost.shape, np.nan)
    lyg = da * f3                                              # [R, P, S]
    cd = (np.broadcast_to(cost, da.shape) if cost_draws is None
          else np.asarray(cost_draws, dtype=float))            # [R, P, S]
    groups = [(st, lyg[:, :, s], da[:, :, s], cost[:, s], cd[:, :, s])
              for s, st in enumerate(states)]
    groups.append(("national", lyg.sum(axis=2), da.sum(axis=2), cost.sum(axis=1),
                   cd.sum(axis=2)))
    per_rows, table_rows, ceac_rows = [], [], []
    for g, (st, ly, d, c, c_draws) in enumerate(groups):
        ely, ed = ly.mean(axis=0), d.mean(axis=0)
        lo, hi = np.percentile(ly, 2.5, axis=0), np.percentile(ly, 97.5, axis=0)
        if has_costs:
            dom, icer = frontier(c, ely)
            with np.errstate(divide="ignore", invalid="ignore"):
                cpd = np.where(ed > 0, c / ed, np.nan)
        else:
            dom, icer, cpd = np.full(len(ids), "", dtype=object), np.full(len(ids), np.nan), \
                np.full(len(ids), np.nan)
        for p, pid in enumerate(ids):
            row = {"state": st, "portfolio": pid, "cost": c[p], "deaths_averted": ed[p],
                   "cost_per_death_averted": cpd[p], "life_years_gained": ely[p],
                   "life_years_gained_lo": lo[p], "life_years_gained_hi": hi[p],
                   "life_years_gained_0pct": ed[p] * f0, "life_years_gained_5pct": ed[p] * f5,
                   "icer": icer[p], "dominance": dom[p], "cost_note": note}
            table_rows.append(row)
            if st != "national":
                per_rows.append(row)
        if has_costs:
            prob = ceac(ly, c_draws, wtp)
            for w, lam in enumerate(wtp):
                for p, pid in enumerate([*ids, NONE]):
                    ceac_rows.append({"state": st, "wtp_per_life_year": float(lam),
                                      "portfolio": pid, "p_best": prob[w, p]})
    per_state = pd.DataFrame(per_rows, columns=["state", "portfolio", *PORTFOLIO_CE_COLUMNS])
    table = pd.DataFrame(table_rows, columns=CE_COLUMNS)
    return per_state, table, pd.DataFrame(ceac_rows, columns=CEAC_COLUMNS)


def manifest_entry(costs: dict | None, library: tuple | list = ()) -> dict:
    """Return the manifest's ``cost_effectiveness`` entry: inputs, sources and the cost label.

    Parameters
    ----------
    costs : dict or None
        The plan's costs, USD per birth reached by strategy (None: no costs).
    library : sequence of str
        Strategies whose cost came from the cost library (their rows, with sources and the
        low-high range the CEAC draws from, are included).

    Returns
    -------
    dict
        JSON-ready.
    """
    entry = None
    if costs is not None:
        lib_rows = []
        if library:
            lib = load_cost_library()
            lib = lib[lib.strategy.isin(list(library))].astype(object)
            lib_rows = lib.where(lib.notna(), None).to_dict(orient="records")
        entry = {
            "usd_per_birth_reached": costs,
            "from_library": list(library),
            "label": ("plan costs: ILLUSTRATIVE ASSUMPTIONS unless replaced by the user's own "
                      "programme costs; library costs: as each row's status says (sourced, "
                      "derived or illustrative)"),
            "uncertainty": ({k: "triangular(low, value, high) from the cost library, keyed "
                                "stream cost_draw; used by the CEAC" for k in library}
                            | {k: "fixed (the plan's value)" for k in costs
                               if k not in set(library)}),
            "library": lib_rows,
            "assumption_range_for_sensitivity": {
                k: [v * COST_RANGE[0], v * COST_RANGE[1]] for k, v in costs.items()
                if v is not None and k not in set(library)},
        }
    return {
        "life_expectancy_at_birth": LIFE_EXPECTANCY_AT_BIRTH,
        "discount_rate": DISCOUNT_RATE,
        "sensitivity_discount_rates": list(SENSITIVITY_RATES),
        "discounted_life_expectancy": {f"{r:g}": discounted_life_expectancy(rate=r)
                                       for r in (DISCOUNT_RATE, *SENSITIVITY_RATES)},
        "wtp_grid_usd_per_life_year": [float(WTP_GRID[0]), float(WTP_GRID[-1]),
                                       float(WTP_GRID[1] - WTP_GRID[0])],
        "sources": SOURCES.to_dict(orient="records"),
        "costs": entry,
        "note": (NO_COST_NOTE if costs is None else LIBRARY_NOTE if library
                 else ILLUSTRATIVE_NOTE),
    }
