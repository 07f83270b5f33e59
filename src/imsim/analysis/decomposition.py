"""Where a group's gap comes from: Kitagawa decomposition and a periods-of-risk table.

A group's infant mortality rate is ``R = sum_b w_b m_b`` over the six gestational-age bands, with
``w_b`` the share of its live births in band ``b`` and ``m_b`` its deaths per live birth in that
band. The gap to the reference (non-Hispanic white, same state; national NH white for ``state=ALL``)
splits exactly into two parts (Kitagawa 1955, the two-factor case of Das Gupta 1993):

* ``ga_distribution = sum_b (w_gb - w_rb) (m_gb + m_rb) / 2`` -- more (or fewer) births at
  gestational ages that carry higher mortality: prematurity;
* ``ga_specific_mortality = sum_b (m_gb - m_rb) (w_gb + w_rb) / 2`` -- higher (or lower) mortality
  at the same gestational age: care, safe sleep, postneonatal conditions.

The two sum to the gap for any ``m_b`` where ``w_b = 0`` (``w_g m_g - w_r m_r`` term by term), so a
band with no births contributes its rate as 0. Rates are per 1,000 live births.

The periods-of-risk table is modelled on Perinatal Periods of Risk (PPOR; Sappenfield et al.
2010, Matern Child Health J 14:838-850), with two differences: imsim has no fetal deaths and no
birthweight, so its periods are gestational-age groups (<32, 32-36, 37+ weeks) x age at death
(neonatal: the ``neonatal`` cause; postneonatal: ``suid`` + ``other_postneonatal``) of infant
deaths among live births, and rates are per 1,000 live births (not feto-infant). Excess deaths of
a group in a period are its deaths there minus its births times the reference's rate there.

Both tables are computed from a run's point draw (draw 0) of the expected or simulated counts.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
from imsim.core.constants import ALL, RACES, STATES

DECOMPOSITION_COLUMNS = ["state", "race", "arm", "gap_per_1000", "ga_distribution",
                         "ga_specific_mortality"]
PERIODS_COLUMNS = ["state", "race", "arm", "ga_group", "age_at_death", "births", "deaths",
                   "rate_per_1000", "reference_rate_per_1000", "excess_deaths"]
#: Gestational-age groups of the periods-of-risk table: name -> GA bands (indices of GA_BANDS).
GA_GROUPS = {"<32": (0, 1), "32-36": (2, 3), "37+": (4, 5)}
#: Age at death: name -> causes (indices of CAUSES: neonatal, suid, other_postneonatal).
AGES_AT_DEATH = {"neonatal": (0,), "postneonatal": (1, 2)}
REFERENCE = "nh_white"
#: A gap smaller than this (per 1,000 live births) is described as no gap in words (its split is
#: still in decomposition.csv).
NEGLIGIBLE_GAP = 0.1


def kitagawa(births_g, deaths_g, births_r, deaths_r):
    """Split a group's rate gap to a reference into GA-distribution and GA-specific parts.

    Parameters
    ----------
    births_g, deaths_g : array_like of float
        ``[..., N_BANDS]`` live births and infant deaths of the group by GA band.
    births_r, deaths_r : array_like of float
        The same for the reference group.

    Returns
    -------
    gap, distribution, mortality : numpy.ndarray
        Per 1,000 live births, shape ``[...]``; ``distribution + mortality == gap`` up to
        rounding. NaN where a group has no births.
    """
    bg, dg = np.asarray(births_g, float), np.asarray(deaths_g, float)
    br, dr = np.asarray(births_r, float), np.asarray(deaths_r, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        wg = bg / bg.sum(axis=-1, keepdims=True)
        wr = br / br.sum(axis=-1, keepdims=True)
        mg = np.where(bg > 0, dg / np.where(bg > 0, bg, 1.0), 0.0)
        mr = np.where(br > 0, dr / np.where(br > 0, br, 1.0), 0.0)
    dist = 1000.0 * ((wg - wr) * (mg + mr) / 2.0).sum(axis=-1)
    mort = 1000.0 * ((mg - mr) * (wg + wr) / 2.0).sum(axis=-1)
    gap = 1000.0 * ((wg * mg).sum(axis=-1) - (wr * mr).sum(axis=-1))
    return gap, dist, mort


def _groups(cells):
    """Row keys and cell indices: each state x race, state x ALL, ALL x race, ALL x ALL (the
    rows of summary.csv, in its order)."""
    st = np.asarray(STATES)[cells.s_idx]
    rc = np.asarray(RACES)[cells.r_idx]
    keys, idx = [], []
    for s in [s for s in STATES if s in set(st)] + [ALL]:
        smask = (st == s) if s != ALL else np.ones(cells.n, bool)
        for r in list(RACES) + [ALL]:
            keys.append({"state": s, "race": r})
            idx.append(np.flatnonzero(smask & ((rc == r) if r != ALL else True)))
    return keys, idx


def _band_counts(result):
    """Group keys and point-draw births [G, B] and deaths [2 arms, G, 3 causes, B]."""
    keys, idx = _groups(result.inputs.cells)
    arms = np.stack([result.arms.baseline[0], result.arms.scenario[0]])   # [2, n, K]
    agg = np.stack([arms[:, i, :].sum(axis=1) for i in idx], axis=1)     # [2, G, K]
    births = agg[:, :, OUT_BIRTHS:OUT_BIRTHS + N_BANDS]                   # [2, G, B]
    deaths = agg[:, :, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(2, len(keys), 3, N_BANDS)
    return keys, births, deaths


def decomposition(result) -> pd.DataFrame:
    """The ``decomposition`` table of a run: each group's gap to NH white, split in two.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.

    Returns
    -------
    pandas.DataFrame
        :data:`DECOMPOSITION_COLUMNS`, one row per state (and ``ALL``) x race other than NH white
        (and ``ALL``) x arm (``baseline``, ``scenario``); per 1,000 live births, point draw.
    """
    keys, births, deaths = _band_counts(result)
    pos = {(k["state"], k["race"]): g for g, k in enumerate(keys)}
    rows = []
    for a, arm in enumerate(("baseline", "scenario")):
        d = deaths[a].sum(axis=1)                                         # [G, B]
        for g, k in enumerate(keys):
            if k["race"] == REFERENCE:
                continue
            r = pos[(k["state"], REFERENCE)]
            gap, dist, mort = kitagawa(births[a, g], d[g], births[a, r], d[r])
            rows.append({"state": k["state"], "race": k["race"], "arm": arm,
                         "gap_per_1000": float(gap), "ga_distribution": float(dist),
                         "ga_specific_mortality": float(mort)})
    return pd.DataFrame(rows, columns=DECOMPOSITION_COLUMNS)


def periods_of_risk(result) -> pd.DataFrame:
    """The ``periods_of_risk`` table: excess deaths by GA group x age at death vs NH white.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.

    Returns
    -------
    pandas.DataFrame
        :data:`PERIODS_COLUMNS`, one row per state (and ``ALL``) x race (NH white, the reference,
        has 0 excess) x arm x GA group x age at death; ``births`` are all live births of the group
        (the denominator of every period), rates per 1,000 live births, point draw.
    """
    keys, births, deaths = _band_counts(result)
    pos = {(k["state"], k["race"]): g for g, k in enumerate(keys)}
    rows = []
    for a, arm in enumerate(("baseline", "scenario")):
        total = births[a].sum(axis=-1)                                   # [G]
        for gname, bands in GA_GROUPS.items():
            for age, causes in AGES_AT_DEATH.items():
                dth = deaths[a][:, list(causes)][:, :, list(bands)].sum(axis=(1, 2))   # [G]
                with np.errstate(invalid="ignore", divide="ignore"):
                    rate = np.where(total > 0, dth / np.where(total > 0, total, 1.0), np.nan)
                for g, k in enumerate(keys):
                    ref = rate[pos[(k["state"], REFERENCE)]]
                    rows.append({"state": k["state"], "race": k["race"], "arm": arm,
                                 "ga_group": gname, "age_at_death": age,
                                 "births": float(total[g]), "deaths": float(dth[g]),
                                 "rate_per_1000": 1000.0 * rate[g],
                                 "reference_rate_per_1000": 1000.0 * ref,
                                 "excess_deaths": float(dth[g] - total[g] * ref)})
    return pd.DataFrame(rows, columns=PERIODS_COLUMNS)


def gap_sentence(row) -> str:
    """One sentence saying whether a group's gap is mostly prematurity or mortality given GA.

    Parameters
    ----------
    row : mapping
        A ``decomposition`` row.

    Returns
    -------
    str
        Plain text, e.g. "gap 5.9 per 1,000: 3.7 (63%) from more preterm births (GA
        distribution), 2.2 (37%) from higher mortality at the same GA -- mostly prematurity".
    """
    gap, dist, mort = row["gap_per_1000"], row["ga_distribution"], row["ga_specific_mortality"]
    if not np.isfinite(gap):
        return "no births"
    if abs(gap) < NEGLIGIBLE_GAP:
        return (f"about the NH white rate: gap {gap:+.2f} per 1,000 (GA distribution {dist:+.2f}, "
                f"mortality given GA {mort:+.2f})")
    if gap <= 0:
        return (f"no gap: {-gap:.2f} per 1,000 below NH white (GA distribution {dist:+.2f}, "
                f"mortality given GA {mort:+.2f})")
    share = 100.0 * dist / gap
    if share >= 60:
        verdict = "mostly prematurity (the GA distribution)"
    elif share <= 40:
        verdict = "mostly mortality given gestational age"
    else:
        verdict = "both about equally"
    return (f"gap {gap:.2f} per 1,000: {dist:.2f} ({share:.0f}%) from the GA distribution "
            f"(more preterm births), {mort:.2f} ({100 - share:.0f}%) from mortality at the same "
            f"GA -- {verdict}")


__all__ = ["ALL", "DECOMPOSITION_COLUMNS", "PERIODS_COLUMNS", "decomposition", "gap_sentence",
           "kitagawa", "periods_of_risk"]
