"""Back-test: forecast the state IMRs from several origins, against two naive forecasts.

For each forecast origin (default: fit through 2012 -> predict 2013-2017, fit through 2015 ->
predict 2016-2017) three forecasts of every state's observed all-race IMR are scored on the
single-year state series (:mod:`imsim.calibration.series`; no race dimension: the single-year
state data have none):

* ``predicted`` -- the trend model (:mod:`imsim.calibration.trend`) refitted on the series up to
  the origin: a local-level national model on the summed states and partially pooled state levels
  and slopes relative to it over the last 10 years; the same model (fitted through the latest
  data) moves every cell's rate in ``imsim run``. Its 95% interval combines the national level's
  forecast variance, the state's level and slope posterior, state-year noise and the Poisson noise
  of that year's deaths. Refitted at each origin, it is always a true forecast.
* ``naive`` (carry-forward) -- the mean observed rate of the last 3 years before the origin.
* ``trend`` (national trend only) -- carry-forward x exp(b (year - (origin - 1))), b the slope of
  an OLS fit of log(national IMR) on year over every series year up to the origin (national IMR =
  summed state deaths / births).

The naive forecasts' 95% intervals are Poisson intervals of the count: the 2.5% and 97.5%
quantiles of Poisson(forecast x births / 1000) over that year's births (they ignore the
forecast's own uncertainty, which favours nothing: they only make coverage comparable).

``backtest.csv``: one row per origin x state x year (plus a national ``ALL`` row per origin and
year, not scored): ``origin, horizon, state, year, births, observed, observed_lo, observed_hi,
predicted, predicted_lo, predicted_hi, error, rel_error, within_interval, model_in_sample,
naive, naive_lo, naive_hi, naive_error, naive_within, trend, trend_lo, trend_hi, trend_error,
trend_within`` (IMRs per 1,000 live births; errors = forecast - observed).
``backtest.json``: ``origins`` -> origin -> horizon blocks (whole horizon, each year, and the
model's out-of-sample years) with ``mae``, ``naive_mae``, ``trend_mae``, ``rmse``, ``bias``,
``coverage``, ``n`` (and the naive methods' rmse/bias/coverage), plus ``beats_naive`` and a
``verdict`` with its reason; the top-level ``all`` / year / ``national`` keys repeat the latest
origin in the old layout. ``backtest.png``: errors by origin and method.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, STATES
from imsim.core.folders import atomic_file
from imsim.core.streams import generator

N_S = len(STATES)


@dataclass
class BacktestResult:
    """A back-test: one row per state (and ``ALL``) and year, and its summary metrics.

    Attributes
    ----------
    table : pandas.DataFrame
        The ``backtest.csv`` columns (module docstring).
    metrics : dict
        See :func:`metrics`.
    """

    table: pd.DataFrame
    metrics: dict

    def save(self, folder) -> None:
        """Write ``backtest.csv``, ``backtest.png`` and ``backtest.json`` into ``folder``.

        Each file is written atomically (replacing an earlier back-test's file in one step), so a
        calibration folder never holds a truncated back-test.

        Parameters
        ----------
        folder : str or path
            An existing folder (usually the calibration folder).
        """
        folder = Path(folder)
        with atomic_file(folder / "backtest.csv") as tmp:
            self.table.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_file(folder / "backtest.png") as tmp:
            plot_backtest(self.table, tmp, self.metrics)
        with atomic_file(folder / "backtest.json") as tmp:
            tmp.write_text(json.dumps(self.metrics, indent=2) + "\n", encoding="utf-8")


DEFAULT_ORIGINS = (2012, 2015)
CARRY_YEARS = 3
METHODS = (("predicted", "model"), ("naive", "carry-forward"), ("trend", "national trend"))


def error_metrics(observed, forecast, lo=None, hi=None) -> dict:
    """Return ``n``, ``mae``, ``rmse``, ``bias`` (mean forecast - observed) and ``coverage``.

    Parameters
    ----------
    observed, forecast : array-like
        Observed and forecast rates (pairs with a NaN are dropped).
    lo, hi : array-like, optional
        The forecast's 95% interval; ``coverage`` is the share of observations inside it
        (None without an interval).

    Returns
    -------
    dict
        Rounded to 4 decimals.
    """
    o = np.asarray(observed, float)
    f = np.asarray(forecast, float)
    ok = ~(np.isnan(o) | np.isnan(f))
    e = f[ok] - o[ok]
    out = {"n": int(ok.sum()),
           "mae": round(float(np.mean(np.abs(e))), 4) if ok.any() else None,
           "rmse": round(float(np.sqrt(np.mean(e ** 2))), 4) if ok.any() else None,
           "bias": round(float(np.mean(e)), 4) if ok.any() else None,
           "coverage": None}
    if lo is not None and hi is not None and ok.any():
        lo_, hi_ = np.asarray(lo, float)[ok], np.asarray(hi, float)[ok]
        out["coverage"] = round(float(np.mean((lo_ <= o[ok]) & (o[ok] <= hi_))), 4)
    return out


def national_trend(series: pd.DataFrame, origin: int) -> float:
    """Slope of log(national IMR) on year, fitted by OLS to the series years up to ``origin``.

    The national IMR of a year is the sum of the states' deaths over the sum of their births.
    """
    s = series[series["year"] <= origin]
    g = s.groupby("year")[["deaths", "births"]].sum()
    if len(g) < 2:
        raise ValueError(f"origin {origin}: the national trend needs two years, found {len(g)}")
    return float(np.polyfit(g.index.to_numpy(float), np.log(g["deaths"] / g["births"]), 1)[0])


def _poisson_band(rate, births):
    from scipy.stats import poisson

    mu = np.asarray(rate, float) * np.asarray(births, float) / 1000.0
    b = np.asarray(births, float)
    return 1000.0 * poisson.ppf(0.025, mu) / b, 1000.0 * poisson.ppf(0.975, mu) / b


def naive_forecasts(series: pd.DataFrame, origin: int, years=None) -> pd.DataFrame:
    """Carry-forward and national-trend forecasts of every state and year after ``origin``.

    Parameters
    ----------
    series : pandas.DataFrame
        ``state, year, deaths, births, observed`` (the observed IMR per 1,000), as
        :func:`imsim.calibration.series.state_series`.
    origin : int
        The last year the forecasts may see.
    years : sequence of int, optional
        Years to forecast (default: every series year after ``origin``).

    Returns
    -------
    pandas.DataFrame
        ``state, year, horizon, births, observed, observed_lo, observed_hi, naive, naive_lo,
        naive_hi, trend, trend_lo, trend_hi`` for the state-years observed after ``origin``
        (``observed_lo/hi`` only when the series has them).
    """
    past = series[(series["year"] <= origin) & (series["year"] > origin - CARRY_YEARS)]
    n_years = past.groupby("state")["year"].nunique()
    carry = past.groupby("state")["observed"].mean()[n_years == CARRY_YEARS]
    b = national_trend(series, origin)
    years = sorted(series.loc[series["year"] > origin, "year"].unique()) if years is None else years
    fut = series[series["year"].isin(list(years)) & series["state"].isin(carry.index)].copy()
    fut["horizon"] = fut["year"] - origin
    fut["naive"] = fut["state"].map(carry).to_numpy(float)
    fut["trend"] = fut["naive"] * np.exp(b * (fut["year"] - (origin - 1)))
    for m in ("naive", "trend"):
        fut[f"{m}_lo"], fut[f"{m}_hi"] = _poisson_band(fut[m], fut["births"])
    cols = ["state", "year", "horizon", "births", "observed", "observed_lo", "observed_hi",
            "naive", "naive_lo", "naive_hi", "trend", "trend_lo", "trend_hi"]
    return fut[[c for c in cols if c in fut.columns]].reset_index(drop=True)


def backtest(cal=None, origins=DEFAULT_ORIGINS, obs=None, effects=None, seed: int = 7,
             poisson_draws: int = 20, series: pd.DataFrame | None = None) -> BacktestResult:
    """Back-test a calibration from several forecast origins against carry-forward and trend.

    Parameters
    ----------
    cal : CalibratedTargets, optional
        The calibration (default: :func:`~imsim.calibration.targets.load_calibration`'s
        default fit).
    origins : sequence of int
        Forecast origins: each forecasts every later year of the series (model years need
        births in ``births.csv``).
    obs : Observations, optional
        Observed targets (default: those the calibration was fitted to); their ``imr_year`` rows
        are the series' 2013-2017.
    effects : dict of str to float, optional
        Effect values (default: the evidence point values).
    seed : int
        Seed of the model's Poisson noise (stream ``backtest``, keyed by year).
    poisson_draws : int
        Poisson draws per calibration posterior draw.
    series : pandas.DataFrame, optional
        The state series (default: :func:`imsim.calibration.series.state_series`).

    Returns
    -------
    BacktestResult
        The table (module docstring) and :func:`metrics`.
    """
    from imsim.calibration.observations import load_observations
    from imsim.calibration.series import state_series
    from imsim.calibration.targets import load_calibration

    if cal is None:
        cal = load_calibration()
    if obs is None:
        obs = load_observations(cal.meta.get("targets_file"))
    if series is None:
        series = state_series(obs)
    from imsim.calibration.trend import WINDOW, forecast_states

    parts = [(o, naive_forecasts(series, o)) for o in sorted(origins)]
    nat_obs = obs.imr_year[obs.imr_year["state"] == ALL].set_index("year")
    tables = []
    for origin, p in parts:
        # The trend model refitted on the series up to the origin (imsim.calibration.trend).
        fc = forecast_states(series, origin, sorted(p["year"].unique()), window=WINDOW)
        t = p.merge(fc[fc["state"] != ALL], on=["state", "year"], how="left")
        nat = fc[fc["state"] == ALL].copy()
        nat["births"] = nat["year"].map(series.groupby("year")["births"].sum())
        nat["observed"] = nat["year"].map(nat_obs["value"])
        nat["observed_lo"] = nat["year"].map(nat_obs["lo"])
        nat["observed_hi"] = nat["year"].map(nat_obs["hi"])
        nat["horizon"] = nat["year"] - origin
        t = pd.concat([t, nat], ignore_index=True)
        t.insert(0, "origin", origin)
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    table["model_in_sample"] = False          # refitted at every origin: always a true forecast
    for m, err, within in (("predicted", "error", "within_interval"),
                           ("naive", "naive_error", "naive_within"),
                           ("trend", "trend_error", "trend_within")):
        table[err] = table[m] - table["observed"]
        table[within] = (table[f"{m}_lo"] <= table["observed"]) & (
            table["observed"] <= table[f"{m}_hi"])
    table["rel_error"] = table["predicted"] / table["observed"] - 1
    cols = ["origin", "horizon", "state", "year", "births", "observed", "observed_lo",
            "observed_hi", "predicted", "predicted_lo", "predicted_hi", "error", "rel_error",
            "within_interval", "model_in_sample", "naive", "naive_lo", "naive_hi", "naive_error",
            "naive_within", "trend", "trend_lo", "trend_hi", "trend_error", "trend_within"]
    table = table[cols].sort_values(["origin", "year", "state"]).reset_index(drop=True)
    m = metrics(table)
    trend = getattr(cal, "trend", None)
    if trend is not None:
        from imsim.calibration.trend import region_check
        from imsim.inputs.data import load_table

        m["regions"] = region_check(trend, load_table("births"))
    return BacktestResult(table, m)


def _block(g: pd.DataFrame) -> dict:
    m = error_metrics(g["observed"], g["predicted"], g["predicted_lo"], g["predicted_hi"])
    nv = error_metrics(g["observed"], g["naive"], g["naive_lo"], g["naive_hi"])
    tr = error_metrics(g["observed"], g["trend"], g["trend_lo"], g["trend_hi"])
    out = {"years": f"{int(g.year.min())}-{int(g.year.max())}", "n": m["n"], "mae": m["mae"],
           "naive_mae": nv["mae"], "trend_mae": tr["mae"], "rmse": m["rmse"], "bias": m["bias"],
           "coverage": m["coverage"]}
    for k, d in (("naive", nv), ("trend", tr)):
        out.update({f"{k}_rmse": d["rmse"], f"{k}_bias": d["bias"],
                    f"{k}_coverage": d["coverage"]})
    out["model_in_sample"] = bool(g["model_in_sample"].any())
    return out


def _verdict(origin, full, oos, fit) -> tuple[bool, str]:
    beats = full["mae"] < full["naive_mae"]
    fit_s = f"{fit[0]}-{fit[1]}"
    if full["model_in_sample"]:
        why = (f" in-sample: the model is fitted to {fit_s}, inside this horizon (imsim "
               f"calibrate fits no earlier period), so this is not a true forecast")
        if oos:
            why += (f"; on the out-of-sample years {oos['years']} the model's MAE is "
                    f"{oos['mae']:.3f} vs carry-forward {oos['naive_mae']:.3f}")
    else:
        why = ""
    if beats and full["model_in_sample"]:
        return True, (f"origin {origin}: the model's MAE {full['mae']:.3f} is below carry-forward "
                      f"{full['naive_mae']:.3f} (national trend {full['trend_mae']:.3f}) only "
                      f"because it is{why}; this origin cannot judge the current model "
                      f"(it is for a model refitted through {origin})")
    if beats:
        return True, (f"origin {origin}: the model beats carry-forward (MAE {full['mae']:.3f} vs "
                      f"{full['naive_mae']:.3f}; national trend {full['trend_mae']:.3f}){why}")
    return False, (f"origin {origin}: the model does NOT beat carry-forward (MAE {full['mae']:.3f} "
                   f"vs {full['naive_mae']:.3f}; national trend {full['trend_mae']:.3f}): the "
                   f"trend model refitted through {origin} could not separate the states' real "
                   f"changes from noise in these years; longer state series or state x race "
                   f"single-year data would sharpen the pooled state slopes"
                   + (f"; also{why}" if why else ""))


def metrics(table: pd.DataFrame, model_fit=(2013, 2015)) -> dict:
    """Return the back-test metrics per origin and horizon block, and the old layout.

    Parameters
    ----------
    table : pandas.DataFrame
        A back-test table (:class:`BacktestResult`).
    model_fit : tuple of int
        First and last year of the model's fit period (for ``verdict``).

    Returns
    -------
    dict
        ``origins`` -> origin -> ``fit_through``, ``horizon``, ``beats_naive`` (model MAE below
        carry-forward over the whole horizon), ``model_in_sample`` (the model's fit period lies
        in the horizon: not a true forecast), ``verdict`` (the reason, in words),
        ``national_trend_per_year`` (the trend forecast's log slope), ``blocks`` -> block name (``"2013-2017"``, each year, ``"out_of_sample"``)
        -> ``n``, ``mae``, ``naive_mae``, ``trend_mae``, ``rmse``, ``bias``, ``coverage``
        (model; 95% interval) and ``naive_*`` / ``trend_*`` rmse, bias, coverage (Poisson
        interval of the count), over states only; ``race`` says why there is no race split.
        ``all``, each year and ``national``: the latest origin in the pre-origins layout
        (``states``, ``mae``, ``rmse``, ``mean_error``, ``births_weighted_mae``,
        ``mean_abs_rel_error``, ``coverage_95``, ``naive_mae``).
    """
    out = {"origins": {}, "race": "not scored: the single-year state series has no race "
                                  "dimension (state x race targets are 2013-2015 pooled only)",
           "naive_interval": "Poisson 95% interval of the count at the forecast rate and that "
                             "year's births"}
    st = table[table["state"] != ALL]
    for origin, g in st.groupby("origin"):
        ys = sorted(g["year"].unique())
        blocks = {f"{ys[0]}-{ys[-1]}": _block(g)}
        for y in ys:
            blocks[str(y)] = _block(g[g["year"] == y])
        oos = None
        if g["model_in_sample"].any() and not g["model_in_sample"].all():
            oos = blocks["out_of_sample"] = _block(g[~g["model_in_sample"]])
        full = blocks[f"{ys[0]}-{ys[-1]}"]
        beats, verdict = _verdict(int(origin), full, oos, model_fit)
        r = g.iloc[0]
        slope = np.log(r["trend"] / r["naive"]) / (r["year"] - (origin - 1))
        out["origins"][str(int(origin))] = {
            "fit_through": int(origin), "horizon": f"{ys[0]}-{ys[-1]}", "beats_naive": beats,
            "model_in_sample": full["model_in_sample"], "verdict": verdict, "national_trend_per_year": round(float(slope), 5),
            "blocks": blocks}
    last = table[table["origin"] == table["origin"].max()]
    st = last[last["state"] != ALL]
    for key, g in [("all", st)] + [(str(y), g) for y, g in st.groupby("year")]:
        e = g["error"].to_numpy(float)
        w = g["births"].to_numpy(float)
        out[key] = {
            "states": int(len(g)),
            "mae": round(float(np.mean(np.abs(e))), 4),
            "rmse": round(float(np.sqrt(np.mean(e**2))), 4),
            "mean_error": round(float(np.mean(e)), 4),
            "births_weighted_mae": round(float(np.sum(w * np.abs(e)) / w.sum()), 4),
            "mean_abs_rel_error": round(float(np.mean(np.abs(g["rel_error"]))), 4),
            "coverage_95": round(float(g["within_interval"].astype(bool).mean()), 4),
            "naive_mae": round(float(np.nanmean(np.abs(g["naive_error"]))), 4),
        }
    nat = last[last["state"] == ALL]
    out["national"] = {str(r.year): {"observed": r.observed, "predicted": round(r.predicted, 4),
                                     "error": round(r.error, 4)} for r in nat.itertuples()}
    return out


def format_summary(m: dict) -> str:
    """Return the back-test table (origin, block, MAE by method, coverage) and the verdicts."""
    lines = [f"{'origin':>6} {'years':>9} {'n':>4} {'MAE model':>9} {'carry-fwd':>9} "
             f"{'nat.trend':>9} {'bias':>7} {'cov.model':>9} {'cov.carry':>9} {'cov.trend':>9}"]
    for o, om in m.get("origins", {}).items():
        for name, b in om["blocks"].items():
            if name != om["horizon"] and name != "out_of_sample":
                continue
            label = b["years"] + ("*" if b["model_in_sample"] else "")
            lines.append(f"{o:>6} {label:>9} {b['n']:>4} {b['mae']:>9.3f} {b['naive_mae']:>9.3f} "
                         f"{b['trend_mae']:>9.3f} {b['bias']:>+7.3f} {b['coverage']:>9.0%} "
                         f"{b['naive_coverage']:>9.0%} {b['trend_coverage']:>9.0%}")
    lines.append("(the trend model is refitted through each origin; * marks in-sample years; MAE "
                 "per 1,000 live births; coverage of 95% intervals)")
    lines += [om["verdict"] for om in m.get("origins", {}).values()]
    reg = m.get("regions")
    if reg:
        lines.append(f"after the state series end: census-region IMR relative to the nation, "
                     f"2018-2019 and 2020-2022 ({reg['n']} region-blocks): the trend model's "
                     f"mean absolute error {reg['mae_model_pct']:.2f}% vs {reg['mae_carry_pct']:.2f}% "
                     f"for carrying 2011-2017 forward")
    return "\n".join(lines)


def plot_backtest(table: pd.DataFrame, path, m: dict | None = None) -> None:
    """Save a PNG of the forecast errors by origin and method.

    Top row: MAE by forecast year, one panel per origin, one line per method. Bottom row: the
    state errors (forecast - observed) per year and method, one panel per origin.

    Parameters
    ----------
    table : pandas.DataFrame
        A back-test table (:class:`BacktestResult`).
    path : str or path
        The PNG to write.
    m : dict, optional
        Metrics (:func:`metrics`) for the panel titles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = table[table["state"] != ALL]
    origins = sorted(st["origin"].unique())
    colors = {"predicted": "#4c72b0", "naive": "#dd8452", "trend": "#55a868"}
    fig, axes = plt.subplots(2, len(origins), figsize=(6.5 * len(origins), 8.5), squeeze=False)
    for j, origin in enumerate(origins):
        g = st[st["origin"] == origin]
        ys = sorted(g["year"].unique())
        ax = axes[0, j]
        for k, (col, lab) in enumerate(METHODS):
            err = f"{col}_error" if col != "predicted" else "error"
            mae = [g.loc[g["year"] == y, err].abs().mean() for y in ys]
            ax.plot(ys, mae, "o-", color=colors[col], label=lab)
            bx = axes[1, j]
            for i, y in enumerate(ys):
                e = g.loc[g["year"] == y, err].to_numpy(float)
                x = i + (k - 1) * 0.27
                bx.boxplot([e], positions=[x], widths=0.22, patch_artist=True, showfliers=True,
                           boxprops={"facecolor": colors[col], "alpha": 0.6},
                           medianprops={"color": "k"}, flierprops={"markersize": 2})
        ins = g.loc[g["model_in_sample"], "year"].unique()
        if len(ins):
            ax.axvspan(min(ins) - 0.5, max(ins) + 0.5, color="0.9", zorder=0,
                       label="model fit period (in-sample)")
        om = ((m or {}).get("origins") or {}).get(str(int(origin)), {})
        tag = "" if not om else (" -- model does NOT beat carry-forward"
                                 if not om.get("beats_naive") else
                                 " -- model below carry-forward only in-sample"
                                 if om.get("model_in_sample") else " -- model beats carry-forward")
        ax.set_title(f"fit through {origin}{tag}", fontsize=10)
        ax.set_xticks(ys)
        ax.set_ylabel("MAE of state IMR (per 1,000)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
        bx = axes[1, j]
        bx.axhline(0, color="k", lw=0.6)
        bx.set_xticks(range(len(ys)))
        bx.set_xticklabels([str(y) for y in ys])
        bx.set_ylabel("forecast - observed (per 1,000)")
        bx.set_title("state errors: " + ", ".join(lab for _, lab in METHODS) + " (left to right)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------- CLI
def add_backtest_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``imsim backtest`` on an argparse subparsers object.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object ``ArgumentParser.add_subparsers`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The ``backtest`` parser (its ``func`` default is :func:`cmd_backtest`).
    """
    p = subparsers.add_parser(
        "backtest", help="forecast state IMRs from several origins; compare with naive forecasts",
        description="Back-test a calibration: from each forecast origin (fit through 2012 -> "
                    "2013-2017, fit through 2015 -> 2016-2017) compare the trend model refitted "
                    "through the origin with carry-forward (mean of the 3 years before the "
                    "origin) and a national log-linear trend, on the observed single-year state "
                    "series; then check the state trends on census regions 2018-2022. Writes "
                    "backtest.csv, backtest.png and backtest.json and says, per origin, whether "
                    "the model beats carry-forward.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calibration", metavar="NAME_OR_DIR", default=None,
                   help="calibration folder or name under calibration/ (default: the default fit)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder to write into (default: the calibration folder, or . for the "
                        "packaged fit)")
    p.set_defaults(func=cmd_backtest)
    return p


def cmd_backtest(args) -> int:
    """Run ``imsim backtest``: back-test a calibration, write its files, print the metrics.

    Parameters
    ----------
    args : argparse.Namespace
        ``calibration`` (name or folder, or None) and ``out`` (folder, or None: the
        calibration's folder, ``.`` for the packaged fit).

    Returns
    -------
    int
        0 (exit code).

    Raises
    ------
    InputError
        If no calibration is found.
    """
    from imsim.calibration.targets import load_calibration
    from imsim.core.errors import InputError

    cal = load_calibration(args.calibration)
    if cal is None:
        raise InputError("no calibration found; run 'imsim calibrate' first")
    res = backtest(cal)
    out = Path(args.out) if args.out else (Path(cal.path) if cal.path and
                                          not cal.path.startswith("packaged:") else Path("."))
    res.save(out)
    print(format_summary(res.metrics))
    print(f"wrote {out}/backtest.csv, backtest.json, backtest.png")
    return 0
