"""Figures of a run (PNG, matplotlib with the Agg backend; imported only when saving)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imsim.core.constants import ALL, RACE_LABELS

FIGURES = {
    "deaths_averted_by_state.png": "Deaths averted by state over the horizon (95% interval)",
    "imr_by_race.png": "Infant mortality rate by race/Hispanic origin, baseline vs scenario",
    "disparities.png": "Rate difference vs non-Hispanic white, baseline vs scenario",
    "attribution.png": "Deaths averted credited to each strategy (Shapley values)",
    "coverage.png": "Coverage of each strategy over time",
    "coverage_trajectories.png": "Collaborative: coverage trajectory of every state team",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(result, out: Path) -> list[Path]:
    """Draw the figures of a run into ``<out>/figures/`` (PNG; see :data:`FIGURES`).

    The attribution, coverage and collaborative figures are drawn only when the run has
    something to show.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.
    out : Path
        The results folder (``figures/`` is created in it).

    Returns
    -------
    list of Path
        The files written.
    """
    plt = _plt()
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(exist_ok=True)
    written = []
    s = result.summary
    st = s[(s.race == ALL) & (s.state != ALL)].sort_values("deaths_averted")
    h = max(3.0, 0.18 * len(st) + 1.0)
    fig, ax = plt.subplots(figsize=(7, h))
    y = np.arange(len(st))
    ax.barh(y, st.deaths_averted, color="#2b7bba")
    if st.deaths_averted_lo.notna().any():
        # With few draws the point estimate can sit outside the draws' percentile interval.
        err = np.clip([st.deaths_averted - st.deaths_averted_lo,
                       st.deaths_averted_hi - st.deaths_averted], 0.0, None)
        ax.errorbar(st.deaths_averted, y, xerr=err, fmt="none", ecolor="#333", lw=0.8)
    ax.set_yticks(y, st.state, fontsize=7)
    ax.set_xlabel("infant deaths averted over the horizon")
    ax.set_title(f"{result.scenario.name}: deaths averted by state")
    ax.axvline(0, color="#999", lw=0.5)
    fig.tight_layout()
    written.append(_save(fig, fig_dir / "deaths_averted_by_state.png", plt))

    r = s[(s.state == ALL) & (s.race != ALL)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = np.arange(len(r))
    ax.bar(x - 0.2, r.imr_baseline, 0.4, label="baseline", color="#999")
    ax.bar(x + 0.2, r.imr_scenario, 0.4, label="scenario", color="#2b7bba")
    ax.set_xticks(x, [RACE_LABELS[k].replace("non-Hispanic", "NH") for k in r.race],
                  rotation=15, fontsize=7)
    ax.set_ylabel("deaths per 1,000 live births")
    ax.set_title("Infant mortality by race/Hispanic origin of the mother")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, fig_dir / "imr_by_race.png", plt))

    d = result.table("disparities")
    d = d[d.state == ALL]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = np.arange(len(d))
    ax.bar(x - 0.2, d.rate_difference_baseline, 0.4, label="baseline", color="#999")
    ax.bar(x + 0.2, d.rate_difference_scenario, 0.4, label="scenario", color="#c0392b")
    ax.set_xticks(x, [RACE_LABELS[k].replace("non-Hispanic", "NH") for k in d.race],
                  rotation=15, fontsize=7)
    ax.axhline(0, color="#333", lw=0.5)
    ax.set_ylabel("IMR minus NH white IMR (per 1,000)")
    ax.set_title("Disparity: rate difference vs non-Hispanic white (U.S.)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, fig_dir / "disparities.png", plt))

    a = result.table("attribution")
    a = a[a.state == ALL]
    if len(a):
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(a) + 1.2))
        ax.barh(a.strategy, a.deaths_averted, color="#27ae60")
        ax.set_xlabel("deaths averted (Shapley value)")
        ax.set_title("Who gets the credit: attribution within the portfolio")
        fig.tight_layout()
        written.append(_save(fig, fig_dir / "attribution.png", plt))

    cov = result.table("coverage")
    if len(cov):
        import pandas as pd

        c = cov.copy()
        if "quarter" in c:
            c["t"] = c["year"] + (c["quarter"] - 1) / 4.0
        else:
            c["t"] = c["year"]
        g = c.groupby(["strategy", "t"], as_index=False)["coverage"].mean()
        fig, ax = plt.subplots(figsize=(7, 3.4))
        for k, sub in g.groupby("strategy"):
            ax.plot(sub.t, sub.coverage, marker="o", ms=3, label=k)
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean coverage (states on the strategy)")
        ax.set_title("Coverage over time")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, fig_dir / "coverage.png", plt))
        del pd
    if result.inputs.collaborative is not None:
        from imsim.collaborative.abm import plot_coverage

        written.append(plot_coverage(result.inputs.collaborative,
                                     fig_dir / "coverage_trajectories.png"))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
