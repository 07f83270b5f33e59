"""Sensitivity analysis of a finished sweep, and the files that report it.

From the sampled inputs ``X`` (and their unit-cube values ``Q``) and the outputs ``Y`` of a
sweep, compute the indices of its method: Sobol first-order and total indices (optionally
second-order) or Morris elementary effects, both with SALib; for a probabilistic analysis (PSA),
each output's mean and 95% range, the probability of exceeding each threshold and the Spearman
rank correlation of every input with every output. A one-at-a-time tornado (each parameter at
its 2.5% and 97.5% quantiles -- a uniform one at its bounds -- the others at their point values)
is added for every method.
The results are written as CSV tables, figures and a short ``report.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imsim.config.sweepfile import Sweep

# ---------------------------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------------------------

def analyse(sweep: Sweep, Q, X, Y, pool=None, meanwhile=None) -> dict:
    """Compute the sweep method's indices for every output.

    With a ``pool`` (a :class:`concurrent.futures.Executor`), each output's Sobol or Morris
    analysis runs as its own task (same seed, same numbers).

    Parameters
    ----------
    sweep : Sweep
        The sweep that was run.
    Q, X : numpy.ndarray
        float64 ``[n_rows, P]``: the sample on the unit hypercube and mapped to parameter
        values.
    Y : numpy.ndarray
        float64 ``[n_rows, O]``: the outputs of every row (in each output's units).
    pool : concurrent.futures.Executor, optional
        Runs the outputs' analyses in parallel.
    meanwhile : callable, optional
        Called with no arguments while the pool analyses (or before a serial analysis).

    Returns
    -------
    dict
        ``rows`` (one per output and parameter, or one per output for psa), ``s2`` (Sobol
        second order), ``exceedance`` and, for psa, ``drivers`` (Spearman correlations).
    """
    out: dict = {"rows": [], "s2": [], "exceedance": []}
    if pool is not None and sweep.method in ("sobol", "morris") and len(sweep.outputs) > 1:
        q = Q if sweep.method == "morris" else None
        parts = [pool.submit(_analyse_outputs, sweep, q, Y[:, [j]], [j])
                 for j in range(len(sweep.outputs))]
        if meanwhile is not None:
            meanwhile()
        for f in parts:
            part = f.result()
            for key in out:
                out[key] += part[key]
    else:
        if meanwhile is not None:
            meanwhile()
        out = _analyse_outputs(sweep, Q, Y, range(len(sweep.outputs)))
    if sweep.method == "psa":
        # Rank correlation of each input with each output: the drivers in a PSA.
        from scipy.stats import spearmanr

        out["drivers"] = []
        for j, o in enumerate(sweep.outputs):
            for k, p in enumerate(sweep.param_ids):
                if np.ptp(X[:, k]) == 0 or np.ptp(Y[:, j]) == 0:
                    rho = 0.0
                else:
                    rho = float(spearmanr(X[:, k], Y[:, j]).statistic)
                out["drivers"].append({"output": o, "parameter": p, "spearman_rho": rho})
    return out


def _analyse_outputs(sweep: Sweep, Q, Y, js) -> dict:
    """:func:`analyse`'s per-output part for the outputs ``js`` (``Y`` holds their columns, in
    order): rows, second-order rows and exceedance, without the PSA drivers."""
    prob = sweep.problem()
    out: dict = {"rows": [], "s2": [], "exceedance": []}
    names = sorted(set(sweep.groups), key=sweep.groups.index) if sweep.use_groups \
        else sweep.param_ids
    for col, j in enumerate(js):
        o = sweep.outputs[j]
        y = Y[:, col]
        if sweep.method == "sobol":
            from SALib.analyze import sobol

            Si = sobol.analyze(prob, y, calc_second_order=sweep.second_order,
                               num_resamples=sweep.num_resamples, conf_level=sweep.conf_level,
                               seed=sweep.seed, print_to_console=False)
            for k, name in enumerate(names):
                out["rows"].append({"output": o, "parameter": name,
                                    "S1": Si["S1"][k], "S1_conf": Si["S1_conf"][k],
                                    "ST": Si["ST"][k], "ST_conf": Si["ST_conf"][k]})
            if sweep.second_order:
                for a in range(len(names)):
                    for b in range(a + 1, len(names)):
                        out["s2"].append({"output": o, "parameter_1": names[a],
                                          "parameter_2": names[b], "S2": Si["S2"][a, b],
                                          "S2_conf": Si["S2_conf"][a, b]})
        elif sweep.method == "morris":
            from SALib.analyze import morris

            Si = morris.analyze(prob, Q, y, num_resamples=sweep.num_resamples,
                                conf_level=sweep.conf_level, num_levels=sweep.levels,
                                seed=sweep.seed, print_to_console=False)
            for k, name in enumerate(names):
                out["rows"].append({"output": o, "parameter": name,
                                    "mu_star": float(Si["mu_star"][k]),
                                    "mu_star_conf": float(Si["mu_star_conf"][k]),
                                    "sigma": float(Si["sigma"][k]), "mu": float(Si["mu"][k])})
        else:
            out["rows"].append({"output": o, "mean": float(np.mean(y)),
                                "sd": float(np.std(y, ddof=1)) if y.size > 1 else 0.0,
                                "p2_5": float(np.quantile(y, 0.025)),
                                "p50": float(np.quantile(y, 0.5)),
                                "p97_5": float(np.quantile(y, 0.975))})
            for t in sweep.thresholds.get(o, []):
                out["exceedance"].append({"output": o, "threshold": t,
                                          "probability": float(np.mean(y > t))})
    return out


def tornado(sweep: Sweep, evaluator) -> list[dict] | None:
    """Evaluate one-at-a-time ranges: each parameter at its low and high value, others at point.

    Low and high are the 2.5% and 97.5% quantiles, except for a uniform distribution (its
    bounds; ``calibration``: just below 1). The point is the evaluator's
    :meth:`point_values` where finite, else the median.

    Parameters
    ----------
    sweep : Sweep
        The sweep.
    evaluator : callable
        ``X[k, P] -> Y[k, O]``; ``1 + 2P`` rows are evaluated.

    Returns
    -------
    list of dict
        One per output and parameter: ``low``, ``high`` (parameter units), ``output_point``,
        ``output_at_low``, ``output_at_high`` and ``range`` (output units).
    """
    try:
        point = evaluator.point_values() if hasattr(evaluator, "point_values") else None
    except Exception:
        point = None
    if point is None:
        point = np.array([float(d.ppf(0.5)) for d in sweep.dists])
    point = np.asarray(point, dtype=float).copy()
    for k, d in enumerate(sweep.dists):
        if not np.isfinite(point[k]) and sweep.param_ids[k] != "calibration":
            point[k] = float(d.ppf(0.5))
    rows = [point]
    lohi = []
    for k, d in enumerate(sweep.dists):
        lo, hi = (float(v) for v in d.ppf(np.array([0.025, 0.975])))
        if d.kind == "uniform":
            lo, hi = d.kw["low"], d.kw["high"]
            if sweep.param_ids[k] == "calibration":
                hi = np.nextafter(1.0, 0.0)
        lohi.append((lo, hi))
        a = point.copy()
        a[k] = lo
        b = point.copy()
        b[k] = hi
        rows += [a, b]
    Yt = np.asarray(evaluator(np.array(rows)), dtype=float)
    out = []
    for j, o in enumerate(sweep.outputs):
        for k, p in enumerate(sweep.param_ids):
            out.append({"output": o, "parameter": p, "low": lohi[k][0], "high": lohi[k][1],
                        "output_point": Yt[0, j], "output_at_low": Yt[1 + 2 * k, j],
                        "output_at_high": Yt[2 + 2 * k, j],
                        "range": abs(Yt[2 + 2 * k, j] - Yt[1 + 2 * k, j])})
    return out


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def write_samples(d: Path, sweep: Sweep, X, Y) -> None:
    """Write ``samples.parquet`` (``samples.csv`` without pyarrow): one row per sample, its
    inputs and outputs, into folder ``d``."""
    import pandas as pd

    df = pd.DataFrame(X, columns=sweep.param_ids)
    df.insert(0, "sample", np.arange(X.shape[0]))
    for j, o in enumerate(sweep.outputs):
        df[o] = Y[:, j]
    try:
        import pyarrow  # noqa: F401

        df.to_parquet(d / "samples.parquet", index=False)
    except ImportError:  # pragma: no cover
        df.to_csv(d / "samples.csv", index=False)


def write_outputs(d: Path, sweep: Sweep, X, Y, res, tornado, figures: bool, pool=None,
                  samples_written: bool = False) -> None:
    """Write samples, indices, tornado, figures and ``report.md`` into folder ``d``.

    With a ``pool``, the figures are drawn by its workers while this process writes the tables.

    Parameters
    ----------
    d : Path
        An existing, empty folder.
    sweep : Sweep
        The sweep.
    X, Y : numpy.ndarray
        float64 ``[n_rows, P]`` inputs and ``[n_rows, O]`` outputs.
    res : dict
        The indices (:func:`analyse`).
    tornado : list of dict or None
        The tornado rows (:func:`tornado`).
    figures : bool
        Draw the figures (PNG).
    pool : concurrent.futures.Executor, optional
        Draws the figures in parallel.
    samples_written : bool
        ``samples.parquet`` is already in ``d`` (:func:`write_samples`).
    """
    drawing = None
    if figures and pool is not None:
        drawing = [pool.submit(_figure, name, d, sweep, res, tornado)
                   for name in FIGURES[sweep.method]]
    import pandas as pd

    if not samples_written:
        write_samples(d, sweep, X, Y)
    pd.DataFrame(res["rows"]).to_csv(d / "indices.csv", index=False)
    if sweep.method == "sobol" and sweep.second_order:
        pd.DataFrame(res["s2"], columns=["output", "parameter_1", "parameter_2", "S2",
                                         "S2_conf"]).to_csv(d / "indices_s2.csv", index=False)
    if sweep.method == "psa":
        pd.DataFrame(res["exceedance"], columns=["output", "threshold", "probability"]).to_csv(
            d / "exceedance.csv", index=False)
        pd.DataFrame(res["drivers"]).to_csv(d / "drivers.csv", index=False)
    if tornado is not None:
        pd.DataFrame(tornado).to_csv(d / "tornado.csv", index=False)
    figs = [f.result() for f in drawing] if drawing is not None else (
        _figures(d, sweep, res, tornado) if figures else [])
    (d / "report.md").write_text(_report(sweep, res, tornado, [f for f in figs if f]))


#: The figures of each method (:func:`_figure`), in the report's order.
FIGURES = {"sobol": ("sobol_indices.png", "tornado.png"),
           "morris": ("morris_mu_sigma.png", "tornado.png"), "psa": ("tornado.png",)}


def _figures(d: Path, sweep: Sweep, res, tornado) -> list[str]:
    return [f for f in (_figure(name, d, sweep, res, tornado)
                        for name in FIGURES[sweep.method]) if f]


def _figure(name: str, d: Path, sweep: Sweep, res, tornado) -> str | None:
    """Draw figure ``name`` of :data:`FIGURES` into ``d``; return its name (None: nothing to
    draw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    made = None
    outs = sweep.outputs
    rows = pd.DataFrame(res["rows"])
    if name == "sobol_indices.png" and sweep.method == "sobol":
        fig, axes = plt.subplots(len(outs), 1, figsize=(8, 2.6 * len(outs) + 0.5), squeeze=False)
        for ax, o in zip(axes[:, 0], outs):
            r = rows[rows.output == o]
            x = np.arange(len(r))
            ax.bar(x - 0.2, r.S1, 0.4, yerr=r.S1_conf, capsize=3, label="S1 (first order)")
            ax.bar(x + 0.2, r.ST, 0.4, yerr=r.ST_conf, capsize=3, label="ST (total)")
            ax.set_xticks(x, r.parameter, rotation=30, ha="right", fontsize=7)
            ax.set_title(o, fontsize=9)
            ax.axhline(0, color="k", lw=0.5)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(d / "sobol_indices.png", dpi=110)
        plt.close(fig)
        made = name
    if name == "morris_mu_sigma.png" and sweep.method == "morris":
        fig, axes = plt.subplots(1, len(outs), figsize=(4.2 * len(outs), 4), squeeze=False)
        for ax, o in zip(axes[0], outs):
            r = rows[rows.output == o]
            ax.scatter(r.mu_star, r.sigma)
            for _, row in r.iterrows():
                ax.annotate(row.parameter, (row.mu_star, row.sigma), fontsize=6)
            ax.set_xlabel("μ* (mean |elementary effect|)")
            ax.set_ylabel("σ")
            ax.set_title(o, fontsize=9)
        fig.tight_layout()
        fig.savefig(d / "morris_mu_sigma.png", dpi=110)
        plt.close(fig)
        made = name
    if name == "tornado.png" and tornado:
        t = pd.DataFrame(tornado)
        fig, axes = plt.subplots(len(outs), 1, figsize=(8, 0.35 * sweep.n_params * len(outs)
                                                        + 1.2 * len(outs)), squeeze=False)
        for ax, o in zip(axes[:, 0], outs):
            r = t[t.output == o].sort_values("range")
            y = np.arange(len(r))
            base = r.output_point.iloc[0]
            ax.barh(y, r.output_at_low - base, left=base, color="tab:blue", label="at low")
            ax.barh(y, r.output_at_high - base, left=base, color="tab:orange", label="at high")
            ax.set_yticks(y, r.parameter, fontsize=7)
            ax.axvline(base, color="k", lw=0.7)
            ax.set_title(f"{o}: one-at-a-time ranges", fontsize=9)
        axes[0, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(d / "tornado.png", dpi=110)
        plt.close(fig)
        made = name
    return made


def _fmt(x) -> str:
    return f"{x:,.4g}" if isinstance(x, (float, np.floating)) else str(x)


def _report(sweep: Sweep, res, tornado, figs) -> str:
    import pandas as pd

    lines = [f"# Sensitivity sweep: {sweep.name}", ""]
    if sweep.description:
        lines += [sweep.description, ""]
    lines += [f"Method **{sweep.method}**, N = {sweep.samples}, seed {sweep.seed}, base scenario "
              f"`{sweep.scenario_path}` ({sweep.scenario.years[0]}-{sweep.scenario.years[1]}, "
              f"{len(sweep.scenario.state_list)} state(s)), expected engine.", "",
              "## Top drivers per output", ""]
    rows = pd.DataFrame(res["rows"])
    for o in sweep.outputs:
        if sweep.method == "sobol":
            r = rows[rows.output == o].sort_values("ST", ascending=False).head(5)
            items = [f"`{x.parameter}` (ST {x.ST:.3f} ± {x.ST_conf:.3f}, S1 {x.S1:.3f})"
                     for x in r.itertuples()]
        elif sweep.method == "morris":
            r = rows[rows.output == o].sort_values("mu_star", ascending=False).head(5)
            items = [f"`{x.parameter}` (μ* {_fmt(x.mu_star)}, σ {_fmt(x.sigma)})"
                     for x in r.itertuples()]
        else:
            dr = pd.DataFrame(res["drivers"])
            dr = dr[dr.output == o].reindex(
                dr[dr.output == o].spearman_rho.abs().sort_values(ascending=False).index).head(5)
            items = [f"`{x.parameter}` (Spearman ρ {x.spearman_rho:+.2f})"
                     for x in dr.itertuples()]
            s = rows[rows.output == o].iloc[0]
            lines.append(f"- **{o}**: mean {_fmt(s['mean'])}, 95% range {_fmt(s.p2_5)} to "
                         f"{_fmt(s.p97_5)}")
            for e in res["exceedance"]:
                if e["output"] == o:
                    lines.append(f"  - P({o} > {_fmt(e['threshold'])}) = "
                                 f"{e['probability']:.3f}")
        lines.append(f"- **{o}** — top drivers: " + "; ".join(items))
    if tornado:
        lines += ["", "## One-at-a-time ranges (tornado)", "",
                  "Each parameter at its low and high value (95% range), others at their point "
                  "values.", ""]
        t = pd.DataFrame(tornado)
        for o in sweep.outputs:
            r = t[t.output == o].sort_values("range", ascending=False).head(5)
            lines.append(f"- **{o}**: " + "; ".join(
                f"`{x.parameter}` {_fmt(x.output_at_low)} to {_fmt(x.output_at_high)}"
                for x in r.itertuples()))
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    lines += ["", "Files: `samples.parquet` (inputs and outputs per sample), `indices.csv`, "
              "`tornado.csv`, `manifest.json`.", ""]
    return "\n".join(lines)
