"""Result tables people decide on (written to a results folder by :mod:`imsim.output.runfolder`).

Every table is built from the per-cell counts of both arms for each draw. Draw 0 (point values of
the evidence) gives the headline columns; ``_lo``/``_hi`` columns are the 2.5th/97.5th
percentiles over the uncertainty draws, computed on *paired* differences (both arms of a draw share
effects, fit and random numbers). With ``replicates: 1`` there are no draws and the interval
columns are empty.

Every quantity with an interval also has a ``_median`` column: the median of the same paired draws
1..R, so it always lies inside ``[_lo, _hi]`` (the point, draw 0 at the evidence point values, need
not: the effect of a draw is not linear in the evidence). The headline of a run is the median with
its interval when ``interval_reliable`` (at least :data:`MIN_INTERVAL_DRAWS` draws), otherwise the
point with no interval (:func:`headline`).

Output columns are a documented interface (README "Outputs"); add columns, never rename them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, CAUSES, DATA_YEARS, GA_BANDS, RACES, STATES, STRATEGIES
from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS

SUMMARY_COLUMNS = [
    "state", "race", "births", "deaths_baseline", "deaths_scenario", "deaths_averted",
    "deaths_averted_lo", "deaths_averted_hi", "imr_baseline", "imr_scenario", "imr_change_pct",
    "preterm_baseline", "preterm_scenario", "preterm_averted", "deaths_at_white_rate",
    "deaths_at_best_state_rate", "gap_closed_pct", "gap_closed_pct_lo", "gap_closed_pct_hi",
    "deaths_averted_median", "gap_closed_pct_median", "interval_reliable",
    "imr_baseline_lo", "imr_baseline_hi", "imr_baseline_median",
]
BY_CAUSE_COLUMNS = ["cause", "ga_band", "deaths_baseline", "deaths_scenario", "deaths_averted",
                    "deaths_averted_lo", "deaths_averted_hi", "deaths_averted_median",
                    "interval_reliable"]
DISPARITY_COLUMNS = [
    "state", "race", "rate_ratio_baseline", "rate_ratio_scenario", "rate_ratio_scenario_lo",
    "rate_ratio_scenario_hi", "rate_difference_baseline", "rate_difference_scenario",
    "rate_difference_scenario_lo", "rate_difference_scenario_hi", "excess_deaths_baseline",
    "excess_deaths_scenario", "excess_deaths_scenario_lo", "excess_deaths_scenario_hi",
    "rate_difference_change", "rate_difference_change_lo", "rate_difference_change_hi",
    "gap_closed_pct", "gap_closed_pct_lo", "gap_closed_pct_hi",
]
PRETERM_BANDS = 4  # <28, 28-31, 32-33, 34-36

#: Fewest uncertainty draws for which a 95% interval (2.5th-97.5th percentiles) is shown. With
#: R draws the 2.5th percentile is interpolated between the lowest ceil(0.025 R) draws; below 40
#: draws (one draw beyond each end) it is set by the single most extreme draw, so the interval is
#: not reported (the ``_lo``/``_hi`` columns keep their values, flagged ``interval_reliable``).
MIN_INTERVAL_DRAWS = 40


def n_draws(result) -> int:
    """Number of uncertainty draws of a run (0 with ``replicates: 1``; draw 0 not counted)."""
    return max(int(result.arms.baseline.shape[0]) - 1, 0)


def interval_reliable(result) -> bool:
    """True when the run has at least :data:`MIN_INTERVAL_DRAWS` uncertainty draws."""
    return n_draws(result) >= MIN_INTERVAL_DRAWS


def interval_note(result) -> str:
    """One line saying why no interval is shown ('' when it is)."""
    d = n_draws(result)
    if d >= MIN_INTERVAL_DRAWS:
        return ""
    if d == 0:
        return "interval not shown: no uncertainty draws (replicates: 1)"
    return (f"interval not shown: {d} draws are too few for a 95% interval, "
            f"at least {MIN_INTERVAL_DRAWS} are needed")


def headline(result, row) -> dict:
    """The headline deaths averted of a ``summary`` row, its interval and the statistic named.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        The run.
    row : mapping
        A row of the ``summary`` (or ``by_year``) table.

    Returns
    -------
    dict
        ``value`` (the median of the paired draws when the interval is reliable, else the point),
        ``statistic`` (``"median"`` or ``"point"``), ``lo``/``hi`` (None when not shown),
        ``point``, ``median``, ``draws``, ``interval_reliable`` and ``note`` (why no interval).
    """
    ok = interval_reliable(result)

    def num(x):
        x = float(x)
        return None if x != x else x

    return {"value": num(row["deaths_averted_median"] if ok else row["deaths_averted"]),
            "statistic": "median" if ok else "point",
            "lo": num(row["deaths_averted_lo"]) if ok else None,
            "hi": num(row["deaths_averted_hi"]) if ok else None,
            "point": num(row["deaths_averted"]), "median": num(row["deaths_averted_median"]),
            "draws": n_draws(result), "interval_reliable": ok, "note": interval_note(result)}


def _med(x, axis=0):
    """Median over the uncertainty draws (draws 1..R), or NaN: the headline inside ``_q``."""
    if x.shape[axis] <= 1:
        shape = list(x.shape)
        del shape[axis]
        return np.full(shape, np.nan)
    return np.median(np.take(x, np.arange(1, x.shape[axis]), axis=axis), axis=axis)


def _med_defined(x):
    """Like :func:`_med` over axis 0, ignoring undefined draws (as :func:`_q_defined`)."""
    out = np.full(x.shape[1:], np.nan)
    if x.shape[0] <= 1:
        return out
    ok = np.isfinite(x[1:]).any(axis=0) & np.isfinite(x[0])
    if ok.any():
        out[ok] = np.nanmedian(x[1:][:, ok], axis=0)
    return out


def _add_medians(df: pd.DataFrame, medians: dict, result) -> pd.DataFrame:
    """Append ``<name>_median`` columns and the ``interval_reliable`` flag (new columns only)."""
    for name, m in medians.items():
        df[f"{name}_median"] = m
    df["interval_reliable"] = interval_reliable(result)
    return df


def _q(x, axis=0):
    """2.5th and 97.5th percentiles over the uncertainty draws (draws 1..R), or NaN."""
    if x.shape[axis] <= 1:
        shape = list(x.shape)
        del shape[axis]
        nan = np.full(shape, np.nan)
        return nan, nan
    draws = np.take(x, np.arange(1, x.shape[axis]), axis=axis)
    return np.percentile(draws, 2.5, axis=axis), np.percentile(draws, 97.5, axis=axis)


def _groups(result, by_year: bool = False):
    """Row keys and cell indices: each state x race, state x ALL, ALL x race, ALL x ALL."""
    cells = result.inputs.cells
    st = np.asarray(STATES)[cells.s_idx]
    rc = np.asarray(RACES)[cells.r_idx]
    yr = cells.year
    keys, idx = [], []
    years = sorted(set(yr.tolist())) if by_year else [None]
    states = [s for s in STATES if s in set(st)]
    for y in years:
        ymask = np.ones(cells.n, bool) if y is None else yr == y
        for s in states + [ALL]:
            smask = ymask & ((st == s) if s != ALL else True)
            for r in list(RACES) + [ALL]:
                mask = smask & ((rc == r) if r != ALL else True)
                k = {"state": s, "race": r}
                if y is not None:
                    k = {"year": y, **k}
                keys.append(k)
                idx.append(np.flatnonzero(mask))
    return keys, idx


def _agg(arr, idx):
    """Sum ``arr[D, n, K]`` over the cells of each group -> [D, G, K]."""
    return np.stack([arr[:, i, :].sum(axis=1) for i in idx], axis=1)


def _births(c):
    return c[..., OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=-1)


def _deaths(c):
    return c[..., OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=-1)


def _preterm(c):
    return c[..., OUT_BIRTHS:OUT_BIRTHS + PRETERM_BANDS].sum(axis=-1)


def _rate(deaths, births):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(births > 0, 1000.0 * deaths / births, np.nan)


def _summary(result, by_year=False) -> pd.DataFrame:
    keys, idx = _groups(result, by_year)
    b = _agg(result.arms.baseline, idx)
    s = _agg(result.arms.scenario, idx)
    births = _births(b)
    db, ds = _deaths(b), _deaths(s)
    averted = db - ds
    lo, hi = _q(averted)
    df = pd.DataFrame(keys)
    df["births"] = np.round(births[0]).astype(np.int64)
    df["deaths_baseline"] = db[0]
    df["deaths_scenario"] = ds[0]
    df["deaths_averted"] = averted[0]
    df["deaths_averted_lo"] = lo
    df["deaths_averted_hi"] = hi
    df["imr_baseline"] = _rate(db[0], births[0])
    df["imr_scenario"] = _rate(ds[0], births[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        df["imr_change_pct"] = np.where(db[0] > 0, 100.0 * (ds[0] - db[0]) / db[0], np.nan)
    # The baseline IMR's own interval: calibration posterior, trend (projection) uncertainty
    # and, with the microsim, Monte Carlo noise -- what an observed rate is compared with.
    imr_b = _rate(db, births)
    pb, ps = _preterm(b), _preterm(s)
    df["preterm_baseline"] = pb[0]
    df["preterm_scenario"] = ps[0]
    df["preterm_averted"] = pb[0] - ps[0]
    df["imr_baseline_lo"], df["imr_baseline_hi"] = _q_defined(imr_b)
    if not by_year:
        white = _white_rate_deaths(result, keys, idx)
        df["deaths_at_white_rate"] = white
        best = _best_state_imr(result)
        df["deaths_at_best_state_rate"] = births[0] * best / 1000.0
        rb, rs = _rate(db, births), _rate(ds, births)          # [D, G]
        pos = {(k["state"], k["race"]): g for g, k in enumerate(keys)}
        w = np.array([pos[(k["state"], "nh_white")] for k in keys])
        pct = gap_closed_pct(rb - rb[:, w], rs - rs[:, w])
        pct[:, np.array([k["race"] == "nh_white" for k in keys])] = np.nan
        lo, hi = _q_defined(pct)
        df["gap_closed_pct"] = pct[0]
        df["gap_closed_pct_lo"] = lo
        df["gap_closed_pct_hi"] = hi
        df = _add_medians(df, {"deaths_averted": _med(averted),
                               "gap_closed_pct": _med_defined(pct),
                               "imr_baseline": _med_defined(imr_b)}, result)
        return df[SUMMARY_COLUMNS]
    # Rates of years after the latest data year are projected (trend model), as are births.
    df["projected"] = df["year"] > max(DATA_YEARS)
    return _add_medians(df, {"deaths_averted": _med(averted),
                             "imr_baseline": _med_defined(imr_b)}, result)


def gap_closed_pct(rd_baseline, rd_scenario) -> np.ndarray:
    """Share of the baseline rate difference that the scenario closes, in percent.

    ``100 * (RD_baseline - RD_scenario) / RD_baseline``, with RD a group's IMR minus the NH
    white IMR (per 1,000; same state, or national for ``state=ALL``) in each arm; NaN where
    ``RD_baseline <= 0`` (no gap to close). A scenario that lowers both rates by the same amount
    closes 0%; one that widens the gap gives a negative share.

    Parameters
    ----------
    rd_baseline, rd_scenario : array_like of float
        Rate differences of the same groups (and draws), per 1,000 live births.

    Returns
    -------
    numpy.ndarray
        float64, the broadcast shape.
    """
    rd_b = np.asarray(rd_baseline, dtype=float)
    rd_s = np.asarray(rd_scenario, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rd_b > 0, 100.0 * (rd_b - rd_s) / rd_b, np.nan)


def _q_defined(x):
    """Like :func:`_q` over axis 0, ignoring the draws where ``x`` is NaN (no positive gap).

    NaN where the point (draw 0) is NaN or no draw is defined.
    """
    if x.shape[0] <= 1:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan
    draws = x[1:]
    ok = np.isfinite(draws).any(axis=0) & np.isfinite(x[0])
    lo = np.full(x.shape[1:], np.nan)
    hi = np.full(x.shape[1:], np.nan)
    if ok.any():
        lo[ok] = np.nanpercentile(draws[:, ok], 2.5, axis=0)
        hi[ok] = np.nanpercentile(draws[:, ok], 97.5, axis=0)
    return lo, hi


def _white_rate_deaths(result, keys, idx) -> np.ndarray:
    """Deaths if every group had its own state's NH white baseline rate (point draw)."""
    cells = result.inputs.cells
    base = result.arms.baseline[0]
    births = _births(base)
    deaths = _deaths(base)
    w = RACES.index("nh_white")
    white_rate = {}
    for s in np.unique(cells.s_idx):
        sel = (cells.s_idx == s) & (cells.r_idx == w)
        white_rate[s] = deaths[sel].sum() / births[sel].sum() if births[sel].sum() > 0 else np.nan
    per_cell = births * np.array([white_rate[s] for s in cells.s_idx])
    return np.array([np.nansum(per_cell[i]) for i in idx])


def _best_state_imr(result) -> float:
    """The lowest all-race baseline IMR of the 51 jurisdictions over the run's years (fitted
    model with its trend, point values, projected births), whatever the run's states."""
    from imsim.inputs.fit import expected_deaths

    inputs = result.inputs
    cells = inputs.baseline.cells(sorted({int(y) for y in inputs.cells.year}))
    from imsim.inputs.fit import fit_for

    effects = result.effects[0]
    fit = fit_for(inputs.baseline, effects, inputs.calibration)
    d = expected_deaths(inputs.baseline, cells, effects, fit).sum(axis=0)
    per_state = np.bincount(cells.s_idx, d, minlength=len(STATES))
    births = np.bincount(cells.s_idx, cells.births, minlength=len(STATES))
    return float(np.min(1000.0 * per_state / births))


def _by_cause(result) -> pd.DataFrame:
    b = result.arms.baseline.sum(axis=1)   # [D, K]
    s = result.arms.scenario.sum(axis=1)
    rows = []
    for ci, cause in enumerate(CAUSES):
        for bi, band in enumerate(GA_BANDS):
            k = OUT_DEATHS + ci * N_BANDS + bi
            av = b[:, k] - s[:, k]
            lo, hi = _q(av[:, None])
            rows.append({"cause": cause, "ga_band": band, "deaths_baseline": b[0, k],
                         "deaths_scenario": s[0, k], "deaths_averted": av[0],
                         "deaths_averted_lo": lo[0], "deaths_averted_hi": hi[0],
                         "deaths_averted_median": _med(av[:, None])[0],
                         "interval_reliable": interval_reliable(result)})
    return pd.DataFrame(rows, columns=BY_CAUSE_COLUMNS)


def _preterm_table(result) -> pd.DataFrame:
    keys, idx = _groups(result)
    b = _agg(result.arms.baseline, idx)
    s = _agg(result.arms.scenario, idx)
    births = _births(b)[0]
    pb, ps = _preterm(b), _preterm(s)
    lo, hi = _q(pb - ps)
    df = pd.DataFrame(keys)
    df["births"] = np.round(births).astype(np.int64)
    df["preterm_baseline"] = pb[0]
    df["preterm_scenario"] = ps[0]
    df["preterm_averted"] = pb[0] - ps[0]
    df["preterm_averted_lo"] = lo
    df["preterm_averted_hi"] = hi
    with np.errstate(invalid="ignore", divide="ignore"):
        df["preterm_rate_baseline_pct"] = np.where(births > 0, 100 * pb[0] / births, np.nan)
        df["preterm_rate_scenario_pct"] = np.where(births > 0, 100 * ps[0] / births, np.nan)
    return _add_medians(df, {"preterm_averted": _med(pb - ps)}, result)


def _disparities(result) -> pd.DataFrame:
    keys, idx = _groups(result)
    b = _agg(result.arms.baseline, idx)
    s = _agg(result.arms.scenario, idx)
    births = _births(b)                       # [D, G] (same in both arms)
    rb, rs = _rate(_deaths(b), births), _rate(_deaths(s), births)
    pos = {(k["state"], k["race"]): g for g, k in enumerate(keys)}
    rows = []
    for g, k in enumerate(keys):
        if k["race"] in ("nh_white", ALL):
            continue
        w = pos[(k["state"], "nh_white")]
        with np.errstate(invalid="ignore", divide="ignore"):
            rr_b, rr_s = rb[:, g] / rb[:, w], rs[:, g] / rs[:, w]
            rd_b, rd_s = rb[:, g] - rb[:, w], rs[:, g] - rs[:, w]
            ex_b = _deaths(b)[:, g] - births[:, g] * rb[:, w] / 1000.0
            ex_s = _deaths(s)[:, g] - births[:, g] * rs[:, w] / 1000.0
        row = {"state": k["state"], "race": k["race"],
               "rate_ratio_baseline": rr_b[0], "rate_ratio_scenario": rr_s[0],
               "rate_difference_baseline": rd_b[0], "rate_difference_scenario": rd_s[0],
               "excess_deaths_baseline": ex_b[0], "excess_deaths_scenario": ex_s[0],
               "rate_difference_change": rd_s[0] - rd_b[0]}
        for name, arr in (("rate_ratio_scenario", rr_s), ("rate_difference_scenario", rd_s),
                          ("excess_deaths_scenario", ex_s),
                          ("rate_difference_change", rd_s - rd_b)):
            lo, hi = _q(arr[:, None])
            row[f"{name}_lo"], row[f"{name}_hi"] = lo[0], hi[0]
            row[f"{name}_median"] = _med(arr[:, None])[0]
        pct = gap_closed_pct(rd_b, rd_s)
        lo, hi = _q_defined(pct[:, None])
        row["gap_closed_pct"], row["gap_closed_pct_lo"], row["gap_closed_pct_hi"] = \
            pct[0], lo[0], hi[0]
        row["gap_closed_pct_median"] = _med_defined(pct[:, None])[0]
        rows.append(row)
    medians = [f"{c[:-3]}_median" for c in DISPARITY_COLUMNS if c.endswith("_lo")]
    df = pd.DataFrame(rows, columns=DISPARITY_COLUMNS + medians)
    df["interval_reliable"] = interval_reliable(result)
    return df


def _coverage(result) -> pd.DataFrame:
    inputs = result.inputs
    if inputs.collaborative is not None:
        return inputs.collaborative.copy()
    cells = inputs.cells
    st = np.asarray(STATES)[cells.s_idx]
    rows = []
    for k in STRATEGIES:
        cov = inputs.coverage[k]
        if not np.any(cov > 0):
            continue
        df = pd.DataFrame({"year": cells.year, "state": st, "coverage": cov})
        g = df.groupby(["year", "state"], as_index=False)["coverage"].max()
        g["strategy"] = k
        rows.append(g)
    if not rows:
        return pd.DataFrame(columns=["year", "state", "strategy", "coverage"])
    return pd.concat(rows)[["year", "state", "strategy", "coverage"]].sort_values(
        ["year", "state", "strategy"]).reset_index(drop=True)


def build_table(result, name: str) -> pd.DataFrame:
    """Build one result table of a run (columns as in README "Outputs").

    Deaths and births are counts over the horizon; ``imr_*`` and ``rate_difference_*`` are per
    1,000 live births; ``*_pct`` are percentages; ``_lo``/``_hi`` the 2.5th/97.5th percentiles
    over draws 1..R (NaN without draws) and ``_median`` the median of the same draws;
    ``interval_reliable`` is False below :data:`MIN_INTERVAL_DRAWS` draws.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.
    name : str
        One of :data:`TABLES`: ``summary`` (per state x race, with ``ALL`` rows),
        ``by_year``, ``by_cause`` (cause x GA band, all cells), ``preterm``, ``disparities``
        (each race against the same state's non-Hispanic white rate), ``attribution``
        (Shapley deaths averted per strategy), ``coverage`` (year x state x strategy),
        ``decomposition`` (each group's gap to NH white split into GA distribution and
        GA-specific mortality) or ``periods_of_risk`` (excess deaths by GA group x age at
        death); see :mod:`imsim.analysis.decomposition`.

    Returns
    -------
    pandas.DataFrame
        The table.

    Raises
    ------
    KeyError
        For an unknown ``name``.
    """
    if name == "summary":
        return _summary(result)
    if name == "by_year":
        return _summary(result, by_year=True)
    if name == "by_cause":
        return _by_cause(result)
    if name == "preterm":
        return _preterm_table(result)
    if name == "disparities":
        return _disparities(result)
    if name == "attribution":
        from imsim.analysis.attribution import attribution

        return attribution(result)
    if name == "coverage":
        return _coverage(result)
    if name == "decomposition":
        from imsim.analysis.decomposition import decomposition

        return decomposition(result)
    if name == "periods_of_risk":
        from imsim.analysis.decomposition import periods_of_risk

        return periods_of_risk(result)
    raise KeyError(name)


TABLES = ("summary", "by_year", "by_cause", "preterm", "disparities", "attribution", "coverage",
          "decomposition", "periods_of_risk")

