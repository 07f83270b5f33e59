"""Back-test: fit on 2013-2015, predict the state IMRs of 2016 and 2017, compare with what happened.

The calibrated model (no strategy) is run with each year's observed births (state x race births
of that year from ``births.csv``); the prediction interval of a state's observed IMR combines the
calibration posterior (joint draws of every cell's rate) and the Poisson noise of that year's
deaths. Rates are held at the 2013-2015 fit: the back-test measures how well a fitted baseline
predicts the next years, which is how imsim uses it.

``backtest.csv``: ``state, year, observed, observed_lo, observed_hi, predicted, predicted_lo,
predicted_hi, error, rel_error, within_interval, births, naive, naive_error`` (IMRs per 1,000
live births; ``naive``: the observed 2013-2015 state IMR carried forward); ``backtest.png``;
metrics MAE, RMSE, mean error, coverage.
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


def backtest(cal=None, years=(2016, 2017), obs=None, effects=None, seed: int = 7,
             poisson_draws: int = 20) -> BacktestResult:
    """Predict the state IMRs of ``years`` with a calibration and compare with the observed.

    Parameters
    ----------
    cal : CalibratedTargets, optional
        The calibration (default: :func:`~imsim.calibration.targets.load_calibration`'s
        default fit).
    years : sequence of int
        Years to predict (each needs births in ``births.csv``).
    obs : Observations, optional
        Observed targets (default: those the calibration was fitted to).
    effects : dict of str to float, optional
        Effect values (default: the evidence point values).
    seed : int
        Seed of the Poisson noise (stream ``backtest``, keyed by year).
    poisson_draws : int
        Poisson draws per calibration posterior draw.

    Returns
    -------
    BacktestResult
        Predicted IMR (per 1,000 live births) with 95% prediction interval per state and year,
        and the national row ``ALL``.
    """
    from imsim.inputs.baseline import get_baseline
    from imsim.calibration.observations import load_observations
    from imsim.calibration.targets import load_calibration
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS

    if cal is None:
        cal = load_calibration()
    if obs is None:
        obs = load_observations(cal.meta.get("targets_file"))
    baseline = get_baseline()
    from imsim.calibration.fitreport import modelled_counts

    yr = obs.imr_year
    state_obs = obs.state.set_index("state")
    rows = []
    for year in years:
        _, counts = modelled_counts(cal, effects, baseline, year_births=year)
        births = counts[:, OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=1).reshape(N_S, -1)
        deaths = counts[:, OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=1).reshape(N_S, -1)
        # posterior draws: the engine reproduces each cell's IMR, so a draw's deaths scale with it
        scale = deaths / np.maximum(cal.imr * births / 1000.0, 1e-12)
        d_draws = cal.imr_draws * births[None] / 1000.0 * scale[None]        # [K, S, R]
        st_draws = d_draws.sum(axis=2)                                      # [K, S]
        rng = generator(seed, "backtest", year)                          # keyed by year
        sim = rng.poisson(np.repeat(st_draws, poisson_draws, axis=0))        # + Poisson noise
        b_state = births.sum(axis=1)
        pred = 1000.0 * deaths.sum(axis=1) / b_state
        lo = 1000.0 * np.quantile(sim, 0.025, axis=0) / b_state
        hi = 1000.0 * np.quantile(sim, 0.975, axis=0) / b_state
        for si, s in enumerate(STATES):
            o = yr[(yr["state"] == s) & (yr["year"] == year)]
            if not len(o) or pd.isna(o["value"].iloc[0]):
                continue
            o = o.iloc[0]
            naive = float(state_obs.loc[s, "value"]) if s in state_obs.index else np.nan
            rows.append({"state": s, "year": year, "observed": o["value"],
                         "observed_lo": o["lo"], "observed_hi": o["hi"], "predicted": pred[si],
                         "predicted_lo": lo[si], "predicted_hi": hi[si],
                         "error": pred[si] - o["value"], "rel_error": pred[si] / o["value"] - 1,
                         "within_interval": bool(lo[si] <= o["value"] <= hi[si]),
                         "births": b_state[si], "naive": naive, "naive_error": naive - o["value"]})
        nat = yr[(yr["state"] == ALL) & (yr["year"] == year)]
        if len(nat):
            o = nat.iloc[0]
            tot = sim.sum(axis=1)
            pn = 1000.0 * deaths.sum() / births.sum()
            rows.append({"state": ALL, "year": year, "observed": o["value"],
                         "observed_lo": o["lo"], "observed_hi": o["hi"], "predicted": pn,
                         "predicted_lo": 1000.0 * np.quantile(tot, 0.025) / births.sum(),
                         "predicted_hi": 1000.0 * np.quantile(tot, 0.975) / births.sum(),
                         "error": pn - o["value"], "rel_error": pn / o["value"] - 1,
                         "within_interval": None, "births": births.sum(), "naive": np.nan,
                         "naive_error": np.nan})
    table = pd.DataFrame(rows)
    table.loc[table["state"] == ALL, "within_interval"] = table.loc[table["state"] == ALL].apply(
        lambda r: bool(r.predicted_lo <= r.observed <= r.predicted_hi), axis=1)
    return BacktestResult(table, metrics(table))


def metrics(table: pd.DataFrame) -> dict:
    """Return the back-test metrics: MAE, RMSE, mean error and coverage, overall and per year.

    Parameters
    ----------
    table : pandas.DataFrame
        A back-test table (:class:`BacktestResult`).

    Returns
    -------
    dict
        ``"all"`` and each year -> ``states``, ``mae``, ``rmse``, ``mean_error``,
        ``births_weighted_mae``, ``naive_mae`` (per 1,000 live births), ``mean_abs_rel_error``
        and ``coverage_95`` (fractions), over states only; ``"national"`` -> year -> observed,
        predicted, error.
    """
    out = {}
    st = table[table["state"] != ALL]
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
    nat = table[table["state"] == ALL]
    out["national"] = {str(r.year): {"observed": r.observed, "predicted": round(r.predicted, 4),
                                     "error": round(r.error, 4)} for r in nat.itertuples()}
    return out


def plot_backtest(table: pd.DataFrame, path, m: dict | None = None) -> None:
    """Save a PNG of observed against predicted state IMRs, one panel per year.

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

    years = sorted(table["year"].unique())
    fig, axes = plt.subplots(1, len(years), figsize=(6.5 * len(years), 6), squeeze=False)
    for ax, y in zip(axes[0], years):
        g = table[(table["year"] == y) & (table["state"] != ALL)]
        inside = g["within_interval"].astype(bool)
        for mask, col, lab in ((inside, "#4c72b0", "observed inside 95% prediction interval"),
                               (~inside, "#c44e52", "outside")):
            d = g[mask]
            ax.errorbar(d["predicted"], d["observed"],
                        xerr=[d["predicted"] - d["predicted_lo"], d["predicted_hi"] - d["predicted"]],
                        yerr=[d["observed"] - d["observed_lo"], d["observed_hi"] - d["observed"]],
                        fmt="o", ms=3, lw=0.5, color=col, alpha=0.8, label=lab)
            for r in d.itertuples():
                ax.annotate(r.state, (r.predicted, r.observed), fontsize=6, alpha=0.7,
                            xytext=(2, 2), textcoords="offset points")
        lim = [2.5, 11]
        ax.plot(lim, lim, "k-", lw=0.7)
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel("predicted IMR (fit on 2013-2015; 95% prediction interval)")
        ax.set_ylabel(f"observed IMR {y}")
        mm = (m or {}).get(str(y), {})
        ax.set_title(f"{y}: MAE {mm.get('mae', float('nan')):.2f}, RMSE "
                     f"{mm.get('rmse', float('nan')):.2f}, coverage "
                     f"{100 * mm.get('coverage_95', float('nan')):.0f}%")
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
        "backtest", help="predict 2016-2017 state IMRs from the 2013-2015 fit and compare",
        description="Back-test a calibration: run the calibrated baseline (no strategy) with the "
                    "observed births of 2016 and 2017 and compare the predicted state IMRs with "
                    "the observed ones. Writes backtest.csv, backtest.png and backtest.json.",
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
    for k in ("2016", "2017", "all"):
        m = res.metrics.get(k)
        if m:
            print(f"{k}: {m['states']} states, MAE {m['mae']:.3f}, RMSE {m['rmse']:.3f}, mean error "
                  f"{m['mean_error']:+.3f} per 1,000; 95% interval coverage "
                  f"{100 * m['coverage_95']:.0f}% (naive MAE {m['naive_mae']:.3f})")
    print(f"wrote {out}/backtest.csv, backtest.png")
    return 0
