"""``imsim detect``: the detectability folder (table, figure, report, manifest) and the command.

The computation is :func:`imsim.analysis.detect.detect`; this module writes
``detectability.csv``, ``figures/detectability.png``, ``report.html`` and ``manifest.json`` into a
new folder, atomically (:func:`imsim.core.folders.atomic_folder`).
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import time
from pathlib import Path

import numpy as np

from imsim.core.constants import ALL
from imsim.core.errors import InputError
from imsim.core.folders import atomic_folder, check_new

DESCRIPTION = """\
Will the vital statistics show it? For each state x race group (and the totals) and pooling
window of k years (the last k years of the scenario's horizon), the probability that the observed
infant mortality rate is at least --decline percent below the baseline period's observed rate,
under the scenario and under no strategy; the probability that an exact conditional Poisson
test of the two rates is significant (one-sided, alpha 0.05); the minimum detectable decline at
80% power; and the shortest window with 80% power. Observation noise: the microsimulation of
every birth (--replicates draws, which also sample the evidence and calibration). The baseline
period of a k-year window is the k years before the horizon (or --baseline-years).
Writes detectability.csv, figures/detectability.png, report.html and manifest.json."""

#: Most states drawn in the figure (the scenario's, else the largest by births).
FIGURE_STATES = 6


def _plot(table, out: Path) -> Path | None:
    """Power and probability of observing the decline against pooling years, by state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table[table.race == ALL]
    states = [s for s in t.state.unique() if s != ALL]
    if len(states) > FIGURE_STATES:
        big = (t[(t.state != ALL) & (t.window_years == t.window_years.max())]
               .sort_values("births_eval", ascending=False).state.tolist())
        states = big[:FIGURE_STATES]
    states = states + [ALL]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for s in states:
        sub = t[t.state == s].sort_values("window_years")
        label = "all states of the run" if s == ALL else s
        line, = axes[0].plot(sub.window_years, sub.p_observed_decline_scenario, marker="o",
                             label=label)
        axes[0].plot(sub.window_years, sub.p_observed_decline_baseline, marker="x", ls=":",
                     color=line.get_color())
        axes[1].plot(sub.window_years, sub.p_significant, marker="o", color=line.get_color(),
                     label=label)
    decline = table.decline_pct.iloc[0]
    axes[0].set_title(f"P(observed rate >= {decline:g}% below baseline period)\n"
                      "solid: scenario, dotted: no strategy", fontsize=9)
    axes[1].set_title("Power: P(conditional Poisson test significant)\nscenario, "
                      "one-sided alpha 0.05", fontsize=9)
    for ax in axes:
        ax.axhline(0.8, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("pooling window (years)")
        ax.set_ylim(0, 1)
        ax.set_xticks(sorted(t.window_years.unique()))
    axes[0].set_ylabel("probability (all races)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path = out / "figures" / "detectability.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _report(det, out: Path) -> Path:
    """``report.html``: the detectability section (headline, table of the totals, figure)."""
    from imsim.output.statepages import race_label

    t = det.table
    sc = det.result.scenario
    s = det.settings
    k_max = max(s["windows"])
    nat = t[(t.state == ALL) & (t.race == ALL) & (t.window_years == k_max)].iloc[0]
    fig = ""
    p = out / "figures" / "detectability.png"
    if p.exists():
        b64 = base64.b64encode(p.read_bytes()).decode()
        fig = (f"<figure><img alt='detectability by pooling window' src='data:image/png;base64,"
               f"{b64}'><figcaption>Probability of observing a {s['decline_pct']:g}% decline and "
               f"power, against pooling years, by state (all races)</figcaption></figure>")

    def pct(x):
        return "&ndash;" if x != x else f"{100 * x:.0f}%"

    def num(x, nd=1):
        return "&ndash;" if x != x else f"{x:.{nd}f}"

    rows = []
    view = t[(t.race == ALL) | (t.state == ALL)]
    for _, r in view.iterrows():
        rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in (
            html.escape(r.state), html.escape(race_label(r.race)), int(r.window_years),
            html.escape(r.eval_years), html.escape(r.baseline_years),
            f"{r.births_eval:,.0f}", num(r.expected_decline_pct_scenario),
            pct(r.p_observed_decline_scenario), pct(r.p_observed_decline_baseline),
            pct(r.p_significant), num(r.mde_pct),
            "&ndash;" if r.min_window_mde != r.min_window_mde else int(r.min_window_mde))) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in (
        "State", "Race/Hispanic origin", "Window (years)", "Evaluation years", "Baseline period",
        "Births (window)", "Expected decline, scenario (%)",
        f"P(observed &ge;{s['decline_pct']:g}% decline), scenario",
        f"P(observed &ge;{s['decline_pct']:g}% decline), no strategy", "Power (scenario)",
        "MDE at 80% power (%)", f"Shortest window for {s['decline_pct']:g}%"))
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imsim detect: {html.escape(sc.name)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem;color:#222}}
.headline{{font-size:1.15rem;background:#eef5fb;padding:1rem;border-radius:6px}}
table{{border-collapse:collapse;margin:1rem 0;font-size:.8rem}} .note{{color:#555;font-size:.85rem}}
td,th{{border:1px solid #ccc;padding:.2rem .4rem;text-align:right}} th{{background:#f3f3f3}}
td:first-child,th:first-child{{text-align:left}} img{{max-width:100%}} .scroll{{overflow-x:auto}}
</style></head><body>
<h1>{html.escape(sc.name)}: will the vital statistics show it?</h1>
<section id="detectability">
<h2>Detectability</h2>
<p class="headline" id="headline">All states of the run, all races, pooled over
{html.escape(nat.eval_years)}: the scenario lowers the expected infant mortality rate by
{num(nat.expected_decline_pct_scenario)}% against the baseline period {html.escape(nat.baseline_years)}
({num(nat.expected_decline_pct_no_strategy)}% with no strategy). The observed rate is at least
{s['decline_pct']:g}% lower with probability {pct(nat.p_observed_decline_scenario)}
({pct(nat.p_observed_decline_baseline)} with no strategy); the test is significant with probability
{pct(nat.p_significant)}; the smallest decline detectable with 80% power is {num(nat.mde_pct)}%.</p>
{fig}
<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>
<p class="note">Probabilities are shares of {int(nat.draws)} microsimulation draws (each simulates
every birth and samples the evidence and the calibration, with its trend); their Monte Carlo
standard error is at most {50 / np.sqrt(nat.draws):.1f} percentage points. The baseline period is
simulated the same way, with the same parameter draw as the scenario's draw. The test is the exact
conditional Poisson comparison of two rates (the window's deaths given the total are binomial with
p0 = births in the window / births in both periods), one-sided for a decline, alpha
{s['alpha']}. The minimum detectable effect (MDE) is the true decline below the baseline period's
expected rate that the test detects in 80% of repetitions, solved exactly on the expected counts;
empty when even a near-100% decline would not be. Every state x race row is in
detectability.csv.</p>
</section>
<p class="note">Engine: microsim; seed {s['seed']}; {s['replicates']} replicates; windows
{', '.join(map(str, s['windows']))}. Generated by imsim; manifest.json sits beside this file.</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def save_detect(det, out_dir=None, figures: bool = True) -> Path:
    """Write ``detectability.csv``, the figure, ``report.html`` and ``manifest.json``, atomically.

    Parameters
    ----------
    det : imsim.analysis.detect.Detection
        What :func:`imsim.analysis.detect.detect` returned.
    out_dir : path, optional
        The folder to create (must not exist or be empty); default
        ``results/detect-<name>-<timestamp>/``.
    figures : bool
        Draw ``figures/detectability.png`` (and embed it in the report).

    Returns
    -------
    Path
        The folder written.
    """
    from imsim.output.runfolder import manifest

    with atomic_folder(out_dir, name=f"detect-{det.result.scenario.name}",
                       parent="results") as st:
        tmp = st.tmp
        det.table.to_csv(tmp / "detectability.csv", index=False)
        if figures:
            _plot(det.table, tmp)
        _report(det, tmp)
        m = manifest(det.result)
        m["command"] = "detect"
        m["detect"] = {**det.settings, "timings_s": det.timings}
        with open(tmp / "manifest.json", "w", encoding="utf-8") as fh:
            json.dump(m, fh, indent=2, default=str)
    return st.out


def _ints(text: str, flag: str) -> list[int]:
    try:
        out = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} {text!r} is not a comma-separated list of whole numbers, "
                         f"e.g. 1,3,5") from None
    return out


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim detect`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "detect", help="will the vital statistics show it: P(observed decline), power, MDE",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  imsim detect scenarios/safe_sleep_south.yaml\n"
               "  imsim detect scenarios/safe_sleep.yaml --replicates 1000 --windows 1,3,5 "
               "--decline 10 --out results/detect\n\n"
               "Exit codes: 0 ok, 2 bad input (one line: file, key, value, what is allowed).")
    p.add_argument("file", help="scenario YAML file")
    p.add_argument("--out", metavar="DIR", help="folder to create (default: "
                   "results/detect-<name>-<timestamp>/); must not exist or be empty")
    p.add_argument("--replicates", type=int, default=200,
                   help="microsim draws (2 to 10000; default 200)")
    p.add_argument("--windows", default="1,3,5",
                   help="pooling windows in years, comma-separated (default 1,3,5)")
    p.add_argument("--decline", type=float, default=10.0,
                   help="the decline to observe, percent (default 10)")
    p.add_argument("--baseline-years", metavar="FIRST,LAST",
                   help="one baseline period for every window (default: the k years before the "
                        "horizon)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--calibration", help="calibration name or folder (default: the scenario's)")
    p.add_argument("--no-figures", action="store_true", help="skip the figure")
    p.add_argument("--quiet", action="store_true", help="no progress bar or headline")
    return p


def cmd_detect(args) -> int:
    """Run ``imsim detect``; InputError propagates (the CLI prints it and exits 2)."""
    from imsim.analysis.detect import baseline_periods, detect
    from imsim.config.scenario import load_scenario

    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    scenario = load_scenario(args.file)
    windows = _ints(args.windows, "--windows")
    base = None
    if args.baseline_years:
        base = _ints(args.baseline_years, "--baseline-years")
        if len(base) != 2:
            raise InputError(f"--baseline-years {args.baseline_years!r} must be FIRST,LAST, "
                             f"e.g. 2021,2025")
        base = tuple(base)
    if args.seed is not None and not 0 <= args.seed <= 2**63 - 1:
        raise InputError(f"--seed {args.seed} is out of range; allowed: 0 to 2**63 - 1")
    baseline_periods(scenario.years, windows, base)          # checked before any work
    cal = None
    name = args.calibration or scenario.calibration
    if name is not None and str(name) != "default":
        # As imsim run: a name is also searched beside the scenario file; None is "direct".
        from imsim.analysis.runner import get_calibration

        cal = get_calibration(name, scenario_dir=Path(args.file).parent)
        cal = "direct" if cal is None else cal
    det = detect(scenario, windows=windows, decline_pct=args.decline,
                 replicates=args.replicates, seed=args.seed, baseline_years=base,
                 calibration=cal, progress=not args.quiet)
    out = save_detect(det, args.out, figures=not args.no_figures)
    if not args.quiet:
        t = det.table
        k = max(det.settings["windows"])
        r = t[(t.state == ALL) & (t.race == ALL) & (t.window_years == k)].iloc[0]
        print(f"{scenario.name}: {r.eval_years} vs {r.baseline_years}, all races: "
              f"P(observed decline >= {args.decline:g}%) {r.p_observed_decline_scenario:.2f} "
              f"(no strategy {r.p_observed_decline_baseline:.2f}), power "
              f"{r.p_significant:.2f}, MDE {r.mde_pct:.1f}%")
        print(f"wrote {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0
