"""The fit report: every calibration target, observed against modelled, and its figure.

The modelled values come from the expected engine run with the calibrated targets
(:func:`modelled_counts`), so the report checks the whole chain, not just the rate model.
:func:`fit_quality` condenses the report into the figures ``calibration.json`` records, and
:func:`plot_fit_report` draws ``fit_report.png``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, GA_BANDS, RACES, STATES
from imsim.calibration.observations import BASE_PERIOD, N_R, N_S, R_INDEX, S_INDEX, Z95, Observations
from imsim.calibration.structure import preterm_targets, suid_targets

if TYPE_CHECKING:
    from imsim.calibration.targets import CalibratedTargets

def modelled_counts(cal: CalibratedTargets, effects: dict | None = None, baseline=None,
                    year_births: int | None = None, draw: int | None = None):
    """Return the expected counts of the 255 state x race cells under a calibration.

    Parameters
    ----------
    cal : CalibratedTargets
        The calibration the baseline is fitted to.
    effects : dict of str to float, optional
        Effect values (default: the evidence point values).
    baseline : Baseline, optional
        Default: the process-wide baseline.
    year_births : int, optional
        Weight the cells by this data year's births (default: 2013-2015 pooled).
    draw : int, optional
        Calibration posterior draw (None: the point).

    Returns
    -------
    cells : Cells
        The 255 cells, state-major.
    counts : numpy.ndarray
        float64 ``[255, N_OUT]`` expected counts (:func:`imsim.birth.engines.expected`).
    """
    from imsim.inputs.baseline import get_baseline
    from imsim.birth.engines import expected
    from imsim.inputs.evidence import EvidenceLibrary
    from imsim.inputs.fit import direct_fit
    from imsim.birth.params import build_tables

    baseline = baseline or get_baseline()
    effects = effects or EvidenceLibrary.load().point()
    fit = direct_fit(baseline, effects, targets=cal, draw=draw)
    cells = baseline.pooled_cells()
    if year_births is not None:
        cells.births = baseline.births[int(year_births)].ravel().astype(np.int64)
    params = baseline.params(cells, effects, fit)
    return cells, expected(build_tables(params))


def fit_report(cal: CalibratedTargets, obs: Observations, counts=None) -> pd.DataFrame:
    """Return the fit report: one row per target, observed against modelled.

    Targets (see docs/calibration.md): ``imr`` per cell, state and national race; ``preterm_rate``
    (percent); ``suid_rate``; ``ga_death_share``. ``modelled`` comes from the expected engine;
    rates are per 1,000 live births unless the target says otherwise.

    Parameters
    ----------
    cal : CalibratedTargets
        The calibration.
    obs : Observations
        The observations it was fitted to.
    counts : numpy.ndarray, optional
        float64 ``[255, N_OUT]`` from :func:`modelled_counts` (computed when None).

    Returns
    -------
    pandas.DataFrame
        Columns ``target, state, race, ga_band, period, observed, observed_lo, observed_hi,
        modelled, within_interval, source_tier, pooled`` first, then extras (``rel_error``,
        ``note``...).
    """
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS

    if counts is None:
        _, counts = modelled_counts(cal)
    births = counts[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=1).reshape(N_S, N_R)
    dc = counts[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].reshape(N_S, N_R, 3, N_BANDS)
    deaths = dc.sum(axis=(2, 3))
    preterm_b = counts[:, OUT_BIRTHS:OUT_BIRTHS + 4].sum(axis=1).reshape(N_S, N_R)

    def rate(num, den, k=1000.0):
        return k * num / np.maximum(den, 1e-12)

    rows = []

    def add(target, state, race, period, observed, lo, hi, modelled, tier, pooled, note="",
            extra=None):
        within = (np.nan if observed is None or observed != observed
                  else bool(lo <= modelled <= hi))
        row = {"target": target, "state": state, "race": race, "period": period,
               "observed": observed, "observed_lo": lo, "observed_hi": hi, "modelled": modelled,
               "within_interval": within, "rel_error": (modelled / observed - 1.0)
               if observed == observed and observed else np.nan,
               "source_tier": tier, "pooled": pooled, "note": note}
        row.update(extra or {})
        rows.append(row)

    period = f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}"
    cells = cal.cells.set_index(["state", "race"])
    cobs = obs.cell.set_index(["state", "race"])
    for si, s in enumerate(STATES):
        for ri, r in enumerate(RACES):
            c = cells.loc[(s, r)]
            m = rate(deaths[si, ri], births[si, ri])
            extra = {"posterior_lo": c.imr_lo, "posterior_hi": c.imr_hi, "births": births[si, ri]}
            if (s, r) in cobs.index:
                o = cobs.loc[(s, r)]
                extra.update(poisson_lo=o.poisson_lo, poisson_hi=o.poisson_hi,
                             within_poisson_interval=bool(o.poisson_lo <= m <= o.poisson_hi))
                add("imr", s, r, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False,
                    "" if o.source_tier < 3 else "tier 3: interval widened by +-0.4/1000 source "
                    "uncertainty", extra)
            else:
                add("imr", s, r, period, np.nan, np.nan, np.nan, m, np.nan, True,
                    "no published value (suppressed/unreliable or not retrieved): estimate from "
                    "partial pooling and the state total", extra)
    sobs = obs.state.set_index("state")
    for si, s in enumerate(STATES):
        m = rate(deaths[si].sum(), births[si].sum())
        if s in sobs.index:
            o = sobs.loc[s]
            add("imr", s, ALL, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False)
    robs = obs.race.set_index("race")
    for ri, r in enumerate(list(RACES) + [ALL]):
        m = rate(deaths.sum() if r == ALL else deaths[:, ri].sum(),
                 births.sum() if r == ALL else births[:, ri].sum())
        if r in robs.index:
            o = robs.loc[r]
            add("imr", ALL, r, period, o.value, o.obs_lo, o.obs_hi, m, o.source_tier, False,
                f"national; fitted to {o.fit_value:.4g} (closure x{obs.closure:.4f})"
                if r != ALL else "national")
    # preterm
    tg = preterm_targets(obs)
    pt = obs.preterm
    for o in pt[(pt["state"] == ALL) & (pt["period"].astype(str) == "2014-2015")].itertuples():
        if o.race == ALL:
            m = rate(preterm_b.sum(), births.sum(), 100.0)
        else:
            ri = R_INDEX[o.race]
            m = rate(preterm_b[:, ri].sum(), births[:, ri].sum(), 100.0)
        add("preterm_rate", ALL, o.race, "2014-2015", o.value, o.lo, o.hi, m, o.source_tier, False,
            "2013-2015 fit; obstetric estimate 2014-2015 (2013 not comparable)")
    for s, lst in tg["state_rows"].items():
        si = S_INDEX[s]
        m = rate(preterm_b[si].sum(), births[si].sum(), 100.0)
        for adj, o in lst:
            add("preterm_rate", s, ALL, str(o.period), o.value, o.lo, o.hi, m, o.source_tier, False,
                f"out of period; fitted to the trend-adjusted 2014-2015 value "
                f"{100 * tg['state'][s]:.2f}", {"fitted_target": 100 * tg["state"][s]})
    for ri, r in enumerate(RACES):
        ptr = 100 * np.mean(cal.meta["race_columns"]["preterm_target"][ri]) \
            if "race_columns" in cal.meta else np.nan
        if r not in tg["race"]:
            m = rate(preterm_b[:, ri].sum(), births[:, ri].sum(), 100.0)
            add("preterm_rate", ALL, r, "2014-2015", np.nan, np.nan, np.nan, m, np.nan, True,
                "no published rate: common value of the groups without one, set so that the "
                "national rate matches", {"fitted_target": ptr})
    # SUID
    su = suid_targets(obs)
    for r, (v, lo, hi, note) in su.items():
        if r == ALL:
            m = rate(dc[:, :, 1].sum(), births.sum())
        else:
            ri = R_INDEX[r]
            m = rate(dc[:, ri, 1].sum(), births[:, ri].sum())
        add("suid_rate", ALL, r, "2013-2015", v, lo, hi, m, 1.0, False, note)
    # NMR / PNMR
    for o in obs.nmr_pnmr.itertuples():
        if o.state != ALL:
            continue
        c = [0] if o.target == "nmr" else [1, 2]
        if o.race == ALL:
            m = rate(dc[:, :, c].sum(), births.sum())
        else:
            ri = R_INDEX[o.race]
            m = rate(dc[:, ri][:, c].sum(), births[:, ri].sum())
        add(o.target, ALL, o.race, str(o.period), o.value, o.lo, o.hi, m, o.source_tier, False,
            "modelled = 2013-2015" + ("" if "2015" in str(o.period) else
                                     f"; observed is {o.period} (out of period)"))
    # GA death shares (band by order within race, as in targets.csv)
    gs = obs.ga_share
    for race, g in gs.groupby("race", sort=False):
        if race == ALL:
            d_band = dc.sum(axis=(0, 1, 2))
        else:
            d_band = dc[:, R_INDEX[race]].sum(axis=(0, 1))
        share = d_band / d_band.sum()
        n = float(g["deaths"].sum())
        for b, o in enumerate(g.itertuples()):
            if b >= N_BANDS:
                break
            se = math.sqrt(o.value * (1 - o.value) / max(n, 1.0))
            add("ga_death_share", ALL, race, str(o.period), o.value, max(o.value - Z95 * se, 0.0),
                o.value + Z95 * se, share[b], o.source_tier, False,
                "not fitted directly (follows the packaged cohort structure); multinomial interval",
                {"ga_band": GA_BANDS[b]})
    df = pd.DataFrame(rows)
    first = ["target", "state", "race", "ga_band", "period", "observed", "observed_lo",
             "observed_hi", "modelled", "within_interval", "source_tier", "pooled"]
    for c in first:
        if c not in df.columns:
            df[c] = np.nan
    return df[first + [c for c in df.columns if c not in first]]


def fit_quality(report: pd.DataFrame) -> dict:
    """Condense a fit report into the fit-quality figures ``calibration.json`` records.

    Parameters
    ----------
    report : pandas.DataFrame
        A fit report (:func:`fit_report`).

    Returns
    -------
    dict
        Shares of observed cells (and states) whose modelled IMR lies inside the observation's
        95% interval (fractions; also against the Poisson-only interval), the cells outside (as
        text), and the largest absolute relative errors (fractions) of the state and national
        race IMR, preterm and SUID rates.
    """
    cellr = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] != ALL)
                   & report["observed"].notna()]
    nat = report[(report["target"] == "imr") & (report["state"] == ALL) & (report["race"] != ALL)]
    pt = report[(report["target"] == "preterm_rate") & (report["state"] == ALL)
                & report["observed"].notna() & (report["race"] != ALL)]
    su = report[(report["target"] == "suid_rate") & (report["race"] != ALL)]
    st = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] == ALL)]
    outside = cellr[~cellr["within_interval"].astype(bool)]
    return {
        "cells_observed": int(len(cellr)),
        "cells_within_interval": float(cellr["within_interval"].astype(bool).mean()),
        "cells_within_poisson_interval": float(cellr["within_poisson_interval"].astype(bool).mean()),
        "cells_outside": [f"{r.state} {r.race}: observed {r.observed:.2f} "
                          f"[{r.observed_lo:.2f}, {r.observed_hi:.2f}], modelled {r.modelled:.2f}"
                          for r in outside.itertuples()],
        "states_within_interval": float(st["within_interval"].astype(bool).mean()),
        "states_max_abs_rel_error": float(st["rel_error"].abs().max()),
        "national_race_max_abs_rel_error": float(nat["rel_error"].abs().max()),
        "national_race_rel_error": dict(zip(nat["race"], nat["rel_error"].round(5))),
        "preterm_race_max_abs_rel_error": float(pt["rel_error"].abs().max()),
        "suid_race_max_abs_rel_error": float(su["rel_error"].abs().max()),
        "suid_race_rel_error": dict(zip(su["race"], su["rel_error"].round(5))),
    }


def plot_fit_report(report: pd.DataFrame, path) -> None:
    """Save a PNG of observed against modelled targets, with 95% intervals.

    Parameters
    ----------
    report : pandas.DataFrame
        A fit report (:func:`fit_report`).
    path : str or path
        The PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [2.2, 1, 1]})
    ax = axes[0]
    colors = dict(zip(RACES, ("#4c72b0", "#c44e52", "#55a868", "#8172b2", "#ccb974")))
    cellr = report[(report["target"] == "imr") & (report["state"] != ALL) & (report["race"] != ALL)]
    for r in RACES:
        d = cellr[(cellr["race"] == r) & cellr["observed"].notna()]
        ax.errorbar(d["observed"], d["modelled"],
                    xerr=[d["observed"] - d["observed_lo"], d["observed_hi"] - d["observed"]],
                    yerr=[d["modelled"] - d["posterior_lo"], d["posterior_hi"] - d["modelled"]],
                    fmt="o", ms=3, lw=0.6, alpha=0.75, color=colors[r], label=r)
        u = cellr[(cellr["race"] == r) & cellr["observed"].isna()]
        if len(u):
            ax.plot(np.full(len(u), 1.2), u["modelled"], "x", color=colors[r], ms=4, alpha=0.8)
    lim = [1, 25]
    ax.plot(lim, lim, "k-", lw=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, 25)
    ax.set_ylim(1, 25)
    ax.set_xlabel("observed IMR 2013-2015 (95% interval of the observation)")
    ax.set_ylabel("calibrated IMR (95% posterior interval)")
    ax.set_title("State x race IMR per 1,000 (x at left: no published value)")
    ax.legend(fontsize=8)
    ax = axes[1]
    nat = report[(report["target"] == "imr") & (report["state"] == ALL)]
    y = np.arange(len(nat))
    ax.errorbar(nat["observed"], y, xerr=[nat["observed"] - nat["observed_lo"],
                                          nat["observed_hi"] - nat["observed"]],
                fmt="o", color="k", label="observed")
    ax.plot(nat["modelled"], y, "D", color="#c44e52", label="modelled", ms=5, alpha=0.8)
    ax.set_yticks(y, nat["race"])
    ax.set_title("National IMR by race")
    ax.legend(fontsize=8)
    ax = axes[2]
    oth = report[report["target"].isin(["preterm_rate", "suid_rate", "nmr", "pnmr"])
                 & (report["state"] == ALL) & report["observed"].notna()]
    y = np.arange(len(oth))
    rel = oth["modelled"] / oth["observed"]
    ax.errorbar(np.ones(len(oth)), y, xerr=[1 - oth["observed_lo"] / oth["observed"],
                                            oth["observed_hi"] / oth["observed"] - 1],
                fmt="|", color="k", label="observed interval")
    ax.plot(rel, y, "D", color="#c44e52", ms=5, label="modelled / observed")
    ax.set_yticks(y, [f"{t} {r} {p}" for t, r, p in zip(oth["target"], oth["race"], oth["period"])],
                  fontsize=7)
    ax.axvline(1, color="k", lw=0.5)
    ax.set_title("Preterm, SUID, NMR/PNMR (ratio)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
