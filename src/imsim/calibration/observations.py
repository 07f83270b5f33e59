"""Observations: the targets the calibration fits, read and checked.

The packaged 2013-2015 targets (``imsim/inputs/data/targets.csv``), optionally replaced cell by
cell by a user's targets CSV from ``imsim data import-wonder``, put on the 51 x 5 state x race grid with
each observation's measurement error and 95% interval. A bad user file raises
:class:`imsim.core.errors.InputError` naming the file and row. :func:`rate_data` hands the result to
the rate model (:mod:`imsim.calibration.ratemodel`) as plain arrays.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, RACES, STATES
from imsim.core.errors import InputError
from imsim.calibration.ratemodel import Z95, RateData

#: The 51 x 5 state x race grid.
N_S = len(STATES)
N_R = len(RACES)
S_INDEX = {s: i for i, s in enumerate(STATES)}
R_INDEX = {r: i for i, r in enumerate(RACES)}
#: Years pooled by the fit.
BASE_PERIOD = (2013, 2015)
#: First year of the trend model's single-year series (the WONDER linked-file exports).
FIRST_SERIES_YEAR = 2007

#: Settings of the calibration: measurement errors of the observations, the rate model's
#: sigmas and its posterior draws (``imsim calibrate`` and :func:`imsim.calibration.calibrate`).
DEFAULT_SETTINGS = {
    "draws": 200,                 # K posterior draws per cell
    "seed": 20130101,             # seed of the posterior draws
    "tier3_sd": 0.2,              # extra sd (per 1,000) of a tier-3 (secondary) cell IMR
    "tier3_rel_sd": 0.05,         # ... plus this relative sd ("more for small groups")
    "tier3_bias": 0.0,            # added to tier-3 values before fitting (REPORT: ~0.1 low)
    "derived_sd": 0.02,           # sd (per 1,000) of a tier-2 derived state IMR
    "national_sd": 0.005,         # sd (per 1,000) of a national race IMR (the anchors)
    "closure_kappa": 0.0,         # extra variance (x deaths) of state totals and national race
    "close_national": True,       # scale national race IMRs so their deaths sum to the states'
    "sigma_eps_by_race": True,    # one sigma_eps per race (else one for all)
    "sigma_alpha": None,          # fix instead of empirical Bayes
    "sigma_eps": None,
}


@dataclass
class Observations:
    """Everything the fit reads, on the 51 x 5 grid (rates per 1,000; NaN = none).

    Attributes
    ----------
    births : numpy.ndarray
        float64 ``[51, 5]``: pooled 2013-2015 live births the fit weights each cell by.
    cell : pandas.DataFrame
        One row per state x race with an observed IMR (value, interval, source tier,
        measurement sd, fitted value).
    state : pandas.DataFrame
        State all-race IMR rows.
    race : pandas.DataFrame
        National race IMR rows (and race ``ALL``).
    imr_year : pandas.DataFrame
        State x single-year IMR: the packaged 2013-2017 and every user single year from
        :data:`FIRST_SERIES_YEAR` (the trend model's state series and the back-test).
    preterm, suid, nmr_pnmr, ga_share : pandas.DataFrame
        Structure targets: preterm rates (percent), SUID rates, neonatal/postneonatal rates,
        deaths by GA band.
    targets_hash : str
        Hash of the packaged targets, and of the user's file when given.
    targets_file : str or None
        The user's targets CSV, if any.
    user_rows : int
        Rows of the user's file that were used.
    notes : list of str
        What was ignored or approximated.
    closure : float
        Factor applied to the national race IMRs so their deaths sum to the states' (1: none).
    single_years : pandas.DataFrame
        Every single-year row of the user's file: ``row, state, race, year, status, reason``
        (``used`` / ``replaced`` / ``ignored`` and why); empty without a user file.
    national_year : pandas.DataFrame
        The user's national single years (``year, deaths, births, value``): they replace or
        extend the trend model's national series.
    """

    births: np.ndarray                 # [51, 5] pooled 2013-2015 births used by the fit
    cell: pd.DataFrame                 # one row per state x race with an observed IMR
    state: pd.DataFrame                # state all-race IMR rows
    race: pd.DataFrame                 # national race IMR rows (+ race ALL)
    imr_year: pd.DataFrame             # state x year IMR (back-test)
    preterm: pd.DataFrame
    suid: pd.DataFrame
    nmr_pnmr: pd.DataFrame
    ga_share: pd.DataFrame
    targets_hash: str
    targets_file: str | None = None
    user_rows: int = 0
    notes: list = field(default_factory=list)
    closure: float = 1.0
    single_years: pd.DataFrame | None = None   # every single-year user row: status and why
    national_year: pd.DataFrame | None = None  # user national single years (trend model)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _packaged_targets() -> pd.DataFrame:
    from imsim.inputs.data import load_table

    return load_table("targets")


def _packaged_targets_hash() -> str:
    from importlib import resources

    return _sha(resources.files("imsim.inputs.data").joinpath("targets.csv").read_bytes())


def _poisson_interval(deaths, births, rounding=0.0):
    """Exact (Garwood) 95% interval of a rate per 1,000 from deaths and births."""
    from scipy.stats import chi2

    d = np.asarray(deaths, float)
    b = np.asarray(births, float)
    lo = np.where(d > 0, chi2.ppf(0.025, 2 * d) / 2, 0.0)
    hi = chi2.ppf(0.975, 2 * (d + 1)) / 2
    return 1000 * lo / b - rounding, 1000 * hi / b + rounding


def load_observations(targets_file: str | os.PathLike | None = None,
                      settings: dict | None = None) -> Observations:
    """Read the packaged targets (and a user targets CSV from ``imsim data import-wonder``).

    User rows (measure ``imr``) for 2013-2015 replace the packaged IMR of the cells they cover
    (state x race, state ALL, national race); single years 2013, 2014 and 2015 of one cell are
    pooled when the pooled row is absent; all-race single years from :data:`FIRST_SERIES_YEAR` of
    a state or the nation replace or extend the trend model's series (``imr_year``,
    ``national_year``; each single-year row's fate is in ``single_years``); ``births`` rows (2013-2015 pooled or the three single years) replace the births
    the fit weights that cell by. A ``suppressed``/``missing`` IMR row removes the cell's packaged
    value (the cell is then estimated from pooling and its state total). Other periods are
    ignored with a note. Errors raise :class:`InputError` naming file and row; nothing is written.

    Parameters
    ----------
    targets_file : str or path, optional
        A user targets CSV (default: the packaged targets only).
    settings : dict, optional
        Overrides of :data:`DEFAULT_SETTINGS` (measurement sds, closure).

    Returns
    -------
    Observations
        The targets on the 51 x 5 grid.

    Raises
    ------
    InputError
        For an invalid targets file, or one with no usable rows.
    """
    from imsim.inputs.baseline import get_baseline

    st = {**DEFAULT_SETTINGS, **(settings or {})}
    t = _packaged_targets()
    t["source_tier"] = t["source_tier"].astype(float)
    births = get_baseline().pooled_cells().births.reshape(N_S, N_R).astype(float)
    period = f"{BASE_PERIOD[0]}-{BASE_PERIOD[1]}"
    imr = t[(t["target"] == "imr") & (t["period"].astype(str) == period)].copy()
    imr["origin"] = "packaged"
    imr_year = t[t["target"] == "imr_year"].copy()
    imr_year["year"] = imr_year["period"].astype(int)
    imr_year["origin"] = "packaged"
    hashes = [_packaged_targets_hash()]
    notes: list[str] = []
    user_rows = 0
    single_years = pd.DataFrame(columns=["row", "state", "race", "year", "status", "reason"])
    national_year = pd.DataFrame(columns=["year", "deaths", "births", "value"])
    if targets_file is not None:
        path = Path(targets_file)
        from imsim.inputs.wonder import validate_targets

        user = validate_targets(str(path))   # a missing file, a folder, a FIFO: one line
        user["row"] = np.arange(len(user)) + 2
        hashes.append(_sha(path.read_bytes()))
        imr, imr_year, births, notes, user_rows, single_years, national_year = \
            _apply_user_targets(user, str(path), imr, imr_year, births)
    cell = imr[(imr["state"] != ALL) & (imr["race"] != ALL)].copy()
    state = imr[(imr["state"] != ALL) & (imr["race"] == ALL)].copy()
    race = imr[imr["state"] == ALL].copy()

    def extra_sd(df):
        tier = df["source_tier"].to_numpy(float)
        val = df["value"].to_numpy(float)
        rnd = np.where(tier >= 3, 0.05, 0.005) / math.sqrt(3.0)
        t3 = np.where(tier >= 3, np.hypot(st["tier3_sd"], st["tier3_rel_sd"] * val), 0.0)
        nat = (df["state"] == ALL).to_numpy()
        t2 = np.where(tier == 2, np.where(nat, st["national_sd"], st["derived_sd"]), 0.0)
        return np.sqrt(rnd**2 + t3**2 + t2**2)

    for df in (cell, state, race):
        df["fit_value"] = df["value"] + np.where(df["source_tier"] >= 3, st["tier3_bias"], 0.0)
        df["meas_sd"] = extra_sd(df) if len(df) else []
    closure = 1.0
    if st["close_national"] and len(state) == N_S:
        rr = race[race["race"].isin(RACES)]
        if len(rr) == N_R:
            tot_s = float(np.sum(state["fit_value"].to_numpy(float) * _group_births(state, births)))
            tot_r = float(np.sum(rr["fit_value"].to_numpy(float) * _group_births(rr, births)))
            closure = tot_s / tot_r
            race["fit_value"] = np.where(race["race"].isin(RACES), race["fit_value"] * closure,
                                         race["fit_value"])
            notes.append(f"national race IMRs scaled by {closure:.4f} so that their deaths add up to "
                         "the state totals (the five groups do not close: births of mothers of "
                         "other or unknown race are allocated to them)")
    for df in (state, race):
        # closure variance kappa * deaths, as an sd per 1,000 of the group's births
        b = _group_births(df, births)
        d = df["value"].to_numpy(float) * b / 1000.0
        df["meas_sd"] = np.sqrt(df["meas_sd"].to_numpy(float) ** 2
                                + st["closure_kappa"] * d / np.maximum(b / 1000.0, 1e-9) ** 2)
    # 95% interval of the observation: its own (Poisson + rounding) interval, widened by the
    # secondary-source uncertainty for tier-3 values (REPORT: +-0.4 per 1,000).
    for df in (cell, state, race):
        if not len(df):
            continue
        val = df["value"].to_numpy(float)
        lo = df["lo"].to_numpy(float)
        hi = df["hi"].to_numpy(float)
        w = np.where(df["source_tier"] >= 3, Z95 * np.hypot(st["tier3_sd"], st["tier3_rel_sd"] * val), 0.0)
        df["poisson_lo"], df["poisson_hi"] = lo, hi
        df["obs_lo"] = val - np.hypot(val - lo, w)
        df["obs_hi"] = val + np.hypot(hi - val, w)
    return Observations(
        births=births, cell=cell.reset_index(drop=True), state=state.reset_index(drop=True),
        race=race.reset_index(drop=True), imr_year=imr_year.reset_index(drop=True),
        preterm=t[t["target"] == "preterm_rate"].reset_index(drop=True),
        suid=t[t["target"] == "suid_rate"].reset_index(drop=True),
        nmr_pnmr=t[t["target"].isin(["nmr", "pnmr"])].reset_index(drop=True),
        ga_share=t[t["target"] == "ga_death_share"].reset_index(drop=True),
        targets_hash=_sha("|".join(hashes).encode()) if len(hashes) > 1 else hashes[0],
        targets_file=None if targets_file is None else str(targets_file),
        user_rows=user_rows, notes=notes, closure=closure, single_years=single_years,
        national_year=national_year.reset_index(drop=True))


def _group_births(df, births):
    out = np.zeros(len(df))
    for i, (s, r) in enumerate(zip(df["state"], df["race"])):
        if s != ALL:
            out[i] = births[S_INDEX[s]].sum()
        elif r in R_INDEX:
            out[i] = births[:, R_INDEX[r]].sum()
        else:
            out[i] = births.sum()
    return out


def _apply_user_targets(user, name, imr, imr_year, births):
    notes = []
    used = 0
    births = births.copy()
    y0, y1 = BASE_PERIOD
    base_years = set(range(y0, y1 + 1))
    for col in ("rate", "deaths", "births"):
        user[col] = pd.to_numeric(user[col], errors="coerce")
    # pool single years 2013, 2014, 2015 of a cell when no pooled row exists
    rows = []
    pooled_keys = {(r.state, r.race, r.measure) for r in user.itertuples()
                   if r.year_start == y0 and r.year_end == y1}
    singles = user[(user["year_start"] == user["year_end"]) & user["year_start"].isin(base_years)]
    for (s, r, meas), g in singles.groupby(["state", "race", "measure"], sort=False):
        if (s, r, meas) in pooled_keys or set(g["year_start"]) != base_years:
            continue
        ok = g["flag"].isin(["ok", "unreliable"]).all()
        deaths = g["deaths"].sum() if g["deaths"].notna().all() else np.nan
        b = g["births"].sum() if g["births"].notna().all() else np.nan
        rate = 1000 * deaths / b if ok and b > 0 and deaths == deaths else np.nan
        rows.append({"state": s, "race": r, "year_start": y0, "year_end": y1, "measure": meas,
                     "deaths": deaths, "births": b, "rate": rate,
                     "flag": "ok" if ok else "suppressed", "row": int(g["row"].min())})
    if rows:
        user = pd.concat([user, pd.DataFrame(rows)], ignore_index=True)
    pooled_from_singles = {(r_["state"], r_["race"], r_["measure"]) for r_ in rows}
    imr = imr.set_index(["state", "race"], drop=False)
    new_year_rows = []
    national_rows = []
    ledger = []
    from imsim.inputs.data import load_table

    # The packaged single-year tables of the trend model (imsim.calibration.series / .trend),
    # read directly: the calibration modules above this one import it.
    series_keys = set(zip(imr_year["state"], imr_year["year"].astype(int)))
    old = load_table("state_imr_series")
    series_keys |= set(zip(old["state"], old["year"].astype(int)))
    national_years = set(load_table("national_imr_series")["year"].astype(int))
    for r in user.itertuples():
        where = f"row {r.row}"
        pooled = r.year_start == y0 and r.year_end == y1
        if r.measure == "births":
            if pooled and r.state != ALL and r.race != ALL and r.births == r.births:
                if r.births <= 0:
                    raise InputError("births must be positive for a fitted cell", file=name, where=where)
                births[S_INDEX[r.state], R_INDEX[r.race]] = float(r.births)
                used += 1
            elif r.year_start == r.year_end:
                y = int(r.year_start)
                pooled_b = y in base_years and (r.state, r.race, r.measure) in pooled_from_singles
                ledger.append((r.row, r.state, r.race, y, "used" if pooled_b else "ignored",
                               f"births pooled into {y0}-{y1}" if pooled_b else
                               "a births-only row: the trend model takes births with deaths "
                               "(measure imr rows); births of other years come from the "
                               "packaged tables"))
            continue
        # measure imr
        if pooled:
            if r.flag in ("suppressed", "missing") or r.rate != r.rate:
                if (r.state, r.race) in imr.index:
                    imr = imr.drop(index=(r.state, r.race))
                notes.append(f"{name} {where}: {r.state} {r.race} {r.flag}; packaged value dropped")
                used += 1
                continue
            b = r.births if r.births == r.births and r.births > 0 else np.nan
            d = r.deaths if r.deaths == r.deaths else (r.rate * b / 1000 if b == b else np.nan)
            if b == b and d == d:
                lo, hi = _poisson_interval(d, b, 0.0005)
            else:
                lo, hi = r.rate * 0.9, r.rate * 1.1
                notes.append(f"{name} {where}: no deaths/births; assumed +-10% interval")
            rec = {"target": "imr", "state": r.state, "race": r.race, "period": f"{y0}-{y1}",
                   "value": float(r.rate), "unit": "per 1,000 live births", "deaths": d,
                   "births": b, "lo": float(lo), "hi": float(hi), "source_tier": 1.0,
                   "source": f"user targets {name}", "note": f"{name} {where} ({r.flag})",
                   "origin": "user"}
            if (r.state, r.race) in imr.index:
                imr = imr.drop(index=(r.state, r.race))
            imr = pd.concat([imr, pd.DataFrame([rec]).set_index(["state", "race"], drop=False)])
            used += 1
        elif r.year_start == r.year_end:
            y = int(r.year_start)
            key = (r.state, r.race, r.measure)
            ok_flag = r.flag in ("ok", "unreliable") and r.rate == r.rate
            if y in base_years and key in pooled_from_singles:
                ledger.append((r.row, r.state, r.race, y, "used",
                               f"pooled with the other {y0}-{y1} single years into the "
                               f"{y0}-{y1} level of the cell"))
                continue
            if not ok_flag:
                ledger.append((r.row, r.state, r.race, y, "ignored",
                               f"flag '{r.flag}' (no rate): a suppressed or missing year cannot "
                               "inform the trend"))
                continue
            if y < FIRST_SERIES_YEAR:
                ledger.append((r.row, r.state, r.race, y, "ignored",
                               f"before {FIRST_SERIES_YEAR}, where the trend model's series "
                               "starts"))
                continue
            if r.race != ALL:
                ledger.append((r.row, r.state, r.race, y, "ignored",
                               "a single year of one race: the trend model's series are state "
                               "all-race and national; race trends come from the national race "
                               "blocks (give all three of " f"{y0}-{y1} to set the cell's level)"))
                continue
            b = r.births if r.births == r.births and r.births > 0 else np.nan
            d = r.deaths if r.deaths == r.deaths else (r.rate * b / 1000 if b == b else np.nan)
            if not (b == b and d == d):
                ledger.append((r.row, r.state, r.race, y, "ignored",
                               "no deaths and births: the trend model weights a year by its "
                               "deaths"))
                continue
            lo, hi = _poisson_interval(d, b, 0.005)
            rec = {"target": "imr_year", "state": r.state, "race": ALL, "period": str(y),
                   "year": y, "value": float(r.rate), "deaths": d, "births": b,
                   "lo": float(lo), "hi": float(hi), "source_tier": 1.0, "origin": "user",
                   "source": f"user targets {name}", "note": f"{name} {where}"}
            if r.state == ALL:
                replaced = y in national_years
                national_rows.append(rec)
                ledger.append((r.row, r.state, r.race, y, "replaced" if replaced else "used",
                               ("replaces the packaged national value of the year"
                                if replaced else "adds a year to the national series")
                               + " (national level of the trend model)"))
            else:
                replaced = (r.state, y) in series_keys
                new_year_rows.append(rec)
                ledger.append((r.row, r.state, r.race, y, "replaced" if replaced else "used",
                               ("replaces the packaged value of this state-year"
                                if replaced else "adds a year to the state's series")
                               + " (state trend of the trend model; back-test)"))
            used += 1
        else:
            notes.append(f"{name} {where}: {r.measure} {r.state} {r.race} "
                         f"{r.year_start}-{r.year_end} not used (the fit uses {y0}-{y1} cells "
                         "and single-year totals)")
    # A state's year is measured against the national level of that year: without a national
    # value (packaged through 2023, or the user's own national row) it cannot inform the trend.
    have_nat = national_years | {int(r_["year"]) for r_ in national_rows}
    for i, (row_, st_, race_, y_, status_, _) in enumerate(ledger):
        if st_ != ALL and race_ == ALL and status_ in ("used", "replaced") \
                and y_ not in have_nat:
            ledger[i] = (row_, st_, race_, y_, "ignored",
                         f"no national value for {y_} (the packaged national series ends in "
                         f"{max(national_years)}): add the national (state ALL) row of {y_}")
            used -= 1
    new_year_rows = [r_ for r_ in new_year_rows if r_["year"] in have_nat]
    if new_year_rows:
        ny = pd.DataFrame(new_year_rows)
        keys = set(zip(ny["state"], ny["year"]))
        keep = [(s, y) not in keys for s, y in zip(imr_year["state"], imr_year["year"])]
        imr_year = pd.concat([imr_year[keep], ny], ignore_index=True)
    if used == 0:
        raise InputError("no usable rows: the file needs measure 'imr' rows for 2013-2015 "
                         "(state x race, state ALL or national race), single years from "
                         f"{FIRST_SERIES_YEAR} by state or national, or 2013-2015 'births' rows",
                         file=name)
    ledger = pd.DataFrame(ledger, columns=["row", "state", "race", "year", "status", "reason"])
    national = pd.DataFrame(national_rows, columns=["year", "deaths", "births", "value"]
                            if not national_rows else None)
    return imr.reset_index(drop=True), imr_year, births, notes, used, ledger, national


def rate_data(obs: Observations) -> RateData:
    """Return the rate model's inputs as plain arrays.

    Parameters
    ----------
    obs : Observations
        The observations.

    Returns
    -------
    RateData
        ``[51, 5]`` cell IMRs (NaN where none), ``[51]`` state and ``[5]`` national race IMRs
        with their measurement sds, per 1,000 live births.
    """
    y = np.full((N_S, N_R), np.nan)
    sd = np.zeros((N_S, N_R))
    for r in obs.cell.itertuples():
        y[S_INDEX[r.state], R_INDEX[r.race]] = r.fit_value
        sd[S_INDEX[r.state], R_INDEX[r.race]] = r.meas_sd
    srate = np.full(N_S, np.nan)
    ssd = np.zeros(N_S)
    for r in obs.state.itertuples():
        srate[S_INDEX[r.state]] = r.fit_value
        ssd[S_INDEX[r.state]] = r.meas_sd
    rrate = np.full(N_R, np.nan)
    rsd = np.zeros(N_R)
    for r in obs.race.itertuples():
        if r.race in R_INDEX:
            rrate[R_INDEX[r.race]] = r.fit_value
            rsd[R_INDEX[r.race]] = r.meas_sd
    return RateData(obs.births, y, sd, srate, ssd, rrate, rsd)
