#!/usr/bin/env python
"""Build the packaged data tables of imsim from the shared source data.

Usage:  python scripts/build_data.py [--shared PATH] [--out DIR]

Reads raw/observed files from ``<repo>/../shared/data`` (never copied into the repo) and writes
derived aggregates to ``src/imsim/inputs/data/``: births.csv, targets.csv, ga_structure.csv,
exposures.csv, associations.csv, evidence.csv, states.csv and the catalogue tables.json; validation.csv
(imsim check) and costs.csv (the cost library of imsim recommend) are written too but are not in the catalogue.

Rules followed: every number names its source; our own arithmetic is labelled DERIVED with the
formula; values without a source are ASSUMPTIONS (assumption=True) with a range and a reason.
Output is deterministic: rows sorted, floats printed with a fixed formatter.

births.csv (ESTIMATED; births by state x race/Hispanic origin 2013-2017 were not retrieved).  Prior: the old split
(2016/2017 single-race state counts, Hispanic split out of each race with the NATIONAL Hispanic fraction, IPF to
national race totals).  The 2013-2015 pooled cells b[s,r] are then a minimum-discrepancy fit: minimise the
Kullback-Leibler divergence sum [b log(b/q) - b + q] / kappa_r to the prior q (kappa_r = prior CV_r^2 x mean state
cell; CV 1.0 Hispanic, 0.5 NH white, 0.25 others, since the NH black/API/AIAN prior cells rest on real counts) plus
quadratic penalties (residual/sd)^2/2, solved exactly by Newton's method on the convex dual (b = q exp(A'mu/w) >= 0):
(1) state totals and (2) national race totals exact; (3) per state, sum_r b IMR[s,r] = state all-race IMR x births
(IMR 2013-2015: observed state x race cells, national race IMR elsewhere; sd from Poisson deaths, rounding, 5%
Goldstein-vs-db295 error, 25% for unobserved cells); (4) the same per race nationally (db295 / HEALTH2 rates);
(5) published NH white share of births (NCHS final data 2014 for 12 states, sd 0.25 pt; 2016 for WV, sd 1 pt;
secondary reproductions, tier 3); (6) 2016 single-race counts by state ~ NH bridged race x (NH single/bridged ratio)
+ Hispanic births x national Hispanic race mix (bridged, 2011-2015), with growth to 2016 and sd 3% (+ excess
multiple-race share) + state variation of the Hispanic race mix.  Per year, the pooled within-state shares are applied
to each year's state total, raked (IPF, rows exact) to that year's national race totals and rounded by largest
remainder.  The 13 published states pin most of the Hispanic births; elsewhere the Hispanic split still follows the
prior's pattern (rescaled) nudged by the death-consistency terms, so single states can be off by several points.

births.csv 2018-2023 and births_trend.csv (the projection after 2023): see :func:`build_births_recent` (WONDER state
totals for mothers 15-44 without DC, corrected to all ages per state and DC by its 2013-2017 share; race split by
raking the 2017 state shares to pooled national race shares; per-state log-linear trend 2014-2023 with its SE).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from imsim.core.constants import GA_BANDS, RACES, STATES, STRATEGIES  # noqa: E402

YEARS = (2013, 2014, 2015, 2016, 2017)
RACE_OBS = {  # observed-file labels -> model race ids
    "all races/origins": "ALL", "non-Hispanic white": "nh_white", "non-Hispanic black": "nh_black",
    "Hispanic": "hispanic", "non-Hispanic Asian or Pacific Islander": "nh_api",
    "non-Hispanic American Indian or Alaska Native": "nh_aian",
}
SINGLE = {  # 2016/2017 WONDER single race (incl. Hispanic) -> (model race, national NH label)
    "White": ("nh_white", "non-Hispanic white (single race)"),
    "Black or African American": ("nh_black", "non-Hispanic black (single race)"),
    "American Indian or Alaska Native": ("nh_aian", "non-Hispanic American Indian or Alaska Native (single race)"),
    "Asian": ("nh_api", "non-Hispanic Asian (single race)"),
    "Native Hawaiian or Other Pacific Islander": ("nh_api", "non-Hispanic Native Hawaiian or Other Pacific Islander (single race)"),
}
EV = "evidence/effects.csv"
PV = "evidence/prevalence.csv"
DB295 = "Mathews TJ, Ely DM, Driscoll AK. NCHS Data Brief 295 (2018); https://www.cdc.gov/nchs/products/databriefs/db295.htm"
HEALTH2 = "childstats.gov America's Children Table HEALTH2; http://childstats.gov/americaschildren/tables/health2.asp"
LINKCO = ("NCHS cohort-linked birth/infant death numerator files 2010-2013 (NBER CSV via GitHub dysartk/BMIN503_Final_Project "
          "commit 8bd90144); shared external/dysart__linkco201{0,1,2,3}us_num.csv.zip")


# ----------------------------------------------------------------------------- helpers
def fmt(x) -> str:
    """Fixed, deterministic cell formatting."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "True" if x else "False"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        s = f"{float(x):.6f}".rstrip("0").rstrip(".")
        return "0" if s in ("-0", "") else s
    return str(x)


def write_csv(df: pd.DataFrame, path: Path, cols: list[str], sort: list[str]) -> int:
    df = df[cols].sort_values(sort, kind="mergesort").reset_index(drop=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for row in df.itertuples(index=False):
        w.writerow([fmt(v) for v in row])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return len(df)


def garwood(deaths: int, births: float, pad: float = 0.0) -> tuple[float, float]:
    """Exact Poisson 95% interval of a rate per 1,000, widened by a rounding pad."""
    lo = 0.0 if deaths == 0 else chi2.ppf(0.025, 2 * deaths) / 2
    hi = chi2.ppf(0.975, 2 * deaths + 2) / 2
    return max(0.0, lo / births * 1000 - pad), hi / births * 1000 + pad


def tier_of(note: str) -> str:
    m = re.search(r"\[tier (\w+)\]", str(note))
    return m.group(1) if m else ""


def read_wonder(path: Path) -> pd.DataFrame:
    """Data rows of a CDC WONDER tab export (stops at the '---' notes footer)."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    body = []
    for ln in lines:
        if ln.startswith('"---"'):
            break
        body.append(ln)
    df = pd.read_csv(io.StringIO("\n".join(body)), sep="\t", dtype=str)
    return df


def largest_remainder(x: np.ndarray, total: int) -> np.ndarray:
    fl = np.floor(x).astype(int)
    rem = int(total - fl.sum())
    order = np.lexsort((np.arange(len(x)), -(x - fl)))  # ties broken by index: deterministic
    fl[order[:rem]] += 1
    return fl


def src_row(df: pd.DataFrame, i: int) -> str:
    return f"{df.at[i, 'source_citation']}; {df.at[i, 'source_url']}"


# ----------------------------------------------------------------------------- births
# Published non-Hispanic white share of births by state (percent).  Secondary reproductions of NCHS
# final-data reports (tier 3: blog transcription of a primary table; values not re-checked against the NVSR).
NHW_SHARE_2016 = {  # NCHS "Births: Final Data for 2016" (NVSR 67-1; single race), via
    # https://demomemo.blogspot.com/2018/02/non-hispanic-white-share-of-births-by.html
    "HI": 20.2, "CA": 27.2, "NM": 28.4, "DC": 31.2, "TX": 33.7, "NV": 38.4, "AZ": 41.7, "MD": 42.8, "FL": 44.1,
    "GA": 44.6, "NJ": 44.9, "NY": 47.5, "WV": 92.0,
}
MINORITY_SHARE_2014 = {  # share of births to minority (not non-Hispanic white) mothers, NCHS "Births: Final Data
    # for 2014" (NVSR 64-12; bridged race), via https://demomemo.blogspot.com/2016/12/states-with-minority-majority-births.html
    "AZ": 55.6, "CA": 71.3, "DC": 68.8, "FL": 54.2, "GA": 54.1, "HI": 73.7, "MD": 55.1, "NV": 57.8, "NJ": 53.3,
    "NM": 72.3, "NY": 51.4, "TX": 64.7,
}
NHW_SRC = ("NH white share of births: NCHS Births: Final Data 2014 (minority share, 12 states) and 2016 (WV) via "
           "demomemo.blogspot.com (tier 3)")


# prior (old split) relative uncertainty per cell in the minimum-discrepancy fit: the non-Hispanic black / API / AIAN
# cells come from real 2016 single-race counts x national NH fractions (fairly good); the Hispanic split is the weak
# part (national Hispanic fraction per race), and NH white = White single race minus Hispanic inherits its error.
PRIOR_CV = {"nh_white": 0.5, "nh_black": 0.25, "hispanic": 1.0, "nh_api": 0.25, "nh_aian": 0.25}


def _births_inputs(sh: Path) -> dict:
    """Observed inputs of the births estimate plus the old prior split (national Hispanic fraction per race)."""
    b = pd.read_csv(sh / "observed/births_state_race.csv")
    b["period"] = b["period"].astype(str)
    tot = b[(b.race_ethnicity == "all races/origins") & b.geo_abbr.isin(STATES)]
    state_tot = {(r.geo_abbr, int(r.period)): int(r.value) for r in tot.itertuples()}
    us = b[b.geo_abbr == "US"].dropna(subset=["value"])
    nat = {(int(r.period), r.race_ethnicity): float(r.value) for r in us.itertuples()}
    nhf = pd.read_csv(sh / "external/mchtrends__natality_race_11_15.txt", sep="\t", nrows=16)
    nhf = nhf[nhf["Notes"].isna()]

    def nh_frac(race: str) -> float:
        s = nhf[nhf["Mother's Bridged Race"] == race]
        known = s[s["Mother's Hispanic Origin"] != "Unknown or Not Stated"]
        return float(s[s["Mother's Hispanic Origin"] == "Not Hispanic or Latino"].Births.sum() / known.Births.sum())

    f_api, f_aian = nh_frac("Asian or Pacific Islander"), nh_frac("American Indian or Alaska Native")
    hisp = nhf[nhf["Mother's Hispanic Origin"] == "Hispanic or Latino"].set_index("Mother's Bridged Race").Births
    hisp_race_mix = {r: float(hisp[lab] / hisp.sum()) for r, lab in (
        ("nh_white", "White"), ("nh_black", "Black or African American"), ("nh_api", "Asian or Pacific Islander"),
        ("nh_aian", "American Indian or Alaska Native"))}
    targets, shares, piv16 = {}, {}, None
    info = {"nh_frac_api": f_api, "nh_frac_aian": f_aian}
    for y in YEARS:
        t = np.array([nat[(y, "non-Hispanic white (bridged race)")], nat[(y, "non-Hispanic black (bridged race)")],
                      nat[(y, "Hispanic")],
                      nat[(y, "Asian or Pacific Islander (bridged race, incl. Hispanic)")] * f_api,
                      nat[(y, "American Indian or Alaska Native (bridged race, incl. Hispanic)")] * f_aian])
        targets[y] = t / t.sum() * nat[(y, "all races/origins")]  # unknown origin spread proportionally
    for sy in (2016, 2017):
        sr = b[(b.period == str(sy)) & b.race_ethnicity.str.startswith("single race") & b.geo_abbr.isin(STATES)].copy()
        sr["race"] = sr.race_ethnicity.str.split(": ").str[1]
        piv = sr.pivot_table(index="geo_abbr", columns="race", values="value", aggfunc="sum").reindex(STATES).fillna(0.0)
        if sy == 2016:
            piv16 = piv
        natl = piv.sum()
        seed = pd.DataFrame(0.0, index=list(STATES), columns=list(RACES))
        nh_tot = 0.0
        for lab, (r, nhlab) in SINGLE.items():
            f = nat[(sy, nhlab)] / natl[lab]  # national non-Hispanic fraction of this single race
            info[f"nh_frac_single_{lab}_{sy}"] = f
            seed[r] += piv[lab] * f
            seed["hispanic"] += piv[lab] * (1 - f)
            nh_tot += nat[(sy, nhlab)]
        multi = natl["More than one race"]
        nh_multi = nat[(sy, "all races/origins")] - nat[(sy, "Hispanic")] - nh_tot
        f_m = min(max(nh_multi / multi, 0.0), 1.0)
        info[f"nh_frac_multi_{sy}"] = f_m
        seed["hispanic"] += piv["More than one race"] * (1 - f_m)
        nh_cols = [r for r in RACES if r != "hispanic"]
        w = seed[nh_cols].div(seed[nh_cols].sum(axis=1), axis=0)
        seed[nh_cols] += w.mul(piv["More than one race"] * f_m, axis=0)
        shares[sy] = seed.div(seed.sum(axis=1), axis=0)
    prior = {}
    for y in YEARS:  # old method: IPF of single-race-derived shares to national race totals (rows exact)
        rt = np.array([state_tot[(s, y)] for s in STATES], dtype=float)
        prior[y] = _ipf(shares[2017 if y == 2017 else 2016].values * rt[:, None], rt, targets[y])
    return dict(state_tot=state_tot, nat=nat, targets=targets, prior=prior, piv16=piv16, info=info, f_api=f_api,
                f_aian=f_aian, hisp_race_mix=hisp_race_mix)


def _ipf(m: np.ndarray, rows: np.ndarray, cols: np.ndarray, it: int = 500) -> np.ndarray:
    m = m.copy()
    for _ in range(it):  # columns to national race totals, rows (state totals) last = exact
        m *= cols / m.sum(axis=0)
        m *= (rows / m.sum(axis=1))[:, None]
    return m


def _imr_inputs(sh: Path, targets: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """2013-2015 IMR by state x race (observed cells; national race IMR elsewhere), its error variance per cell
    (per 1,000, excluding Poisson), state all-race IMR and national race IMR.

    Same source rows and national values as the `imr` targets written by build_targets (read here from the shared
    observed file, not from targets.csv, so the build has no circular dependency)."""
    ba = pd.read_csv(sh / "observed/imr_state_race_2013_2015_best_available.csv")
    ba = ba[ba.value.notna()]
    cell = {(r.geo_abbr, RACE_OBS[r.race_ethnicity]): (float(r.value), tier_of(r.note)) for r in ba.itertuples()}
    nls = pd.read_csv(sh / "observed/national_linked_stats.csv")
    h2 = nls[(nls.measure == "infant_mortality_rate") & nls.source_title.str.contains("HEALTH2")]
    nat_imr = {"nh_black": 11.10, "hispanic": 4.99, "ALL": 5.89}  # db295, as in build_targets
    for race, lab in (("nh_white", "non-Hispanic white"), ("nh_api", "non-Hispanic Asian or Pacific Islander"),
                      ("nh_aian", "non-Hispanic American Indian or Alaska Native")):
        vals = {int(p): float(v) for p, v in zip(h2[h2.race_ethnicity == lab].period, h2[h2.race_ethnicity == lab].value)
                if str(p) in ("2013", "2014", "2015")}
        j = RACES.index(race)
        w = np.array([targets[y][j] for y in (2013, 2014, 2015)])
        nat_imr[race] = float(np.dot([vals[y] for y in (2013, 2014, 2015)], w) / w.sum())
    imr = np.array([[cell[(s, r)][0] if (s, r) in cell else nat_imr[r] for r in RACES] for s in STATES])
    tier = np.array([[cell[(s, r)][1] if (s, r) in cell else "" for r in RACES] for s in STATES])
    # non-Poisson error variance of the cell IMR: tier 1 (db295, 2 decimals) rounding; tier 3 (Goldstein/CDC WONDER,
    # 1 decimal; does not reproduce db295 exactly) rounding + 5% relative; unobserved (national rate) 25% relative
    # (between-state heterogeneity).
    ev = np.where(tier == "1", 0.005 ** 2 / 3, np.where(tier == "3", 0.05 ** 2 / 3 + (0.05 * imr) ** 2, (0.25 * imr) ** 2))
    imr_all = np.array([cell[(s, "ALL")][0] for s in STATES])
    return imr, tier != "", ev, imr_all, nat_imr


def _min_kl(q: np.ndarray, A: np.ndarray, t: np.ndarray, sd: np.ndarray, kappa: np.ndarray) -> np.ndarray:
    """argmin_x sum_i [x_i log(x_i/q_i) - x_i + q_i] / kappa_i + sum_k (A_k x - t_k)^2 / (2 sd_k^2)  (sd_k = 0: exact).
    The KL term near q is sum (x_i - q_i)^2 / (2 kappa_i q_i): prior variance kappa_i * q_i (overdispersed Poisson).
    Damped Newton on the concave dual: x = q exp(A'mu / w) >= 0,
    f(mu) = sum w q exp(A'mu / w) - mu.t + sum sd^2 mu^2 / 2.  Deterministic."""
    keep = q > 0
    q, A = q[keep], A[:, keep]
    w = 1.0 / kappa[keep]
    sc = np.abs(t) + 1e-12  # row scaling (affine-invariant problem, better numerics)
    A, t, v = A / sc[:, None], t / sc, (sd / sc) ** 2 + 1e-14
    mu = np.zeros(len(t))

    def f(mu):
        x = q * np.exp(np.clip((A.T @ mu) / w, -50, 50))
        return (w * x).sum() - mu @ t + 0.5 * (v * mu * mu).sum(), x

    fv, x = f(mu)
    for _ in range(200):
        g = A @ x - t + v * mu
        if np.max(np.abs(g)) < 1e-11:
            break
        H = (A * (x / w)) @ A.T + np.diag(v)
        step = np.linalg.solve(H, g)
        a = 1.0
        while True:
            fn, xn = f(mu - a * step)
            if fn <= fv - 1e-4 * a * (g @ step) or a < 1e-10:
                break
            a *= 0.5
        mu, fv, x = mu - a * step, fn, xn
    out = np.zeros(len(keep))
    out[keep] = x
    return out


def build_births(sh: Path) -> tuple[pd.DataFrame, dict]:
    inp = _births_inputs(sh)
    info, nat, targets, st = inp["info"], inp["nat"], inp["targets"], inp["state_tot"]
    S, R = len(STATES), len(RACES)
    P = (2013, 2014, 2015)
    T = np.array([sum(st[(s, y)] for y in P) for s in STATES], dtype=float)
    N = sum(targets[y] for y in P)
    q = sum(inp["prior"][y] for y in P)  # prior: old method pooled 2013-2015
    imr, obs, ev, imr_all, nat_imr = _imr_inputs(sh, targets)
    ih = RACES.index("hispanic")
    piv = inp["piv16"]
    natl = piv.sum()
    # state factor for 2016 relative to the pooled period, net of national growth (which is race specific below)
    kap = np.array([st[(s, 2016)] for s in STATES]) / T / (targets[2016].sum() / N.sum())
    g = targets[2016] / N  # national growth 2013-2015 pooled -> 2016 by race
    hmix = inp["hisp_race_mix"]  # national share of Hispanic births by bridged race (2011-2015, known origin)
    mshare = (piv["More than one race"] / piv.sum(axis=1)).values  # 2016 multiple-race share by state
    m_excess = np.maximum(0.0, mshare - float(piv["More than one race"].sum() / piv.values.sum()))
    nh16 = {"nh_white": nat[(2016, "non-Hispanic white (bridged race)")],
            "nh_black": nat[(2016, "non-Hispanic black (bridged race)")],
            "nh_api": nat[(2016, "Asian or Pacific Islander (bridged race, incl. Hispanic)")] * inp["f_api"],
            "nh_aian": nat[(2016, "American Indian or Alaska Native (bridged race, incl. Hispanic)")] * inp["f_aian"]}
    groups = {"nh_white": (["White"], 0.05), "nh_black": (["Black or African American"], 0.05),
              "nh_api": (["Asian", "Native Hawaiian or Other Pacific Islander"], 0.02),
              "nh_aian": (["American Indian or Alaska Native"], 0.02)}
    nhw_pub = {s: (100 - v, 0.25) for s, v in MINORITY_SHARE_2014.items()}
    nhw_pub["WV"] = (NHW_SHARE_2016["WV"], 1.0)

    def system(xm: np.ndarray):
        """Constraint rows A (on the flattened S x R cells), targets t, sd (0 = exact), kinds; sds evaluated at xm."""
        A, t, sd, kinds = [], [], [], []

        def add(coef, tk, sdk, kind):
            A.append(coef.ravel()), t.append(tk), sd.append(sdk), kinds.append(kind)

        for i in range(S):  # 1. state totals (exact)
            c = np.zeros((S, R)); c[i] = 1; add(c, T[i], 0.0, "row")
        for j in range(R):  # 2. national race totals (exact)
            c = np.zeros((S, R)); c[:, j] = 1; add(c, N[j], 0.0, "col")
        # 5. published NH white shares: 2014 (bridged race, mid-year of the period) sd 0.25 pt; WV 2016 (single
        #    race, outside the period) sd 1 pt
        for s, (pct, sdp) in sorted(nhw_pub.items()):
            i = STATES.index(s); c = np.zeros((S, R)); c[i, RACES.index("nh_white")] = 1
            add(c, pct / 100 * T[i], sdp / 100 * T[i], "nhw_share")
        # 3./4. infant deaths: var of b*IMR/1000 per cell = Poisson (expected deaths) + (b/1000)^2 * IMR error var
        var_cell = xm * imr / 1000 + (xm / 1000) ** 2 * ev
        for i in range(S):
            c = np.zeros((S, R)); c[i] = imr[i] / 1000
            add(c, imr_all[i] * T[i] / 1000, math.sqrt(var_cell[i].sum() + (0.005 * T[i] / 1000) ** 2 / 3), "state_deaths")
        for j, r in enumerate(RACES):
            c = np.zeros((S, R)); c[:, j] = imr[:, j] / 1000
            add(c, nat_imr[r] * N[j] / 1000, math.sqrt(var_cell[:, j].sum()), "nat_deaths")
        # 6. 2016 single-race counts (any Hispanic origin), soft:
        #    count_s ~ kap_s * (rho_r * g_r * b[s,nh_r] + h_r * g_hisp * b[s,hisp]),
        # kap_s = state growth pooled 2013-2015 -> 2016 relative to national; g = national growth by race;
        # rho_r = national NH single race / NH bridged race 2016 (NH multiple-race mothers are bridged);
        # h_r = national share of Hispanic births of bridged race r (2011-2015, mchtrends natality file).
        # sd: (3% + the state's excess of multiple-race births over the national share) of the count (composition
        # drift 2014->2016; bridged vs single race, e.g. Hawaii) and state variation of the race mix of Hispanic
        # mothers, tau_r * kap_s * g_hisp * b[s,hisp].
        for r, (labs, tau) in groups.items():
            nh_single = sum(nat[(2016, SINGLE[lab][1])] for lab in labs)
            j = RACES.index(r)
            rho, h = nh_single / nh16[r], hmix[r]
            info[f"single2016_rho_{r}"], info[f"hisp_race_mix_{r}"] = rho, h
            for i, s in enumerate(STATES):
                cnt = float(sum(piv.at[s, lab] for lab in labs))
                c = np.zeros((S, R)); c[i, j], c[i, ih] = kap[i] * rho * g[j], kap[i] * h * g[ih]
                add(c, cnt, math.sqrt(((0.03 + m_excess[i]) * cnt) ** 2 + (tau * kap[i] * g[ih] * xm[i, ih]) ** 2 + 1.0), "single_race")
        return np.array(A), np.array(t), np.array(sd), kinds

    # prior variance kappa_r * q: relative sd PRIOR_CV[r] for a cell of the mean state size of race r
    kappa = np.tile([PRIOR_CV[r] ** 2 * q[:, j].mean() for j, r in enumerate(RACES)], S)
    xm = q
    for _ in range(3):  # sds evaluated at the prior, then twice at the fit (fixed point)
        A, t, sd, kinds = system(xm)
        x = _min_kl(q.ravel(), A, t, sd, kappa)
        xm = x.reshape(S, R)
    xm = x.reshape(S, R)
    z = (A @ x - t) / np.where(sd > 0, sd, 1)
    big = np.argsort(-np.abs(z))[:8]
    lab = lambda k: (RACES[k - kinds.index("nat_deaths")] if kinds[k] == "nat_deaths"  # noqa: E731
                     else STATES[int(np.flatnonzero(A[k])[0]) // R])
    info["fit_z_largest"] = "; ".join(f"{kinds[k]}:{lab(k)}:{z[k]:+.1f}" for k in big)
    z = (A @ x - t) / np.where(sd > 0, sd, 1)
    for kind in ("nhw_share", "state_deaths", "nat_deaths", "single_race"):
        zk = z[[n for n, kk in enumerate(kinds) if kk == kind]]
        info[f"fit_z_{kind}_rms"], info[f"fit_z_{kind}_maxabs"] = float(np.sqrt((zk ** 2).mean())), float(np.abs(zk).max())
    info["fit_pooled_max_row_rel_err"] = float(np.max(np.abs(xm.sum(axis=1) / T - 1)))
    info["fit_pooled_max_col_rel_err"] = float(np.max(np.abs(xm.sum(axis=0) / N - 1)))
    pooled_share = xm / xm.sum(axis=1, keepdims=True)
    rows, per_year = [], {}
    for y in YEARS:
        rt = np.array([st[(s, y)] for s in STATES], dtype=float)
        m = _ipf(pooled_share * rt[:, None], rt, targets[y])
        per_year[y] = m
        info[f"ipf_max_col_rel_err_{y}"] = float(np.max(np.abs(m.sum(axis=0) / targets[y] - 1)))
        for i, s in enumerate(STATES):
            ints = largest_remainder(m[i], int(rt[i]))
            for j, r in enumerate(RACES):
                rows.append(dict(state=s, race=r, year=y, births=int(ints[j])))
    _births_report(xm, q, T, imr, obs, imr_all, nat_imr, nhw_pub, per_year)
    df = pd.DataFrame(rows)
    df["estimated"] = True
    df["method"] = df.year.map(lambda y: f"min-KL raking of 2013-2015 race split (prior: old IPF), shares raked to {y} national race totals")
    df["source"] = df.year.map(lambda y: (
        f"state total: NVSR final {y} (observed/births_state_race.csv); prior and soft constraints: CDC WONDER Natality 2016 "
        f"single race by state; national targets: data.cdc.gov 89yk-m38d {y}; NH fractions: CDC WONDER Natality "
        "(external/mchtrends__natality_race_11_15.txt); IMR 2013-2015 state x race: observed/imr_state_race_2013_2015_"
        f"best_available.csv, db295, HEALTH2; {NHW_SRC}"))
    return df, info


# ----------------------------------------------------------------------------- births 2018-2023 and the projection
#: Years of births data after the 2013-2017 estimate (state totals from the CDC WONDER 2007-2023 export).
RECENT_YEARS = (2018, 2019, 2020, 2021, 2022, 2023)
#: Years of the log-linear state trend of the projection (the last ten observed years).
TREND_YEARS = tuple(range(2014, 2024))
_YEARLY = "external/mchtrends__natality_yearly_20072023.txt"
_RACE_POOLS = {(2016, 2019): "external/mchtrends__natality_race_16_19.txt",
               (2020, 2022): "external/mchtrends__natality_race_20_22.txt"}
_WONDER_URL = "https://wonder.cdc.gov/natality-current.html"


def _pooled_race_shares(path: Path) -> np.ndarray:
    """National share of births by model race group from a pooled WONDER single race x Hispanic origin export.

    Hispanic = every 'Hispanic or Latino' row; NH white/black/AIAN = the single race, Not Hispanic; NH API = Asian +
    NHOPI, Not Hispanic; NH 'More than one race' is spread over the four NH groups in proportion to their NH births
    (DERIVED, the counterpart of bridging); 'Unknown or Not Stated' origin is spread proportionally (shares of
    known origin), as build_births does for 2013-2017."""
    d = read_wonder(path)
    d = d[d["Notes"].isna()]
    d["Births"] = d["Births"].astype(float)
    race, org = d["Mother's Single Race"], d["Mother's Hispanic Origin"]
    nh = d[org == "Not Hispanic or Latino"].set_index("Mother's Single Race").Births
    v = {"nh_white": nh["White"], "nh_black": nh["Black or African American"],
         "hispanic": float(d[org == "Hispanic or Latino"].Births.sum()),
         "nh_api": nh["Asian"] + nh["Native Hawaiian or Other Pacific Islander"],
         "nh_aian": nh["American Indian or Alaska Native"]}
    nh4 = ("nh_white", "nh_black", "nh_api", "nh_aian")
    s4 = sum(v[r] for r in nh4)
    for r in nh4:
        v[r] += nh["More than one race"] * v[r] / s4
    assert race.isin(["White", "Black or African American", "Asian", "Native Hawaiian or Other Pacific Islander",
                      "American Indian or Alaska Native", "More than one race"]).all()
    t = np.array([v[r] for r in RACES])
    return t / t.sum()


def build_births_recent(sh: Path, births: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Births by state x race 2018-2023 (ESTIMATED race split) and the per-state log-linear trend of the projection.

    State totals 2018-2023: CDC WONDER Natality 2007-2023 by year x state (``_YEARLY``), restricted to mothers aged
    15-44 and without DC.  (1) All ages: each state's count x its ratio R_s = (NVSR all-age state totals 2013-2017, the
    state totals of births.csv) / (the same state in the WONDER file, 2013-2017) -- DERIVED; R_s is ~1.004 (births to
    mothers under 15 or over 44).  (2) DC: its 2013-2017 share p of U.S. births (births.csv), DC_y = p/(1-p) x the
    corrected 50-state sum of year y -- ASSUMPTION (DC share held at 2013-2017; range: its min-max single-year share
    2013-2017, in ``info``).  Race split per state-year: the state's 2017 race shares (births.csv, ESTIMATED) times the
    year's state total, raked (IPF, state totals exact) to national race totals = the year's national total x the
    pooled national shares of ``_pooled_race_shares`` (2016-2019 for 2018-2019; 2020-2022 for 2020-2023 --
    ASSUMPTION for 2023, no 2023 race file), rounded by largest remainder.

    Projection (births_trend.csv): per state, OLS of log(births) on year over ``TREND_YEARS`` (2014-2017 from births.csv,
    2018-2023 as above); slope b_s and its standard error se_s (residual variance, n - 2 df).  Years after 2023:
    births(s, r, y) = round(births(s, r, 2023) x exp(b_s (y - 2023))), i.e. anchored at the last observed year and
    race mix held at 2023 (ASSUMPTION); 95% band exp((b_s +- 1.96 se_s)(y - 2023)) (trend-slope uncertainty only)."""
    from imsim.core.constants import STATE_NAMES
    yr = read_wonder(sh / _YEARLY)
    yr = yr[yr["Notes"].isna()].copy()
    fips = {"01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT", "10": "DE", "12": "FL",
            "13": "GA", "15": "HI", "16": "ID", "17": "IL", "18": "IN", "19": "IA", "20": "KS", "21": "KY", "22": "LA",
            "23": "ME", "24": "MD", "25": "MA", "26": "MI", "27": "MN", "28": "MS", "29": "MO", "30": "MT", "31": "NE",
            "32": "NV", "33": "NH", "34": "NJ", "35": "NM", "36": "NY", "37": "NC", "38": "ND", "39": "OH", "40": "OK",
            "41": "OR", "42": "PA", "44": "RI", "45": "SC", "46": "SD", "47": "TN", "48": "TX", "49": "UT", "50": "VT",
            "51": "VA", "53": "WA", "54": "WV", "55": "WI", "56": "WY"}
    w = {(fips[r["State Code"]], int(r["Year"])): float(r["Births"]) for _, r in yr.iterrows()}
    states50 = [s for s in STATES if s != "DC"]
    tot = births.groupby(["state", "year"]).births.sum()
    info: dict = {}
    ratio = {s: sum(tot[(s, y)] for y in YEARS) / sum(w[(s, y)] for y in YEARS) for s in states50}
    info["age15_44_ratio_min"], info["age15_44_ratio_max"] = min(ratio.values()), max(ratio.values())
    nat = births.groupby("year").births.sum()
    dc_sh = {y: tot[("DC", y)] / nat[y] for y in YEARS}
    p_dc = sum(tot[("DC", y)] for y in YEARS) / sum(nat[y] for y in YEARS)
    info["dc_share_2013_2017"], info["dc_share_range"] = p_dc, (float(min(dc_sh.values())), float(max(dc_sh.values())))
    shares = {k: _pooled_race_shares(sh / f) for k, f in _RACE_POOLS.items()}
    last = births[births.year == max(YEARS)].pivot(index="state", columns="race", values="births").reindex(
        index=list(STATES), columns=list(RACES)).to_numpy(float)
    seed = last / last.sum(axis=1, keepdims=True)
    rows, state_tot = [], {}
    for y in RECENT_YEARS:
        t = {s: w[(s, y)] * ratio[s] for s in states50}
        t["DC"] = p_dc / (1 - p_dc) * sum(t.values())
        rt = np.array([round(t[s]) for s in STATES], dtype=float)
        for s, v in zip(STATES, rt):
            state_tot[(s, y)] = v
        period = (2016, 2019) if y <= 2019 else (2020, 2022)
        m = _ipf(seed * rt[:, None], rt, shares[period] * rt.sum())
        info[f"ipf_max_col_rel_err_{y}"] = float(np.max(np.abs(m.sum(axis=0) / (shares[period] * rt.sum()) - 1)))
        pool = f"{period[0]}-{period[1]}" + (" (ASSUMPTION: 2023 mix = 2020-2022)" if y == 2023 else "")
        for i, s in enumerate(STATES):
            ints = largest_remainder(m[i], int(rt[i]))
            tot_src = (f"DC: ASSUMPTION its 2013-2017 share of U.S. births ({100 * p_dc:.3f}%, births.csv; range "
                       f"{100 * min(dc_sh.values()):.3f}-{100 * max(dc_sh.values()):.3f}%) x corrected 50-state sum"
                       if s == "DC" else
                       f"state total: CDC WONDER Natality 2007-2023, mothers 15-44 ({_YEARLY}, {y} {STATE_NAMES[s]}) "
                       f"x all-ages/15-44 ratio {ratio[s]:.5f} (NVSR 2013-2017 totals in births.csv / same years in the file)")
            for j, r in enumerate(RACES):
                rows.append(dict(state=s, race=r, year=y, births=int(ints[j]), estimated=True, method=(
                    f"state 2017 race shares (births.csv) raked to {y} national race totals = national total x pooled "
                    f"{pool} national shares; state total exact"), source=(
                    f"{tot_src}; national race shares: CDC WONDER Natality single race x Hispanic origin, mothers 15-44, "
                    f"pooled {period[0]}-{period[1]} ({_RACE_POOLS[period]}); {_WONDER_URL}")))
    recent = pd.DataFrame(rows)
    # -- trend
    x = np.array(TREND_YEARS, dtype=float) - max(RECENT_YEARS)
    trows = []
    for s in STATES:
        yv = np.log([float(tot[(s, y)]) if y in YEARS else state_tot[(s, y)] for y in TREND_YEARS])
        X = np.column_stack([np.ones_like(x), x])
        coef, *_ = np.linalg.lstsq(X, yv, rcond=None)
        res = yv - X @ coef
        s2 = float(res @ res) / (len(x) - 2)
        se = math.sqrt(s2 / float(((x - x.mean()) ** 2).sum()))
        trows.append(dict(state=s, fit_start=TREND_YEARS[0], fit_end=TREND_YEARS[-1], base_year=max(RECENT_YEARS),
                          base_births=int(state_tot[(s, max(RECENT_YEARS))]), slope=float(coef[1]), slope_se=se,
                          resid_sd=math.sqrt(s2), source=(
                              "DERIVED: OLS of log state births on year 2014-2023 (2014-2017 births.csv NVSR totals; "
                              f"2018-2023 births.csv from {_YEARLY}, corrected to all ages and DC)"),
                          note=("projection: births(s,r,y) = round(births(s,r,2023) x exp(slope (y-2023))); 95% band "
                                "exp((slope +- 1.96 slope_se)(y-2023)), slope uncertainty only; race mix held at 2023 "
                                "(ASSUMPTION)")))
    trend = pd.DataFrame(trows)
    nat_tot = np.array([sum(float(tot[(s, y)]) if y in YEARS else state_tot[(s, y)] for s in STATES) for y in TREND_YEARS])
    cn, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), np.log(nat_tot), rcond=None)
    info["national_trend_slope_2014_2023"] = float(cn[1])
    info["births_us_recent"] = {y: int(sum(state_tot[(s, y)] for s in STATES)) for y in RECENT_YEARS}
    return recent, trend, info


def _births_report(xm, q, T, imr, obs, imr_all, nat_imr, nhw_pub, per_year) -> None:
    """Diagnostics of the births estimate (printed to stderr at build time)."""
    p = lambda *a: print(*a, file=sys.stderr)  # noqa: E731
    iw, ih = RACES.index("nh_white"), RACES.index("hispanic")
    p("births estimate -- (a) NH white share of births, pooled 2013-2015 (estimate | old prior | published 2014 bridged, 2016 single race)")
    for s in sorted(set(NHW_SHARE_2016) | set(MINORITY_SHARE_2014)):
        i = STATES.index(s)
        p(f"  {s}: est {100 * xm[i, iw] / T[i]:5.1f}  old {100 * q[i, iw] / T[i]:5.1f}  pub2014 "
          f"{100 - MINORITY_SHARE_2014[s] if s in MINORITY_SHARE_2014 else float('nan'):5.1f}  pub2016 {NHW_SHARE_2016.get(s, float('nan')):5.1f}")
    p("  (b) Hispanic births 2015 (estimate, unrounded | old):")
    for s in ("CA", "TX", "NM", "AZ", "FL", "NY", "WV"):
        i = STATES.index(s)
        p(f"  {s}: {per_year[2015][i, ih]:9.0f}  old {q[i, ih] / 3:9.0f} (old pooled/3)")
    p("  (c) national race IMR implied by sum_s b*IMR[s,r] / sum_s b (observed cell IMR, else national) vs published:")
    tot_d = (xm * imr).sum() / 1000
    p(f"    ALL      est {1000 * tot_d / xm.sum():.3f} (from cells)  published 5.89")
    for j, r in enumerate(RACES):
        p(f"    {r:9s}est {(xm[:, j] * imr[:, j]).sum() / xm[:, j].sum():.3f}  old {(q[:, j] * imr[:, j]).sum() / q[:, j].sum():.3f}"
          f"  published {nat_imr[r]:.3f}  (cells observed: {int(obs[:, j].sum())}/51)")
    for lab, m in (("est", xm), ("old", q)):
        rel = np.abs((m * imr).sum(axis=1) / (imr_all * T) - 1)
        k = int(np.argmax(rel))
        p(f"  (d) {lab}: |sum_r b IMR - observed state deaths| / observed: max {rel.max():.4f} ({STATES[k]}), median {np.median(rel):.4f}")


# ----------------------------------------------------------------------------- GA structure
#: One gestational-age measure for births and deaths: the obstetric estimate (OE), the NCHS standard since the 2014
#: data year (Martin JA, Osterman MJK, Kirmeyer SE, Gregory ECW. Measuring gestational age in vital statistics data:
#: transitioning to the obstetric estimate. NVSR 64(5), 2015; https://www.cdc.gov/nchs/data/nvsr/nvsr64/nvsr64_05.pdf).
#: Valid OE values are 17-47 weeks; anything else counts as unknown GA (as in NCHS public-use files).
GA_MEASURE = "obstetric estimate (OE)"
NVSR64_5 = ("Martin JA et al. Measuring gestational age in vital statistics data: transitioning to the obstetric estimate. "
            "NVSR 64(5), 2015; https://www.cdc.gov/nchs/data/nvsr/nvsr64/nvsr64_05.pdf")
#: Births by OE gestational age x bridged race of mother (each race includes its Hispanic births), United States,
#: 2017: CDC WONDER Natality 2007-2017, Group By 'OE Gestational Age 10' x 'Bridged Race', Year 2017, queried
#: 2019-03-09, as committed at GitHub parismoscow/IMR-project (commit 1ec2bd7fb6c88d116804e1e949be894e6e1fb2f5,
#: datafiles/extreme prematurity by race, 2007-2017.txt). Columns: under 20, 20-27, 28-31, 32-35, 36, 37-39, 40, 41,
#: 42+ weeks, unknown. Check: the four races hold 3,852,741 births of known OE GA, 9.93% under 37 weeks, the
#: published 2017 preterm rate (NCHS VSRR 004; shared observed/preterm_state_race.csv).
WONDER_OE_2017 = {
    "American Indian or Alaska Native": (16, 291, 427, 2179, 1927, 26619, 7906, 2350, 125, 76),
    "Asian or Pacific Islander": (82, 1505, 2174, 11578, 10781, 195540, 59865, 15471, 487, 141),
    "Black or African American": (562, 8858, 10127, 38167, 30634, 416780, 116862, 33686, 1841, 598),
    "White": (729, 13870, 22748, 118294, 107777, 1796000, 597012, 189364, 10107, 1944),
}
#: Upper edge (weeks) of the known-GA columns of WONDER_OE_2017: P(GA < edge) is their cumulative share.
WONDER_OE_EDGES = (20, 28, 32, 36, 37, 40, 41, 42, 99)
WONDER_OE_SRC = ("CDC WONDER Natality 2007-2017, Year 2017, OE Gestational Age 10 x Bridged Race (queried 2019-03-09), export "
                 "committed at GitHub parismoscow/IMR-project commit 1ec2bd7f, 'datafiles/extreme prematurity by race, "
                 "2007-2017.txt'; https://wonder.cdc.gov/natality-current.html")
#: Model race -> bridged race of the WONDER export whose GA shape it takes. The export does not split Hispanic
#: origin: NH white and Hispanic both take the White shape (ASSUMPTION); NH black, NH API and NH AIAN take their
#: race's shape, which includes that race's Hispanic births (shares in each race's note, from the 2011-2015 bridged
#: race x Hispanic origin births of shared external/mchtrends__natality_race_11_15.txt).
WONDER_RACE = {"nh_white": "White", "hispanic": "White", "nh_black": "Black or African American",
               "nh_api": "Asian or Pacific Islander", "nh_aian": "American Indian or Alaska Native"}
#: Relative range (ASSUMPTION) of a 2017 share used for 2013-2015: early preterm rates were stable 2014-2016 except a
#: rise among NH black births (Martin & Osterman, NCHS Data Brief 312, 2018), so +-10%.
GA_2017_REL = 0.10
#: Upper edge (weeks) of the model's GA bands <28, 28-31, 32-33, 34-36, 37-38 (39+ is the rest).
CUT_WEEKS = (28, 32, 34, 37, 39)


def _logit(p):
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def wonder_cum(race: str | None = None) -> dict:
    """P(OE GA < edge) at each WONDER_OE_EDGES edge for a bridged race (None: all four), known GA only."""
    rows = [WONDER_OE_2017[race]] if race else list(WONDER_OE_2017.values())
    v = np.sum(np.array(rows, dtype=float), axis=0)[:len(WONDER_OE_EDGES)]
    return dict(zip(WONDER_OE_EDGES, np.cumsum(v) / v.sum()))


def load_deaths(sh: Path) -> tuple[pd.DataFrame, dict]:
    """Infant deaths of the 2010-2012 cohort-linked files with their OE gestational age (``estgest``).

    The 2013 cohort is read only to report why it is left out: its obstetric-estimate field is blank for the
    records of its second death year (revision flag blank), which are the older-age deaths of late-year births,
    so dropping them would bias the GA distribution of deaths toward short gestations.
    """
    cols = ["estgest", "combgest", "aged", "ucod", "umhisp", "mracerec", "recwt", "restatus"]
    parts, info = [], {}
    for y in (2010, 2011, 2012, 2013):
        d = pd.read_csv(sh / f"external/dysart__linkco{y}us_num.csv.zip", usecols=cols, low_memory=False)
        info[f"records_{y}"] = len(d)
        d = d[d.restatus != 4]  # NCHS convention: exclude foreign residents
        if y == 2013:
            info["cohort_2013_records_without_oe"] = int(d.estgest.isna().sum())
            continue
        parts.append(d.assign(cohort=y))
    d = pd.concat(parts, ignore_index=True)
    info["foreign_excluded_2010_2012"] = sum(info[f"records_{y}"] for y in (2010, 2011, 2012)) - len(d)
    unk = ~d.estgest.between(17, 47)
    info["unknown_ga_records"] = int(unk.sum())
    info["unknown_ga_weighted"] = float(d.loc[unk, "recwt"].sum())
    info["total_weighted"] = float(d.recwt.sum())
    d = d[~unk].copy()
    d["ga_band"] = pd.cut(d.estgest, [0, 27, 31, 33, 36, 38, 99], labels=list(GA_BANDS)).astype(str)
    suid = d.ucod.astype(str).str[:3].isin(["R95", "R99", "W75"])
    d["cause"] = np.where(d.aged < 28, "neonatal", np.where(suid, "suid", "other_postneonatal"))
    nh = d.umhisp == 0
    d["race"] = np.select([nh & (d.mracerec == 1), nh & (d.mracerec == 2), d.umhisp.between(1, 5),
                           nh & (d.mracerec == 4), nh & (d.mracerec == 3)], list(RACES), default="unknown")
    info["unknown_origin_weighted"] = float(d.loc[d.race == "unknown", "recwt"].sum())
    return d, info


def preterm_2014_2015(sh: Path, births: pd.DataFrame) -> dict:
    """Preterm (<37 wk, OE) rate per race for the 2013-2015 fit: ``{race: (percent, lo, hi, tier, source, note)}``.

    ALL, NH white, NH black, Hispanic: births-weighted mean of the published 2014 and 2015 rates (2013 OE rates do
    not exist). NH AIAN: March of Dimes 2014-2016 ratio to NH white x the NH white 2014-2016 mean. NH API: the 2017
    WONDER rate moved to 2014-2015 by the national trend on the log-odds scale (as state rates are, calibration).
    """
    pt = pd.read_csv(sh / "observed/preterm_state_race.csv").dropna(subset=["value"])
    us = pt[(pt.geo_abbr == "US") & (pt.measure == "preterm_birth_rate_lt37wk")]
    val: dict = {}
    for r in us.itertuples():  # first published row per (race, year), as build_targets lists them
        race = RACE_OBS.get(r.race_ethnicity)
        if race is not None and (race, str(r.period)) not in val:
            val[(race, str(r.period))] = float(r.value)
    val[("ALL", "2015")] = 9.63  # NVSR 66-1 (2 decimals), the 2015 row build_targets lists last
    nb_y = births.groupby(["race", "year"]).births.sum()
    out = {}
    for race in ("ALL", "nh_white", "nh_black", "hispanic"):
        w = [float(nb_y.xs(y, level="year").sum()) if race == "ALL" else float(nb_y[(race, y)]) for y in (2014, 2015)]
        v = (val[(race, "2014")] * w[0] + val[(race, "2015")] * w[1]) / sum(w)
        out[race] = (v, v - .01, v + .01, "2", "DERIVED from the 2014 and 2015 preterm_rate rows of this table",
                     f"DERIVED: births-weighted mean of 2014 ({val[(race, '2014')]}) and 2015 ({val[(race, '2015')]}); "
                     "2013 OE rate not available (2013 final 11.39% is LMP-based, not comparable); lo/hi rounding only")
    # NH AIAN: ratio to NH white, 2014-2016 (March of Dimes 2017 report card, rounded to 2 decimals).
    ratio = pt[(pt.measure == "preterm_disparity_vs_white") & (pt.race_ethnicity == "American Indian/Alaska Native")].iloc[0]
    white = [val[("nh_white", y)] for y in ("2014", "2015", "2016")]
    wm = sum(white) / 3
    v = float(ratio.value) * wm
    trend = float(_logit(out["ALL"][0] / 100) - _logit(wonder_cum()[37]))  # national 2017 -> 2014-2015
    aian17 = float(_expit(_logit(wonder_cum(WONDER_RACE["nh_aian"])[37]) + trend)) * 100
    out["nh_aian"] = (v, (float(ratio.value) - .005) * wm, max(v, aian17), "3",
                      f"{ratio.source_title}; {ratio.source_url}",
                      f"DERIVED: {ratio.value} (NH AIAN vs NH white, 2014-2016, March of Dimes) x NH white 2014-2016 mean "
                      f"{wm:.4f} (= ({white[0]} + {white[1]} + {white[2]})/3, statinvestor reproduction of NCHS db312); lo = "
                      f"ratio -0.005 rounding; hi = 2017 WONDER bridged AIAN {100 * wonder_cum(WONDER_RACE['nh_aian'])[37]:.2f}% "
                      f"moved to 2014-2015 by the national log-odds trend ({aian17:.2f}%; includes Hispanic AIAN); "
                      "cross-check: Kesmitij natality microdata 2016-2024 NH AIAN 11.97% (shared external/"
                      "kesmitij__stratified_rates.csv)")
    api17 = wonder_cum(WONDER_RACE["nh_api"])[37]
    v = float(_expit(_logit(api17) + trend)) * 100
    pv = pd.read_csv(sh / PV)
    k = pv[pv.risk_factor.astype(str).str.startswith("preterm birth rate") & (pv.race_ethnicity == "non-Hispanic Asian")].index[0]
    asian17 = float(pv.at[k, "value"]) / 100
    lo = float(_expit(_logit(asian17) + trend)) * 100
    out["nh_api"] = (v, min(v, lo), max(v, 100 * api17), "2", WONDER_OE_SRC,
                     f"DERIVED: 2017 WONDER bridged API preterm {100 * api17:.3f}% (OE) moved to 2014-2015 by the national "
                     f"trend on the log-odds scale (logit {out['ALL'][0]:.3f}% (2014-2015) - logit {100 * wonder_cum()[37]:.3f}% (2017, same "
                     f"export)); "
                     f"lo = NH Asian 2017 {100 * asian17:.2f}% (shared {PV}:{k}) moved the same way; hi = the 2017 value")
    return out


def ga_national_reference(sh: Path) -> dict:
    """National OE births distribution: ``{cut: (P(GA < cut), lo, hi, note)}`` at 28, 32, 34, 37, 39 weeks."""
    nls = pd.read_csv(sh / "observed/national_linked_stats.csv")
    g = lambda m: float(nls[nls.measure == m].value.iloc[0])  # noqa: E731
    d_ge39, s_ge39 = g("percent_of_infant_deaths_born_ge39wk") / 100, g("percent_of_survivors_born_ge39wk") / 100
    B, D = 3988076.0, 23211.0  # 2014 births and period-linked deaths (CDC WONDER 2014 total row, shared external)
    w = wonder_cum()
    pt = 0.0957  # 2014 preterm <37 (OE), NCHS db312
    lt34 = pt * 2.07 / 7.74  # singleton 2014: early preterm share of preterm (NVSR 73-1)
    ge39 = [(d * D + s * (B - D)) / B for d, s in ((d_ge39, s_ge39), (d_ge39 + .005, s_ge39 + .005),
                                                    (d_ge39 - .005, s_ge39 - .005))]
    wn = f"{WONDER_OE_SRC}: all four races, {sum(sum(v[:9]) for v in WONDER_OE_2017.values()):,} births of known OE GA"
    return {
        28: (w[28], w[28] * (1 - GA_2017_REL), w[28] * (1 + GA_2017_REL),
             f"P(<28) = {100 * w[28]:.4f}%, 2017 births under 28 weeks (incl. under 20) / known GA ({wn}); lo/hi ASSUMPTION "
             "+-10% for using 2017 for 2013-2015 (early preterm stable 2014-2016, NCHS db312)"),
        32: (w[32], w[32] * (1 - GA_2017_REL), w[32] * (1 + GA_2017_REL),
             f"P(<32) = {100 * w[32]:.4f}%, 2017, same export (direct births count; replaces the earlier derivation from "
             "MMWR QuickStats 2017;66:392, whose 58% of deaths <32 wk is now only a check figure); lo/hi ASSUMPTION +-10%"),
        34: (lt34, lt34 - .003, lt34 + .003,
             "P(<34) = 9.57% (2014 preterm, NCHS db312) x 2.07/7.74 (singleton 2014 early-preterm fraction of preterm, "
             "NVSR 73-1 Martin & Osterman 2024, via lifesciencesintelligence.com summary) -- singleton ratio applied to all "
             "births is an ASSUMPTION; lo/hi +-0.3 pt"),
        37: (pt, pt - .00005, pt + .00005, "P(<37) = 9.57%, 2014 preterm (OE), NCHS db312; lo/hi rounding only"),
        39: (1 - ge39[0], 1 - ge39[1], 1 - ge39[2],
             "P(<39) = 1 - P(39+), P(39+) = (0.16*D + 0.66*(B-D))/B from MMWR QuickStats 2017;66:392 (2014: 16% of deaths, "
             "66% of survivors >=39 wk; B=3,988,076, D=23,211) -- essentially the survivors' (births') figure; lo/hi +-0.5 pt "
             "rounding; cross-check singleton 2014 early term 24.31% (NCHS Health E-Stat 104)"),
    }


def ga_race_cumulative(nat: dict, race_pt: dict) -> dict:
    """Cumulative OE GA distribution per race: ``{race: {cut: (P(GA < cut), lo, hi)}}`` and a note.

    Each race's log-odds offset from the nation at each cut is taken from the 2017 WONDER export (its bridged race
    vs all races) and added to the national reference; the offset at 34 weeks is interpolated linearly in weeks
    between the export's cuts at 32 and 36 weeks, the one at 39 weeks between 37 and 40 weeks (ASSUMPTION; lo/hi span
    the two bracketing offsets). At 37 weeks the race's own published 2014-2015 preterm rate is used instead.
    """
    wall = wonder_cum()
    out = {}
    for race in RACES:
        wr = wonder_cum(WONDER_RACE[race])
        o = {k: float(_logit(wr[k]) - _logit(wall[k])) for k in (28, 32, 36, 37, 40)}
        off = {28: (o[28],) * 3, 32: (o[32],) * 3,
               34: ((o[32] + o[36]) / 2, min(o[32], o[36]), max(o[32], o[36])),
               39: (o[37] + (o[40] - o[37]) * 2 / 3, min(o[37], o[40]), max(o[37], o[40]))}
        cum = {}
        for k, (x, lo, hi) in off.items():
            cum[k] = (float(_expit(_logit(nat[k][0]) + x)), float(_expit(_logit(nat[k][1]) + lo)),
                      float(_expit(_logit(nat[k][2]) + hi)))
        p, plo, phi = race_pt[race][:3]
        cum[37] = (p / 100, plo / 100, phi / 100)
        vals = [cum[k][0] for k in CUT_WEEKS]
        if not all(a < b for a, b in zip(vals, vals[1:])):
            raise ValueError(f"GA distribution of {race} not increasing: {vals}")
        out[race] = dict(cum=cum, offsets=o)
    return out


def _band_shares(cum: dict) -> list[tuple[float, float, float]]:
    """Band shares (point, lo, hi) from cumulative (point, lo, hi) at CUT_WEEKS; lo/hi are conservative."""
    edges = [(0.0, 0.0, 0.0)] + [cum[k] for k in CUT_WEEKS] + [(1.0, 1.0, 1.0)]
    out = []
    for a, b in zip(edges, edges[1:]):
        out.append((b[0] - a[0], max(b[1] - a[2], 0.0), b[2] - a[1]))
    return out


def build_ga(sh: Path, births: pd.DataFrame, race_pt: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    d, info = load_deaths(sh)
    cohort_births = {2010: 3999386, 2011: 3953590, 2012: 3952841}  # plutchok v1 (NCHS resident births)
    n_years = len(cohort_births)
    pooled_births = sum(cohort_births.values())
    agg = d.groupby(["race", "ga_band", "cause"]).recwt.sum()
    nat = ga_national_reference(sh)
    race_cum = ga_race_cumulative(nat, race_pt)
    rows, tgt = [], []
    nhf = pd.read_csv(sh / "external/mchtrends__natality_race_11_15.txt", sep="\t", nrows=16)
    nhf = nhf[nhf["Notes"].isna()].pivot_table(index="Mother's Bridged Race", columns="Mother's Hispanic Origin",
                                               values="Births", aggfunc="sum")
    hisp_pct = (100 * nhf["Hispanic or Latino"] / (nhf["Hispanic or Latino"] + nhf["Not Hispanic or Latino"])).to_dict()
    allr = d.groupby(["ga_band", "cause"]).recwt.sum()
    note_ga = (f"Deaths: weighted (recwt) infant deaths, cohorts 2010-2012 pooled ({n_years} cohort-years), U.S. residents, "
               f"GA = estgest (obstetric/clinical estimate: the OE of revised-certificate states, the comparable clinical "
               f"estimate elsewhere, combined as in NCHS files, {NVSR64_5}), valid 17-47 wk; unknown OE excluded "
               f"({info['unknown_ga_records']} records, {info['unknown_ga_weighted']:.0f} weighted of "
               f"{info['total_weighted']:.0f}); cohort 2013 left out: estgest blank for "
               f"{info['cohort_2013_records_without_oe']} records (its second death year, older-age deaths: not at random); "
               f"neonatal = age <28 days (any cause); suid = age >=28 d and ucod R95/R99/W75; race from umhisp/mracerec "
               f"(bridged), unknown Hispanic origin ({info['unknown_origin_weighted']:.0f} weighted) only in ALL.")
    band_cut = dict(zip(GA_BANDS, CUT_WEEKS + (None,)))
    for race in ("ALL",) + RACES:
        sub = allr if race == "ALL" else agg.get(race, pd.Series(dtype=float))
        tot = float(sub.sum())
        if race == "ALL":
            shares = _band_shares({k: nat[k][:3] for k in CUT_WEEKS})
        else:
            shares = _band_shares(race_cum[race]["cum"])
            o = race_cum[race]["offsets"]
            rnote = (f"Births share DERIVED: P(<cut) = expit(logit national P(<cut) + race offset); offsets = logit P_race - "
                     f"logit P_all in the 2017 WONDER export ({WONDER_RACE[race]} bridged race): 28 wk {o[28]:+.4f}, 32 wk "
                     f"{o[32]:+.4f}, 34 wk = mean of 32 and 36 wk ({o[36]:+.4f}), 39 wk = 37 wk ({o[37]:+.4f}) + 2/3 x (40 wk "
                     f"({o[40]:+.4f}) - 37 wk) (ASSUMPTION: linear in weeks; lo/hi span the two); P(<37) = "
                     f"{race_pt[race][0]:.4f}% (targets.csv preterm_rate {race} 2014-2015). The export's {WONDER_RACE[race]} "
                     f"births include Hispanic ones ({hisp_pct[WONDER_RACE[race]]:.1f}% of {WONDER_RACE[race]} births 2011-2015, "
                     "shared external/mchtrends__natality_race_11_15.txt)"
                     + ("; NH white and Hispanic share the White shape below 37 wk (ASSUMPTION). " if race in ("nh_white", "hispanic")
                        else ". "))
        for bi, band in enumerate(GA_BANDS):
            dn = {c: float(sub.get((band, c), 0.0)) for c in ("neonatal", "suid", "other_postneonatal")}
            r = dict(race=race, ga_band=band, deaths_neonatal=round(dn["neonatal"], 1), deaths_suid=round(dn["suid"], 1),
                     deaths_other_postneonatal=round(dn["other_postneonatal"], 1), births_ga_measure=GA_MEASURE,
                     deaths_ga_measure=GA_MEASURE)
            sh_, lo, hi = shares[bi]
            r.update(births_share=sh_, births_share_lo=lo, births_share_hi=hi)
            if race == "ALL":
                for c in dn:
                    r[f"imr_{c}"] = dn[c] / (sh_ * pooled_births) * 1000
                parts = ([f"upper: {nat[band_cut[band]][3]}"] if band_cut[band] else ["upper: P(<inf) = 1"]) + \
                    ([f"lower: {nat[CUT_WEEKS[bi - 1]][3]}"] if bi > 0 else [])
                r["note"] = (f"Births share DERIVED = P(GA < upper edge) - P(GA < lower edge), national OE; {'; '.join(parts)}. "
                             f"IMR by cause = pooled deaths / (share x pooled cohort births {pooled_births}) x 1000 (DERIVED; "
                             "deaths and births both OE). " + note_ga)
                r["source"] = ("; ".join([WONDER_OE_SRC, "NCHS db312", "NVSR 73-1", "MMWR QuickStats 2017;66:392 (survivors "
                                          ">=39 wk)", LINKCO]))
            else:
                r["note"] = rnote + note_ga
                r["source"] = "; ".join([WONDER_OE_SRC, race_pt[race][4], LINKCO])
            rows.append(r)
            tgt.append(dict(target="ga_death_share", state="ALL", race=race, period="2010-2012 cohorts",
                            value=sum(dn.values()) / tot, unit="proportion of infant deaths with known GA (OE)",
                            deaths=round(sum(dn.values())), source_tier="1", source=LINKCO,
                            note="DERIVED: weighted deaths in band / all weighted deaths with known OE GA (estgest). "
                                 "Cross-check 2014 (MMWR QuickStats mm6614a5): 58% of deaths <32 wk, 16% >=39 wk (OE)."))
    return pd.DataFrame(rows), pd.DataFrame(tgt), info


# ----------------------------------------------------------------------------- targets
def build_targets(sh: Path, births: pd.DataFrame, ga_tgt: pd.DataFrame, race_pt: dict) -> pd.DataFrame:
    rows = []
    b3 = births[births.year.between(2013, 2015)].groupby(["state", "race"]).births.sum()
    b3_all = births[births.year.between(2013, 2015)].groupby("state").births.sum()
    b3_nat = births[births.year.between(2013, 2015)].groupby("race").births.sum()

    def add_rate(target, state, race, period, value, births_n, decimals, tier, source, note, unit="per 1,000 live births"):
        r = dict(target=target, state=state, race=race, period=period, value=value, unit=unit, source_tier=str(tier),
                 source=source, note=note)
        if births_n and not math.isnan(value):
            dth = int(round(value * births_n / 1000))
            lo, hi = garwood(dth, births_n, 0.05 if decimals == 1 else 0.005)
            r.update(births=int(births_n), deaths=dth, lo=lo, hi=hi)
        rows.append(r)

    ba = pd.read_csv(sh / "observed/imr_state_race_2013_2015_best_available.csv")
    ba = ba[ba.value.notna()]
    for r in ba.itertuples():
        race = RACE_OBS[r.race_ethnicity]
        tier = tier_of(r.note)
        nb = b3_all[r.geo_abbr] if race == "ALL" else b3[(r.geo_abbr, race)]
        est = "" if race == "ALL" else " births = 2013-2015 sum of ESTIMATED state x race births (births.csv);"
        add_rate("imr", r.geo_abbr, race, "2013-2015", float(r.value), nb, 1 if tier == "3" else 2, tier,
                 f"{r.source_title}; {r.source_url}",
                 f"tier {tier} (1=db295, 2=derived total, 3=Goldstein/CDC WONDER).{est} deaths = round(value*births/1000); "
                 "lo/hi exact Poisson (Garwood)" + (" +-0.05 rounding" if tier == "3" else " +-0.005 rounding"))
    nls = pd.read_csv(sh / "observed/national_linked_stats.csv")
    for race, v in (("ALL", 5.89), ("nh_black", 11.10), ("hispanic", 4.99)):
        add_rate("imr", "ALL", race, "2013-2015", v, b3_nat.sum() if race == "ALL" else b3_nat[race], 2, 1, DB295,
                 "U.S. 2013-2015 pooled (db295 text, quoted); births 3-year sum" + ("" if race == "ALL" else " of ESTIMATED race births"))
    h2 = nls[(nls.measure == "infant_mortality_rate") & nls.source_title.str.contains("HEALTH2")]
    natb = births[births.year.between(2013, 2015)].groupby(["race", "year"]).births.sum()
    for race, lab in (("nh_white", "non-Hispanic white"), ("nh_api", "non-Hispanic Asian or Pacific Islander"),
                      ("nh_aian", "non-Hispanic American Indian or Alaska Native")):
        vals = {int(p): float(v) for p, v in zip(h2[h2.race_ethnicity == lab].period, h2[h2.race_ethnicity == lab].value)
                if str(p) in ("2013", "2014", "2015")}
        w = np.array([natb[(race, y)] for y in (2013, 2014, 2015)], dtype=float)
        v = float(np.dot([vals[y] for y in (2013, 2014, 2015)], w) / w.sum())
        add_rate("imr", "ALL", race, "2013-2015", v, w.sum(), 1, 2, HEALTH2,
                 f"DERIVED: births-weighted mean of HEALTH2 single-year rates 2013/14/15 = {vals[2013]}/{vals[2014]}/{vals[2015]} "
                 "(1 decimal) with national births by race (births.csv); not published pooled"
                 + ("; HEALTH2 API year alignment inferred (see observed REPORT)" if race == "nh_api" else ""))
    # --- imr_year
    sy = pd.read_csv(sh / "observed/imr_state_year.csv")
    wonder = {}
    for y in (2013, 2014, 2016, 2017):  # the '2015' file is really 2016 (see MANIFEST)
        w = read_wonder(sh / f"external/dysart__{y}_All_Infant_Death_By_State.txt")
        for r in w.itertuples():
            wonder[(str(r.State), y)] = (int(r.Deaths), int(r.Births), float(r._6))
    cy = read_wonder(sh / "external/dysart__Linked_Birth_Infant_Death_Records_2007_2017_County_Year.txt")
    dc15 = cy[(cy.County == "District of Columbia, DC") & (cy["Year of Death"] == "2015")].iloc[0]
    wonder[("District of Columbia", 2015)] = (int(dc15.Deaths), int(dc15.Births), float(dc15["Death Rate"]))
    from imsim.core.constants import STATE_NAMES
    bt = births.groupby(["state", "year"]).births.sum()
    wsrc = ("CDC WONDER Linked Birth/Infant Death export (GitHub dysartk/BMIN503_Final_Project commit 8bd90144; "
            "shared external/dysart__{y}_All_Infant_Death_By_State.txt)")
    for s in STATES:
        for y in YEARS:
            o = sy[(sy.geo_abbr == s) & (sy.period.astype(str) == str(y))]
            rate = o[o.measure == "infant_mortality_rate"].dropna(subset=["value"])
            dth = o[o.measure == "infant_deaths"].dropna(subset=["value"])
            prim = rate[rate.source_type.str.startswith("primary")]
            nb = int(bt[(s, y)])
            key = (STATE_NAMES[s], y)
            if len(prim) and len(dth):
                v, d_, tier = float(prim.value.iloc[0]), int(dth.value.iloc[0]), 1
                src = f"{prim.source_title.iloc[0]}; {prim.source_url.iloc[0]}"
                note = "CDC Stats-of-the-States CSV (2 decimals) with published deaths"
            elif key in wonder:
                d_, wb, v = wonder[key]
                tier, src = 2, (wsrc.format(y=y) if y != 2015 else
                                "CDC WONDER county x year export (shared external/dysart__Linked_Birth_Infant_Death_Records_2007_2017_County_Year.txt)")
                note = f"CDC WONDER export deaths/births {d_}/{wb}"
                if len(rate):
                    note += f"; observed compilation value {rate.value.iloc[0]} ({rate.source_type.iloc[0]}) not used"
            else:
                continue
            lo, hi = garwood(d_, nb, 0.005)
            rows.append(dict(target="imr_year", state=s, race="ALL", period=str(y), value=v, unit="per 1,000 live births",
                             deaths=d_, births=nb, lo=lo, hi=hi, source_tier=str(tier), source=src,
                             note=note + "; births = NVSR state total (births.csv); lo/hi exact Poisson on deaths +-0.005 rounding"))
    usd = {2013: 23446, 2014: 23211, 2016: 23157, 2017: 22341}
    for y in YEARS:
        o = sy[(sy.geo_abbr == "US") & (sy.period.astype(str) == str(y)) & (sy.measure == "infant_mortality_rate")]
        v = float(o.value.iloc[0])
        nb = int(bt.xs(y, level="year").sum())
        d_ = usd.get(y, int(round(v * nb / 1000)))
        lo, hi = garwood(d_, nb, 0.005)
        rows.append(dict(target="imr_year", state="ALL", race="ALL", period=str(y), value=v, unit="per 1,000 live births",
                         deaths=d_, births=nb, lo=lo, hi=hi, source_tier="1", source=f"{o.source_title.iloc[0]}; {o.source_url.iloc[0]}",
                         note=("deaths from NVSR/CDC WONDER total row" if y in usd else "deaths DERIVED = round(value*births/1000)")))
    # --- preterm
    pt = pd.read_csv(sh / "observed/preterm_state_race.csv").dropna(subset=["value"])
    pt = pt[pt.measure == "preterm_birth_rate_lt37wk"]
    pvd = pd.read_csv(sh / PV)
    seen = set()
    for r in pt.itertuples():
        race = RACE_OBS.get(r.race_ethnicity)
        st = "ALL" if r.geo_abbr == "US" else r.geo_abbr
        key = (st, race, str(r.period))
        if race is None or key in seen:
            continue
        seen.add(key)
        dec = len(str(r.value).split(".")[1]) if "." in str(r.value) else 0
        pad = 0.05 if dec <= 1 else 0.005
        tier = 1 if "NCHS Data Brief" in r.source_title or "Provisional" in r.source_title else (2 if "HealthyPeople" in r.source_title else 3)
        rows.append(dict(target="preterm_rate", state=st, race=race, period=str(r.period), value=float(r.value),
                         unit="percent of live births <37 wk (obstetric estimate)", lo=r.value - pad, hi=r.value + pad,
                         source_tier=str(tier), source=f"{r.source_title}; {r.source_url}",
                         note=f"lo/hi = published rounding only. {r.note if isinstance(r.note, str) else ''}".strip()))
    for i, race in ((79, "nh_black"), (80, "hispanic"), (81, "nh_white")):
        v = float(pvd.at[i, "value"])
        rows.append(dict(target="preterm_rate", state="ALL", race=race, period="2017", value=v,
                         unit="percent of live births <37 wk (obstetric estimate)", lo=v - .005, hi=v + .005, source_tier="1",
                         source=src_row(pvd, i), note=f"shared {PV}:{i}; single race 2017"))
    rows.append(dict(target="preterm_rate", state="ALL", race="ALL", period="2015", value=9.63,
                     unit="percent of live births <37 wk (obstetric estimate)", lo=9.625, hi=9.635, source_tier="1",
                     source="NCHS Births: Final Data for 2015 (NVSR 66-1) via shared external/plutchok__external_validation_targets_v1.csv",
                     note="2 decimals (HP2020 9.6 agrees)"))
    nb_y = births.groupby(["race", "year"]).births.sum()
    ptv = {(x["race"], x["period"]): x["value"] for x in rows if x["target"] == "preterm_rate" and x["state"] == "ALL"}
    for race in ("ALL", "nh_white", "nh_black", "hispanic"):
        w = [float(nb_y.xs(y, level="year").sum()) if race == "ALL" else float(nb_y[(race, y)]) for y in (2014, 2015)]
        v = (ptv[(race, "2014")] * w[0] + ptv[(race, "2015")] * w[1]) / sum(w)
        rows.append(dict(target="preterm_rate", state="ALL", race=race, period="2014-2015", value=v,
                         unit="percent of live births <37 wk (obstetric estimate)", lo=v - .01, hi=v + .01, source_tier="2",
                         source="DERIVED from the 2014 and 2015 preterm_rate rows of this table",
                         note=f"DERIVED: births-weighted mean of 2014 ({ptv[(race, '2014')]}) and 2015 ({ptv[(race, '2015')]}); "
                              "2013 OE rate not available (2013 final 11.39% is LMP-based, not comparable); lo/hi rounding only"))
        if abs(race_pt[race][0] - v) > 1e-12:  # build_ga anchored the race's GA distribution on this value
            raise ValueError(f"preterm 2014-2015 {race}: {race_pt[race][0]} (GA structure) != {v} (targets)")
    for race in ("nh_api", "nh_aian"):  # the groups without a published 2014-2015 rate (see preterm_2014_2015)
        v, lo, hi, tier, src, note = race_pt[race]
        rows.append(dict(target="preterm_rate", state="ALL", race=race, period="2014-2015", value=v,
                         unit="percent of live births <37 wk (obstetric estimate)", lo=lo, hi=hi, source_tier=tier,
                         source=src, note=note))
    # --- nmr / pnmr
    for r in nls[nls.measure.isin(["neonatal_mortality_rate", "postneonatal_mortality_rate"])].itertuples():
        race = RACE_OBS.get(r.race_ethnicity)
        rows.append(dict(target="nmr" if r.measure.startswith("neonatal") else "pnmr", state="ALL", race=race,
                         period=str(r.period), value=float(r.value), unit="per 1,000 live births", lo=r.value - .005,
                         hi=r.value + .005, source_tier="1", source=f"{r.source_title}; {r.source_url}",
                         note="lo/hi rounding only" + ("; 2016 figure-label assignment inferred (observed REPORT)" if str(r.period) == "2016" and race == "ALL" else "")))
    for t, n in (("nmr", 15554), ("pnmr", 7772)):
        v = n / 3978497 * 1000
        lo, hi = garwood(n, 3978497)
        rows.append(dict(target=t, state="ALL", race="ALL", period="2015 cohort", value=v, unit="per 1,000 live births",
                         deaths=n, births=3978497, lo=lo, hi=hi, source_tier="1",
                         source="NCHS LinkCO15Guide Table 4 via shared external/plutchok__external_validation_targets_v3_linked.csv",
                         note="DERIVED: unweighted deaths / resident births x 1000; exact Poisson interval"))
    # --- SUID
    su = pd.read_csv(sh / "observed/suid.csv").dropna(subset=["value"])
    sr17 = {"non-Hispanic American Indian or Alaska Native (single race)": "nh_aian", "non-Hispanic black (single race)": "nh_black",
            "non-Hispanic white (single race)": "nh_white", "Hispanic": "hispanic"}
    s17 = su[(su.measure == "SUID_rate") & (su.period.astype(str) == "2017")]
    for r in s17.itertuples():
        if r.race_ethnicity in sr17:
            rows.append(dict(target="suid_rate", state="ALL", race=sr17[r.race_ethnicity], period="2017", value=r.value / 100,
                             unit="per 1,000 live births", lo=(r.value - .05) / 100, hi=(r.value + .05) / 100, source_tier="1",
                             source=f"{r.source_title}; {r.source_url}", note="per 100,000 / 100; single race; lo/hi rounding only"))
    asn = float(s17[s17.race_ethnicity.str.startswith("non-Hispanic Asian")].value.iloc[0])
    nhopi = float(s17[s17.race_ethnicity.str.contains("Hawaiian")].value.iloc[0])
    bus = pd.read_csv(sh / "observed/births_state_race.csv")
    wa = float(bus[(bus.period.astype(str) == "2017") & (bus.race_ethnicity == "non-Hispanic Asian (single race)")].value.iloc[0])
    wn = float(bus[(bus.period.astype(str) == "2017") & bus.race_ethnicity.str.startswith("non-Hispanic Native Hawaiian")].value.iloc[0])
    v = (asn * wa + nhopi * wn) / (wa + wn) / 100
    rows.append(dict(target="suid_rate", state="ALL", race="nh_api", period="2017", value=v, unit="per 1,000 live births",
                     lo=asn / 100, hi=v * 1.25, source_tier="2", source=s17.source_url.iloc[0],
                     note=f"DERIVED: births-weighted mean of NH Asian {asn} and NH NHOPI {nhopi} (unreliable, <20 deaths) per 100k, "
                          f"2017 births {wa:.0f}/{wn:.0f}; lo = Asian-only rate, hi = ASSUMPTION +25% for NHOPI instability"))
    s15 = su[(su.measure == "SUID_rate") & (su.period.astype(str) == "2015")].iloc[0]
    rows.append(dict(target="suid_rate", state="ALL", race="ALL", period="2015", value=s15.value / 100, unit="per 1,000 live births",
                     lo=(s15.value - .05) / 100, hi=(s15.value + .05) / 100, source_tier="1",
                     source=f"{s15.source_title}; {s15.source_url}", note="mortality files (not linked); lo/hi rounding only"))
    for i, race in ((48, "nh_aian"), (49, "nh_black"), (50, "nh_white"), (51, "hispanic")):
        v = float(pvd.at[i, "value"])
        rows.append(dict(target="suid_rate", state="ALL", race=race, period=str(pvd.at[i, "period"]), value=v,
                         unit="per 1,000 live births", lo=v - .005, hi=v + .005, source_tier="1", source=src_row(pvd, i),
                         note=f"shared {PV}:{i}; lo/hi rounding only"))
    out = pd.concat([pd.DataFrame(rows), ga_tgt], ignore_index=True)
    return out


# ----------------------------------------------------------------------------- exposures
#: Elective early-term delivery (``elective_early_term``), step by step. The Leapfrog rate is the Joint Commission
#: PC-01 measure (CMS113 / NQF 0469): numerator = elective deliveries (medical induction, or cesarean while not in labor
#: and without spontaneous rupture of membranes); DENOMINATOR = patients delivering at >= 37 and < 39 completed weeks,
#: EXCLUDING conditions possibly justifying delivery before 39 weeks (TJC Appendix A Table 11.07; also <8 or >=65 years,
#: stays >120 days, clinical trials, and, from 2014-15, prior uterine surgery / missing GA). So elective early-term
#: births among ALL births = PC-01 rate x share of births at 37-38 wk x (1 - excluded share of 37-38 wk deliveries).
#: Leapfrog national rates (prevalence.csv:84): 4.6% (2013), 1.9% (2016); linear between them, 2013-2015 mean =
#: (4.6 + 3.7 + 2.8) / 3 = 3.7% (DERIVED, ASSUMPTION of a linear decline); range 1.9% (2016) .. 4.6% (2013).
EET_PC01 = (0.037, 0.019, 0.046)
#: Excluded share of 37-38 wk deliveries: early-term births delivered for a medical indication (27.6%) or after
#: premature rupture of membranes (3.3%), Parikh LI et al., Neonatal outcomes in early term birth, Am J Obstet Gynecol
#: 2014;211(3):265.e1-11 (PMID 24631438; Consortium on Safe Labor 2002-2008): 0.309; range ASSUMPTION 0.15 .. 0.45
#: (coding of Table 11.07 conditions also in spontaneous labour, or indications outside the table).
EET_EXCLUDED = (0.276 + 0.033, 0.15, 0.45)
PC01_SOURCE = ("The Joint Commission PC-01 Elective Delivery (eCQM CMS113v3, NQF 0469; denominator: deliveries at >=37 and "
               "<39 weeks; denominator exclusions: conditions possibly justifying elective delivery prior to 39 weeks), "
               "https://ecqi.healthit.gov/ecqm/measures/cms113v3; Leapfrog early elective delivery rates 2013 4.6%, 2016 1.9% "
               "(https://www.leapfroggroup.org/influencing/early-elective-deliveries); Parikh LI et al. Am J Obstet Gynecol "
               "2014;211(3):265.e1-11, https://pubmed.ncbi.nlm.nih.gov/24631438/; NCHS early-term share (ga_structure.csv)")


def elective_early_term(ga: pd.DataFrame) -> dict:
    """Elective early-term births as a share of all births, and the model's candidate probability (point, lo, hi).

    ``share`` = PC-01 rate x share of births at 37-38 wk x (1 - excluded share), see EET_PC01 / EET_EXCLUDED; the
    37-38 wk share is the model's own (ga_structure.csv, race ALL: NCHS 2014, range from rounding). In the model an
    ``elective_early_term`` birth is a CANDIDATE: it is delivered at 37-38 wk only if it would otherwise be born at
    39+ wk, so the candidate probability is p = share / (share39 + share), share39 = observed 39+ share (which
    excludes the electives): then p x P(would be 39+) = share.
    """
    nat = ga[ga.race == "ALL"].set_index("ga_band")
    et = (float(nat.at["37-38", "births_share"]), float(nat.at["37-38", "births_share_lo"]),
          float(nat.at["37-38", "births_share_hi"]))
    s39 = float(nat.at["39+", "births_share"])
    share = (EET_PC01[0] * et[0] * (1 - EET_EXCLUDED[0]),
             EET_PC01[1] * et[1] * (1 - EET_EXCLUDED[2]),
             EET_PC01[2] * et[2] * (1 - EET_EXCLUDED[1]))
    cand = tuple(x / (s39 + x) for x in share)
    return dict(share=share, candidate=cand, early_term_share=et, share39=s39)


def build_exposures(sh: Path, births: pd.DataFrame, ga: pd.DataFrame) -> pd.DataFrame:
    pv = pd.read_csv(sh / PV)
    rows = []
    nb15 = births[births.year == 2015].groupby("race").births.sum()
    nb15 = nb15 / nb15.sum()

    def add(exp, state, race, p, lo, hi, period, i, assumption, note):
        src = src_row(pv, i) if isinstance(i, int) else i
        rows.append(dict(exposure=exp, state=state, race=race, prevalence=p, lo=lo, hi=hi, period=period, source=src,
                         assumption=assumption, note=(f"shared {PV}:{i}. " if isinstance(i, int) else "") + note))

    def fill_races(exp, nat, lo, hi, period, i, defined, why):
        for r in RACES:
            if r not in defined:
                add(exp, "ALL", r, nat, lo * 0.5, min(1.0, hi * 1.5), period, i, True,
                    f"ASSUMPTION: no race-specific source; national value, range = national lo x0.5 .. hi x1.5. {why}")

    # smoking (any time in pregnancy, birth certificate). The baseline is 2013-2015: use the 2014 figures of
    # Curtin & Mathews, NVSR 65(1), 2016 (46 states + DC with the 2003 certificate, 95% of births): 8.4% overall,
    # NH AIAN 18.0%, WV 27.1%, CA 1.8%. Other groups/states: the 2016 values (NCHS Data Brief 305) scaled by
    # 8.4/7.2 -- ASSUMPTION that smoking fell proportionally 2014->2016; lo = the 2016 value (smoking fell),
    # hi = scaled by 8.73/7.2 (8.73% = births to smokers / births with known smoking status, NCHS period linked
    # files 2011-2013, external/gunasekaran__tbl_imr_by_factor.csv).
    nvsr65 = ("Curtin SC, Mathews TJ. Smoking prevalence and cessation before and during pregnancy: data from the birth "
              "certificate, 2014. NVSR 65(1), Feb 2016; https://www.cdc.gov/nchs/data/nvsr/nvsr65/nvsr65_01.pdf")
    gl = pd.read_csv(sh / "external" / "gunasekaran__tbl_imr_by_factor.csv")
    sm_rows = gl[gl.factor == "smoker"].set_index("level")["n"]
    p1113 = float(sm_rows.loc["1.0"] / sm_rows.sum())
    k14, khi = 8.4 / 7.2, p1113 / 0.072
    r1 = lambda i: float(pv.at[i, "value"]) / 100  # noqa: E731
    rows.append(dict(exposure="smoking", state="ALL", race="ALL", prevalence=0.084, lo=0.0835, hi=0.0845, period="2014",
                     source=nvsr65, assumption=False, note="smoked any time during pregnancy (quitting before pregnancy = "
                     "nonsmoker), 2014, 46 states + DC (95% of births); lo/hi rounding only"))
    rows.append(dict(exposure="smoking", state="ALL", race="nh_aian", prevalence=0.18, lo=0.1795, hi=0.1805, period="2014",
                     source=nvsr65, assumption=False, note="NH AIAN, 2014; lo/hi rounding only"))
    sm = {"nh_white": 2, "nh_black": 3, "hispanic": 5}
    for race, i in sm.items():
        add("smoking", "ALL", race, r1(i) * k14, r1(i), r1(i) * khi, "2014 (scaled from 2016)", i, True,
            f"ASSUMPTION: 2016 value {r1(i):.3f} (Data Brief 305) x 8.4/7.2 (2014 national, NVSR 65(1), over 2016 national) for "
            f"the 2013-2015 baseline; lo = the 2016 value; hi = x {p1113:.4f}/0.072 (2011-2013 period linked files, "
            "gunasekaran table)")
    api = (0.6 * 254471 + 4.5 * 9342) / (254471 + 9342) / 100
    add("smoking", "ALL", "nh_api", api * k14, 0.006, max(0.045, api * khi), "2014 (scaled from 2016)", 6, True,
        "DERIVED: births-weighted mean of NH Asian 0.6% and NH NHOPI 4.5% (prevalence.csv:4) with 2016 single-race births "
        "254,471/9,342, x 8.4/7.2 as for the other groups (ASSUMPTION); lo/hi = the two groups")
    rows.append(dict(exposure="smoking", state="WV", race="ALL", prevalence=0.271, lo=0.2705, hi=0.2715, period="2014", source=nvsr65,
                     assumption=False, note="state, all races, 2014; lo/hi rounding only"))
    rows.append(dict(exposure="smoking", state="CA", race="ALL", prevalence=0.018, lo=0.0175, hi=0.0185, period="2014", source=nvsr65,
                     assumption=False, note="state, all races, 2014; lo/hi rounding only"))
    for i, st in ((14, "KY"), (15, "MT"), (16, "VT"), (17, "MO")):
        add("smoking", st, "ALL", r1(i) * k14, r1(i), r1(i) * khi, "2014 (scaled from 2016)", i, True,
            "ASSUMPTION: state 2016 value x 8.4/7.2 (national 2014/2016); lo = the 2016 value, hi = x 8.73/7.2")
    for st in ("AZ", "CT", "HI", "NJ", "NY", "NV", "TX", "UT", "DC"):
        add("smoking", st, "ALL", 0.025, 0.0, 0.05, "2016", 19, True,
            "ASSUMPTION: published only as '<5%' (2016); midpoint 2.5% of the 0-5% interval, also for 2013-2015")
    # prior preterm
    add("prior_preterm", "ALL", "ALL", 0.04, 0.034, 0.05, "c. 2014-2021", 67, True,
        "history of spontaneous PTB (~4% of pregnancies, as stated; 1 significant figure); lo = 3.4% 17P-eligible PA Medicaid singletons "
        "(prevalence.csv:68); hi = ASSUMPTION (rounding of '4' plus other payers)")
    fill_races("prior_preterm", 0.04, 0.034, 0.05, "c. 2014-2021", 67, set(), "Likely higher for NH black (higher PTB rate).")
    # short cervix
    add("short_cervix", "ALL", "ALL", 0.011, 0.008, 0.014, "2012-2013", 74, False,
        "cervical length <=20 mm at 18-24 wk, Penn universal screening; DERIVED point = midpoint of nulliparous 1.4% and prior-term 0.8%; "
        "evidence RR applies to <=25 mm, so this understates the eligible group. Its preterm risk: short_cervix_ptb_lt*_or (PREGNANT "
        "placebo arm, evidence.csv)")
    fill_races("short_cervix", 0.011, 0.008, 0.014, "2012-2013", 74, set(), "")
    # short IPI. The model's exposure is the one short_ipi_ptb_or was estimated for (Class 2017 sibling design: IPI <6
    # months vs 18-23 months; 6-17 months near-null, Ahrens 2019, EVIDENCE.md), among ALL births:
    #   P(IPI <6 mo) = P(second- or higher-order birth) x P(IPI <6 mo | second- or higher-order birth).
    # First factor: NCHS Births: Final Data for 2014 (NVSR 64-12) Table 2, births by live-birth order, all races.
    # Second factor: NCHS Data Brief 240 (2014, second+ order singleton births, 47 states + DC), by race.
    nvsr64_12 = ("Hamilton BE, Martin JA, Osterman MJK, Curtin SC, Mathews TJ. Births: Final Data for 2014. NVSR 64(12), Dec 2015, "
                 "Table 2 (births by live-birth order), as reproduced at https://www.jrganymede.com/?p=17806 ; "
                 "https://www.cdc.gov/nchs/data/nvsr/nvsr64/nvsr64_12.pdf")
    lbo_total, lbo_first, lbo_unknown = 3988076, 1550475, 19898
    par2 = (lbo_total - lbo_unknown - lbo_first) / (lbo_total - lbo_unknown)
    par2_lo, par2_hi = par2 - 0.06, par2 + 0.06
    par_note = (f"P(second+ order) = (3,988,076 - 19,898 not stated - 1,550,475 first births) / (3,988,076 - 19,898) = {par2:.4f} "
                "(NVSR 64-12 Table 2, 2014, all races)")
    lt6 = {"nh_black": 54, "nh_white": 56, "hispanic": 58}
    v6 = {r: float(pv.at[i, "value"]) / 100 for r, i in lt6.items()}
    for r, i in lt6.items():
        add("short_ipi", "ALL", r, par2 * v6[r], par2_lo * (v6[r] - 0.0005), par2_hi * (v6[r] + 0.0005), "2014",
            f"{src_row(pv, i)}; {nvsr64_12}", True,
            f"DEFINITION: interpregnancy interval <6 months, share of ALL births. DERIVED: {par_note} x IPI <6 mo among "
            f"second+ order births {v6[r] * 100:.1f}% (NCHS Data Brief 240, {r}, prevalence.csv:{i}) = {par2 * v6[r]:.5f}. "
            "ASSUMPTION: the all-race parity share holds for this group (live-birth order by race not retrieved); range = "
            "parity share +-0.06 (ASSUMPTION) and the <6 mo share's rounding")
    w6 = {r: float(nb15[r]) for r in lt6}
    v6_nat = sum(v6[r] * w6[r] for r in lt6) / sum(w6.values())
    add("short_ipi", "ALL", "ALL", par2 * v6_nat, par2_lo * min(v6.values()), par2_hi * max(v6.values()), "2014",
        f"{src_row(pv, 53)}; {nvsr64_12}", True,
        f"DEFINITION: interpregnancy interval <6 months, share of ALL births. DERIVED: {par_note} x IPI <6 mo among second+ order "
        f"births {v6_nat * 100:.2f}% = births-weighted mean (2015 births) of NH black 7.1%, NH white 4.1%, Hispanic 5.0% (NCHS Data "
        "Brief 240, prevalence.csv:54,56,58; the brief's all-race <6 mo share was not retrieved; its <18 mo share 28.9%, "
        "prevalence.csv:53, is NOT the exposure: 6-17 months carry no effect in the model). lo/hi = parity share +-0.06 x the "
        "lowest / highest race value")
    for r in RACES:
        if r not in lt6:
            add("short_ipi", "ALL", r, par2 * v6_nat, par2_lo * 0.018, par2_hi * max(v6.values()), "2014",
                f"{src_row(pv, 61)}; {nvsr64_12}", True,
                f"ASSUMPTION: no race-specific source; the all-race value {par2 * v6_nat:.5f} (IPI <6 mo among ALL births, see the "
                "ALL row). Range: parity share +-0.06 x the lowest (1.8%, doctorate, prevalence.csv:61) and highest (7.1%, NH "
                "black) subgroup <6 mo shares in NCHS Data Brief 240")
    # elective early term: PC-01 rate (per 37-38 wk delivery, exclusions) -> share of ALL births -> candidate probability
    eet = elective_early_term(ga)
    (e_pt, e_lo, e_hi), (c_pt, c_lo, c_hi), et = eet["share"], eet["candidate"], eet["early_term_share"]
    rows.append(dict(
        exposure="elective_early_term", state="ALL", race="ALL", prevalence=c_pt, lo=c_lo, hi=c_hi, period="2013-2015",
        source=PC01_SOURCE, assumption=True,
        note=(f"shared evidence/prevalence.csv:84. DERIVED: probability that a birth is a CANDIDATE for a non-medically-indicated "
              f"delivery at 37-38 wk (delivered early only if it would otherwise be born at 39+ wk). Elective early-term births "
              f"among ALL births = PC-01 rate {EET_PC01[0]} (Leapfrog reporting hospitals, self-selected; 2013-2015 mean of "
              f"4.6% 2013 and 1.9% 2016 linearly interpolated, ASSUMPTION) x share of births at 37-38 wk {et[0]:.5f} "
              f"(ga_structure.csv) x (1 - {EET_EXCLUDED[0]:.3f} excluded from the PC-01 denominator: medically indicated 27.6% "
              f"+ PROM 3.3% of early-term births, Parikh 2014) = {e_pt:.6f}; candidate = share / (39+ share "
              f"{eet['share39']:.5f} + share) = {c_pt:.6f}. lo/hi: PC-01 1.9%/4.6%, 37-38 wk share {et[1]:.5f}/{et[2]:.5f}, "
              f"excluded 0.45/0.15 (ASSUMPTION) -> share {e_lo:.6f}/{e_hi:.6f}. The earlier value 0.046 used the PC-01 "
              "rate as a share of all births (about 4x too many). Cross-check, not used: birth-certificate 'no documented "
              "indication' early-term inductions + cesareans in Oregon 2012-2013, 2.5% + 2.1% of term births (Snowden 2016, "
              "effects.csv:85), are higher because certificates under-record indications")))
    fill_races("elective_early_term", c_pt, c_lo, c_hi, "2013-2015", PC01_SOURCE, set(),
               "No race-specific PC-01 rate or early-term share by race in the sources.")
    # unsafe sleep = usually placed nonsupine OR usual bed-sharing (the evidence's two SUID risks)
    wb = float(nb15["nh_black"])
    ratio = (1 - .58) / (1 - .75)
    x = 0.216 / (1 + (ratio - 1) * wb)
    ns = {r: x for r in RACES}
    ns["nh_black"] = x * ratio
    # Usual bed-sharing 13.5% (NISP 2010, prevalence.csv:42); black vs white AOR 3.5
    # (effects.csv:22) applied as an odds ratio, other groups at the white odds.
    lo_b, hi_b = 1e-6, 0.5
    for _ in range(80):
        bw = 0.5 * (lo_b + hi_b)
        ob = 3.5 * bw / (1 - bw)
        bb = ob / (1 + ob)
        nat = bw * (1 - wb) + bb * wb
        lo_b, hi_b = (bw, hi_b) if nat < 0.135 else (lo_b, bw)
    bs = {r: bw for r in RACES}
    bs["nh_black"] = bb
    union = {r: 1 - (1 - ns[r]) * (1 - bs[r]) for r in RACES}
    nat_u = 1 - (1 - 0.216) * (1 - 0.135)
    definition = ("DEFINITION: infant usually placed NONSUPINE (PRAMS 2015, 21.6%, prevalence.csv:31) OR usually "
                  "BED-SHARING (NISP 2010, 13.5%, prevalence.csv:42); DERIVED as 1-(1-nonsupine)(1-bed-sharing), "
                  "ASSUMPTION that the two are independent within a group; lo = larger of the two alone (full overlap), "
                  "hi = their sum (no overlap)")
    add("unsafe_sleep", "ALL", "ALL", nat_u, 0.216, 0.216 + 0.135, "2010-2015", 31, True, definition)
    for r in ("nh_white", "nh_black"):
        add("unsafe_sleep", "ALL", r, union[r], max(ns[r], bs[r]), min(1.0, ns[r] + bs[r]), "2010-2015",
            43 if r == "nh_white" else 44, True,
            f"{definition}. Nonsupine {ns[r]:.3f}: black/white ratio (1-0.58)/(1-0.75) = {ratio:.2f} from NISP usual supine "
            f"75% white vs 58% African American (2003-07, prevalence.csv:43,44) solved to the 21.6% national with NH black "
            f"share of 2015 births {wb:.3f}; bed-sharing {bs[r]:.3f}: odds x3.5 for NH black (effects.csv:22) solved to the "
            "13.5% national; other groups at the NH white values")
    for st, v, i, what in (("WI", 0.122, 32, "lowest"), ("LA", 0.338, 33, "highest")):
        u = 1 - (1 - v) * (1 - 0.135)
        add("unsafe_sleep", st, "ALL", u, max(v, 0.135), v + 0.135, "2010-2015", i, True,
            f"nonsupine {v:.1%} ({what} PRAMS 2015 state) combined with the national usual bed-sharing 13.5% as "
            f"1-(1-nonsupine)(1-0.135); ASSUMPTION of independence and of the national bed-sharing level")
    fill_races("unsafe_sleep", union["nh_white"], max(ns["nh_white"], bs["nh_white"]),
               min(1.0, ns["nh_white"] + bs["nh_white"]), "2010-2015", 31, {"nh_white", "nh_black"},
               "Groups other than NH black assumed at the NH white nonsupine and bed-sharing levels.")
    # low income (Medicaid-paid births)
    add("low_income", "ALL", "ALL", 0.426, 0.421, 0.445, "2016", 93, False,
        "Medicaid as principal payer at delivery; lo/hi = 2011-13 expansion/non-expansion state shares 42.1/44.5 (prevalence.csv:97)")
    for i, r in ((98, "nh_white"), (99, "nh_black"), (100, "hispanic")):
        a, b = (float(v) / 100 for v in str(pv.at[i, "value"]).split(" / "))
        add("low_income", "ALL", r, (a + b) / 2, min(a, b), max(a, b), "2011-2013", i, False,
            f"DERIVED: unweighted mean of expansion ({a:.3f}) and non-expansion ({b:.3f}) state shares, Brown 2019 JAMA Table 2; lo/hi = the two")
    for st, v in (("ND", .25), ("LA", .63), ("MS", .63)):
        add("low_income", st, "ALL", v, v - .02, v + .02, "2018", 95, True,
            "OUT OF PERIOD (2018) and approximate ('~'); lo/hi = ASSUMPTION +-2 pt")
    fill_races("low_income", 0.426, 0.421, 0.445, "2016", 93, {"nh_white", "nh_black", "hispanic"},
               "NH AIAN probably well above national.")
    # level III
    add("level3_vlbw", "ALL", "ALL", 0.75, 0.637, 0.934, "2003-2006", 86, True,
        "VLBW infants born at level III+ hospitals, HP2020 MICH-33 baseline (Title V reports); out of period (no 2013-2017 value found); "
        "lo/hi = ASSUMPTION using the 2006 state range of VLBW NICU admission 63.7% (CA) - 93.4% (ND) (prevalence.csv:88, different measure)")
    add("level3_vlbw", "MO", "ALL", 0.828, 0.8275, 0.8285, "2008-2012", 87, False, "Missouri VLBW delivered in level III centres")
    nicu = dict(zip(("hispanic", "nh_black", "nh_white"), (0.718, 0.795, 0.805)))
    for r, v in nicu.items():
        p = 0.75 * v / 0.773
        add("level3_vlbw", "ALL", r, p, p - 0.05, min(1, p + 0.05), "2006", 89, True,
            f"DERIVED: 75.0% x race NICU-admission ratio ({v:.3f}/0.773, 19 states 2006, prevalence.csv:88,89); ASSUMPTION that level-III "
            "delivery varies by race like VLBW NICU admission; +-5 pt assumed")
    fill_races("level3_vlbw", 0.75, 0.637, 0.934, "2003-2006", 86, set(nicu), "")
    df = pd.DataFrame(rows)
    df[["lo", "hi"]] = df[["lo", "hi"]].clip(0, 1)
    return df


# ----------------------------------------------------------------------------- associations
def build_associations() -> pd.DataFrame:
    g = lambda a, b: math.sqrt(a * b)  # noqa: E731
    p0 = 0.072 / (1 - 0.426 + 2 * 0.426)
    or_pr2 = (2 * p0 / (1 - 2 * p0)) / (p0 / (1 - p0))
    or_edu = (0.122 / 0.878) / (0.01 / 0.99)
    or_ipi = (0.043 / 0.957) / (0.018 / 0.982)
    or_pt = (0.1144 / 0.8856) / (0.0933 / 0.9067)
    rows = [
        dict(id="low_income__smoking", from_exposure="low_income", to_exposure="smoking", odds_ratio=g(or_pr2, or_edu),
             lo=or_pr2, hi=or_edu, assumption=True,
             source="Adams et al., Health Care Financing Review (Medicaid-paid deliveries 'more than twice as likely to smoke'), "
                    "https://fdocuments.us/document/smoking-among-medicaid-insured-mothers-centers-for-medicare.html; NCHS Data Brief 305 (prevalence.csv:10,12)",
             note=f"DERIVED range: lo = OR implied by prevalence ratio 2 with 7.2% overall and 42.6% Medicaid ({or_pr2:.2f}); hi = OR high-school "
                  f"12.2% vs bachelor's <=1.0% ({or_edu:.2f}, extreme education contrast); point = geometric midpoint (ASSUMPTION)"),
        dict(id="low_income__short_ipi", from_exposure="low_income", to_exposure="short_ipi", odds_ratio=g(1.0, or_ipi), lo=1.0,
             hi=or_ipi, assumption=True, source="NCHS Data Brief 240 via shared evidence/prevalence.csv:61",
             note=f"DERIVED hi = OR of IPI<6 mo, no HS 4.3% vs doctorate 1.8% ({or_ipi:.2f}, extreme education contrast); lo = no association; "
                  "point = geometric midpoint (ASSUMPTION)"),
        dict(id="low_income__prior_preterm", from_exposure="low_income", to_exposure="prior_preterm", odds_ratio=or_pt, lo=1.0, hi=or_pt,
             assumption=True, source="NCHS natality microdata 2016-2024 aggregates (GitHub Kesmitij/cdc-natality-birth-outcomes, shared external/kesmitij__stratified_rates.csv)",
             note=f"DERIVED: OR of CURRENT preterm birth, Medicaid 11.44% vs private 9.33% ({or_pt:.2f}); ASSUMPTION that history of PTB has "
                  "the same payer gradient; lo = no association"),
        dict(id="low_income__unsafe_sleep", from_exposure="low_income", to_exposure="unsafe_sleep", odds_ratio=g(1.0, 2.0), lo=1.0, hi=2.0,
             assumption=True, source="none found",
             note="ASSUMPTION: no payer/income-specific nonsupine prevalence in the shared evidence; range 1-2 chosen so the gradient is at most "
                  "as large as the black/white nonsupine ratio (1.68, NISP); point = geometric midpoint"),
        dict(id="smoking__unsafe_sleep", from_exposure="smoking", to_exposure="unsafe_sleep", odds_ratio=g(1.0, 2.0), lo=1.0, hi=2.0,
             assumption=True, source="none found",
             note="ASSUMPTION: co-occurrence of prenatal smoking and nonsupine placement not quantified in the shared evidence; range 1-2; "
                  "point = geometric midpoint"),
        dict(id="low_income__elective_early_term", from_exposure="low_income", to_exposure="elective_early_term", odds_ratio=1.0, lo=0.67,
             hi=1.5, assumption=True, source="none found", note="ASSUMPTION: no source; independence as base case, symmetric range on the log scale"),
        dict(id="low_income__short_cervix", from_exposure="low_income", to_exposure="short_cervix", odds_ratio=1.0, lo=0.67, hi=1.5,
             assumption=True, source="none found", note="ASSUMPTION: no source; independence as base case, symmetric range on the log scale"),
    ]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- evidence
def build_evidence(sh: Path, ga: pd.DataFrame) -> pd.DataFrame:
    ef = pd.read_csv(sh / EV)
    ga_all = ga[ga.race == "ALL"].set_index("ga_band")["births_share"]
    rows = []

    def add(id_, desc, point, dist, lo, hi, scale, applies, outcome, i, assumption=False, note="", citation=None, url=None, srow=None):
        i0 = i if isinstance(i, int) else None
        rows.append(dict(id=id_, description=desc, point=point, dist=dist, lo=lo, hi=hi, scale=scale, applies_to=applies,
                         outcome=outcome, area=ef.at[i0, "strategy_area"] if i0 is not None else "",
                         citation=citation or (ef.at[i0, "source_citation"] if i0 is not None else ""),
                         url=url or (ef.at[i0, "source_url"] if i0 is not None else ""),
                         source_row=srow if srow is not None else str(i), assumption=assumption, note=note))

    def ci(id_, desc, i, scale, applies, outcome, note="", **kw):
        add(id_, desc, float(ef.at[i, "point"]), "lognormal", float(ef.at[i, "low"]), float(ef.at[i, "high"]), scale, applies,
            outcome, i, note=note, **kw)

    # Smoking -> GA. Dietz 2010 reports multinomial CATEGORY odds ratios vs term (very <32, moderately
    # 32-33, late 34-36 wk); the model's cuts are CUMULATIVE (P(GA < cut)). With nonsmokers' category
    # shares p_c (national births shares by GA band, ga_structure ALL rows), smokers' category odds vs
    # term are OR_c x p_c / p_term, so the cumulative odds ratio at each cut is
    # [sum_{c<cut} OR_c p_c / sum_{c>=cut} OR_c' p_c'] / [sum_{c<cut} p_c / sum_{c>=cut} p_c]
    # (OR_term = 1). lo/hi apply the category CI ends together.
    def _cum_or(ors):
        sh_ = {b: float(ga_all.loc[b]) for b in ("<28", "28-31", "32-33", "34-36")}
        cat = {"vp": sh_["<28"] + sh_["28-31"], "mp": sh_["32-33"], "lp": sh_["34-36"]}
        cat["t"] = 1.0 - sum(cat.values())
        o = {"vp": ors[0], "mp": ors[1], "lp": ors[2], "t": 1.0}
        out = {}
        for cut, below in ((32, ("vp",)), (34, ("vp", "mp")), (37, ("vp", "mp", "lp"))):
            above = [c for c in cat if c not in below]
            s_odds = sum(o[c] * cat[c] for c in below) / sum(o[c] * cat[c] for c in above)
            n_odds = sum(cat[c] for c in below) / sum(cat[c] for c in above)
            out[cut] = s_odds / n_odds
        return out, cat
    pt = [float(ef.at[i, "point"]) for i in (25, 26, 27)]
    lo_ = [float(ef.at[i, "low"]) for i in (25, 26, 27)]
    hi_ = [float(ef.at[i, "high"]) for i in (25, 26, 27)]
    hi_[1] = max(hi_[1], 1.45)       # published 1.4 (1.4-1.4): rounding interval +-0.05
    lo_[1] = min(lo_[1], 1.35)
    c_pt, cat = _cum_or(pt)
    c_lo, _ = _cum_or(lo_)
    c_hi, _ = _cum_or(hi_)
    shares_note = ", ".join(f"{k} {v:.4f}" for k, v in cat.items())
    for cut, id_, what in ((32, "smoking_ga_lt32_or", "very preterm (<32 wk; also used for the <28 cut)"),
                           (34, "smoking_ga_lt34_or", "preterm <34 wk"), (37, "smoking_ga_lt37_or", "preterm <37 wk")):
        add(id_, f"Smoking in pregnancy -> {what}, cumulative odds (Dietz 2010)", c_pt[cut], "triangular", c_lo[cut], c_hi[cut],
            "ratio", "births to women who smoke", f"P(GA <{cut} wk), cumulative-logit odds", 25, srow="25;26;27",
            note=f"DERIVED: cumulative OR from Dietz 2010 category ORs very {pt[0]} ({lo_[0]}-{hi_[0]}), moderately {pt[1]} "
                 f"({lo_[1]}-{hi_[1]}, published CI 1.4-1.4 widened by the rounding interval), late {pt[2]} ({lo_[2]}-{hi_[2]}) "
                 f"vs term, with nonsmoker category shares = national births shares by GA band ({shares_note}; ga_structure.csv, "
                 f"ASSUMPTION that the all-births shares stand for nonsmokers'); lo/hi = all category CI ends together")
    r_lo, r_hi = (0.225 / 0.775) / (0.1364 / 0.8636), (0.225 / 0.775) / (0.0774 / 0.9226)
    add("prior_preterm_ptb_or", "History of spontaneous PTB -> preterm birth (recurrence); the prior-preterm part of the "
        "progesterone-eligible exposure (mixed with short_cervix_ptb_* by prevalence in the model)", (0.225 / 0.775) / (0.0963 / 0.9037),
        "triangular", r_lo, r_hi, "ratio", "births to women with a prior spontaneous PTB", "P(GA <37 wk), cumulative-logit odds", "",
        assumption=True, citation="Meis 2003 NEJM placebo-era 17P-eligible recurrence 22.5% (prevalence.csv:73); NCHS preterm 9.63% 2015",
        url="see shared evidence/prevalence.csv:73", srow="prevalence.csv:73",
        note=f"DERIVED: odds(22.5%)/odds(9.63%); lo vs NH black 13.64% ({r_lo:.2f}), hi vs singleton 7.74% ({r_hi:.2f}); comparison "
             "population is an ASSUMPTION (22.5% is 2002 US recurrence, national rate includes first births)")
    ci("short_ipi_ptb_or", "Interpregnancy interval <6 mo (vs 18-23 mo) -> preterm birth (sibling design, Class 2017)", 92, "ratio",
       "births conceived <6 months after a previous live birth (the model's short_ipi exposure)", "P(GA <37 wk), cumulative-logit odds",
       note="99% CI used as if 95% (wider, conservative). Estimated for IPI <6 mo vs 18-23 mo, and applied to exactly that exposure: "
            "short_ipi = IPI <6 mo among all births (exposures.csv); intervals of 6-17 mo carry no effect (near-null, Ahrens 2019, "
            "EVIDENCE.md)")
    # Short cervix (cervical length <=20 mm, exposures.csv) -> preterm birth, from the PLACEBO arm of the PREGNANT trial
    # (Hassan 2011, women with a singleton pregnancy and cervical length 10-20 mm at 19-23 wk, placebo n = 224; Table 3):
    # PTB <28 wk 21 (9.4%), <33 wk 34 (15.2%), <35 wk 50 (22.3%), <37 wk 74 (33.0%). The model's cuts are 28, 32, 34, 37
    # weeks: 28 and 37 are read directly; 32 is interpolated linearly in weeks between <28 and <33 (p28 + 4/5 (p33 - p28)),
    # 34 is the midpoint of <33 and <35. Each is turned into an odds ratio against the national cumulative share of births
    # below the same cut (ga_structure.csv, race ALL), as prior_preterm_ptb_or is against the national preterm rate.
    pregnant = ("Hassan SS, Romero R, Vidyadhari D, et al. Vaginal progesterone reduces the rate of preterm birth in women with a "
                "sonographic short cervix: a multicenter, randomized, double-blind, placebo-controlled trial (PREGNANT). Ultrasound "
                "Obstet Gynecol 2011;38(1):18-31 (PMC3482512), Table 3 (treated patient analysis set)")
    pregnant_url = "https://pmc.ncbi.nlm.nih.gov/articles/PMC3482512/table/T3"

    def wilson(k, n_, z=1.959964):
        ph = k / n_
        den = 1 + z * z / n_
        mid = (ph + z * z / (2 * n_)) / den
        half = z * math.sqrt(ph * (1 - ph) / n_ + z * z / (4 * n_ * n_)) / den
        return ph, mid - half, mid + half
    plc = {w_: wilson(k, 224) for w_, k in ((28, 21), (33, 34), (35, 50), (37, 74))}
    at_cut = {28: plc[28], 37: plc[37],
              32: tuple(a + 0.8 * (b - a) for a, b in zip(plc[28], plc[33])),
              34: tuple(0.5 * (a + b) for a, b in zip(plc[33], plc[35]))}
    tot_ = float(ga_all.sum())
    nat_cum = dict(zip((28, 32, 34, 37), np.cumsum([float(ga_all.loc[b]) / tot_ for b in ("<28", "28-31", "32-33", "34-36")])))
    odds_ = lambda x: x / (1 - x)  # noqa: E731
    how = {28: "placebo <28 wk 21/224", 32: "placebo <32 wk interpolated: <28 9.4% + 4/5 (<33 15.2% - <28 9.4%)",
           34: "placebo <34 wk = midpoint of <33 15.2% and <35 22.3%", 37: "placebo <37 wk 74/224"}
    for cut in (28, 32, 34, 37):
        pt_, lo_c, hi_c = at_cut[cut]
        ref_ = float(nat_cum[cut])
        add(f"short_cervix_ptb_lt{cut}_or", f"Short cervix (<=20 mm, untreated) -> preterm birth <{cut} wk (PREGNANT placebo arm)",
            odds_(pt_) / odds_(ref_), "triangular", odds_(lo_c) / odds_(ref_), odds_(hi_c) / odds_(ref_), "ratio",
            "births to women with a midtrimester short cervix (the short-cervix part of the progesterone-eligible exposure)",
            f"P(GA <{cut} wk), cumulative-logit odds", "", citation=pregnant, url=pregnant_url, srow="not in shared effects.csv",
            note=f"DERIVED: odds({pt_:.4f}) / odds({ref_:.5f}); {how[cut]}; reference = national share of births <{cut} wk "
                 f"(ga_structure.csv, race ALL); lo/hi = Wilson 95% interval of the placebo proportion ({lo_c:.4f}-{hi_c:.4f}). "
                 "ASSUMPTIONS: the trial population (cervix 10-20 mm, 44 centres in 10 countries) stands for US women with a cervix "
                 "<=20 mm; national rates (which include exposed births) stand for the unexposed, as for prior_preterm_ptb_or")
    add("low_income_ptb_or", "Low income (Medicaid) -> preterm birth, direct", 1.0, "triangular", 1.0,
        (0.1144 / 0.8856) / (0.0933 / 0.9067), "ratio", "low-income (Medicaid-paid) births", "P(GA <37 wk), cumulative-logit odds", "",
        assumption=True, citation="ASSUMPTION; hi from NCHS natality 2016-2024 aggregates (shared external/kesmitij__stratified_rates.csv)",
        url="https://github.com/Kesmitij/cdc-natality-birth-outcomes", srow="124",
        note="no causal estimate; base case no direct effect (Medicaid-expansion DiD on PTB null, effects.csv:124); hi = crude OR "
             "Medicaid 11.44% vs private 9.33% (confounded by race, smoking)")
    ci("nonlevel3_neonatal_or", "Very preterm birth outside a level III hospital -> death (Lasswell 2010)", 107, "ratio",
       "births <32 wk not delivered at a level III+ hospital", "neonatal death (odds)", note="source defines very preterm as <=32 wk")
    # Unsafe sleep is a COMPOSITE exposure (usually placed nonsupine OR usual bed-sharing, exposures.csv), so its OR
    # must be the composite's: the prevalence-weighted mean of the component ORs over the three ways of being
    # exposed (nonsupine only, bed-sharing only, both; rare outcome, so ORs ~ risk ratios; independence of the two
    # as in exposures.csv; both = product of the two ORs, an ASSUMPTION of no interaction on the odds scale).
    ns_or = [1 / float(ef.at[7, "point"]), 1 / float(ef.at[7, "high"]), 1 / float(ef.at[7, "low"])]   # vs supine
    bs_or = [float(ef.at[9, "point"]), float(ef.at[9, "low"]), float(ef.at[9, "high"])]          # nonsmokers
    ns_p, bs_p = 0.216, 0.135
    w = (ns_p * (1 - bs_p), bs_p * (1 - ns_p), ns_p * bs_p)
    comp = [(w[0] * a + w[1] * b + w[2] * a * b) / sum(w) for a, b in zip(ns_or, bs_or)]
    add("unsafe_sleep_suid_or", "Unsafe sleep (usually nonsupine and/or usual bed-sharing) -> SUID, composite odds ratio",
        comp[0], "triangular", comp[1], comp[2], "ratio", "infants placed to sleep unsafely", "SUID (postneonatal, odds)", 7,
        srow="7;9", note=f"DERIVED composite OR: nonsupine (prone or side) vs supine OR = 1/0.51 = {ns_or[0]:.2f} "
                           f"({ns_or[1]:.2f}-{ns_or[2]:.2f}; Priyadarshi 2022 pooled supine OR 0.51 (0.42-0.61), effects.csv:7); usual "
                           f"bed-sharing OR among non-smoking parents {bs_or[0]} ({bs_or[1]}-{bs_or[2]}; Carpenter 2013 AOR, the "
                           "non-smoking baseline of their interaction model, effects.csv:9; the smoking excess is "
                           "unsafe_sleep_smoking_interaction); weights = the three exposure patterns at national prevalences "
                           f"nonsupine {ns_p} (PRAMS 2015) and bed-sharing {bs_p} (NISP 2010), independence assumed; both = product "
                           "(ASSUMPTION); lo/hi = component CI ends together. SIDS ORs used for SUID (EVIDENCE.md).")
    add("smoking_term_neonatal_rr", "Smoking through pregnancy -> neonatal death of term births, direct (not via GA)",
        float(ef.at[37, "point"]), "triangular", 1.0, float(ef.at[37, "high"]), "ratio",
        "term births (37+ wk) of mothers who smoked", "neonatal death (risk)", 37, assumption=True, srow="37;39",
        note="Sun 2023 (eClinicalMedicine; US NVSS 2015-2019, singleton term normal-birthweight births, so the effect is not "
             "mediated by GA): infant death from other perinatal conditions RR 1.35 (1.10-1.65), effects.csv:37; ASSUMPTION that "
             "this cause-specific RR stands for all neonatal deaths at term (congenital anomalies, a large share of term neonatal "
             "deaths, may respond less), hence lo = 1.0; applied to term bands only (within-band effects among preterm infants "
             "are distorted by the birthweight paradox). Cross-check: smoking -> neonatal death OR 1.33 (1.28-1.38), all "
             "singletons 2016-2019 (effects.csv:39), a total effect including GA")
    ci("smoking_suid_rr", "Smoking through pregnancy -> SUID, term normal-birthweight infants (Sun 2023)", 36, "ratio",
       "infants of mothers who smoked", "SUID (postneonatal), direct effect not via GA")
    add("unsafe_sleep_smoking_interaction", "Extra multiplier of unsafe-sleep SUID odds when the mother smokes", 6.27 / 2.7, "triangular",
        3.94 / 5.3, 9.99 / 1.4, "ratio", "infants placed unsafely whose mothers smoke", "SUID (postneonatal)", 12, srow="12;9",
        note="DERIVED: bed-sharing OR among infants of smoking mothers 6.27 (3.94-9.99; Vennemann 2012 meta-analysis, effects.csv:12) "
             "divided by the bed-sharing OR among NON-smokers 2.7 (1.4-5.3; Carpenter 2013, effects.csv:9) -- not by the overall "
             "bed-sharing OR (which includes smokers); lo = 3.94/5.3, hi = 9.99/1.4 (crude CI ratio; two studies, an ASSUMPTION that "
             "they are comparable); lower end <1 means no interaction. Cross-check within one study: McGarvey 2006 (Arch Dis Child, "
             "PMC2065975) unadjusted bed-sharing OR 13.87 smokers vs 2.09 non-smokers, ratio 6.6 (inside the range)")
    add("low_income_postneonatal_rr", "Low income -> other postneonatal death, direct", 1.0, "triangular", 1.0, 7.5 / 3.6, "ratio",
        "low-income (Medicaid-paid) births", "other postneonatal death (risk)", "", assumption=True,
        citation="ASSUMPTION; hi from NCHS period linked files 2011-2013 (shared external/gunasekaran__tbl_imr_by_factor.csv)",
        url="https://github.com/gunasekaran-pasupathy-research/us-infant-mortality-rate", srow="",
        note="no direct estimate; base case 1.0 (calibrated cell rates carry income gradients); hi = all-cause IMR <HS 7.5 vs college+ 3.6 "
             "(includes GA-mediated part, upper bound)")
    red = 1 - 10.9 / 19.8
    add("safe_sleep_unsafe_reduction", "Safe-sleep messaging: relative reduction of unsafe (nonsupine) placement among reached families",
        red, "triangular", 0.0, 1 - 16 / 38, "probability", "families reached by a safe-sleep programme", "unsafe sleep prevalence", 17,
        note=f"DERIVED: mHealth RCT (Moon 2017) nonsupine 1-0.802=19.8% vs 1-0.891=10.9% -> 1-10.9/19.8 = {red:.3f}; lo 0 (nursing QI "
             "arm had no effect); hi = crib distribution bed-sharing 38%->16% (effects.csv:20, pre-post)")
    add("cessation_control_quit", "Background late-pregnancy abstinence among smokers in usual care (control arm)", 0.09, "fixed", None, None,
        "probability", "pregnant smokers, usual care", "smoking abstinence in late pregnancy", 48,
        note="Cochrane (Chamberlain 2017): 9 per 100 in control arms (counselling comparison)")
    ci("cessation_counselling_rr", "Counselling vs usual care -> abstinence", 48, "ratio", "pregnant smokers reached", "late-pregnancy abstinence")
    ci("cessation_incentives_rr", "Financial incentives -> abstinence", 50, "ratio", "pregnant smokers reached", "late-pregnancy abstinence")
    ci("cessation_feedback_rr", "Feedback -> abstinence", 51, "ratio", "pregnant smokers reached", "late-pregnancy abstinence")
    ci("cessation_education_rr", "Health education -> abstinence", 52, "ratio", "pregnant smokers reached", "late-pregnancy abstinence")
    add("hard_stop_eed_reduction", "Hard-stop policy: relative reduction of elective early-term deliveries", 1 - 4.3 / 9.6, "uniform",
        1 - 2.5 / 4.0, 1 - 4.3 / 9.6, "probability", "births in hospitals adopting a hard stop", "elective early-term deliveries", 84,
        srow="84;85", note="DERIVED: Clark 2010 HCA 9.6%->4.3% (1-4.3/9.6=0.552); lo = Oregon 4.0%->2.5% (0.375); pre-post designs")
    # Vaginal progesterone for a short cervix: risk ratios at each threshold the meta-analyses report, mapped onto the
    # model's cuts: each cut takes the RR of the nearest reported threshold AT OR ABOVE it (RRs rise with the threshold,
    # so this errs toward less benefit): cut 28 <- <28 wk, 32 <- <33 wk, 34 <- <35 wk, 37 <- <37 wk. Applied as RISK
    # ratios to the treated short-cervix births' cumulative probability at each cut (preterm_prevention).
    ci("vaginal_progesterone_ptb_lt28_rr", "Vaginal progesterone, short cervix -> PTB <28 wk (Romero 2012 IPD); model cut 28 wk", 75,
       "ratio", "singleton births with short cervix treated", "preterm birth <28 wk (risk)",
       note="Romero 2012 IPD (5 trials, 775 women); the 2018 update (Romero 2018, which adds OPPTIMUM) reports a significant "
            "reduction <28 wk too but its RR was not retrieved; the update moved the <33 wk RR from 0.58 to 0.62, so this 2012 value "
            "may be slightly optimistic")
    ci("vaginal_progesterone_ptb_rr", "Vaginal progesterone, short cervix -> PTB <33 wk (Romero 2018 IPD); model cut 32 wk", 73, "ratio",
       "singleton births with short cervix treated", "preterm birth <33 wk (risk)",
       note="primary outcome of the IPD meta-analysis (5 trials, 974 women); used for the model's 32-week cut (the nearest reported "
            "threshold at or above it)")
    add("vaginal_progesterone_ptb_lt35_rr", "Vaginal progesterone, short cervix -> PTB <35 wk (Romero 2012 IPD); model cut 34 wk", 0.69,
        "lognormal", 0.55, 0.88, "ratio", "singleton births with short cervix treated", "preterm birth <35 wk (risk)", 74,
        srow="74 (same abstract; the <35 wk RR is not a separate row)",
        note="RR 0.69 (0.55-0.88) for PTB <35 wk, Romero 2012 IPD abstract (the paper of effects.csv:74); used for the model's "
             "34-week cut (nearest reported threshold at or above it). The 2018 update reports a significant reduction <35 wk, RR "
             "not retrieved; as for <28 wk the 2012 value may be slightly optimistic")
    add("vaginal_progesterone_ptb_lt37_rr", "Vaginal progesterone, short cervix -> PTB <37 wk (PREGNANT trial); model cut 37 wk", 0.91,
        "lognormal", 0.70, 1.20, "ratio", "singleton births with short cervix treated", "preterm birth <37 wk (risk)", "",
        citation=pregnant, url=pregnant_url, srow="not in shared effects.csv",
        note="PREGNANT trial (Hassan 2011, vaginal progesterone gel, cervix 10-20 mm), Table 3: PTB <37 wk 30.2% vs 33.0%, RR 0.91 "
             "(0.70-1.20); the largest trial of the IPD meta-analysis and the only <37 wk RR retrieved (Romero 2018 reports "
             "significant reductions below 36 wk, RR not retrieved); the range includes no effect")
    add("ohpc_ptb_rr", "17-OHPC, prior spontaneous PTB -> recurrent PTB (base case: no effect)", 1.0, "fixed", None, None, "ratio",
        "births to women with prior spontaneous PTB treated with 17-OHPC", "preterm birth (risk)", 67, srow="67;68",
        note="base case = no effect: PROLONG null, FDA withdrawal 5 Apr 2023; real-world RR 1.10 (0.97-1.24, effects.csv:68); "
             "Meis effect available as ohpc_meis_ptb_rr for sensitivity. Applied as a risk ratio to the treated prior-preterm "
             "births' cumulative probability at every cut below 37 wk")
    add("ohpc_meis_ptb_rr", "17-OHPC (Meis trial) -> PTB <37 wk, sensitivity scenario", 37.1 / 54.9, "triangular", (54.9 - 28.0) / 54.9,
        (54.9 - 7.4) / 54.9, "ratio", "births to women with prior spontaneous PTB treated with 17-OHPC", "preterm birth <37 wk (risk)", 59,
        note="DERIVED: 37.1%/54.9%; range from RD CI -28.0..-7.4 pp on the placebo rate: (54.9-28.0)/54.9 .. (54.9-7.4)/54.9. "
             "Applied as a risk ratio (not an odds ratio) to the treated prior-preterm births' cumulative probability at every cut "
             "below 37 wk (Meis also reported <35 wk 21.3% vs 30.7% and <32 wk 11.9% vs 19.6%, RRs 0.69 and 0.61, close to it)")
    add("larc_short_ipi_reduction", "Immediate postpartum LARC: relative reduction of short IPI (applied to IPI <6 mo)", 1 - 23.0 / 42.1,
        "triangular", 1 - 25.8 / 41.2, 1 - 20.5 / 43.0, "probability", "postpartum women receiving immediate LARC",
        "next birth after IPI <6 mo (the model's short_ipi exposure); measured for IPI <18 mo", 100, assumption=True,
        srow="100;102", note="DERIVED: 1 - 23.0/42.1 (vs short-acting methods, Rodriguez OR+SC Medicaid); lo/hi from CI ends "
                             "1-25.8/41.2 and 1-20.5/43.0; observational, confounded by preference. The source measured short IPI "
                             "as <18 months; ASSUMPTION that the same relative reduction holds for IPI <6 months (the model's "
                             "exposure): a device placed at delivery covers the first 6 months before removals and expulsions "
                             "accumulate, so the reduction of the shortest intervals is plausibly at least as large; no source "
                             "measures it for <6 months, so the range is kept at the <18-month CI ends")
    # Medicaid expansion -> infant death. Source: Wiggins, Karaye & Horney 2020 (HSR), a difference-in-differences on
    # CDC WONDER state aggregates 2010-2017 whose coefficient pools the whole post-expansion period (not one year of an
    # event study), with race-specific estimates. Bhatt & Beck-Sague 2018 (AJPH) and Constantin & Wehby 2023 (AJPM) are NOT
    # used here: `imsim check` compares the model against them (validate, don't tune). Conversion to the model's lever
    # (a risk ratio on the death hazards of the low-income births reached): DiD per 1,000 births / Medicaid-paid share of
    # births (effect per Medicaid-paid birth) / IMR of low-income births, RR = 1 + that. Linear in the DiD, so the 95% CI
    # maps to a 95% range and the distribution is normal.
    wiggins = ("Wiggins A, Karaye IM, Horney JA. Medicaid expansion and infant mortality, revisited: a difference-in-differences "
               "analysis. Health Serv Res 2020;55(3):393-8 (doi 10.1111/1475-6773.13286; PMC7240769), abstract")
    wiggins_url = "https://www.pubmed.gov/32196658/"
    mshare, imr_li = 0.421, (13230 + 17930) / (1768420 + 2596620) * 1000
    f = lambda dd: 1 + (dd / mshare) / imr_li  # noqa: E731
    add("medicaid_expansion_death_rr", "Medicaid expansion -> infant death hazards of low-income births (all races; races "
        "without their own estimate)", f(0.04), "normal", f(-0.39), f(0.46), "ratio",
        "low-income (Medicaid-paid) births reached in states that have not expanded", "infant death, all causes (risk)", "",
        citation=wiggins, url=wiggins_url, srow="not in shared effects.csv (read from the stored abstract); prevalence.csv:97",
        note=f"DERIVED: 1 + (DiD/Medicaid share)/IMR_low-income = 1 + (0.04/{mshare})/{imr_li:.2f}; DiD +0.04 (-0.39, 0.46) per 1,000 "
             "births, expansion vs non-expansion states, 2010-2017, adjusted for race and sex (null; the range includes no effect); "
             "Medicaid share 42.1% of births in expansion states 2011-13 (Brown 2019, prevalence.csv:97); IMR_low-income PROXY = IMR "
             "of births to mothers with high school or less, 2011-2013 (gunasekaran table). Replaces the single 2019 year of the "
             "Constantin & Wehby event study (which is kept out of the inputs for `imsim check`)")
    hshare, imr_h = 0.651, 4.99
    fh = lambda dd: 1 + (dd / hshare) / imr_h  # noqa: E731
    add("medicaid_expansion_death_rr_hispanic", "Medicaid expansion -> infant death hazards of low-income births, Hispanic mothers",
        fh(-0.53), "normal", fh(-1.02), fh(-0.03), "ratio", "low-income (Medicaid-paid) births to Hispanic mothers reached",
        "infant death, all causes (risk)", "", citation=wiggins, url=wiggins_url,
        srow="not in shared effects.csv (read from the stored abstract); prevalence.csv:100; targets.csv imr ALL hispanic 2013-2015",
        note=f"DERIVED: 1 + (DiD/Medicaid share)/IMR = 1 + (-0.53/{hshare})/{imr_h}; Hispanic DiD -0.53 (-1.02, -0.03) per 1,000 "
             "births, 2010-2017 pooled; Medicaid share of Hispanic births in expansion states 65.1% 2011-13 (Brown 2019 Table 2, "
             "prevalence.csv:100); IMR PROXY = Hispanic IMR of all births 2013-2015, 4.99 (NCHS Data Brief 295): the IMR of "
             "low-income Hispanic births is not published; if it is higher the relative effect is smaller")
    add("medicaid_expansion_death_rr_nh_black", "Medicaid expansion -> infant death hazards of low-income births, NH black mothers",
        f(0.04), "normal", f(-0.39), f(0.46), "ratio", "low-income (Medicaid-paid) births to NH black mothers reached",
        "infant death, all causes (risk)", "", assumption=True, citation=wiggins, url=wiggins_url,
        srow="not in shared effects.csv; as medicaid_expansion_death_rr",
        note="ASSUMPTION: the same relative effect and range as all races (medicaid_expansion_death_rr), a null range that "
             "includes no effect. The source's abstract reports a race-specific estimate only for Hispanic infants (the "
             "significant one); its NH black estimate was not retrieved. Cook & Stype 2020 (JECH, PMC8756485) also found no "
             "decrease for infants of black mothers (no number retrieved). Override in a scenario (effects:) when known")
    for r in rows[-3:]:
        r["area"] = "6_social_determinants"
    add("income_support_ptb_or", "Income support (+$1,000 EITC) -> preterm birth", 0.985, "uniform", 0.97, 1.0, "ratio",
        "low-income births whose families receive +$1,000 EITC", "P(GA <37 wk), odds", 126, assumption=True, srow="126;128",
        note="DERIVED: Hoynes 2015 LBW -2% to -3% per $1,000 used as PROXY for PTB (ASSUMPTION); hi 1.0 because the border-county design "
             "is null (effects.csv:128); point = midpoint")
    add("early_term_imr_rr", "Early-term (37-38 wk) vs full-term (39-40 wk) infant mortality", 1.63, "fixed", None, None, "ratio",
        "births at 37-38 wk", "infant death (rate ratio), reference/validation", 83, note="NVSR 64-9 (2013): 63% higher")
    # An elective early-term birth is a would-be 39+ birth delivered 1-2 weeks early WITHOUT medical indication. Its
    # excess mortality over the same birth at 39+ weeks has no direct estimate in the sources: all early-term vs
    # full-term (1.63) includes medically indicated births (confounded by indication) and is an upper bound; the
    # non-indicated evidence is about morbidity (Tita 2009). Point = geometric midpoint of 1.0 and 1.63.
    add("elective_early_term_death_rr", "Elective (non-indicated) early-term delivery vs delivery at 39+ wk -> infant death",
        float(np.sqrt(1.63)), "triangular", 1.0, 1.63, "ratio", "elective early-term births (would-be 39+ wk births)",
        "infant death, every cause (risk ratio on the 39+ wk probabilities)", 83, assumption=True, srow="83;85",
        citation="ASSUMPTION bounded by Mathews TJ, MacDorman MF, Thoma ME. Infant mortality statistics from the 2013 period "
                 "linked birth/infant death data set. NVSR 2015;64(9) (early-term IMR 63% above full-term, effects.csv:83); "
                 "morbidity: Tita ATN et al. Timing of elective repeat cesarean delivery at term and neonatal outcomes. "
                 "N Engl J Med 2009;360(2):111-20 (PMC2811696)",
        url="https://pmc.ncbi.nlm.nih.gov/articles/PMC2811696",
        note="ASSUMPTION: no infant-mortality estimate for non-indicated early-term vs 39-40 wk delivery was found. hi = 1.63, "
             "all early-term (37-38 wk) vs full-term (39-40 wk) IMR 2013 (NVSR 64-9; includes medically indicated births, so "
             "an upper bound); lo = 1.0 (no excess death; Oregon's hard stop showed no improvement in neonatal outcomes, "
             "Snowden 2016, effects.csv:85); point = sqrt(1.63) = 1.277, the geometric midpoint. The excess is real for "
             "morbidity: elective repeat cesarean (no indication) composite of neonatal death or adverse events aOR 2.1 "
             "(1.7-2.5) at 37 wk and 1.5 (1.3-1.7) at 38 wk vs 39 wk (Tita 2009; morbidity, not mortality, so not used as "
             "the RR); the mortality gradient 37->39 wk persists among low-risk mothers (Zhang & Kramer, J Pediatr "
             "2009;154:358-62, PMID 18950794; numbers not retrieved)")
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- validation (imsim check)
VALIDATION_COLUMNS = ["quantity", "population", "period", "published", "published_lo", "published_hi", "unit",
                      "source", "note"]
NLS = "observed/national_linked_stats.csv"
GUNA = "external/gunasekaran__tbl_imr_by_factor.csv"
KESMITIJ = "external/kesmitij__stratified_rates.csv"
MMWR_QS = ("MMWR QuickStats: Percentage Distribution of Gestational Age in Weeks for Infants Who Survived to Age 1 Year "
           "and Infants Who Died Before Age 1 Year, United States, 2014. MMWR 2017;66:392; "
           "https://www.cdc.gov/mmwr/volumes/66/wr/mm6614a5.htm")
NVSR64_9 = ("Mathews TJ, MacDorman MF, Thoma ME. Infant Mortality Statistics From the 2013 Period Linked Birth/Infant Death "
            "Data Set. NVSR 64(9), 2015; https://www.cdc.gov/nchs/data/nvsr/nvsr64/nvsr64_09.pdf")
NVSR64_9_LS = (NVSR64_9 + " (rates as quoted by LiveScience, 2015: "
               "https://www.livescience.com/51765-infant-mortality-gestational-age.html)")
NVSR68_10 = ("Ely DM, Driscoll AK. Infant Mortality in the United States, 2017: Data From the Period Linked Birth/Infant "
             "Death File. NVSR 68(10), 2019; https://stacks.cdc.gov/view/cdc/80304")
DB326 = ("Ely DM, Driscoll AK, Mathews TJ. Infant Mortality by Age at Death in the United States, 2016. NCHS Data Brief "
         "No. 326, 2018; https://www.cdc.gov/nchs/products/databriefs/db326.htm")
GUNA_SRC = ("NCHS period linked birth/infant death files 2011-2013 pooled, aggregated by gunasekaran-pasupathy-research/"
            "us-infant-mortality-rate (reports/tables/tbl_imr_by_factor.csv, commit 9556376); shared " + GUNA)
PEDS_2006 = ("Annual Summary of Vital Statistics (Pediatrics), table 'Percentage of Births With Selected Characteristics "
             "According to Race and Hispanic Origin of Mother, United States, Selected Years: 1990 and 2006 (Final) and 2007 "
             "(Preliminary)' (NCHS natality data); http://pediatrics.aappublications.org/highwire/markup/20059/expansion")
LASSWELL = ("Lasswell SM, Barfield WD, Rochat RW, Blackmon L. Perinatal regionalization for very low-birth-weight and very "
            "preterm infants: a meta-analysis. JAMA 2010;304(9):992-1000 (PMID 20810377)")
CW2023 = ("Constantin J, Wehby GL. Effects of Recent Medicaid Expansions on Infant Mortality by Race and Ethnicity. "
          "Am J Prev Med 2023;64(3):377-384 (doi 10.1016/j.amepre.2022.09.026), abstract; "
          "https://www.ajpmonline.org/article/S0749-3797(22)00498-6/fulltext")
BHATT2018 = ("Bhatt CB, Beck-Sague CM. Medicaid Expansion and Infant Mortality in the United States. Am J Public Health "
             "2018;108(4):565-567 (PMC5844390), abstract; https://pmc.ncbi.nlm.nih.gov/articles/PMC5844390")
WIGGINS2020 = ("Wiggins A, Karaye IM, Horney JA. Medicaid expansion and infant mortality, revisited: a difference-in-"
               "differences analysis. Health Serv Res 2020;55(3):393-398 (PMID 32196658), abstract; "
               "https://www.hsr.org/node/570443")
HIRAI2018 = ("Hirai AH, Sappenfield WM, Ghandour RM, Donahue S, Lee V, Lu MC. The Collaborative Improvement and Innovation "
             "Network (CoIIN) to Reduce Infant Mortality: An Outcome Evaluation From the US South, 2011 to 2014. Am J Public "
             "Health 2018;108(6):815-821 (PMID 29672142, doi 10.2105/AJPH.2018.304371), abstract; "
             "https://pubmed.ncbi.nlm.nih.gov/29672142/")


def _round_iv(v: float, half: float) -> tuple[float, float]:
    """The interval a published figure rounded to the nearest 2*half stands for."""
    return v - half, v + half


def _from_p(est: float, p: float) -> tuple[float, float]:
    """95% interval of an estimate from its two-sided P value (normal approximation)."""
    from scipy.stats import norm

    se = abs(est) / norm.ppf(1 - p / 2)
    return est - 1.959964 * se, est + 1.959964 * se


def _validation_rows(sh: Path) -> list[dict]:
    """The curated published figures of ``imsim check`` (one dict per figure; see build_validation)."""
    nl = pd.read_csv(sh / NLS)
    ef = pd.read_csv(sh / EV)
    pv = pd.read_csv(sh / PV)
    gu = pd.read_csv(sh / GUNA)
    ks = pd.read_csv(sh / KESMITIJ)

    def nls(measure, period, race="all races/origins", note_has=""):
        hit = nl[(nl.measure == measure) & (nl.period.astype(str) == str(period)) & (nl.race_ethnicity == race)
                 & nl.note.fillna("").str.contains(note_has, regex=False)]
        if len(hit) != 1:
            raise SystemExit(f"validation: {NLS} has {len(hit)} rows for {measure} {period} {race}")
        i = int(hit.index[0])
        return float(hit.at[i, "value"]), f"shared {NLS}:{i} ({hit.at[i, 'source_title'][:90]}...; {hit.at[i, 'source_url']})"

    rows: list[dict] = []

    def add(quantity, population, period, value, lo, hi, unit, source, note, used_if=(), fitted_if=()):
        rows.append(dict(quantity=quantity, population=population, period=str(period), published=float(value),
                         published_lo=float(lo), published_hi=float(hi), unit=unit, source=source, note=note,
                         used_if=tuple(used_if), fitted_if=tuple(fitted_if)))

    # --- share of infant deaths by gestational-age band -------------------------------------------------------
    v, src = nls("percent_of_infant_deaths_born_lt32wk", 2014)
    add("death_share_ga_lt32", "ALL", 2014, v / 100, *_round_iv(v / 100, 0.005), "proportion of infant deaths",
        f"{MMWR_QS}; {src}", "lo/hi = rounding of the published whole percent only",
        used_if=[("ga_structure", "mm6614a5", 0.58)])
    v39, src = nls("percent_of_infant_deaths_born_ge39wk", 2014)
    add("death_share_ga_39plus", "ALL", 2014, v39 / 100, *_round_iv(v39 / 100, 0.005), "proportion of infant deaths",
        f"{MMWR_QS}; {src}", "lo/hi = rounding of the published whole percent only",
        used_if=[("ga_structure", "mm6614a5", 0.16)])
    add("death_share_ga_32_38", "ALL", 2014, 1 - v / 100 - v39 / 100, 1 - (v + 0.5) / 100 - (v39 + 0.5) / 100,
        1 - (v - 0.5) / 100 - (v39 - 0.5) / 100, "proportion of infant deaths", f"{MMWR_QS}; {src}",
        f"DERIVED: 1 - {v:g}% (<32 wk) - {v39:g}% (>=39 wk); lo/hi from the rounding of both",
        used_if=[("ga_structure", "mm6614a5", 0.58), ("ga_structure", "mm6614a5", 0.16)])
    g = gu[gu.factor == "gest_cat"].set_index("level")
    total_deaths = float(g["deaths"].sum())
    for band, q in (("<28wk", "lt28"), ("28-31wk", "28_31"), ("32-36wk", "32_36"), ("37wk+", "37plus")):
        d = float(g.at[band, "deaths"])
        p = d / total_deaths
        se = math.sqrt(p * (1 - p) / total_deaths)
        add(f"death_share_ga_{q}", "ALL", "2011-2013", p, p - 1.96 * se, p + 1.96 * se, "proportion of infant deaths",
            GUNA_SRC, f"DERIVED: deaths {band} / all deaths with the table's GA bands ({d:.0f}/{total_deaths:.0f}); lo/hi "
            "multinomial. NOT INDEPENDENT of the model's structure: largely the same NCHS linked-file deaths as the "
            "cohort-linked files the model's deaths by GA band come from (ga_structure.csv), here by period linkage and "
            "the table's own GA measure (its <28 wk births are 1.2% of all births, vs about 0.7% by the obstetric "
            "estimate)",
            used_if=[("*", "gunasekaran", d)])

    # --- infant mortality rate by gestational-age band --------------------------------------------------------
    ls_note = ("2013 period linked file; rounding interval only (the rate's own sampling error, roughly +-2-4%, is not "
               "included)")
    add("imr_ga_34_36", "ALL", 2013, 7.23, *_round_iv(7.23, 0.005), "per 1,000 live births in the band", NVSR64_9_LS,
        ls_note, used_if=[("*", "nvsr64", 7.23), ("*", "livescience", 7.23)])
    add("imr_ga_37_38", "ALL", 2013, 3.01, *_round_iv(3.01, 0.005), "per 1,000 live births in the band", NVSR64_9_LS,
        ls_note, used_if=[("*", "nvsr64", 3.01), ("*", "livescience", 3.01)])
    add("imr_ga_39plus", "ALL", 2013, 1.85, *_round_iv(1.85, 0.005), "per 1,000 live births in the band", NVSR64_9_LS,
        ls_note + "; published band 39-40 weeks, the model's band is 39+ (includes 41+ weeks)",
        used_if=[("*", "nvsr64", 1.85), ("*", "livescience", 1.85)])
    add("imr_ga_lt32", "ALL", 2013, 88 * 1.85, 87.5 * 1.845, 88.5 * 1.855, "per 1,000 live births in the band",
        NVSR64_9_LS, "DERIVED: 88 x 1.85 (the very preterm rate is quoted as 88 times the 39-40 week rate of 1.85); "
        "lo/hi from the rounding of both", used_if=[("*", "nvsr64", 88), ("*", "livescience", 88)])
    v, src = nls("infant_mortality_rate_ratio_early_term_vs_full_term", 2013)
    add("imr_ratio_37_38_vs_39plus", "ALL", 2013, v, *_round_iv(v, 0.005), "rate ratio", f"{NVSR64_9}; {src}",
        "early term (37-38 wk) vs full term (39-40 wk; the model's band is 39+); lo/hi rounding only",
        used_if=[("*", "nvsr64", 1.63), ("*", "national_linked_stats", 1.63)])
    v, src = nls("infant_mortality_rate_by_gestational_age", 2017, note_has="< 28 weeks")
    add("imr_ga_lt28", "ALL", 2017, v, *_round_iv(v, 0.005), "per 1,000 live births in the band", f"{NVSR68_10}; {src}",
        "2017, outside the 2013-2015 baseline; lo/hi rounding only",
        used_if=[("*", "nvsr68", v), ("*", "national_linked_stats", v), ("*", "68-10", v)])
    v, src = nls("infant_mortality_rate_by_gestational_age", 2017, note_has="37-41 weeks")
    add("imr_ga_37plus", "ALL", 2017, v, *_round_iv(v, 0.005), "per 1,000 live births in the band",
        f"{NVSR68_10}; {src}", "published band 37-41 weeks (the model's 37+ includes 42+); 2017, outside the 2013-2015 "
        "baseline; lo/hi rounding only", used_if=[("*", "nvsr68", 2.1), ("*", "national_linked_stats", 2.1)])
    for band, q in (("<28wk", "lt28"), ("28-31wk", "28_31"), ("32-36wk", "32_36"), ("37wk+", "37plus")):
        d, n = int(g.at[band, "deaths"]), float(g.at[band, "n"])
        lo, hi = garwood(d, n)
        add(f"imr_ga_{q}", "ALL", "2011-2013", 1000 * d / n, lo, hi, "per 1,000 live births in the band", GUNA_SRC,
            f"DERIVED: deaths/births x 1000 ({d}/{n:.0f}; table value {g.at[band, 'imr_per_1000']}); exact Poisson interval. "
            "The table's GA measure differs from the obstetric estimate (its <28 wk births are 1.2% of all births, vs "
            "about 0.7%)",
            used_if=[("*", "gunasekaran", d)])

    # --- gestational-age distribution of births by race/Hispanic origin -----------------------------------------
    vp = {"nh_white": (1.66, 11.7), "nh_black": (4.08, 18.5), "hispanic": (1.80, 12.2)}   # 2006 final: <32, <37 (%)
    peds_note = ("2006 final data; gestational age from the last menstrual period (the model's is the obstetric "
                 "estimate, which classes fewer births as preterm); the published <37 wk rates by race are not used here "
                 "(the model's 2014-2015 preterm rates by race are calibration targets)")
    for race, (a, b) in vp.items():
        add("very_preterm_share_of_preterm", race, 2006, a / b, (a - 0.005) / (b + 0.05), (a + 0.005) / (b - 0.05),
            "births <32 wk / births <37 wk", PEDS_2006,
            f"DERIVED: very preterm {a}% / preterm {b}% of births; lo/hi from the rounding of both. {peds_note}")
    wa = vp["nh_white"][0]
    for race in ("nh_black", "hispanic"):
        a = vp[race][0]
        add("very_preterm_ratio_vs_nh_white", race, 2006, a / wa, (a - 0.005) / (wa + 0.005), (a + 0.005) / (wa - 0.005),
            "rate ratio (births <32 wk, vs NH white)", PEDS_2006,
            f"DERIVED: very preterm {a}% / NH white {wa}%; lo/hi from the rounding of both. {peds_note}")
    i = int(pv[(pv.risk_factor.str.startswith("preterm birth rate")) & (pv.race_ethnicity == "non-Hispanic Asian")
               & (pv.period.astype(str) == "2017")].index[0])
    v = float(pv.at[i, "value"])
    add("preterm_rate", "nh_api", 2017, v, *_round_iv(v, 0.005), "percent of live births <37 wk", f"{src_row(pv, i)}; "
        f"shared {PV}:{i}", "NH Asian (single race), 2017; the model's NH Asian or Pacific Islander group has no "
        "published preterm rate of its own in the calibration unless targets.csv has one; lo/hi rounding",
        used_if=[("*", "kondracki", v), ("*", "prevalence.csv:82", None)],
        fitted_if=[("preterm_rate", "ALL", "nh_api", "2014-2015")])
    k = ks[(ks.outcome == "preterm") & (ks.stratifier == "race_eth") & (ks.level == "NH AIAN")]
    j = int(k.index[0])
    n, ev_ = float(k.at[j, "n"]), float(k.at[j, "events"])
    p = ev_ / n
    se = math.sqrt(p * (1 - p) / n)
    add("preterm_rate", "nh_aian", "2016-2024", 100 * p, 100 * (p - 1.96 * se), 100 * (p + 1.96 * se),
        "percent of live births <37 wk", "NCHS natality public-use files 2016-2024 pooled, aggregated by Kesmitij/"
        f"cdc-natality-birth-outcomes (results/tables/stratified_rates.csv, commit b11127a); shared {KESMITIJ}:{j}",
        f"DERIVED: {ev_:.0f}/{n:.0f} NH AIAN (single race) births <37 wk (obstetric estimate); lo/hi binomial. Outside "
        "the 2013-2015 baseline (the national preterm rate rose from 9.6% to about 10.4% over these years)",
        used_if=[("*", "kesmitij", ev_)], fitted_if=[("preterm_rate", "ALL", "nh_aian", "2014-2015")])

    # --- neonatal share and SUID by race -------------------------------------------------------------------------
    bsr = pd.read_csv(sh / "observed/births_state_race.csv")

    def births16(label):
        hit = bsr[(bsr.measure == "live_births") & (bsr.period.astype(str) == "2016") & (bsr.geo_abbr == "US")
                  & (bsr.race_ethnicity == label)]
        return float(hit["value"].iloc[0]), f"shared observed/births_state_race.csv:{int(hit.index[0])}"

    nmr, src_n = nls("neonatal_mortality_rate", 2016, "non-Hispanic black")
    pnmr, src_p = nls("postneonatal_mortality_rate", 2016, "non-Hispanic black")
    b16, src_b = births16("non-Hispanic black (single race)")
    deaths = (nmr + pnmr) * b16 / 1000
    share = nmr / (nmr + pnmr)
    half = 1.96 * math.sqrt(share * (1 - share) / deaths) + 0.005 / (nmr + pnmr)
    add("neonatal_share", "nh_black", 2016, share, share - half, share + half, "neonatal deaths / infant deaths",
        f"{DB326}; {src_n}; {src_p}; births {src_b}",
        f"DERIVED: NMR {nmr} / (NMR {nmr} + PNMR {pnmr}); lo/hi binomial on the ~{deaths:.0f} deaths implied by the "
        f"rates and the {b16:.0f} NH black (single race) births of 2016, plus the rounding of the NMR. In targets.csv "
        "(nmr/pnmr 2016) but not used by the fit: calibration/structure.py takes the neonatal share of every race "
        "from the 2010-2013 cohort structure with one national odds shift to the 2015-cohort NMR/PNMR")
    for race, label, what in (("nh_black", "non-Hispanic black", "NH black infants was 11.2 in 2016 vs 11.1 in "
                               "2013-2015"), ("nh_aian", "non-Hispanic American Indian or Alaska Native",
                                              "NH AIAN infants was 8.8 in 2016 vs 7.7-8.6 in 2013-2015, HEALTH2")):
        v, src = nls("postneonatal_mortality_rate", 2016, label)
        b16, src_b = births16(f"{label} (single race)")
        d = round(v * b16 / 1000)
        lo, hi = garwood(d, b16, 0.005)
        add("pnmr", race, 2016, v, lo, hi, "per 1,000 live births", f"{DB326}; {src}; births {src_b}",
            f"2016 (the IMR of {what}); in targets.csv but not used by the fit (see neonatal_share). lo/hi DERIVED: "
            f"exact Poisson interval of the ~{d} deaths implied by the rate and the {b16:.0f} births of 2016 (single "
            "race), plus rounding")

    v, src = nls("percent_infant_deaths_SUID", 2013)
    add("suid_share", "ALL", 2013, v / 100, *_round_iv(v / 100, 0.005), "proportion of infant deaths",
        f"{NVSR64_9}; {src}", "PARTLY USED: the national SUID rate (2015) and the IMRs are calibration targets, so this "
        "share is close to fitted; lo/hi rounding of the whole percent")
    i = int(pv[(pv.risk_factor == "SUID rate (per 1,000 live births)") & (pv.race_ethnicity == "Hispanic")].index[0])
    note = str(pv.at[i, "note"])
    found = dict(re.findall(r"(AIAN|NH black|NH white|API) (\d+\.\d+)", note))
    rid = read_wonder(sh / "external/riddell__Births-by-race-year-2007-2015.txt")
    rid_births = {r: float(rid[(rid["Race"] == lab) & (rid["Year"].astype(str) == "2009")]["Births"].iloc[0])
                  for r, lab in (("nh_black", "Black or African American"), ("nh_white", "White"))}
    for race, key in (("nh_aian", "AIAN"), ("nh_black", "NH black"), ("nh_white", "NH white"), ("nh_api", "API")):
        v = float(found[key])
        if race in rid_births:
            d = round(v * rid_births[race] / 1000)
            lo, hi = garwood(d, rid_births[race], 0.005)
            iv = (f"lo/hi DERIVED: exact Poisson interval of the ~{d} deaths implied by the rate and the "
                  f"{rid_births[race]:.0f} non-Hispanic births of 2009 (CDC WONDER natality, shared external/"
                  "riddell__Births-by-race-year-2007-2015.txt), plus rounding")
        else:
            lo, hi = _round_iv(v, 0.005)
            iv = "lo/hi rounding only (no births by this group for 2009 in the shared data)"
        add("suid_rate", race, 2009, v, lo, hi, "per 1,000 live births", f"{src_row(pv, i)}; shared {PV}:{i} "
            f"(note: '{note}')", "2009, not used by the fit (which interpolates the 2011 (NH API: 2017 only) and 2017 "
            f"values to 2014); US SUID rates fell slightly from 2009 to 2011; {iv}"
            + ("; the source says 'API' (Hispanic origin not stated), year taken as the row's 2009" if key == "API" else ""),
            fitted_if=[("suid_rate", "ALL", race, "2017")])

    # --- risk-appropriate care: level III odds ratio -------------------------------------------------------------
    for i, q, what in ((107, "nonlevel3_neonatal_or", "very preterm (<=32 wk)"), (106, "nonlevel3_neonatal_or_vlbw",
                                                                                "very low birthweight (<1500 g)")):
        add(q, "ALL", "1976-2010 studies", float(ef.at[i, "point"]), float(ef.at[i, "low"]),
            float(ef.at[i, "high"]), "odds ratio (neonatal/predischarge death, outside vs inside level III)",
            f"{LASSWELL}; shared {EV}:{i}", f"pooled adjusted OR for {what} births outside a level III hospital; the model's "
            "figure is for births <32 wk (the model has no birthweight)" + (" -- the VLBW estimate of the same "
            "meta-analysis" if i == 106 else ""), used_if=[("*", "lasswell", float(ef.at[i, "point"]))])

    # --- Medicaid expansion, difference-in-differences ------------------------------------------------------------
    cw = {"ALL": 121, "nh_black": 119, "hispanic": 120}
    for race, i in cw.items():
        add("medicaid_did_imr_2014_expanders", race, "2019 vs 2011-2013", float(ef.at[i, "point"]), float(ef.at[i, "low"]),
            float(ef.at[i, "high"]), "deaths per 1,000 live births (DiD)", f"{CW2023}; shared {EV}:{i}",
            "event-study DiD, states that expanded in 2014 vs non-expansion states, year 6 (2019); race/Hispanic origin "
            "as in the Multiple Cause of Death files (the model's is the mother's)",
            used_if=[("*", "constantin", abs(float(ef.at[i, "point"])))])
    add("medicaid_did_imr_2014_expanders_year2", "hispanic", "2015 vs 2011-2013", -0.80, -1.25, -0.36,
        "deaths per 1,000 live births (DiD)", f"{CW2023}; shared {EV}:120 (note)",
        "event-study DiD for 2015 (year 2) among Hispanic infants; the model's effect does not build up over time",
        used_if=[("*", "constantin", 0.8)])
    add("medicaid_did_imr_2017_expanders", "ALL", "2010-2017", 0.04, -0.39, 0.46, "deaths per 1,000 live births (DiD)",
        WIGGINS2020, "DiD regression adjusted for race and sex, expansion vs non-expansion states, 2010-2017 (state-level "
        "CDC WONDER data)", used_if=[("*", "wiggins", 0.04)])
    add("medicaid_did_imr_2017_expanders", "hispanic", "2010-2017", -0.53, -1.02, -0.03,
        "deaths per 1,000 live births (DiD)", WIGGINS2020, "DiD among Hispanic infants, 2010-2017",
        used_if=[("*", "wiggins", 0.53)])
    gap14, gap16 = 0.573, 0.838
    did = -(gap16 - gap14)
    se = math.hypot(gap14 / 1.750686, gap16 / 2.747781)          # z of two-sided P = .08 and .006
    add("medicaid_did_imr_2016_expanders", "ALL", "2016 vs 2014", did, did - 1.959964 * se, did + 1.959964 * se,
        "deaths per 1,000 live births (DiD)", f"{BHATT2018}; shared {EV}:117 (note)",
        "DERIVED: -(mean IMR gap non-expansion minus expansion states 0.838 in 2016 - 0.573 in 2014), unweighted state "
        "means (ecological, unadjusted). lo/hi ASSUMPTION: each gap's SE back-calculated from its two-sided P (.08, .006; "
        "normal approximation), years treated as independent (wider than the true interval if the gaps are positively "
        "correlated)", used_if=[("*", "bhatt", 0.838), ("*", "bhatt", 0.265)])
    d = -(14.5 - 6.6)
    add("medicaid_pct_change_diff_2016_expanders", "nh_black", "2010-2016", d, *_from_p(d, 0.012),
        "percentage points (relative IMR change, expansion minus non-expansion states)", f"{BHATT2018}; shared {EV}:118",
        "DERIVED: IMR of African American infants fell 14.5% (11.7 to 10.0) in expansion states vs 6.6% (12.2 to 11.4) "
        "elsewhere, P = .012; lo/hi ASSUMPTION: SE back-calculated from P (normal approximation)",
        used_if=[("*", "bhatt", 14.5)])

    # --- CoIIN (Hirai et al. 2018) -----------------------------------------------------------------------------
    add("coiin_preterm_change_diff", "ALL", "2014 vs 2011", -4.0 - (-2.0), -4.5 - (-1.5), -3.5 - (-2.5),
        "percentage points (relative change, Regions IV/VI minus other regions)", HIRAI2018,
        "DERIVED: preterm birth fell 4% in HHS Regions IV and VI (AL, FL, GA, KY, MS, NC, SC, TN; AR, LA, NM, OK, TX) "
        "vs 2% in other regions (pre-post 2011-2014, CoIIN started there in 2012); lo/hi from the whole-percent "
        "rounding of both. Infant mortality reductions 'did not differ significantly' (no figure in the abstract)",
        used_if=[("*", "29672142", None), ("*", "ajph.2018.304371", None)])
    add("coiin_eed_change_diff", "ALL", "2014 vs 2011", -22.0 - (-14.0), -22.5 - (-13.5), -21.5 - (-14.5),
        "percentage points (relative change, Regions IV/VI minus other regions)", HIRAI2018,
        "DERIVED: early elective delivery fell 22% in Regions IV and VI vs 14% in other regions (2011-2014); lo/hi "
        "from the whole-percent rounding of both", used_if=[("*", "29672142", None), ("*", "ajph.2018.304371", None)])
    return rows


def build_validation(sh: Path, inputs: dict[str, pd.DataFrame], targets: pd.DataFrame) -> pd.DataFrame:
    """Published figures to check the model against (validation.csv, read by ``imsim check``).

    None of them is a calibration target. A figure that is also an INPUT of the model (an evidence effect derived
    from it, or a structure table built with it) is marked in its note, found by searching the packaged input tables
    just built (``inputs``: table name -> DataFrame) for the figure's source and value, so the mark follows the data.
    A figure whose quantity the calibration fits to another source or year (a ``targets`` row named in the figure's
    ``fitted_if``) is marked FITTED QUANTITY: it compares two sources more than it checks the model.
    validation.csv is not in tables.json (nor the data hash): check figures never feed the model, and editing them
    must not make a calibration stale.
    """
    def norm(x: str) -> str:
        return re.sub(r"[\s()_\-]", "", x.lower())

    text = []
    for name, df in inputs.items():
        for r in df.itertuples(index=False):
            raw = "|".join(fmt(v) for v in r)
            line = norm(raw)
            nums = {float(m) for m in re.findall(r"\d+(?:\.\d+)?", raw)}
            text.append((name, r, line, nums))
    out = []
    for row in _validation_rows(sh):
        used = []
        for table, key, value in row.pop("used_if"):
            for name, r, line, nums in text:
                if table not in ("*", name) or norm(key) not in line:
                    continue
                if value is not None and not any(abs(x - float(value)) < 1e-9 for x in nums):
                    continue
                if hasattr(r, "id"):
                    label = r.id
                else:
                    label = "/".join(str(getattr(r, c)) for c in ("exposure", "race", "ga_band", "state")
                                     if hasattr(r, c))
                used.append(f"{name}.csv {label}")
        fitted = []
        for target, state, race, period in row.pop("fitted_if"):
            hit = targets[(targets.target == target) & (targets.state == state) & (targets.race == race)
                          & (targets.period.astype(str) == period)]
            fitted += [f"targets.csv {target} {race} {period} = {fmt(v)}" for v in hit["value"]]
        if fitted:
            row["note"] = ("FITTED QUANTITY (not an independent check): the calibration fits the model's value of this "
                           f"quantity to {'; '.join(fitted)} (another source or year). " + row["note"])
        if used:
            row["note"] = (f"INPUT (not an independent check): the model uses this figure ({'; '.join(sorted(set(used)))}). "
                           + row["note"])
        out.append(row)
    df = pd.DataFrame(out)
    bad = df[~(df.published_lo <= df.published) | ~(df.published <= df.published_hi)]
    if len(bad):
        raise SystemExit(f"validation: interval does not contain the value: {bad[['quantity', 'population']].values}")
    return df


# ----------------------------------------------------------------------------- states
KFF_EXPANSION = ("KFF. Status of State Medicaid Expansion Decisions: Interactive Map. "
                 "https://www.kff.org/affordable-care-act/issue-brief/status-of-state-medicaid-expansion-decisions-interactive-map/ "
                 "(version dated 2024-02-07: 41 states incl. DC adopted, 10 not; read 2026-12-02 from a stored copy)")
KFF_AS_OF = "2024-02-07"
#: ACA Medicaid expansion: state -> (coverage effective date or None = not adopted as of KFF_AS_OF, note). KFF: "Coverage
#: under the Medicaid expansion became effective January 1, 2014 in all states that have adopted the Medicaid expansion except
#: for the following" (dates below). Curated by hand from that page; anything the stored copy did not show is labelled.
MEDICAID_EXPANSION: dict[str, tuple[str | None, str]] = {
    **{s: ("2014-01-01", "first wave (KFF: effective January 1, 2014)") for s in (
        "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "HI", "IL", "IA", "KY", "MD", "MA", "MN", "NV", "NJ", "NM", "NY", "ND", "OH",
        "OR", "RI", "VT", "WA", "WV")},
    "MI": ("2014-04-01", "KFF: 4/1/2014"),
    "NH": ("2014-08-15", "KFF: 8/15/2014 (UNCERTAIN day: CRS IF10399, Dec 2018, gives July 1, 2014; same year either way)"),
    "PA": ("2015-01-01", "KFF: 1/1/2015"),
    "IN": ("2015-02-01", "KFF: 2/1/2015"),
    "AK": ("2015-09-01", "KFF: 9/1/2015"),
    "MT": ("2016-01-01", "KFF: 1/1/2016"),
    "LA": ("2016-07-01", "KFF: 7/1/2016"),
    "ME": ("2018-07-02", "KFF: implemented 1/10/2019 with coverage retroactive to 7/2/2018; the coverage date is used (UNCERTAIN "
                         "which date a planner would call 'expanded': 2018 or 2019)"),
    "VA": ("2019-01-01", "KFF: 1/1/2019"),
    "ID": ("2020-01-01", "KFF: 1/1/2020"),
    "UT": ("2020-01-01", "KFF: 1/1/2020 (full expansion; a partial expansion to 100% FPL preceded it in 2019)"),
    "NE": ("2020-10-01", "KFF: 10/1/2020"),
    "OK": ("2021-07-01", "KFF: 7/1/2021"),
    "MO": ("2021-07-01", "KFF: applications processed from 10/1/2021 with coverage retroactive to 7/1/2021; the coverage date is used"),
    "SD": ("2023-07-01", "UNCERTAIN day: the stored KFF copy read lists SD among adopters (41 incl. DC) but its date list was cut "
                         "off; July 1, 2023 per the 2022 ballot measure as reported by healthinsurance.org ('mid-2023'); year certain"),
    "NC": ("2023-12-01", "UNCERTAIN day: the stored KFF copy read lists NC among adopters but its date list was cut off; "
                         "December 1, 2023 per healthinsurance.org ('takes effect in December 2023'); year certain"),
    **{s: (None, "not adopted as of the source date") for s in ("AL", "FL", "GA", "KS", "MS", "SC", "TN", "TX", "WY")},
    "WI": (None, "not adopted as of the source date (KFF: WI covers adults up to 100% FPL in Medicaid but did not adopt the "
                 "ACA expansion)"),
}


def build_states() -> pd.DataFrame:
    """State attributes (states.csv): ACA Medicaid expansion status and effective date, from MEDICAID_EXPANSION (KFF)."""
    if set(MEDICAID_EXPANSION) != set(STATES) or len(MEDICAID_EXPANSION) != 51:
        raise SystemExit("MEDICAID_EXPANSION must list the 51 jurisdictions of imsim.core.constants.STATES exactly once")
    rows = []
    for st in STATES:
        date, note = MEDICAID_EXPANSION[st]
        rows.append(dict(state=st, medicaid_expansion=date is not None, expansion_effective_date=date or "",
                         status_as_of=KFF_AS_OF, source=KFF_EXPANSION, note=note))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- costs.csv (cost library)
COST_COLUMNS = ["strategy", "usd_per_birth_reached", "low", "high", "price_year", "status", "birth_reached",
                "priced_option", "source", "url", "quote", "note"]
#: The cost library of ``imsim recommend`` (``costs: library``): USD per birth reached per strategy, with a
#: low-high range. ``status``: ``sourced`` (the value is a published programme cost), ``derived`` (our arithmetic
#: on published figures with a labelled ASSUMPTION), ``illustrative`` (no published programme cost found: a
#: reasoned default, not data). Values are in their source's price year, NOT inflated to a common year. Not in
#: tables.json (nor the data hash): costs never feed the birth model or its calibration.
COSTS = [
    dict(strategy="safe_sleep", usd_per_birth_reached=20, low=5, high=100, price_year="", status="illustrative",
         birth_reached="a family reached by safe-sleep education (coverage refers to all births)",
         priced_option="",
         source="ILLUSTRATIVE. No published per-family cost of hospital/mHealth safe-sleep education was found. "
                "Anchors: NYC Health Department 'safe sleep survival kits' (Pack 'n Play, sheets, pajamas) "
                "underwritten by $100 donors, and its estimate that 10% of families need a safe place for the baby "
                "to sleep (TIME Healthland, 2010-12-24); Minnesota Safe Slumber: 'Cost - $75, includes PNP, Safe "
                "Sleep reminder crib sheet, and shipping' (MDH, undated).",
         url="https://healthland.time.com/2010/12/24/not-all-babies-have-cribs-help-those-without-get-one/ ; "
             "http://www.health.state.mn.us/divs/fh/mch/mortality/safeandasleep/pnpoverview.html",
         quote="find $100 donors this holiday season to underwrite 250 'safe sleep survival kits' for families in "
               "need; the Health Department estimates 10% of those families are in need of a safe place for their "
               "baby to sleep",
         note="ILLUSTRATIVE: 20 = education at delivery ~$10 per family (ASSUMPTION: staff minutes and "
              "materials) + a $100 crib kit for 10% of families; low 5 = messaging only (ASSUMPTION); high 100 = a "
              "$100 kit for every family reached. No price year (illustrative)."),
    dict(strategy="smoking_cessation", usd_per_birth_reached=112, low=24, high=369, price_year=2022, status="sourced",
         birth_reached="a pregnant smoker enrolled in the programme",
         priced_option="program=counselling",
         source="Washington State Institute for Public Policy. Smoking cessation programs for pregnant women: "
                "Intensive behavioral interventions. Benefit-cost results (methods updated December 2023; 2022 "
                "dollars). Range: Ayadi MF et al. Costs of a smoking cessation counseling intervention for pregnant "
                "women: comparison of three settings. Public Health Rep 2006;121(2):120-6 (low); Bacheller HL, "
                "Hersh AR, Caughey AB. Behavioral smoking cessation counseling during pregnancy: a "
                "cost-effectiveness analysis (abstract, OHSU research portal) (high)",
         url="https://www.wsipp.wa.gov/BenefitCost/Program/711 ; https://pmc.ncbi.nlm.nih.gov/articles/PMC1525265 ; "
             "https://ohsu.elsevierpure.com/en/publications/behavioral-smoking-cessation-counseling-during-pregnancy-a-cost-e",
         quote="WSIPP, per participant: 'Net program cost ($112)' (2022 dollars); Ayadi 2006: 'The costs of "
               "implementing the intervention ranged from $24 to $34 per pregnant smoker counseled'; Bacheller: "
               "'behavioral intervention costs less than $475.21 (baseline input: $368.78)'",
         note="value = WSIPP net cost per participant (2022 USD); low = Ayadi's lowest setting cost (2002-2003 "
              "costs, brief five-step counselling; not inflated); high = Bacheller's base-case cost of behavioral "
              "counselling (368.78, rounded; price year not stated in the abstract; not inflated). Priced for "
              "counselling: incentive programmes add the incentives paid (give your own cost)."),
    dict(strategy="preterm_prevention", usd_per_birth_reached=150, low=50, high=314, price_year="", status="illustrative",
         birth_reached="a birth in a programme of universal transvaginal cervical-length screening with vaginal "
                       "progesterone for a short cervix, and hard-stop policies (coverage refers to all births)",
         priced_option="components=hard_stop+vaginal_progesterone",
         source="ILLUSTRATIVE. The per-scan cost used by the published cost-effectiveness analyses is not in their "
                "abstracts; the abstracts give the scan cost at which screening stops being dominant or "
                "cost-effective: Werner EF et al. Universal cervical-length screening to prevent preterm birth: a "
                "cost-effectiveness analysis. Ultrasound Obstet Gynecol 2011;38(1):32-7 ($187, 2010 USD); "
                "Cost-effectiveness of transvaginal ultrasound cervical length screening in singletons "
                "without a prior preterm birth: an update (SMFM paper). Am J Obstet Gynecol 2015;213(4):554.e1-6 ($314).",
         url="http://onlinelibrary.wiley.com/doi/10.1002/uog.8911/abstract ; "
             "https://www.ajog.org/article/S0002-9378(15)00603-1/pdf",
         quote="Werner: 'Screening remained cost-effective but was no longer the dominant strategy when "
               "cervical-length ultrasound measurement costs exceeded $187'; AJOG 2015 update: 'when TVU CL costs >$314 "
               "... CL screening is also no longer cost-effective'; incidence of CL <=20 mm 0.83%",
         note="ILLUSTRATIVE: 150 = one transvaginal scan per birth reached plus vaginal progesterone for the ~0.83% "
              "with a short cervix and the administrative cost of hard-stop policies (ASSUMPTION); low 50 "
              "(ASSUMPTION: scan added to the routine anatomy ultrasound); high 314 (the AJOG 2015 update's "
              "break-even scan cost). No price year (illustrative). 17-OHPC (component ohpc) is not priced."),
    dict(strategy="preconception_care", usd_per_birth_reached=1091, low=441, high=1637, price_year=2014,
         status="sourced",
         birth_reached="a mother who receives immediate postpartum long-acting reversible contraception",
         priced_option="",
         source="Gariepy AM, Duffy JY, Xu X. Cost-effectiveness of immediate compared with delayed postpartum "
                "etonogestrel implant insertion. Obstet Gynecol 2015;126(1) (doi 10.1097/AOG.0000000000000907; 2014 U.S. dollars)",
         url="https://journals.lww.com/greenjournal/Fulltext/2015/07000/Cost_Effectiveness_of_Immediate_Compared_With.8.aspx",
         quote="Immediate postpartum implant insertion is associated with higher expected cost than delayed "
               "insertion ($1,091/patient compared with $650/patient)",
         note="value = expected cost per patient of immediate postpartum implant insertion over the first "
              "postpartum year (2014 USD; health-system perspective, implant insertion and removal, alternative "
              "methods and failures); low 441 = DERIVED 1,091 - 650, the incremental cost over delayed insertion "
              "(if the comparator would have had an implant later anyway); high 1,637 = ASSUMPTION 1.5 x 1,091 "
              "(IUDs and programme overheads)."),
    dict(strategy="risk_appropriate_care", usd_per_birth_reached=3043, low=834, high=22922, price_year=2020,
         status="derived",
         birth_reached="a birth under 32 weeks moved to a level III+ hospital (a maternal transport)",
         priced_option="",
         source="Vilalta A, Troeger KA. Disparities in emergency transport of women with a preterm labor diagnosis "
                "in urban vs rural areas in the US. ClinicoEcon Outcomes Res 2020;12:327-332 (IBM MarketScan)",
         url="https://pmc.ncbi.nlm.nih.gov/articles/PMC7319514",
         quote="the median cost of emergency ground transportation was US$834; air transport had a median cost "
               "of US$22,922",
         note="DERIVED: 3,043 = 0.9 x 834 + 0.1 x 22,922 (ASSUMPTION: 10% of transports by air); low 834 = all "
              "by ground; high 22,922 = all by air. price_year 2020 is the publication year (the abstract does "
              "not state it). Transport only: the extra cost of level III care and of building regional capacity "
              "are not priced."),
    dict(strategy="social_determinants", usd_per_birth_reached=4513, low=2257, high=9026, price_year=2014,
         status="derived",
         birth_reached="a low-income mother covered by Medicaid expansion (states that have not expanded)",
         priced_option="policy=medicaid_expansion",
         source="Kaiser Family Foundation. Medicaid Expansion Spending and Enrollment in Context: An Early Look at "
                "CMS Claims Data for 2014 (CMS Medicaid Budget and Expenditure System), as reported by "
                "ThinkAdvisor, 2016-01-15",
         url="https://www.kff.org/medicaid/issue-brief/medicaid-expansion-spending-and-enrollment-in-context-an-early-look-at-cms-claims-data-for-2014/ ; "
             "http://thinkadvisor.com/2016/01/15/new-ppaca-medicaid-enrollees-not-costing-feds-as-m",
         quote="The average cost of each new enrollee in 2014 was $4,513, 37 percent lower than the average of "
               "$7,150 that states spent on Medicaid recipients in all groups",
         note="DERIVED: 4,513 = one year of Medicaid spending per expansion-group enrollee (2014 USD) x 1 year of "
              "coverage attributable to each low-income birth reached (ASSUMPTION; range 0.5-2 years: low 2,257, "
              "high 9,026). Total spending (federal + state), not the state's share. Priced for "
              "medicaid_expansion: income_support is not priced (give your own cost)."),
]


def build_costs() -> pd.DataFrame:
    """The cost library (costs.csv) from COSTS: one row per strategy, value within [low, high]."""
    df = pd.DataFrame(COSTS)
    bad = df[(df.low > df.usd_per_birth_reached) | (df.usd_per_birth_reached > df.high)]
    if len(bad) or sorted(df.strategy) != sorted(STRATEGIES):
        raise SystemExit("COSTS: one row per strategy with low <= usd_per_birth_reached <= high")
    return df


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "src" / "imsim" / "inputs" / "data")
    a = ap.parse_args(argv)
    sh, out = a.shared.resolve(), a.out
    out.mkdir(parents=True, exist_ok=True)
    births, binfo = build_births(sh)
    recent, trend, rinfo = build_births_recent(sh, births)
    binfo.update(rinfo)
    race_pt = preterm_2014_2015(sh, births)
    ga, ga_tgt, dinfo = build_ga(sh, births, race_pt)
    targets = build_targets(sh, births, ga_tgt, race_pt)
    expo = build_exposures(sh, births, ga)
    assoc = build_associations()
    ev = build_evidence(sh, ga)
    states = build_states()
    cat = []
    spec = [
        ("births", births, ["state", "race", "year", "births", "estimated", "method", "source"], ["state", "race", "year"],
         "Live births by state x race/Hispanic origin x year 2013-2017; state totals and national race totals exact, race split ESTIMATED by minimum-KL raking of the single-race/national-Hispanic-fraction prior to published NH white shares (13 states), 2016 single-race counts and infant-death consistency (see build_data.py docstring); Hispanic split outside the 13 states remains uncertain",
         ["NVSR Births: Final Data 2013-2017 state totals", "CDC WONDER Natality 2016/2017 single race by state", "data.cdc.gov 89yk-m38d national births by race/Hispanic origin",
          "NCHS Births: Final Data 2014/2016 NH white shares (via demomemo.blogspot.com)", "IMR 2013-2015 by state x race (db295, Goldstein/CDC WONDER)"]),
        ("targets", targets, ["target", "state", "race", "period", "value", "unit", "deaths", "births", "lo", "hi", "source_tier", "source", "note"],
         ["target", "state", "race", "period", "source"], "Calibration targets: IMR (2013-2015, by year), preterm, NMR/PNMR, SUID, GA death shares",
         ["NCHS Data Brief 295", "CDC Stats of the States", "CDC WONDER linked exports", "childstats HEALTH2", "NCHS db312/NVSR", "CDC SUID pages", "NCHS cohort-linked files 2010-2013"]),
        ("ga_structure", ga, ["race", "ga_band", "births_share", "births_share_lo", "births_share_hi", "deaths_neonatal", "deaths_suid",
                              "deaths_other_postneonatal", "imr_neonatal", "imr_suid", "imr_other_postneonatal",
                              "births_ga_measure", "deaths_ga_measure", "source", "note"],
         ["race", "ga_band"], "Births share by GA band per race (and ALL) and infant deaths by race x GA band x cause (cohorts "
         "2010-2012); births and deaths both by the obstetric estimate (OE) of gestational age",
         ["CDC WONDER Natality 2017, OE gestational age x bridged race", "NCHS cohort-linked numerator files 2010-2012 (estgest)",
          "NCHS db312", "NVSR 73-1", "MMWR QuickStats 2017;66:392 (survivors >=39 wk)", "March of Dimes 2017 report card (AIAN)"]),
        ("exposures", expo, ["exposure", "state", "race", "prevalence", "lo", "hi", "period", "source", "assumption", "note"],
         ["exposure", "state", "race"], "Exposure prevalence (proportion of births) by race and a few states",
         ["NCHS Data Brief 305", "PRAMS 2015 (Bombard 2018)", "NCHS Data Brief 240", "Brown 2019 JAMA", "Leapfrog", "HP2020 MICH-33"]),
        ("associations", assoc, ["id", "from_exposure", "to_exposure", "odds_ratio", "lo", "hi", "source", "assumption", "note"], ["id"],
         "Within-birth odds ratios between exposures (low_income first; unsafe_sleep also on smoking)",
         ["Adams (HCFR) Medicaid smoking", "NCHS Data Brief 240/305", "NCHS natality aggregates 2016-2024", "assumptions"]),
        ("evidence", ev, ["id", "description", "point", "dist", "lo", "hi", "scale", "applies_to", "outcome", "area", "citation", "url",
                          "source_row", "assumption", "note"], ["id"], "Evidence library: named effect sizes with distributions and citations",
         ["shared evidence/effects.csv and prevalence.csv (each row cites its paper)"]),
        ("states", states, ["state", "medicaid_expansion", "expansion_effective_date", "status_as_of", "source", "note"], ["state"],
         "State attributes: ACA Medicaid expansion adopted (True/False as of status_as_of) and the date its coverage took effect "
         "(empty: not adopted); the social_determinants medicaid_expansion lever has no effect from that calendar year on",
         ["KFF Status of State Medicaid Expansion Decisions (2024-02-07 version)"]),
    ]
    spec[0] = ("births", pd.concat([births, recent], ignore_index=True), spec[0][2], spec[0][3],
               "Live births by state x race/Hispanic origin x year 2013-2023. 2013-2017: state totals and national race "
               "totals exact, race split ESTIMATED by minimum-KL raking of the single-race/national-Hispanic-fraction prior "
               "to published NH white shares (13 states), 2016 single-race counts and infant-death consistency; "
               "2018-2023: state totals from CDC WONDER (mothers 15-44, no DC) corrected to all ages and DC, race split "
               "ESTIMATED by raking the 2017 state shares to pooled national race shares (2016-2019, 2020-2022) (see "
               "build_data.py); Hispanic split outside the 13 states remains uncertain",
               spec[0][5] + ["CDC WONDER Natality 2007-2023 by year x state (mothers 15-44)",
                             "CDC WONDER Natality single race x Hispanic origin pooled 2016-2019 and 2020-2022"])
    spec.insert(1, ("births_trend", trend, ["state", "fit_start", "fit_end", "base_year", "base_births", "slope", "slope_se",
                                            "resid_sd", "source", "note"], ["state"],
                    "Projection of births after 2023: per-state log-linear trend of state births 2014-2023 (OLS slope per "
                    "year and its standard error); births(s,r,y) = births(s,r,2023) x exp(slope (y-2023))",
                    ["births.csv (NVSR 2014-2017; CDC WONDER Natality 2018-2023, corrected)"]))
    for name, df, cols, sort, desc, srcs in spec:
        n = write_csv(df, out / f"{name}.csv", cols, sort)
        cat.append({"name": name, "file": f"{name}.csv", "description": desc, "sources": srcs, "rows": n})
    for name, desc, srcs in MODULE_TABLES:        # derived by imsim modules, not rewritten here
        f = out / f"{name}.csv"
        if not f.is_file():                         # building elsewhere: the packaged copy
            f = Path(__file__).resolve().parents[1] / "src" / "imsim" / "inputs" / "data" / f"{name}.csv"
        if f.is_file():
            n = len(pd.read_csv(f))
            cat.append({"name": name, "file": f"{name}.csv", "description": desc, "sources": srcs, "rows": n})
    (out / "tables.json").write_text(json.dumps(cat, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    validation = build_validation(sh, {"evidence": ev, "exposures": expo, "associations": assoc, "ga_structure": ga},
                                  targets)
    n = write_csv(validation, out / "validation.csv", VALIDATION_COLUMNS, ["quantity", "population", "period"])
    print(f"validation.csv: {n} published figures for imsim check (not in tables.json: never a model input)",
          file=sys.stderr)
    n = write_csv(build_costs(), out / "costs.csv", COST_COLUMNS, ["strategy"])
    print(f"costs.csv: {n} strategies (cost library of imsim recommend; not in tables.json: never a model input)",
          file=sys.stderr)
    for k, v in sorted({**binfo, **dinfo}.items()):
        print(f"{k}: {v}", file=sys.stderr)


#: Packaged tables derived by imsim modules (``python -m imsim.calibration.trend ../shared/data``) or kept
#: by hand with a source per row; listed in tables.json (and the data hash) but not rewritten here.
MODULE_TABLES = [
    ("national_imr_series",
     "Annual national infant deaths (Multiple Cause of Death files, year of death; 2022 provisional; 2023 January-June) "
     "and live births 2007-2023: the national level of the IMR trend model (imsim.calibration.trend)",
     ["CDC WONDER mchtrends__infant_mortality_yearly_00_17 / _18_22 / _race_first_half_23", "births.csv",
      "state_imr_series.csv births 2007-2012"]),
    ("race_imr_blocks",
     "National infant deaths by the infant's race and Hispanic origin over births by the mother's, in blocks 2011-2017, "
     "2018-2019, 2020-2022 and January-June 2023: the race slopes of the IMR trend model",
     ["CDC WONDER mchtrends__infant_mortality_race_* and mchtrends__natality_race_11_15", "births.csv"]),
    ("region_imr_blocks",
     "Infant deaths by census region of residence (Multiple Cause of Death; 2022 provisional) and births of the "
     "region's states, in blocks 2011-2017, 2018-2019 and 2020-2022: the out-of-sample check of the state trends",
     ["CDC WONDER mchtrends__infant_mortality_census_11_17 / _18_19 / _20_22", "births.csv",
      "state_imr_series.csv births 2011-2012"]),
    ("exposure_trends",
     "Published trends of exposure prevalence by race (smoking during pregnancy 2016 and 2021): exposure prevalences "
     "follow them after the 2013-2015 baseline",
     ["NCHS Data Brief No. 458 (Martin, Osterman, Driscoll 2023)"]),
]


if __name__ == "__main__":
    main()
