"""Figures and one-page HTML briefs of ``imsim recommend``.

Turn an :class:`~imsim.analysis.decision.Analysis` into what a reader sees: per-state rankings with 95%
intervals and Pareto fronts, small multiples of the fronts across states, a U.S. tile-grid map of
the recommended portfolios, a self-contained HTML brief per state (figure embedded) and an index
page. Matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import STATE_NAMES
from imsim.analysis.decision import NONE, Analysis, objective_text
from imsim.config.plan import ResolvedPlan
from imsim.analysis.portfolio import ELIGIBLE, Evaluation

#: Short labels for figures.
ABBREV = {"safe_sleep": "SS", "smoking_cessation": "SC", "preterm_prevention": "PP",
          "preconception_care": "PC", "risk_appropriate_care": "RC", "social_determinants": "SD"}
LABELS = {"safe_sleep": "Safe sleep", "smoking_cessation": "Smoking cessation",
          "preterm_prevention": "Preterm prevention", "preconception_care": "Preconception care",
          "risk_appropriate_care": "Risk-appropriate care",
          "social_determinants": "Social determinants"}

#: The standard 8 x 11 U.S. tile grid: state -> (row, column).
TILE_GRID = {
    "AK": (0, 0), "ME": (0, 10),
    "VT": (1, 9), "NH": (1, 10),
    "WA": (2, 0), "ID": (2, 1), "MT": (2, 2), "ND": (2, 3), "MN": (2, 4), "IL": (2, 5),
    "WI": (2, 6), "MI": (2, 7), "NY": (2, 8), "RI": (2, 9), "MA": (2, 10),
    "OR": (3, 0), "NV": (3, 1), "WY": (3, 2), "SD": (3, 3), "IA": (3, 4), "IN": (3, 5),
    "OH": (3, 6), "PA": (3, 7), "NJ": (3, 8), "CT": (3, 9),
    "CA": (4, 0), "UT": (4, 1), "CO": (4, 2), "NE": (4, 3), "MO": (4, 4), "KY": (4, 5),
    "WV": (4, 6), "VA": (4, 7), "MD": (4, 8), "DE": (4, 9),
    "AZ": (5, 1), "NM": (5, 2), "KS": (5, 3), "AR": (5, 4), "TN": (5, 5), "NC": (5, 6),
    "SC": (5, 7), "DC": (5, 8),
    "OK": (6, 3), "LA": (6, 4), "MS": (6, 5), "AL": (6, 6), "GA": (6, 7),
    "HI": (7, 0), "TX": (7, 3), "FL": (7, 8),
}


def _short_label(pid: str) -> str:
    return "+".join(ABBREV[k] for k in pid.split("+")) if pid and pid != NONE else "none"


def _key() -> str:
    """The key of the short labels, e.g. "SS = Safe sleep, SC = Smoking cessation, ..."."""
    return ", ".join(f"{v} = {LABELS[k]}" for k, v in ABBREV.items())


def front_line(x, y, x_larger_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return the two-criterion Pareto front of ``(x, y)`` as a line, sorted by ``x``.

    Only points not dominated in these two criteria are kept (y: larger is better; x: larger
    is better, or smaller for costs), so the line never passes through a dominated point.

    Parameters
    ----------
    x, y : array_like of float
        The criteria of each option (NaN rows are dropped).
    x_larger_better : bool
        Whether a larger ``x`` is better (False for cost).

    Returns
    -------
    xs, ys : numpy.ndarray
        The front's points, ``xs`` non-decreasing (duplicates removed).
    """
    from imsim.analysis.decision import pareto_front

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if not x.size:
        return x, y
    on = pareto_front(np.stack([x, y], axis=1), maximise=[x_larger_better, True])
    pts = np.unique(np.stack([x[on], y[on]], axis=1), axis=0)     # sorted by x, then y
    return pts[:, 0], pts[:, 1]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def state_figure(an: Analysis, state: str, path: Path, top: int = 15) -> Path:
    """Save the figure of one state: ranking with 95% intervals, and the Pareto fronts.

    Parameters
    ----------
    an : Analysis
        The decision analysis.
    state : str
        USPS code of a plan state.
    path : Path
        The PNG to write.
    top : int
        Portfolios shown in the ranking.

    Returns
    -------
    Path
        ``path``.
    """
    plt = _plt()
    df = an.portfolios[an.portfolios.state == state].sort_values("rank")
    rec = an.recommendations.set_index("state").loc[state, "recommended"]
    has_cost = df.cost.notna().any()
    fig, axes = plt.subplots(1, 3 if has_cost else 2, figsize=(13 if has_cost else 10, 4.6),
                             gridspec_kw={"width_ratios": [1.3, 1, 1] if has_cost else [1.3, 1]})
    ax = axes[0]
    d = df.head(top).iloc[::-1]
    y = np.arange(len(d))
    colours = ["#c0392b" if p == rec else "#34495e" for p in d.portfolio]
    ax.errorbar(d.deaths_averted, y, xerr=[d.deaths_averted - d.deaths_averted_lo,
                                           d.deaths_averted_hi - d.deaths_averted],
                fmt="none", ecolor="#95a5a6", capsize=2)
    ax.scatter(d.deaths_averted, y, c=colours, zorder=3, s=18)
    ax.set_yticks(y, [f"{_short_label(p)}  ({pb:.0%})" for p, pb in zip(d.portfolio, d.p_best)],
                  fontsize=7)
    ax.set_xlabel("deaths averted over the horizon (95% interval)")
    ax.set_title(f"{state}: top {len(d)} portfolios by objective (P(best))", fontsize=9)
    ax.axvline(0, color="k", lw=0.5)

    def front(ax, x, xlabel):
        on = df.pareto.values
        ax.scatter(x[~on], df.disparity_reduction.values[~on] if xlabel != "cost" else
                   df.deaths_averted.values[~on], s=10, c="#bdc3c7", label="dominated")
        yv = df.disparity_reduction.values if xlabel != "cost" else df.deaths_averted.values
        ax.scatter(x[on], yv[on], s=18, c="#2980b9", label="Pareto front")
        r = (df.portfolio == rec).values
        ax.scatter(x[r], yv[r], s=60, facecolors="none", edgecolors="#c0392b", lw=1.5,
                   label="recommended")
        ax.legend(fontsize=7, loc="best")

    front(axes[1], df.deaths_averted.values, "deaths")
    axes[1].set_xlabel("deaths averted")
    axes[1].set_ylabel("excess NH black deaths averted")
    axes[1].set_title("deaths averted vs disparity reduction", fontsize=9)
    if has_cost:
        front(axes[2], df.cost.values / 1e6, "cost")
        axes[2].set_xlabel("cost, million USD (user's cost inputs)")
        axes[2].set_ylabel("deaths averted")
        axes[2].set_title("deaths averted vs cost", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pareto_figure(an: Analysis, path: Path, against: str = "disparity") -> Path:
    """Save small multiples over states of the Pareto fronts.

    Parameters
    ----------
    an : Analysis
        The decision analysis.
    path : Path
        The PNG to write.
    against : {"disparity", "cost"}
        Plot deaths averted against disparity reduction, or cost (million USD) against deaths
        averted.

    Returns
    -------
    Path
        ``path``.
    """
    plt = _plt()
    df = an.portfolios
    states = list(dict.fromkeys(df.state))
    ncol = min(8, len(states))
    nrow = int(np.ceil(len(states) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.1 * ncol, 1.9 * nrow), squeeze=False)
    recs = an.recommendations.set_index("state").recommended
    for i, st in enumerate(states):
        ax = axes[i // ncol][i % ncol]
        d = df[df.state == st]
        x = d.deaths_averted.values if against == "disparity" else d.cost.values / 1e6
        yv = d.disparity_reduction.values if against == "disparity" else d.deaths_averted.values
        ax.scatter(x, yv, s=4, c="#bdc3c7")
        fx, fy = front_line(x, yv, x_larger_better=against == "disparity")
        ax.plot(fx, fy, "-o", ms=2.5, lw=0.8, c="#2980b9")
        r = (d.portfolio == recs[st]).values
        ax.scatter(x[r], yv[r], s=30, facecolors="none", edgecolors="#c0392b")
        ax.set_title(st, fontsize=8, pad=2)
        ax.tick_params(labelsize=5)
    for j in range(len(states), nrow * ncol):
        axes[j // ncol][j % ncol].axis("off")
    if against == "disparity":
        fig.suptitle("Pareto fronts: deaths averted (x) vs excess NH black deaths averted (y), "
                     "both in deaths over the horizon; blue line = portfolios no other beats on "
                     "both; red ring = recommended", fontsize=9)
    else:
        fig.suptitle("Pareto fronts: cost, million USD (x) vs deaths averted (y); blue line = "
                     "portfolios no cheaper one beats in deaths averted; red ring = recommended",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _pct(x) -> str:
    """A share as a whole percentage, or an en dash when it is not a number."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "\u2013"
    return "\u2013" if x != x else f"{x:.0%}"


def tile_map(an: Analysis, path: Path) -> Path:
    """Save a U.S. tile-grid map (8 x 11) of the recommended portfolios, coloured by portfolio.

    Parameters
    ----------
    an : Analysis
        The decision analysis.
    path : Path
        The PNG to write.

    Returns
    -------
    Path
        ``path``.
    """
    plt = _plt()
    recs = an.recommendations.set_index("state").recommended.to_dict()
    labels = sorted(set(recs.values()), key=lambda p: (p == NONE, p.count("+"), p))
    cmap = plt.get_cmap("tab20")
    colour = {p: cmap(i % 20) for i, p in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(11, 7.2))
    for st, (r, c) in TILE_GRID.items():
        if st in recs:
            fc, txt = colour[recs[st]], _short_label(recs[st])
        else:
            fc, txt = "#eeeeee", ""
        ax.add_patch(plt.Rectangle((c, -r), 0.94, 0.94, fc=fc, ec="white"))
        ax.text(c + 0.47, -r + 0.62, st, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(c + 0.47, -r + 0.3, txt, ha="center", va="center", fontsize=5.5)
    ax.set_xlim(-0.1, 11)
    ax.set_ylim(-7.1, 1)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, fc=colour[p]) for p in labels]
    # Below the grid (outside the axes), so no tile (e.g. FL, bottom right) is covered.
    ax.legend(handles, [_short_label(p) for p in labels], fontsize=7, ncol=4,
              loc="upper center", bbox_to_anchor=(0.5, -0.01),
              title="recommended portfolio", title_fontsize=8, frameon=False)
    under = (" (each state's portfolio in the national allocation under the budget)"
             if an.allocation_summary.get("national_budget") is not None else "")
    ax.set_title(f"Recommended portfolio by state{under}\n{_key()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def equity_figure(an: Analysis, ev: Evaluation, path: Path, n_labels: int = 6) -> Path:
    """Draw the equity-impact plane of every portfolio, nationally (summed over the plan's states).

    x: infant deaths averted over the horizon (expected over draws). y: change in the NH black
    minus NH white infant mortality rate difference, per 1,000 live births: the mean of the
    states' changes weighted by NH black live births, i.e. ``-1000 x`` (excess NH black deaths
    averted) / (NH black births) -- the measure the objective's disparity term counts. Negative:
    the gap narrows. Portfolios recommended in some state are highlighted and named.

    Parameters
    ----------
    an : Analysis
        The decision analysis (``portfolios``, ``recommendations``).
    ev : Evaluation
        The evaluation (NH black births per state).
    path : Path
        The PNG to write.
    n_labels : int
        Besides the recommended portfolios, the portfolios averting the most deaths that are
        named in the plane.

    Returns
    -------
    Path
        ``path``.
    """
    plt = _plt()
    df = an.portfolios
    order = list(dict.fromkeys(df.portfolio))
    x = df.groupby("portfolio", sort=False).deaths_averted.sum().reindex(order)
    excess = df.groupby("portfolio", sort=False).disparity_reduction.sum().reindex(order)
    nb = float(np.sum(ev.births_black))
    y = -1000.0 * excess / nb if nb > 0 else excess * 0.0
    recs = set(an.recommendations.recommended) - {NONE}
    hi = np.array([p in recs for p in order])
    fig, ax = plt.subplots(figsize=(8.2, 5.6))
    ax.axhline(0, color="#777", lw=0.8)
    ax.axvline(0, color="#777", lw=0.8)
    ax.scatter(x.values[~hi], y.values[~hi], s=16, c="#95a5a6", label="other portfolios")
    ax.scatter(x.values[hi], y.values[hi], s=60, c="#c0392b", edgecolor="k", zorder=3,
               label="recommended in at least one state")
    named = [p for p in order if p in recs] + \
        [p for p in x.sort_values(ascending=False).index if p not in recs][:n_labels]
    for p in named:
        ax.annotate(_names(p), (x[p], y[p]), xytext=(4, 3), textcoords="offset points",
                    fontsize=6.5, color="#c0392b" if p in recs else "#333")
    lo, hi_x = ax.get_xlim()
    ax.set_xlim(lo, hi_x + 0.45 * (hi_x - lo))     # room for the names at the right
    ax.set_xlabel("infant deaths averted over the horizon (all plan states, expected)")
    ax.set_ylabel("change in NH black − NH white infant deaths\nper 1,000 live births "
                  "(negative: gap narrows)")
    ax.set_title("Equity impact: health gain against the black–white gap "
                 "(states weighted by NH black births)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(x, nd=0):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:,.{nd}f}"


def _num(x) -> str:
    """A number rounded for people: two significant digits (0.449495 -> 0.45, 0 -> 0)."""
    x = float(x)
    if not np.isfinite(x):
        return "–"
    return f"{float(f'{x:.2g}'):g}"


def _range(lo, hi, fmt) -> str:
    """``fmt(lo)–fmt(hi)``, or ``fmt(lo)`` once when both show the same."""
    a, b = fmt(lo), fmt(hi)
    return a if a == b else f"{a}–{b}"


def _interval(lo, hi, summary: dict, nd: int) -> str:
    """"95% interval lo to hi", or why none is shown (fewer than MIN_INTERVAL_DRAWS draws)."""
    from imsim.analysis.results import MIN_INTERVAL_DRAWS

    if summary.get("interval_reliable", True):
        return f"95% interval {_fmt(lo, nd)} to {_fmt(hi, nd)}"
    n = summary.get("draws", 0)
    return (f"{'mean of ' + str(n) + ' draws' if n else 'point estimate'}; no 95% interval: "
            f"fewer than {MIN_INTERVAL_DRAWS} uncertainty draws")


def _names(pid: str) -> str:
    if not pid or pid == NONE:
        return "no strategy"
    return " + ".join(LABELS[k] for k in pid.split("+"))


_CSS = """body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;max-width:60rem;margin:1.2rem auto;
padding:0 1rem;color:#222;line-height:1.4}h1{font-size:1.5rem;margin-bottom:.2rem}
h2{font-size:1.1rem;margin:1rem 0 .3rem;border-bottom:1px solid #ddd}
.rec{background:#fdf2e9;border-left:5px solid #c0392b;padding:.6rem 1rem;font-size:1.1rem}
table{border-collapse:collapse;font-size:.9rem}td,th{padding:.2rem .6rem;border-bottom:1px solid #eee;
text-align:left}td.n{text-align:right}img{max-width:100%}.small{font-size:.8rem;color:#555}
@media print{body{margin:0}}"""


def write_brief(an: Analysis, rp: ResolvedPlan, ev: Evaluation, state: str, fig_path: Path,
                path: Path, evidence=None, coverage: pd.DataFrame | None = None) -> Path:
    """Write a self-contained one-page HTML brief for ``state`` (its figure embedded).

    Parameters
    ----------
    an : Analysis
        The decision analysis.
    rp : ResolvedPlan
        The plan.
    ev : Evaluation
        The evaluation (baseline deaths of the state).
    state : str
        USPS code of a plan state.
    fig_path : Path
        The state's figure (:func:`state_figure`), embedded as base64.
    path : Path
        The HTML file to write.
    evidence : EvidenceLibrary, optional
        Describes the key inputs (description, point, range).
    coverage : pandas.DataFrame, optional
        ``year, state, strategy, coverage`` of each candidate.

    Returns
    -------
    Path
        ``path``.
    """
    r = an.recommendations.set_index("state").loc[state]
    df = an.portfolios[an.portfolios.state == state].set_index("portfolio")
    plan = rp.plan
    img = base64.b64encode(fig_path.read_bytes()).decode("ascii")
    rec, run = r.recommended, r.runner_up
    e = html.escape
    name = STATE_NAMES.get(state, state)
    yrs = f"{plan.years[0]}–{plan.years[1]}" if isinstance(plan.years, (list, tuple)) \
        else str(plan.years)
    sidx = ev.states.index(state)

    has_cost = plan.costs is not None
    budgeted = an.allocation_summary.get("national_budget") is not None
    reliable = an.allocation_summary.get("interval_reliable", True) is not False

    def impact_row(label, pid):
        if pid == NONE or pid not in df.index:
            return (f"<tr><td>{e(label)}</td><td colspan={6 if has_cost else 5}>"
                    f"{e(_names(pid))}</td></tr>")
        x = df.loc[pid]
        cost = (f"<td class=n>${x.cost:,.0f}</td>" if has_cost and np.isfinite(x.cost) else
                "<td class=n>no cost given</td>" if has_cost else "")
        return (f"<tr><td>{e(label)}</td><td>{e(_names(pid))}</td>"
                f"<td class=n>{_fmt(x.deaths_averted, 1)}<br><span class=small>"
                + (f"{_fmt(x.deaths_averted_lo, 1)} to {_fmt(x.deaths_averted_hi, 1)}"
                   if reliable else "no interval (few draws)") + "</span></td>"
                f"<td class=n>{x.bw_rate_difference_change:+.3f}<br><span class=small>"
                + (f"{x.bw_rate_difference_change_lo:+.3f} to "
                   f"{x.bw_rate_difference_change_hi:+.3f}" if reliable else
                   "no interval (few draws)")
                + f"</span></td><td class=n>{_fmt(x.disparity_reduction, 1)}</td>"
                f"<td class=n>{_pct(x.p_best)}</td>{cost}</tr>")

    keys = []
    for i in (1, 2, 3):
        k = r[f"key_input_{i}"]
        if isinstance(k, str) and k:
            desc = ""
            if evidence is not None and k in evidence.effects:
                eff = evidence.effects[k]
                desc = (f" — {eff.description} (point {_num(eff.point)}, range "
                        f"{_range(eff.lo, eff.hi, _num)})")
            keys.append(f"<li><b>{e(k)}</b>{e(desc)}: knowing it exactly would be worth "
                        f"{r[f'key_input_{i}_evppi']:.2f} in the objective (EVPPI; the "
                        f"objective's units are weighted deaths, defined below)</li>")
    few = an.allocation_summary.get("interval_reliable", True) is False
    if few:
        keys = [(f"<li>Not estimated: with only {an.allocation_summary.get('draws', 0)} "
                 "uncertainty draws the EVPPI of each input (and the 95% intervals) are "
                 "unreliable; rerun with --draws 200.</li>")]
    elif not keys:
        keys.append("<li>No single uncertain input changes the choice materially "
                    "(all EVPPI ≈ 0): the recommendation is robust to the evidence ranges.</li>")
    cov_lines = []
    if coverage is not None:
        c = coverage[coverage.state == state]
        for k in rp.candidates:
            ck = c[c.strategy == k].sort_values("year")
            if len(ck):
                cov_lines.append(f"{LABELS[k]}: {_range(ck.coverage.min(), ck.coverage.max(), _pct)} "
                                 f"of {ELIGIBLE[k]}")
    base_d = ev.deaths_baseline[0, sidx]
    wlabel = "objective = " + objective_text(plan.objective.deaths_averted,
                                             plan.objective.disparity_reduction)
    best_nb = r.get("best_without_budget", rec)
    if budgeted:
        nb_cost = r.get("best_without_budget_cost", np.nan)
        nb_cost = (f", costing ${nb_cost:,.0f}" if has_cost and np.isfinite(nb_cost) else "")
        budget_line = (
            f"<br>This is {e(name)}'s portfolio in the national allocation under the plan's "
            f"budget of ${an.allocation_summary['national_budget']:,.0f}"
            + (f" (cost ${r.cost:,.0f})" if has_cost and np.isfinite(r.cost) else "") + ". "
            + ("It is also the best portfolio without the budget." if best_nb == rec else
               f"Best without the budget: {e(_names(best_nb))} "
               f"({_fmt(r.get('best_without_budget_deaths_averted', np.nan), 1)} infant deaths "
               f"averted{nb_cost}).")
        )
    else:
        budget_line = ""
    lib = set(getattr(rp, "library_costs", ()))
    cost_note = (
        "No costs were given: the ranking ignores cost." if plan.costs is None else
        "Costs are the plan's own inputs (cost per birth reached × births reached)."
        if not lib else
        "Costs are cost per birth reached × births reached; "
        + ("all" if lib >= set(rp.candidates) else ", ".join(sorted(lib)))
        + " from imsim's cost library (imsim data costs: each a published programme cost, "
          "our arithmetic on published figures, or an illustrative default, with a range).")
    body = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>{e(name)}: recommended infant mortality strategies</title><style>{_CSS}</style></head><body>
<h1>{e(name)} ({e(state)}): which strategies to focus on, {e(yrs)}</h1>
<p class=small>Plan <b>{e(plan.name)}</b> · imsim recommend · {len(ev.portfolios)} portfolios of up to
{plan.max_strategies} strategies compared under {an.per_draw['u'].shape[0]} uncertainty draws</p>
<div class=rec><b>Recommendation:</b> {e(_names(rec))}.<br>
Expected {_fmt(r.deaths_averted, 1)} infant deaths averted over {e(yrs)} ({_interval(
    r.deaths_averted_lo, r.deaths_averted_hi, an.allocation_summary, 1)}), of {_fmt(base_d, 0)} expected
without these strategies. Probability it is the best portfolio for {e(state)} (ignoring the
national budget): <b>{_pct(r.p_best)}</b>.{budget_line}</div>
<h2>Expected impact</h2>
<table><tr><th></th><th>portfolio</th><th>infant deaths averted (95%)</th>
<th>change in NH black − NH white deaths per 1,000 live births (95%)</th><th>excess NH black
deaths averted</th><th>P(best)</th>{'<th>cost, USD</th>' if has_cost else ''}</tr>
{impact_row("Recommended", rec)}{impact_row("Runner-up (best without the budget)" if budgeted and best_nb == run and best_nb != rec else "Runner-up", run)}{impact_row("Best without the budget", best_nb) if budgeted and best_nb not in (rec, run) else ''}</table>
<p class=small>A negative change in the rate difference means the black–white gap narrows.
Ranking by the {e(wlabel)} (in weighted deaths). Ties go to the cheaper, then smaller portfolio.
{'' if has_cost else 'No costs were given.'}</p>
<h2>What could overturn this choice</h2><ul>{''.join(keys)}</ul>
<p class=small>Expected value of perfect information on all inputs: {r.evpi:.2f} in the
objective (weighted deaths; the most a better evidence base could add to the outcome of this
choice).</p>
<h2>Ranking and trade-offs</h2>
<img alt="ranking and Pareto fronts for {e(state)}" src="data:image/png;base64,{img}">
<p class=small>Labels in the figure: {e(_key())}. Percentages beside them: P(best).</p>
<h2>Key assumptions</h2><ul>
<li>Coverage if chosen: {e('; '.join(cov_lines)) or 'as set in the plan'}.</li>
<li>Effect sizes and their uncertainty from imsim's evidence library (list them with
<code>imsim data evidence</code>);
the baseline is refitted for every draw so it reproduces 2013–2015 observed rates; births are data through
2023 and follow each state's 2014–2023 trend after it; rates stay at the 2013–2015 fit.</li>
<li>Strategies in a portfolio combine through the model of each birth, never by adding effects.</li>
<li>{e(cost_note)}</li>
<li>Births by state × race/Hispanic origin for 2013–2017 are not published in imsim's sources:
they are estimated by raking 2016 single-race state counts to exact state totals and national race
totals (flagged <code>estimated=True</code> in the packaged data).</li>
</ul></body></html>"""
    path.write_text(body, encoding="utf-8")
    return path


def write_index(an: Analysis, rp: ResolvedPlan, path: Path) -> Path:
    """Write the index page: the national allocation and one linked row per state brief.

    Embeds ``figures/tile_map.png`` beside ``path`` when it exists.

    Parameters
    ----------
    an : Analysis
        The decision analysis.
    rp : ResolvedPlan
        The plan.
    path : Path
        The HTML file to write (briefs are linked as ``briefs/<STATE>.html``).

    Returns
    -------
    Path
        ``path``.
    """
    e = html.escape
    s = an.allocation_summary
    budgeted = s.get("national_budget") is not None
    has_cost = rp.plan.costs is not None
    rows = []
    for r in an.recommendations.itertuples():
        nb = getattr(r, "best_without_budget", r.recommended)
        extra = (f"<td>{e('same' if nb == r.recommended else _names(nb))}</td>"
                 if budgeted else "")
        cost = (f"<td class=n>{'–' if not np.isfinite(r.cost) else f'${r.cost:,.0f}'}</td>"
                if has_cost else "")
        rows.append(f"<tr><td><a href='briefs/{e(r.state)}.html'>{e(STATE_NAMES[r.state])}</a>"
                    f"</td><td>{e(_names(r.recommended))}</td>{extra}<td class=n>"
                    f"{_fmt(r.deaths_averted, 1)}</td>{cost}<td class=n>{_pct(r.p_best)}</td></tr>")
    rnd, w = s["random_allocations"], s["objective_weights"]
    tile = equity = ""
    eq_png = path.parent / "figures" / "equity_impact.png"
    if eq_png.exists():
        b64 = base64.b64encode(eq_png.read_bytes()).decode()
        equity = ("<h2>Equity impact</h2><img alt='deaths averted against the change in the "
                  f"black–white infant mortality gap' src='data:image/png;base64,{b64}'>")
    if (path.parent / "figures" / "tile_map.png").exists():
        b64 = base64.b64encode((path.parent / "figures" / "tile_map.png").read_bytes()).decode()
        tile = f"<img alt='tile map of recommended portfolios' src='data:image/png;base64,{b64}'>"
    path.write_text(f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<title>{e(rp.plan.name)}: recommendations</title><style>{_CSS}</style></head><body>
<h1>{e(rp.plan.name)}: recommended strategy portfolios</h1>
<p>National allocation{f" under the budget of ${s['national_budget']:,.0f}" if budgeted else ""}:
{s['states_with_a_portfolio']} states with a portfolio, {_fmt(s['deaths_averted'], 0)} infant
deaths averted expected ({_interval(s['deaths_averted_lo'], s['deaths_averted_hi'], s, 0)}
){f", cost ${s['cost']:,.0f}" if s.get('cost') is not None else ""};
random allocations average {_fmt(rnd['deaths_averted_mean'], 0)} infant deaths averted, so the
allocation averts {_fmt(rnd['improvement_deaths'], 0)} deaths more. In the objective
({w['deaths_averted']:g} × deaths averted + {w['disparity_reduction']:g} × excess NH black deaths
averted, in weighted deaths) it is {_fmt(rnd['improvement_objective'], 0)} higher.</p>
<p class=small>Objective weights: {e(objective_text(w['deaths_averted'], w['disparity_reduction']))}
(the plan's <code>objective:</code>; every table and brief ranks by it).</p>{equity}
<p class=small>{"The recommended portfolio of each state is its portfolio in this allocation; "
"“best without the budget” is the state's best portfolio if the national budget did not bind. "
if budgeted else "The recommended portfolio of each state is its best portfolio. "}P(best): the
probability that the recommended portfolio is the best for the state (ignoring the national
budget).</p>{tile}
<table><tr><th>state brief</th><th>recommended</th>{'<th>best without the budget</th>' if budgeted else ''}<th>infant deaths averted</th>{'<th>cost, USD</th>' if has_cost else ''}<th>P(best)</th></tr>
{''.join(rows)}</table></body></html>""", encoding="utf-8")
    return path
