"""``imsim compare RUN_A RUN_B``: the command, and the folder its differences are written to.

The computation -- each headline quantity of two run folders per state x race, their difference
B minus A, and paired intervals when the runs' draws match -- is
:func:`imsim.analysis.compare.compare_runs`. This module writes ``compare.csv`` and a
self-contained ``compare.html`` (table and an inline PNG chart of the differences by state) into
a new folder (default ``results/compare-<timestamp>/``), atomically (see
:mod:`imsim.core.folders`).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import time
from pathlib import Path

import numpy as np

from imsim.analysis.compare import QUANTITIES, CompareResult, compare_runs
from imsim.core.folders import atomic_folder, check_new

__all__ = ["add_parser", "cmd_compare", "save_compare", "write_html"]

#: Where default compare folders go (relative to the working directory).
RESULTS = "results"
FOLDER_NAME = "compare"

#: Readable names of the compared quantities (units in brackets).
LABELS = {
    "deaths_baseline": "Deaths without the strategies",
    "deaths_scenario": "Deaths with the strategies",
    "deaths_averted": "Deaths averted",
    "imr_baseline": "IMR without the strategies (per 1,000)",
    "imr_scenario": "IMR with the strategies (per 1,000)",
    "preterm_averted": "Preterm births averted",
    "gap_closed_pct": "Gap to NH white closed (%)",
    "rate_difference_change": "Change of the rate difference to NH white (per 1,000)",
}

DESCRIPTION = """\
Compare two run folders written by `imsim run` (RUN_A and RUN_B): for every state x race, each
headline quantity of A, of B, and the difference B - A -- deaths without and with the
strategies, deaths averted, IMR without and with, preterm births averted, the share of the gap to
the NH white rate closed, and the change of the rate difference to NH white.

Paired intervals: when both manifests record the same seed, engine, replicates (> 1) and
calibration, draw d of A and draw d of B use the same evidence values, so the difference is
paired draw by draw. Both resolved scenarios are then re-run (the folders keep no per-draw
values; seconds for the expected engine) and <quantity>_diff_lo/_hi give the 2.5th-97.5th
percentiles of the per-draw differences. Otherwise the `note` column says why and there is no
interval. Run both scenarios with the same --seed and --replicates to get one.

Writes compare.csv and compare.html (table and chart by state, self-contained) into a new
folder. The runs must cover the same states and years."""


def _fmt(x, digits: int = 1) -> str:
    if x is None or not np.isfinite(x):
        return "&ndash;"
    return f"{x:,.{digits}f}"


def _chart(result: CompareResult) -> bytes:
    """PNG: deaths averted and IMR with the strategies, B - A, per state (race ALL)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = result.table
    st = t[(t.race == "ALL") & (t.state != "ALL")].sort_values("deaths_averted_diff")
    if st.empty:                                    # a national-only table
        st = t[(t.race == "ALL")]
    y = np.arange(len(st))
    height = max(2.5, 0.22 * len(st) + 1.4)
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    for ax, q, colour in ((axes[0], "deaths_averted", "#2c7fb8"),
                          (axes[1], "imr_scenario", "#d95f0e")):
        d = st[f"{q}_diff"].to_numpy(float)
        lo, hi = st[f"{q}_diff_lo"].to_numpy(float), st[f"{q}_diff_hi"].to_numpy(float)
        ax.barh(y, d, color=colour, height=0.7)
        if result.paired and np.isfinite(lo).any():
            err = np.clip([np.nan_to_num(d - lo), np.nan_to_num(hi - d)], 0, None)
            ax.errorbar(d, y, xerr=err, fmt="none", ecolor="#333", lw=0.9, capsize=2,
                        label="95% paired interval")
            ax.legend(fontsize=8, loc="lower right", frameon=False)
        ax.axvline(0, color="#666", lw=0.7)
        ax.set_title(f"{LABELS[q]}: B \u2212 A", fontsize=10, loc="left")
        ax.grid(axis="x", color="#ddd", lw=0.5)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y, st["state"].tolist())
    axes[0].set_ylim(-0.7, len(st) - 0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _table(df, cols, digits=1) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for r in df[cols].to_dict("records"):
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"<td>{html.escape(str(v))}</td>" if isinstance(v, str)
                         else f"<td>{_fmt(float(v), digits)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def write_html(result: CompareResult, path: Path) -> Path:
    """Write ``compare.html``: headline, notes, tables and the chart (inline PNG)."""
    t = result.table
    tot = t[(t.state == "ALL") & (t.race == "ALL")].iloc[0]
    b64 = base64.b64encode(_chart(result)).decode()
    alt = "Difference B minus A by state: deaths averted and IMR with the strategies"
    interval = ""
    if np.isfinite(tot.deaths_averted_diff_lo):
        interval = (f" (95% paired interval {_fmt(tot.deaths_averted_diff_lo)} to "
                    f"{_fmt(tot.deaths_averted_diff_hi)})")
    nat_cols = ["quantity", "A", "B", "B - A", "lo", "hi"]
    import pandas as pd

    nat = pd.DataFrame([{"quantity": LABELS[q], "A": tot[f"{q}_a"], "B": tot[f"{q}_b"],
                         "B - A": tot[f"{q}_diff"], "lo": tot[f"{q}_diff_lo"],
                         "hi": tot[f"{q}_diff_hi"]} for q in QUANTITIES])
    races = t[(t.state == "ALL") & (t.race != "ALL")]
    states = t[(t.state != "ALL") & (t.race == "ALL")].sort_values("deaths_averted_diff",
                                                                    ascending=False)
    qcols = ["deaths_averted_a", "deaths_averted_b", "deaths_averted_diff",
             "deaths_averted_diff_lo", "deaths_averted_diff_hi", "imr_scenario_diff",
             "gap_closed_pct_diff"]
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in result.notes)
    a, b = result.a, result.b
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imsim compare</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.6rem}} .headline{{font-size:1.2rem;background:#eef5fb;padding:1rem;border-radius:6px}}
table{{border-collapse:collapse;margin:1rem 0;font-size:.85rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}} th{{background:#f3f3f3}}
td:first-child,th:first-child{{text-align:left}} figure{{margin:1rem 0}} img{{max-width:100%}}
.note{{color:#555;font-size:.9rem}} .scroll{{overflow-x:auto}}
</style></head><body>
<h1>imsim compare: B &minus; A</h1>
<p><b>A</b>: {html.escape(a.label)}<br><b>B</b>: {html.escape(b.label)}</p>
<p class="headline">B averts <b>{_fmt(tot.deaths_averted_diff)}</b> more infant deaths than A
in total{interval} ({_fmt(tot.deaths_averted_a)} vs {_fmt(tot.deaths_averted_b)});
infant mortality with the strategies {_fmt(tot.imr_scenario_a, 3)} (A) vs
{_fmt(tot.imr_scenario_b, 3)} (B) per 1,000 live births.</p>
{notes}
<h2>All states, all races</h2>
{_table(nat, nat_cols, 3)}
<h2>By race/Hispanic origin of the mother (all states)</h2>
{_table(races, ["race"] + qcols)}
<h2>By state (all races)</h2>
<figure><img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>
<figcaption>{html.escape(alt)}; bars are B &minus; A{", lines the 95% paired intervals" if result.paired else ""}.</figcaption></figure>
{_table(states, ["state"] + qcols)}
<p class="note">Differences are B minus A. <code>_lo</code>/<code>_hi</code>: 2.5th&ndash;97.5th
percentiles of the paired per-draw differences (empty when the runs' draws do not match).
compare.csv beside this file has every state &times; race and quantity.</p>
</body></html>
"""
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path


def save_compare(result: CompareResult, out=None) -> Path:
    """Write ``compare.csv`` and ``compare.html`` into a new folder, atomically.

    Parameters
    ----------
    result : CompareResult
        From :func:`imsim.analysis.compare.compare_runs`.
    out : path, optional
        The folder to create (must not exist or be empty); default
        ``results/compare-<timestamp>/``.

    Returns
    -------
    Path
        The folder written.
    """
    with atomic_folder(out, name=FOLDER_NAME, parent=RESULTS) as st:
        result.table.to_csv(st.tmp / "compare.csv", index=False, float_format="%.6g")
        write_html(result, st.tmp / "compare.html")
    return st.out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim compare`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "compare", help="differences of two run folders (B - A), with paired intervals",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  imsim run scenarios/safe_sleep.yaml --out results/a\n"
               "  imsim run scenarios/smoking_cessation.yaml --seed 11 --out results/b\n"
               "  imsim compare results/a results/b               results/compare-<timestamp>/\n"
               "  imsim compare results/a results/b --out results/a_vs_b\n\n"
               "Exit codes: 0 ok, 2 bad input (missing or not a run folder, different states "
               "or years, existing --out).")
    p.add_argument("run_a", metavar="RUN_A", help="the first run folder (A)")
    p.add_argument("run_b", metavar="RUN_B", help="the second run folder (B); differences are B - A")
    p.add_argument("--out", metavar="DIR", help="folder to create (default: "
                   "results/compare-<timestamp>/); must not exist or be empty")
    p.add_argument("--no-intervals", action="store_true",
                   help="do not re-run the scenarios for paired intervals (point differences only)")
    return p


def cmd_compare(args) -> int:
    """Run ``imsim compare``; InputError propagates (the CLI prints it and exits 2)."""
    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    result = compare_runs(args.run_a, args.run_b, paired=not args.no_intervals)
    out = save_compare(result, args.out)
    t = result.table
    tot = t[(t.state == "ALL") & (t.race == "ALL")].iloc[0]
    interval = ""
    if np.isfinite(tot.deaths_averted_diff_lo):
        interval = (f" (95% paired interval {tot.deaths_averted_diff_lo:,.1f} to "
                    f"{tot.deaths_averted_diff_hi:,.1f})")
    print(f"B - A: {tot.deaths_averted_diff:+,.1f} deaths averted{interval}")
    for n in result.notes:
        print(f"note: {n}")
    print(f"wrote {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0
