"""Figures of a run (PNG, matplotlib with the Agg backend; imported only when saving)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imsim.core.constants import ALL, RACE_LABELS, STATES
from imsim.output.canvas import new_figure

FIGURES = {
    "deaths_averted_by_state.png": "Deaths averted by state over the horizon (95% interval)",
    "imr_by_race.png": "Infant mortality rate by race/Hispanic origin, baseline vs scenario",
    "disparities.png": "Rate difference vs non-Hispanic white, baseline vs scenario",
    "attribution.png": "Deaths averted credited to each strategy (Shapley values)",
    "coverage.png": "Coverage of each strategy over time",
    "coverage_trajectories.png": "Collaborative: coverage trajectory of every state team",
    "observed_vs_modelled.png": "Modelled baseline vs observed 2013-2015 infant mortality by "
                                "state and race (observed 95% interval)",
    "imr_by_year.png": "Infant mortality by year, baseline vs scenario, nationally and by race",
}


def _race_tick(k: str) -> str:
    from imsim.output.statepages import race_label

    return (race_label(k).replace("Non-Hispanic", "NH")
            .replace("American Indian or Alaska Native", "AIAN")
            .replace("Asian or Pacific Islander", "API"))


def coverage_figure(result):
    """The coverage chart (mean coverage of each strategy over time), or None without coverage.

    Strategies by their names, whole years on the x axis, the legend outside the lines.
    """
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from imsim.output.statepages import strategy_label

    cov = result.table("coverage")
    if not len(cov):
        return None
    c = cov.copy()
    if "quarter" in c:
        c["t"] = c["year"] + (c["quarter"] - 1) / 4.0
    else:
        c["t"] = c["year"]
    g = c.groupby(["strategy", "t"], as_index=False)["coverage"].mean()
    fig = new_figure((8, 3.4))
    ax = fig.subplots()
    for k, sub in g.groupby("strategy"):
        ax.plot(sub.t, sub.coverage, marker="o", ms=3, label=strategy_label(k))
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("year")
    ax.set_ylabel("mean coverage\n(states on the strategy)")
    ax.set_title("Coverage over time")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def observed_vs_modelled_figure(result):
    """Modelled baseline IMR (x) against the observed 2013-2015 IMR with its 95% interval (y),
    one point per state x race cell of the run, coloured by race; the diagonal is agreement."""
    from imsim.output.statepages import observed_vs_modelled, race_label

    o = observed_vs_modelled(result)
    fig = new_figure((7, 5))
    ax = fig.subplots()
    colours = {"ALL": "#555", "nh_white": "#1f77b4", "nh_black": "#d62728",
               "hispanic": "#2ca02c", "nh_api": "#9467bd", "nh_aian": "#ff7f0e"}
    for r, sub in o.groupby("race", sort=False):
        err = np.clip([sub.observed - sub.observed_lo, sub.observed_hi - sub.observed], 0, None)
        ax.errorbar(sub.modelled, sub.observed, yerr=err, fmt="o", ms=3, lw=0.6,
                    color=colours.get(r, "#333"), alpha=0.8,
                    label=race_label(r) if r != ALL else "All races (state total)")
    if len(o):
        hi = float(np.nanmax(np.r_[o.modelled, o.observed_hi])) * 1.05
        ax.plot([0, hi], [0, hi], color="#999", lw=0.8, ls="--", label="modelled = observed")
        ax.set_xlim(0, hi)
        ax.set_ylim(0, hi)
    period = o.period.iloc[0] if len(o) else ""
    ax.set_xlabel(f"modelled baseline IMR, {period} (per 1,000)")
    ax.set_ylabel("observed IMR 2013-2015 (per 1,000, 95% interval)")
    ax.set_title("Modelled vs observed infant mortality by state and race")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def imr_by_year_figure(result):
    """IMR by year (``by_year.csv``): nationally and by race, baseline dashed and, when the run
    has strategies, the scenario solid."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from imsim.output.statepages import has_strategies, race_label

    by = result.table("by_year")
    by = by[by.state == ALL]
    both = has_strategies(result)
    fig = new_figure((10, 3.6))
    axes = fig.subplots(1, 2, sharey=False)
    nat = by[by.race == ALL]
    if "imr_baseline_lo" in nat and nat["imr_baseline_lo"].notna().any():
        axes[0].fill_between(nat.year, nat.imr_baseline_lo, nat.imr_baseline_hi, color="#777",
                             alpha=0.18, lw=0, label="baseline 95% interval")
    axes[0].plot(nat.year, nat.imr_baseline, ls="--", marker="o", ms=3, color="#777",
                 label="baseline")
    if len(result.inputs.cells.year) and set(result.scenario.state_list) == set(STATES):
        # The observed national series beside a national run (CDC WONDER; the trend model's data).
        from imsim.calibration.trend import national_series

        obs = national_series()
        obs = obs[obs.year.between(nat.year.min() - 6, nat.year.max())]
        axes[0].plot(obs.year, 1000.0 * obs.deaths / obs.births, ls="", marker="s", ms=3.5,
                     color="#d62728", label="observed (CDC WONDER)")
    if "projected" in nat and nat["projected"].any():
        first = int(nat.loc[nat["projected"], "year"].min())
        for ax in axes:
            ax.axvspan(first - 0.5, int(nat.year.max()) + 0.5, color="#f2e8c9", alpha=0.5, lw=0,
                       zorder=0)
        axes[0].text(first - 0.4, 0.02, "projected", transform=axes[0].get_xaxis_transform(),
                     fontsize=7, color="#8a6d1f")
    if both:
        axes[0].plot(nat.year, nat.imr_scenario, marker="o", ms=3, color="#2b7bba",
                     label="with the strategies")
    axes[0].set_title("All races (U.S.)", fontsize=9)
    axes[0].set_ylabel("deaths per 1,000 live births")
    axes[0].legend(fontsize=7)
    for i, (r, sub) in enumerate((r, by[by.race == r]) for r in RACE_LABELS):
        if not len(sub) or not (sub.births > 0).any():
            continue
        line, = axes[1].plot(sub.year, sub.imr_baseline, ls="--", lw=1, color=f"C{i}",
                             label=f"{race_label(r)}" + (", baseline" if both else ""))
        if both:
            axes[1].plot(sub.year, sub.imr_scenario, lw=1.5, color=f"C{i}",
                         label=f"{race_label(r)}, with the strategies")
    axes[1].set_title("By race/Hispanic origin of the mother (U.S.)", fontsize=9)
    axes[1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.set_xlabel("year")
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


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
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(exist_ok=True)
    written = []
    s = result.summary
    from imsim.output.statepages import has_strategies

    st = s[(s.race == ALL) & (s.state != ALL)].sort_values("deaths_averted")
    if has_strategies(result):
        written.append(_deaths_by_state(result, st, fig_dir))
    written += _rest(result, s, fig_dir)
    return written


def _deaths_by_state(result, st, fig_dir):
    h = max(3.0, 0.18 * len(st) + 1.0)
    fig = new_figure((7, h))
    ax = fig.subplots()
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
    return _save(fig, fig_dir / "deaths_averted_by_state.png")


def _rest(result, s, fig_dir):
    from imsim.output.statepages import has_strategies, strategy_label

    written = []
    both = has_strategies(result)
    r = s[(s.state == ALL) & (s.race != ALL)]
    fig = new_figure((7, 3.6))
    ax = fig.subplots()
    x = np.arange(len(r))
    if both:
        ax.bar(x - 0.2, r.imr_baseline, 0.4, label="baseline", color="#999")
        ax.bar(x + 0.2, r.imr_scenario, 0.4, label="with the strategies", color="#2b7bba")
    else:
        ax.bar(x, r.imr_baseline, 0.6, label="baseline (no strategies)", color="#999")
    ax.set_xticks(x, [_race_tick(k) for k in r.race], rotation=15, fontsize=7)
    ax.set_ylabel("deaths per 1,000 live births")
    ax.set_title("Infant mortality by race/Hispanic origin of the mother")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, fig_dir / "imr_by_race.png"))

    d = result.table("disparities")
    d = d[d.state == ALL]
    fig = new_figure((7, 3.4))
    ax = fig.subplots()
    x = np.arange(len(d))
    if both:
        ax.bar(x - 0.2, d.rate_difference_baseline, 0.4, label="baseline", color="#999")
        ax.bar(x + 0.2, d.rate_difference_scenario, 0.4, label="with the strategies",
               color="#c0392b")
    else:
        ax.bar(x, d.rate_difference_baseline, 0.6, label="baseline (no strategies)",
               color="#999")
    ax.set_xticks(x, [_race_tick(k) for k in d.race], rotation=15, fontsize=7)
    ax.axhline(0, color="#333", lw=0.5)
    ax.set_ylabel("IMR minus NH white IMR (per 1,000)")
    ax.set_title("Disparity: rate difference vs non-Hispanic white (U.S.)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, fig_dir / "disparities.png"))

    a = result.table("attribution")
    a = a[a.state == ALL]
    if len(a):
        fig = new_figure((7, 0.45 * len(a) + 1.2))
        ax = fig.subplots()
        ax.barh([strategy_label(k) for k in a.strategy], a.deaths_averted, color="#27ae60")
        ax.set_xlabel("deaths averted (Shapley value)")
        ax.set_title("Who gets the credit: attribution within the portfolio")
        fig.tight_layout()
        written.append(_save(fig, fig_dir / "attribution.png"))

    fig = coverage_figure(result)
    if fig is not None:
        written.append(_save(fig, fig_dir / "coverage.png"))
    written.append(_save(observed_vs_modelled_figure(result), fig_dir / "observed_vs_modelled.png"))
    written.append(_save(imr_by_year_figure(result), fig_dir / "imr_by_year.png"))
    if result.inputs.collaborative is not None:
        from imsim.collaborative.abm import plot_coverage


        written.append(plot_coverage(result.inputs.collaborative,
                                     fig_dir / "coverage_trajectories.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path
