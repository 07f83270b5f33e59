"""Calibration stage 2: gestational-age and cause structure.

After the rates (:mod:`imsim.calibration.ratemodel`), the calibration sets the structure of the deaths: a
gestational-age shift of each race's own packaged GA distribution (all five cuts come from the
data: ``ga_structure.csv``) that moves states within race where a state preterm rate exists and
keeps each race's national preterm rate on its target, and per-race cause shares (neonatal, SUID,
other postneonatal) from the NMR/PNMR and SUID targets and the packaged cohort structure.
"""
from __future__ import annotations

import numpy as np

from imsim.core.constants import ALL, RACES
from imsim.calibration.observations import N_R, N_S, S_INDEX, Observations


def _logit(p):
    p = np.asarray(p, float)
    return np.log(p) - np.log1p(-p)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, float)))


def preterm_targets(obs: Observations) -> dict:
    """Return the preterm (<37 wk) targets for the 2013-2015 fit (fractions).

    Race: the 2014-2015 pooled national values (2013 obstetric-estimate rates do not exist; NH API
    and NH AIAN are derived rows, see ``targets.csv``); ``ALL`` likewise; groups without a rate
    (only with a user's targets) share one value that makes the national rate match. States:
    the published state values (2016/2017, March of Dimes) moved to 2014-2015
    by the national trend on the log-odds scale, averaged over years.

    Parameters
    ----------
    obs : Observations
        The observations (``obs.preterm``, in percent).

    Returns
    -------
    dict
        ``race`` (race -> fraction), ``state`` (state -> fraction), ``state_rows`` (the
        adjusted values and their rows) and ``all`` (national fraction; 0.096 if absent).
    """
    pt = obs.preterm
    nat = pt[pt["state"] == ALL]
    pooled = nat[nat["period"].astype(str) == "2014-2015"]
    race = {r.race: r.value / 100 for r in pooled.itertuples()}
    nat_all_year = {str(r.period): r.value / 100 for r in nat[nat["race"] == ALL].itertuples()
                    if len(str(r.period)) == 4}
    ref = race.get(ALL, 0.096)
    states: dict[str, list] = {}
    for r in pt[(pt["state"] != ALL) & (pt["race"] == ALL)].itertuples():
        y = str(r.period)
        if r.state not in S_INDEX or y not in nat_all_year:
            continue
        adj = _expit(_logit(r.value / 100) - (_logit(nat_all_year[y]) - _logit(ref)))
        states.setdefault(r.state, []).append((float(adj), r))
    return {"race": race, "state": {k: float(np.mean([a for a, _ in v])) for k, v in states.items()},
            "state_rows": states, "all": ref}


def fit_ga_shift(baseline, obs: Observations, births: np.ndarray,
                 engine_check: bool = True) -> tuple[np.ndarray, dict]:
    """Return the log-odds shift of every GA cut that makes preterm rates match their targets.

    The shift is a race term plus a state term (states with a target), solved by alternating
    root finding on the births-weighted preterm rates (see :func:`preterm_targets`), then
    corrected cell by cell against the expected engine. Each race starts from its own GA
    distribution, whose P(GA < 37) is already the race's 2014-2015 target, so the race term only
    re-centres the race after the state terms (it is ~0 with the packaged targets and departs
    from 0 only for a user's own preterm targets); the shift moves all five cuts together, so the
    race's deep-cut shape (e.g. its share under 28 weeks relative to its preterm rate) is kept.

    Parameters
    ----------
    baseline : Baseline
        The baseline (its race GA targets are the starting point).
    obs : Observations
        The observations.
    births : numpy.ndarray
        ``[51, 5]`` live births weighting each cell.
    engine_check : bool
        Correct the shift with up to four expected-engine evaluations.

    Returns
    -------
    shift : numpy.ndarray
        float64 ``[51, 5]``: log-odds shift, the same on every cut.
    info : dict
        ``delta_race`` ``[5]``, ``gamma_state`` ``[51]``, ``targets``, ``cell_preterm``
        (target fractions ``[51, 5]``), ``engine_preterm`` and ``engine_correction``.
    """
    tg = preterm_targets(obs)
    pt0 = baseline.ga_cum_target[:, 3]                       # current race preterm (fraction)
    w = births.astype(float)
    delta = np.zeros(N_R)
    gamma = np.zeros(N_S)
    known = np.array([r in tg["race"] for r in RACES])
    from scipy.optimize import brentq

    def cell_pt():
        return _expit(_logit(pt0)[None, :] + delta[None, :] + gamma[:, None])

    for _ in range(30):
        old = np.concatenate([delta, gamma])
        for ri, rname in enumerate(RACES):
            if not known[ri]:
                continue

            def f(x, ri=ri, rname=rname):
                p = _expit(_logit(pt0[ri]) + x + gamma)
                return np.sum(p * w[:, ri]) / w[:, ri].sum() - tg["race"][rname]
            delta[ri] = brentq(f, -5, 5)
        if (~known).any():
            def g(x):
                d = delta.copy()
                d[~known] = _logit(x) - _logit(pt0[~known])
                p = _expit(_logit(pt0)[None, :] + d[None, :] + gamma[:, None])
                return np.sum(p * w) / w.sum() - tg["all"]
            x = brentq(g, 0.02, 0.4)
            delta[~known] = _logit(x) - _logit(pt0[~known])
        for st_name, target in tg["state"].items():
            si = S_INDEX[st_name]

            def h(x, si=si, target=target):
                p = _expit(_logit(pt0) + delta + x)
                return np.sum(p * w[si]) / w[si].sum() - target
            gamma[si] = brentq(h, -5, 5)
        if np.max(np.abs(np.concatenate([delta, gamma]) - old)) < 1e-10:
            break
    shift = delta[None, :] + gamma[:, None]
    target_cell = cell_pt()
    # The analytic shift assumes the cut-point solve hits P(GA < 37) exactly; measure it with the
    # engine at point effects and correct cell by cell (a few Newton steps on the log-odds), so
    # the calibration hits the preterm targets as the engine computes them.
    measured = None
    if engine_check:
        for _ in range(4):
            measured = _engine_preterm(baseline, shift)
            err = _logit(target_cell) - _logit(np.clip(measured, 1e-9, 1 - 1e-9))
            if np.max(np.abs(err)) < 1e-6:
                break
            shift = shift + err
    info = {"delta_race": delta, "gamma_state": gamma, "targets": tg,
            "cell_preterm": target_cell, "engine_preterm": measured,
            "engine_correction": shift - (delta[None, :] + gamma[:, None])}
    return shift, info


def _engine_preterm(baseline, shift: np.ndarray) -> np.ndarray:
    """P(GA < 37 wk) per cell ``[51, 5]`` from the expected engine with GA shift ``shift``."""
    from imsim.birth.engines import expected
    from imsim.inputs.evidence import EvidenceLibrary
    from imsim.inputs.fit import Fit
    from imsim.birth.params import build_tables

    cells = baseline.pooled_cells()
    fit = Fit(np.repeat(shift[:, :, None], 5, axis=2), np.ones((3, N_S, N_R)))
    params = baseline.params(cells, EvidenceLibrary.load().point(), fit)
    out = expected(build_tables(params))
    b = out[:, :6].sum(axis=1)
    return (out[:, :4].sum(axis=1) / np.maximum(b, 1e-12)).reshape(N_S, N_R)


def suid_targets(obs: Observations) -> dict:
    """Return the SUID rate per 1,000 live births by race for 2013-2015.

    Linear in time between the last two published years (2009/2011 and 2017), evaluated at
    2014; with one year only, that year's value.

    Parameters
    ----------
    obs : Observations
        The observations (``obs.suid``).

    Returns
    -------
    dict
        ``{race: (value, lo, hi, note)}`` (race ``ALL`` included); lo/hi span the published
        values used (and their own lo/hi).
    """
    out = {}
    for race, g in obs.suid[obs.suid["state"] == ALL].groupby("race"):
        g = g.assign(y=g["period"].astype(int)).sort_values("y")
        if race == ALL:
            g = g[g["y"].between(2013, 2015)] if g["y"].between(2013, 2015).any() else g
        if len(g) >= 2:
            a, b = g.iloc[-2], g.iloc[-1]
            v = a.value + (b.value - a.value) * (2014 - a.y) / (b.y - a.y)
            lo = min(a.lo, b.lo, v)
            hi = max(a.hi, b.hi, v)
            note = f"interpolated to 2014 between {a.y} ({a.value:g}) and {b.y} ({b.value:g})"
        else:
            a = g.iloc[-1]
            v, lo, hi = a.value, a.lo, a.hi
            note = f"{a.y} value"
        out[race] = (float(v), float(lo), float(hi), note)
    return out


def cause_shares(baseline, obs: Observations, race_imr: np.ndarray) -> tuple[np.ndarray, dict]:
    """Target shares ``[5 races, 3 causes]`` of infant deaths (neonatal, SUID, other postneonatal).

    Neonatal: the packaged cohort structure (deaths by race x cause, 2010-2012 cohorts) with one
    common odds factor so that the national share equals the 2015-cohort NMR / (NMR + PNMR).
    SUID: the race's SUID rate (:func:`suid_targets`) over its national IMR. Other postneonatal:
    the rest.

    Parameters
    ----------
    baseline : Baseline
        The baseline (not read; kept for a uniform stage signature).
    obs : Observations
        The observations.
    race_imr : numpy.ndarray
        float64 ``[5]``: national IMR per 1,000 live births of each race (from the rate fit).

    Returns
    -------
    shares : numpy.ndarray
        float64 ``[5, 3]``; rows sum to 1.
    info : dict
        ``share_cohort``, ``suid_targets`` and, when the NMR/PNMR targets exist,
        ``neonatal_target`` and ``neonatal_log_odds``.

    Raises
    ------
    ValueError
        If the shares leave 2% or less for other postneonatal deaths in some race.
    """
    from imsim.inputs.data import load_table

    ga = load_table("ga_structure")
    neo = np.zeros(N_R)
    tot = np.zeros(N_R)
    for ri, r in enumerate(RACES):
        sub = ga[ga["race"] == r]
        neo[ri] = sub["deaths_neonatal"].sum()
        tot[ri] = sub[["deaths_neonatal", "deaths_suid", "deaths_other_postneonatal"]].to_numpy().sum()
    share0 = neo / tot
    nm = obs.nmr_pnmr
    nmr = nm[(nm["target"] == "nmr") & (nm["state"] == ALL) & (nm["race"] == ALL)]
    pnmr = nm[(nm["target"] == "pnmr") & (nm["state"] == ALL) & (nm["race"] == ALL)]
    coh_n = nmr[nmr["period"].astype(str).str.contains("2015")]
    coh_p = pnmr[pnmr["period"].astype(str).str.contains("2015")]
    w = race_imr * obs.births.sum(axis=0)                     # deaths by race
    info = {"share_cohort": share0}
    if len(coh_n) and len(coh_p):
        target = coh_n.value.iloc[0] / (coh_n.value.iloc[0] + coh_p.value.iloc[0])
        from scipy.optimize import brentq

        k = brentq(lambda x: np.sum(w * _expit(_logit(share0) + x)) / w.sum() - target, -3, 3)
        share_neo = _expit(_logit(share0) + k)
        info.update(neonatal_target=target, neonatal_log_odds=k)
    else:
        share_neo = share0
    su = suid_targets(obs)
    share_suid = np.array([su[r][0] / race_imr[ri] if r in su else np.nan
                           for ri, r in enumerate(RACES)])
    if np.isnan(share_suid).any():    # no race value: the cohort share
        for ri, r in enumerate(RACES):
            if np.isnan(share_suid[ri]):
                sub = ga[ga["race"] == r]
                share_suid[ri] = sub["deaths_suid"].sum() / tot[ri]
    other = 1.0 - share_neo - share_suid
    if (other <= 0.02).any():
        raise ValueError("cause shares leave no room for other postneonatal deaths")
    info["suid_targets"] = su
    return np.stack([share_neo, share_suid, other], axis=1), info
