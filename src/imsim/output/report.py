"""A self-contained HTML report a planner can read (figures embedded, no external files)."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from imsim.core.constants import ALL, STRATEGIES
from imsim.output.figures import FIGURES

_STRATEGY_SET = set(STRATEGIES) | {"exposure_changes"}


def _fmt(x, nd=1):
    if x != x:  # NaN
        return "&ndash;"
    return f"{x:,.{nd}f}"


LABELS = {
    "race": "Race/Hispanic origin", "state": "State", "strategy": "Strategy",
    "births": "Births", "deaths_baseline": "Deaths, baseline", "deaths_averted": "Deaths averted",
    "deaths_averted_lo": "95% low", "deaths_averted_hi": "95% high",
    "imr_baseline": "IMR baseline", "imr_scenario": "IMR scenario",
    "rate_ratio_baseline": "Rate ratio, baseline", "rate_ratio_scenario": "Rate ratio, scenario",
    "rate_difference_baseline": "Rate difference, baseline",
    "rate_difference_scenario": "Rate difference, scenario",
    "excess_deaths_baseline": "Excess deaths, baseline",
    "excess_deaths_scenario": "Excess deaths, scenario", "share_pct": "Share (%)",
    "gap_closed_pct": "Rate gap to NH white closed (%)",
    "deaths_averted_median": "Deaths averted (median)",
    "rate_ratio_scenario_median": "Rate ratio, scenario (median)",
    "rate_difference_scenario_median": "Rate difference, scenario (median)",
    "excess_deaths_scenario_median": "Excess deaths, scenario (median)",
    "gap_closed_pct_median": "Rate gap to NH white closed (%, median)",
}
for _c in ("rate_ratio_scenario", "rate_difference_scenario", "excess_deaths_scenario",
           "gap_closed_pct"):
    LABELS[f"{_c}_lo"], LABELS[f"{_c}_hi"] = "95% low", "95% high"


def _whole(c: str) -> bool:
    """Columns shown as whole numbers: counts of deaths and births (the CSVs keep precision)."""
    return c == "births" or "deaths" in c


def _with_interval(cols, ok: bool):
    """Table columns: ``X`` -> ``X_median, X_lo, X_hi`` when the interval is shown, else ``X``."""
    out = []
    for c in cols:
        if c.endswith("*"):
            c = c[:-1]
            out += [f"{c}_median", f"{c}_lo", f"{c}_hi"] if ok else [c]
        else:
            out.append(c)
    return out


def _label(value: str) -> str:
    """Human names: races ("Non-Hispanic black", "All races"), strategies ("Safe sleep")."""
    from imsim.core.constants import RACE_LABELS
    from imsim.output.statepages import race_label, strategy_label

    if value in RACE_LABELS or value == ALL:
        return race_label(value)
    return strategy_label(value) if value in _STRATEGY_SET else value


def _table(df, cols, nd=1) -> str:
    head = "".join(f"<th>{html.escape(LABELS.get(c, c))}</th>" for c in cols)
    rows = []
    for _, r in df.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                whole = _whole(c) and v == v
                text = _fmt(round(v) + 0.0, 0) if whole else _fmt(v, nd)
            elif isinstance(v, str):
                text = html.escape(_label(v))
            else:
                text = html.escape(f"{v:,}" if isinstance(v, int) else str(v))
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def years_note(years) -> str:
    """Say which of a run's years are observed and which projected (one sentence).

    Births and infant mortality are observed through :data:`imsim.core.constants.DATA_YEARS`'s
    last year (2023; 2022-2023 national deaths provisional); later years are projections: births
    by each state's trend, rates by the calibration's trend model, both with their uncertainty
    in the intervals.

    Parameters
    ----------
    years : sequence of int
        First and last year of the run.
    """
    from imsim.core.constants import DATA_YEARS

    y0, y1 = int(years[0]), int(years[-1])
    last = max(DATA_YEARS)
    span = (lambda a, b: f"{a}" if a == b else f"{a}-{b}")
    proj = ("projected (births by each state's 2014-2023 trend, rates by the trend model; "
            "their uncertainty is in the intervals)")
    if y1 <= last:
        return f"{span(y0, y1)}: observed years (data through {last})"
    if y0 > last:
        return f"{span(y0, y1)}: {proj}; observed data end in {last}"
    return f"{span(y0, last)} observed, {span(last + 1, y1)} {proj}"


def write_report(result, out: Path) -> Path:
    """Write ``report.html``: headline numbers, tables and the run's figures, self-contained.

    Figures already in ``<out>/figures/`` are embedded (base64), so write them first.

    Parameters
    ----------
    result : imsim.analysis.runner.Result
        A finished run.
    out : Path
        The results folder.

    Returns
    -------
    Path
        ``<out>/report.html``.
    """
    out = Path(out)
    s = result.summary
    tot = s[(s.state == ALL) & (s.race == ALL)].iloc[0]
    sc = result.scenario
    from imsim.analysis.results import MIN_INTERVAL_DRAWS, headline

    h = headline(result, tot)
    ok = h["interval_reliable"]
    if ok:
        interval = (f" <span class='ci'>(median of {h['draws']} paired draws; 95% interval "
                    f"{_fmt(round(h['lo']), 0)} to {_fmt(round(h['hi']), 0)}; point estimate "
                    f"{_fmt(round(h['point']), 0)})</span>")
    else:
        interval = (f" <span class='ci'>(point estimate at the evidence point values; "
                    f"{html.escape(h['note'])})</span>")
    note = ("" if ok else f"<p class='note' id='interval-note'>{html.escape(h['note'])}: the "
            f"tables show point estimates only.</p>")
    figs, placed = [], {}
    for name, caption in FIGURES.items():
        p = out / "figures" / name
        if p.exists():
            b64 = base64.b64encode(p.read_bytes()).decode()
            f = (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
                 f"{b64}'><figcaption>{html.escape(caption)}</figcaption></figure>")
            if name in ("observed_vs_modelled.png", "imr_by_year.png"):
                placed[name] = f
            else:
                figs.append(f)
    from imsim.output.statepages import has_strategies

    both = has_strategies(result)
    if not both:
        headline_p = _baseline_headline(result, sc, tot)
    else:
        headline_p = f"""<p class="headline" id="headline">Over {sc.years[0]}&ndash;{sc.years[1]} in {len(sc.state_list)}
jurisdiction(s): <b>{_fmt(round(h['value']), 0)}</b> infant deaths averted{interval},
of {_fmt(tot.deaths_baseline, 0)} expected without the strategies; infant mortality
{_fmt(tot.imr_baseline, 2)} &rarr; {_fmt(tot.imr_scenario, 2)} per 1,000 live births.</p>"""
    obs_html = _observed_section(result, placed.get("observed_vs_modelled.png", ""))
    trend_html = ("<h2>Infant mortality by year</h2>" + placed["imr_by_year.png"]
                  if "imr_by_year.png" in placed else "")
    pages = _state_links(result, out)
    warn = "".join(f"<p class='warning'>Warning: {html.escape(w)}</p>"
                   for w in getattr(result, "warnings", []))
    races = s[(s.state == ALL) & (s.race != ALL)]
    states = s[(s.state != ALL) & (s.race == ALL)].sort_values("deaths_averted", ascending=False)
    disp = result.table("disparities")
    disp = disp[disp.state == ALL]
    attr = result.table("attribution")
    attr = attr[attr.state == ALL]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imsim: {html.escape(sc.name)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}} .headline{{font-size:1.25rem;background:#eef5fb;padding:1rem;border-radius:6px}}
.ci{{color:#555;font-size:1rem}} table{{border-collapse:collapse;margin:1rem 0;font-size:.85rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}} th{{background:#f3f3f3}}
td:first-child,th:first-child{{text-align:left}} figure{{margin:1rem 0}} img{{max-width:100%}}
.note{{color:#555;font-size:.85rem}} .scroll{{overflow-x:auto}}
.warning{{background:#fff4e5;border-left:4px solid #e69500;padding:.5rem 1rem}}
</style></head><body>
<h1>{html.escape(sc.name)}</h1>
<p>{html.escape(sc.description or '')}</p>
{headline_p}
<p class="note" id="years">Years {html.escape(years_note(sc.years))}.</p>
{warn}
{note if both else ""}
<h2>By race/Hispanic origin of the mother</h2>
{_table(races, _with_interval(["race", "births", "deaths_baseline", "deaths_averted*", "imr_baseline", "imr_scenario"], ok))}
<h2>Disparities (vs non-Hispanic white, U.S.)</h2>
{_table(disp, _with_interval(["race", "rate_ratio_baseline", "rate_ratio_scenario*", "rate_difference_baseline", "rate_difference_scenario*", "excess_deaths_baseline", "excess_deaths_scenario*", "gap_closed_pct*"], ok), 2)}
{_gap_section(result)}
<h2>Which strategy does the work</h2>
{_table(attr, ["strategy", "deaths_averted", "share_pct"]) if len(attr) else "<p>No strategies in this scenario.</p>"}
<h2>By state</h2>
{_table(states, _with_interval(["state", "births", "deaths_baseline", "deaths_averted*", "imr_baseline", "imr_scenario", "gap_closed_pct"], ok))}
{pages}
{trend_html}
{obs_html}
<h2>Figures</h2>
{''.join(figs)}
<p class="note">Engine: {result.engine}; seed {result.seed}; {result.replicates} replicate(s).
Intervals are 2.5th&ndash;97.5th percentiles of paired draws (effects from the evidence library,
baseline refitted per draw), shown with the median of the same draws, and only with at least
{MIN_INTERVAL_DRAWS} draws; a point estimate uses the evidence point values (draw 0). Deaths are
rounded to whole numbers here; the CSV files keep full precision. Births by state &times; race are estimates (see README, Data).
Generated by imsim; the resolved scenario and manifest.json sit beside this file.</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def _gap_section(result) -> str:
    """'Where the gap comes from': the national Kitagawa split of each group's gap, in words."""
    from imsim.analysis.decomposition import gap_sentence

    dec = result.table("decomposition")
    nat = dec[(dec.state == ALL) & (dec.race != ALL)]
    items = []
    for arm in ("baseline", "scenario"):
        for _, r in nat[nat.arm == arm].iterrows():
            items.append(f"<li>{html.escape(_label(r.race))}, {arm}: "
                         f"{html.escape(gap_sentence(r))}.</li>")
    return f"""<h2>Where the gap comes from</h2>
<p class="note">Each group's infant mortality rate minus the non-Hispanic white rate (per 1,000,
all states of the run), split exactly (Kitagawa) into the part due to its gestational-age
distribution (prematurity: preconception and preterm-prevention strategies) and the part due to
higher mortality at the same gestational age (care, safe sleep). By state in decomposition.csv;
excess deaths by gestational-age group and age at death in periods_of_risk.csv.</p>
<ul id="gap-sources">{''.join(items)}</ul>"""


def _baseline_headline(result, sc, tot) -> str:
    """The headline of a run without strategies: the baseline itself, births, deaths and IMR
    by race with 95% intervals (see :func:`imsim.output.statepages.baseline_intervals`)."""
    from imsim.output.statepages import baseline_intervals, race_label

    b = baseline_intervals(result)
    kind = b.kind.iloc[0]
    how = ("2.5th&ndash;97.5th percentiles of the uncertainty draws" if kind == "draws" else
           "exact Poisson interval of a death count of this size (chance variation of an "
           "observed rate; the run has too few uncertainty draws for a model interval)")
    rows = "".join(
        f"<tr><td>{html.escape(race_label(r.race))}</td><td>{_fmt(round(r.births), 0)}</td>"
        f"<td>{_fmt(round(r.deaths_baseline), 0)}</td><td>{_fmt(r.imr_baseline, 2)}</td>"
        f"<td>{_fmt(r.imr_lo, 2)}&ndash;{_fmt(r.imr_hi, 2)}</td></tr>" for _, r in b.iterrows())
    return (f"""<p class="headline" id="headline">Baseline, {sc.years[0]}&ndash;{sc.years[1]}, """
            f"""{len(sc.state_list)} jurisdiction(s), no strategies: <b>{_fmt(round(tot.births), 0)}</b>
births, <b>{_fmt(round(tot.deaths_baseline), 0)}</b> infant deaths, infant mortality
<b>{_fmt(tot.imr_baseline, 2)}</b> per 1,000 live births.</p>
<h2>Baseline by race/Hispanic origin of the mother</h2>
<div class='scroll'><table id="baseline"><thead><tr><th>Race/Hispanic origin</th><th>Births</th>
<th>Infant deaths</th><th>IMR (per 1,000)</th><th>95% interval</th></tr></thead>
<tbody>{rows}</tbody></table></div>
<p class="note">95% interval: {how}. Add strategies to the scenario to see deaths averted.</p>""")


def _observed_section(result, fig: str) -> str:
    """Modelled baseline vs observed 2013-2015 IMR by state and race: a table and the figure."""
    from imsim.output.statepages import observed_vs_modelled, race_label, state_label

    o = observed_vs_modelled(result)
    if not len(o):
        return ""
    rows = "".join(   # plain tuples: pandas rows cost ~50 us each, a national run has ~300
        f"<tr><td>{html.escape(state_label(r.state))}</td><td>{html.escape(race_label(r.race))}"
        f"</td><td>{_fmt(r.observed, 2)}</td><td>{_fmt(r.observed_lo, 2)}&ndash;"
        f"{_fmt(r.observed_hi, 2)}</td><td>{_fmt(r.modelled, 2)}</td>"
        f"<td>{'yes' if r.inside else 'no'}</td></tr>" for r in o.itertuples(index=False))
    n_in = int(o.inside.sum())
    period = o.period.iloc[0]
    return f"""<h2>Modelled vs observed infant mortality</h2>
<p>The model's baseline ({period}) beside the observed 2013&ndash;2015 rate of the same state
and race group: {n_in} of {len(o)} modelled rates fall inside the observed 95% interval.
Observed rates are the packaged targets (targets.csv: NCHS Data Brief 295 state totals, CDC
WONDER race-specific 3-year rates, exact Poisson intervals); they check the model.</p>
{fig}
<details{' open' if len(o) <= 40 else ''}><summary>Table: observed and modelled IMR, {len(o)} cells</summary>
<div class='scroll'><table id="observed-vs-modelled"><thead><tr><th>State</th><th>Race/Hispanic origin</th>
<th>Observed IMR 2013&ndash;2015</th><th>Observed 95% interval</th><th>Modelled IMR, baseline</th>
<th>Inside the interval</th></tr></thead><tbody>{rows}</tbody></table></div></details>"""


def _state_links(result, out: Path) -> str:
    """Links to the one-page state reports (``states/<ST>.html``)."""
    from imsim.output.statepages import state_label

    sts = list(result.scenario.state_list)
    links = " &middot; ".join(f"<a href='states/{s}.html'>{html.escape(state_label(s))}</a>"
                              for s in sts)
    return f"<h2>One page per state</h2><p id='state-pages'>{links}</p>"
