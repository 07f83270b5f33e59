"""What a planner reads beside the numbers: modelled vs observed rates, the baseline headline,
human labels, and one self-contained page per state (``states/<ST>.html`` of a run folder).

The observed rates are the packaged 2013-2015 targets (``targets.csv``, target ``imr``: NCHS Data
Brief 295 state totals and CDC WONDER race-specific 3-year rates, each row citing its source,
with exact Poisson 95% intervals); they CHECK the model and are shown beside its baseline for
the same state x race cells, never fitted here.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.core.constants import ALL, BASELINE_PERIOD, RACE_LABELS, STATE_NAMES, STRATEGIES

#: Human names of the strategies (as the recommend briefs use them).
STRATEGY_LABELS = {"safe_sleep": "Safe sleep", "smoking_cessation": "Smoking cessation",
                   "preterm_prevention": "Preterm prevention",
                   "preconception_care": "Preconception care",
                   "risk_appropriate_care": "Risk-appropriate care",
                   "social_determinants": "Social determinants",
                   "exposure_changes": "Exposure changes"}


def race_label(race: str) -> str:
    """``"nh_black"`` -> ``"Non-Hispanic black"``; ``ALL`` -> ``"All races"``."""
    if race == ALL:
        return "All races"
    lab = RACE_LABELS.get(race, race)
    return lab[:1].upper() + lab[1:]


def state_label(state: str) -> str:
    """``"GA"`` -> ``"Georgia"``; ``ALL`` -> ``"United States"``."""
    return "United States" if state == ALL else STATE_NAMES.get(state, state)


def strategy_label(k: str) -> str:
    """``"safe_sleep"`` -> ``"Safe sleep"`` (unknown ids with underscores as spaces)."""
    return STRATEGY_LABELS.get(k, k.replace("_", " ").capitalize())


def has_strategies(result) -> bool:
    """True when any state of the run has a strategy or an exposure change."""
    sc = result.scenario
    return any(sc.portfolio(s).active() or sc.exposure_changes(s) for s in sc.state_list)


def modelled_period(result) -> tuple[str, pd.DataFrame]:
    """The baseline to set beside the observed 2013-2015 rates: ``(period, table)``.

    The run's ``by_year`` rows summed over 2013-2015 when the run covers those years, else
    the run's ``summary`` over its own horizon (the period says which). Columns ``state,
    race, births, deaths_baseline, imr_baseline``.
    """
    y0, y1 = BASELINE_PERIOD
    years = set(result.scenario.year_list)
    if set(range(y0, y1 + 1)) <= years:
        by = result.table("by_year")
        by = by[(by.year >= y0) & (by.year <= y1)]
        g = by.groupby(["state", "race"], as_index=False, sort=False)[
            ["births", "deaths_baseline"]].sum()
        g["imr_baseline"] = np.where(g.births > 0, 1000.0 * g.deaths_baseline / g.births, np.nan)
        return f"{y0}-{y1}", g
    s = result.summary
    ya, yb = result.scenario.years
    return f"{ya}-{yb}", s[["state", "race", "births", "deaths_baseline", "imr_baseline"]].copy()


def observed_vs_modelled(result) -> pd.DataFrame:
    """Observed 2013-2015 IMR with its 95% interval beside the model's baseline, per cell.

    Rows: every state of the run (and ``ALL`` for the nation) x each race group and ``ALL``
    that has an observed rate in ``targets.csv``. Columns ``state, race, observed, observed_lo,
    observed_hi, modelled, inside`` (modelled within the observed interval), ``period``
    (of the modelled rate) and ``source``.
    """
    from imsim.inputs.data import load_table

    t = load_table("targets")
    t = t[(t.target == "imr") & (t.period == f"{BASELINE_PERIOD[0]}-{BASELINE_PERIOD[1]}")]
    period, m = modelled_period(result)
    states = list(result.scenario.state_list)
    keep = states + ([ALL] if len(states) > 1 else [])
    t = t[t.state.isin(keep)]
    j = t.merge(m, on=["state", "race"], how="inner")
    order = {s: i for i, s in enumerate(keep)}
    races = [ALL, "nh_white", "nh_black", "hispanic", "nh_api", "nh_aian"]
    j["_s"] = j.state.map(order)
    j["_r"] = j.race.map({r: i for i, r in enumerate(races)})
    j = j.sort_values(["_s", "_r"])
    out = pd.DataFrame({
        "state": j.state.values, "race": j.race.values, "observed": j.value.astype(float).values,
        "observed_lo": j.lo.astype(float).values, "observed_hi": j.hi.astype(float).values,
        "modelled": j.imr_baseline.astype(float).values, "period": period,
        "source": j.source.values})
    out["inside"] = (out.modelled >= out.observed_lo) & (out.modelled <= out.observed_hi)
    return out.reset_index(drop=True)


def _chi2_ppf(q: float, df: float) -> float:
    """``scipy.stats.chi2.ppf(q, df)`` for 0 < q < 1 and df > 0, bit for bit (scipy computes it
    as ``2 * gammaincinv(df / 2, q)``), without importing scipy.stats (~0.5 s of every save)."""
    from scipy.special import gammaincinv

    return float(2.0 * gammaincinv(df / 2.0, q))


def baseline_intervals(result) -> pd.DataFrame:
    """Baseline births, deaths and IMR per national race group (and ``ALL``) with a 95% interval.

    With enough uncertainty draws the interval is the 2.5th-97.5th percentiles of the baseline
    IMR over the draws (``kind="draws"``); otherwise it is the exact Poisson (Garwood) interval
    of a death count of the modelled size, i.e. the year-to-year chance variation an observed
    rate of that size would show (``kind="poisson"``).
    """
    from imsim.analysis.results import interval_reliable
    from imsim.birth.kernels import N_BANDS, OUT_BIRTHS, OUT_DEATHS
    from imsim.core.constants import RACES

    cells = result.inputs.cells
    rc = np.asarray(RACES)[cells.r_idx]
    groups = [ALL] + [r for r in RACES if (rc == r).any()]
    a = result.arms.baseline
    arr = np.stack([a[:, np.flatnonzero(rc == r) if r != ALL else np.arange(cells.n), :]
                    .sum(axis=1) for r in groups], axis=1)
    births = arr[..., OUT_BIRTHS:OUT_BIRTHS + N_BANDS].sum(axis=-1)
    deaths = arr[..., OUT_DEATHS:OUT_DEATHS + 3 * N_BANDS].sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        imr = np.where(births > 0, 1000.0 * deaths / births, np.nan)
    rows = []
    ok = interval_reliable(result)
    for j, race in enumerate(groups):
        b, d = float(births[0, j]), float(deaths[0, j])
        if ok:
            lo, hi = np.percentile(imr[1:, j], [2.5, 97.5])
            kind = "draws"
        else:
            dl = 0.5 * _chi2_ppf(0.025, 2 * d) if d > 0 else 0.0
            dh = 0.5 * _chi2_ppf(0.975, 2 * (d + 1))
            lo, hi = (1000.0 * dl / b, 1000.0 * dh / b) if b > 0 else (np.nan, np.nan)
            kind = "poisson"
        rows.append({"race": race, "births": b, "deaths_baseline": d,
                     "imr_baseline": float(imr[0, j]), "imr_lo": float(lo),
                     "imr_hi": float(hi), "kind": kind})
    return pd.DataFrame(rows)


# -- one page per state ---------------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return base64.b64encode(buf.getvalue()).decode()


def state_figure(result, state: str, obs: pd.DataFrame, ax=None):
    """The state's IMR by race, baseline vs scenario, with the observed 2013-2015 rate and its
    95% interval as black marks; returns the matplotlib figure.

    With ``ax`` (an axes of a figure made by :func:`_state_axes`), the axes is cleared and
    redrawn: one figure serves every state page (figure creation and layout dominate the cost).
    """
    s = result.summary
    r = s[(s.state == state) & (s.race != ALL) & (s.births > 0)]
    o = obs[obs.state == state].set_index("race")
    if ax is None:
        fig, ax = _state_axes()
    else:
        ax.clear()
        fig = ax.figure
    x = np.arange(len(r))
    both = has_strategies(result)
    w = 0.38 if both else 0.6
    ax.bar(x - (w / 2 if both else 0), r.imr_baseline, w, color="#999", label="modelled baseline")
    if both:
        ax.bar(x + w / 2, r.imr_scenario, w, color="#2b7bba", label="with the strategies")
    ox = [i for i, k in enumerate(r.race) if k in o.index]
    if ox:
        ov = o.loc[[r.race.iloc[i] for i in ox]]
        ax.errorbar(np.asarray(ox, float), ov.observed,
                    yerr=np.clip([ov.observed - ov.observed_lo, ov.observed_hi - ov.observed],
                                 0, None),
                    fmt="D", color="#111", ms=4, lw=1, capsize=3,
                    label="observed 2013-2015 (95% interval)")
    ax.set_xticks(x, [race_label(k).replace("Non-Hispanic", "NH").replace(
        "American Indian or Alaska Native", "AIAN").replace("Asian or Pacific Islander", "API")
        for k in r.race], fontsize=7)
    ax.set_ylabel("deaths per 1,000 live births", fontsize=8)
    ax.set_title(f"{state_label(state)}: infant mortality by race/Hispanic origin", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


#: State pages carry a chart when a run has at most this many states (a chart costs ~0.1 s; a
#: national run's 51 pages would otherwise add ~5 s to every save). Larger runs' pages keep
#: their tables and point to the national report's figures.
STATE_CHARTS_MAX = 12


def _state_axes():
    """A figure with fixed margins (room for the legend on the right) for the state charts
    (made without pyplot: :func:`imsim.output.canvas.new_figure`)."""
    from imsim.output.canvas import new_figure

    fig = new_figure((6.4, 3.2))
    ax = fig.subplots()
    fig.subplots_adjust(left=0.1, right=0.66, bottom=0.16, top=0.9)
    return fig, ax


def _f(x, nd=2) -> str:
    x = float(x)
    return "&ndash;" if x != x else f"{x:,.{nd}f}"


def _w(x) -> str:
    x = float(x)
    return "&ndash;" if x != x else f"{round(x) + 0:,.0f}"


def _coverage_lines(result, state: str, cov: pd.DataFrame | None = None) -> list[str]:
    """The strategy lines of a state page; ``cov``: the state's ``coverage`` rows if known."""
    sc = result.scenario
    if cov is None:
        cov = result.table("coverage")
        cov = cov[cov.state == state] if len(cov) else cov
    lines = []
    for k, block in sc.portfolio(state).active().items():
        c = cov[cov.strategy == k] if len(cov) else cov
        if len(c):
            g = c.groupby("year").coverage.mean()
            a, b = g.iloc[0], g.iloc[-1]
            txt = (f"{a:.0%} in {g.index[0]} to {b:.0%} in {g.index[-1]}" if abs(a - b) > 1e-9
                   else f"{a:.0%} every year {g.index[0]}&ndash;{g.index[-1]}")
        else:
            txt = "coverage as given in the scenario"
        lines.append(f"<li><b>{html.escape(strategy_label(k))}</b>: coverage {txt}</li>")
    for k, ch in (sc.exposure_changes(state) or {}).items():
        lines.append(f"<li><b>Exposure change</b>: {html.escape(k.replace('_', ' '))}</li>")
    return lines


STYLE = """body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} .headline{font-size:1.15rem;background:#eef5fb;padding:.8rem 1rem;border-radius:6px}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem} td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left} img{max-width:100%}
.note{color:#555;font-size:.85rem}"""


def _by_state(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``{state: its rows}`` in the table's order (one pass instead of a filter per page)."""
    return {k: g for k, g in df.groupby("state", sort=False)} if len(df) else {}


def _records_by_state(df: pd.DataFrame) -> dict[str, list[dict]]:
    """``{state: [row as a dict, ...]}`` in the table's order (plain rows: a page reads a few
    hundred values, and pandas row access costs ~50 us each)."""
    out: dict[str, list[dict]] = {}
    for rec in df.to_dict("records"):
        out.setdefault(rec["state"], []).append(rec)
    return out


def _page_context(result, obs: pd.DataFrame) -> dict:
    """What every state page of a run shares, computed once: whether the run has strategies,
    whether intervals are shown, and the summary, observed, disparity and coverage rows split
    by state."""
    from imsim.analysis.results import interval_reliable

    cov = result.table("coverage")
    return {"both": has_strategies(result), "ok": interval_reliable(result),
            "summary": _records_by_state(result.summary), "obs": _records_by_state(obs),
            "disparities": _records_by_state(result.table("disparities")),
            "coverage": _by_state(cov), "cov_empty": cov.iloc[:0]}


def state_page(result, state: str, obs: pd.DataFrame, ax=None, ctx: dict | None = None) -> str:
    """The HTML of ``states/<ST>.html``: the state's headline, IMR by race before and after
    (with the observed 2013-2015 rate), the disparity change, strategies and coverage, and
    the figure inline. ``ctx``: :func:`_page_context` of the run (built here when omitted)."""
    from imsim.analysis.results import headline
    if ctx is None:
        ctx = _page_context(result, obs)
    sc = result.scenario
    s = ctx["summary"].get(state, [])
    tot = next(r for r in s if r["race"] == ALL)
    name = state_label(state)
    both = ctx["both"]
    ok = ctx["ok"]
    if both:
        h = headline(result, tot)
        ci = (f" (median of {h['draws']} paired draws; 95% interval {_w(h['lo'])} to "
              f"{_w(h['hi'])})" if ok else f" (point estimate; {html.escape(h['note'])})")
        head = (f"Over {sc.years[0]}&ndash;{sc.years[1]}: <b>{_w(h['value'])}</b> infant deaths "
                f"averted{ci}, of {_w(tot['deaths_baseline'])} expected without the "
                f"strategies; infant mortality {_f(tot['imr_baseline'])} &rarr; "
                f"{_f(tot['imr_scenario'])} per 1,000 live births.")
    else:
        head = (f"Baseline {sc.years[0]}&ndash;{sc.years[1]} (no strategies): "
                f"{_w(tot['births'])} births, <b>{_w(tot['deaths_baseline'])}</b> infant deaths, "
                f"infant mortality {_f(tot['imr_baseline'])} per 1,000 live births.")
    o = {r["race"]: r for r in ctx["obs"].get(state, [])}
    rows = []
    for r in s:
        if r["births"] <= 0:
            continue
        ob = (f"{_f(o[r['race']]['observed'])} ({_f(o[r['race']]['observed_lo'])}&ndash;"
              f"{_f(o[r['race']]['observed_hi'])})" if r["race"] in o else "&ndash;")
        rows.append(f"<tr><td>{html.escape(race_label(r['race']))}</td><td>{_w(r['births'])}</td>"
                    f"<td>{_w(r['deaths_baseline'])}</td><td>{_w(r['deaths_averted'])}</td>"
                    f"<td>{_f(r['imr_baseline'])}</td><td>{_f(r['imr_scenario'])}</td>"
                    f"<td>{ob}</td></tr>")
    drows = []
    for r in ctx["disparities"].get(state, []):
        if not np.isfinite(r["rate_difference_baseline"]):
            continue
        gap = r["gap_closed_pct"]
        ci = (f" ({_f(r['gap_closed_pct_lo'], 1)} to {_f(r['gap_closed_pct_hi'], 1)})"
              if ok and np.isfinite(r["gap_closed_pct_lo"]) else "")
        drows.append(f"<tr><td>{html.escape(race_label(r['race']))}</td>"
                     f"<td>{_f(r['rate_difference_baseline'])}</td>"
                     f"<td>{_f(r['rate_difference_scenario'])}</td>"
                     f"<td>{_f(r['rate_difference_change'])}</td><td>{_f(gap, 1)}{ci}</td></tr>")
    cov = _coverage_lines(result, state, ctx["coverage"].get(state, ctx["cov_empty"]))
    alt = f"{name}: infant mortality by race/Hispanic origin, modelled and observed"
    chart = len(result.scenario.state_list) <= STATE_CHARTS_MAX
    b64 = _png(state_figure(result, state, obs, ax=ax)) if chart else None
    fig_html = (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
                f'<figcaption>{html.escape(alt)}</figcaption></figure>' if chart else
                f'<p class="note">No chart on state pages of runs with more than '
                f'{STATE_CHARTS_MAX} states (it would slow every save); the tables below have '
                f'every number, and the full report has the figures.</p>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imsim: {html.escape(sc.name)} &ndash; {html.escape(name)}</title>
<style>{STYLE}</style></head><body>
<p class="note"><a href="../report.html">&larr; full report: {html.escape(sc.name)}</a></p>
<h1>{html.escape(name)}</h1>
<p class="headline" id="headline">{head}</p>
<h2>Strategies and coverage</h2>
{"<ul>" + "".join(cov) + "</ul>" if cov else "<p>No strategies in this state (baseline).</p>"}
<h2>Infant mortality by race/Hispanic origin, before and after</h2>
<table><thead><tr><th>Race/Hispanic origin</th><th>Births</th><th>Deaths, baseline</th>
<th>Deaths averted</th><th>IMR baseline</th><th>IMR with strategies</th>
<th>Observed IMR 2013&ndash;2015 (95% interval)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
{fig_html}
<h2>Disparity: rate difference to non-Hispanic white</h2>
{("<table><thead><tr><th>Race/Hispanic origin</th><th>Before (per 1,000)</th><th>After</th>"
  "<th>Change</th><th>Gap closed (%)</th></tr></thead><tbody>" + "".join(drows)
  + "</tbody></table>") if drows else "<p>No rate difference defined in this state.</p>"}
<p class="note">IMR per 1,000 live births; deaths rounded to whole numbers (the CSV files of the
run keep full precision). Observed rates: packaged targets (NCHS Data Brief 295; CDC WONDER
race-specific 3-year rates), exact Poisson 95% intervals; they check the model and are not fitted
here. Births by state &times; race are estimates (see README, Data).</p>
</body></html>
"""


def write_state_pages(result, out: Path) -> list[Path]:
    """Write ``<out>/states/<ST>.html`` for every state of the run (self-contained pages)."""
    d = Path(out) / "states"
    d.mkdir(exist_ok=True)
    obs = observed_vs_modelled(result)
    paths = []
    # One figure serves every chart; no figure (nor matplotlib) when the pages have no chart.
    ax = _state_axes()[1] if len(result.scenario.state_list) <= STATE_CHARTS_MAX else None
    ctx = _page_context(result, obs)
    for st in result.scenario.state_list:
        p = d / f"{st}.html"
        p.write_text(state_page(result, st, obs, ax=ax, ctx=ctx), encoding="utf-8")
        paths.append(p)
    return paths


__all__ = ["STRATEGY_LABELS", "race_label", "state_label", "strategy_label", "has_strategies",
           "observed_vs_modelled", "baseline_intervals", "state_page", "write_state_pages",
           "STRATEGIES"]
