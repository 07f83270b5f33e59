"""``imsim replay``: 2013-2017 replayed against the observed change in IMR (a validation).

The computation is :mod:`imsim.analysis.replay`; this module writes ``replay.csv``,
``replay_parts.csv``, ``replay.json``, ``replay.md`` and ``figures/replay.png`` atomically.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from imsim.core.constants import ALL
from imsim.core.errors import InputError
from imsim.core.folders import atomic_folder, check_new

DESCRIPTION = """\
Replay 2013-2017 in the model and compare the modelled change of the IMR from 2013 to 2017
with the observed change, by state (all races), nationally and nationally by race. Put in:
each state's Medicaid expansion from its own year (states.csv, KFF), the published smoking
trend (exposure_trends.csv), and the CoIIN collaborative (ABM with the published team counts,
support 2013-2017). Nothing is fitted to the observed change.

--trend origin2012 (default) refits the trend model on data through 2012, so the modelled
change is a forecast (a real test of the national change, the state differences in change and
the strategies' contribution). --trend packaged uses the calibration's trend, fitted to data
that include 2013-2017 (in-sample: national level and state slopes), for comparison.

Writes replay.csv (state, race, observed_2013, observed_2017, observed_change,
modelled_change, modelled_lo, modelled_hi, within; the interval is a 95% predictive interval
of the observed change: model uncertainty plus the Poisson noise of each year's deaths),
replay_parts.csv (the modelled change split into the trend's and the levers' parts),
replay.md (how well it does and why), replay.json and figures/replay.png."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim replay`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "replay", help="replay 2013-2017 (expansion, smoking trend, CoIIN) against observed change",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  imsim replay                                  200 draws, results/replay-<timestamp>/\n"
               "  imsim replay --replicates 40 --out results/r  quicker\n"
               "  imsim replay --trend packaged                 the in-sample trend, to compare\n\n"
               "Exit codes: 0 ran (however well it did), 2 bad input.")
    p.add_argument("--out", metavar="DIR",
                   help="folder to create (default: results/replay-<timestamp>/); must not "
                        "exist or be empty")
    p.add_argument("--replicates", type=int, default=200, metavar="N",
                   help="uncertainty draws for the intervals (default 200; 0 = point only)")
    p.add_argument("--seed", type=int, metavar="S", help="seed (default: the scenario's)")
    p.add_argument("--trend", choices=("origin2012", "packaged"), default="origin2012",
                   help="origin2012: trend refitted through 2012 (a forecast; default); "
                        "packaged: the calibration's trend (in-sample)")
    p.add_argument("--calibration", metavar="NAME_OR_DIR",
                   help="calibration (default: the packaged default fit)")
    return p


def write_figure(table, path: Path, trend: str) -> None:
    """Modelled vs observed change by state, with the predictive intervals and y = x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = table[table.state != ALL]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    yerr = None
    if st.modelled_lo.notna().all():
        yerr = np.vstack([st.modelled_change - st.modelled_lo, st.modelled_hi - st.modelled_change])
    colors = ["tab:blue" if w else "tab:red" for w in st.within.fillna(False)]
    ax.errorbar(st.observed_change, st.modelled_change, yerr=yerr, fmt="none",
                ecolor="0.75", lw=0.8, zorder=1)
    ax.scatter(st.observed_change, st.modelled_change, c=colors, s=18, zorder=2)
    for r in st.itertuples():
        ax.annotate(r.state, (r.observed_change, r.modelled_change), fontsize=6,
                    xytext=(2, 2), textcoords="offset points")
    nat = table[(table.state == ALL) & (table.race == ALL)].iloc[0]
    ax.scatter([nat.observed_change], [nat.modelled_change], marker="*", s=160, c="k",
               zorder=3, label="United States")
    lim = [min(st.observed_change.min(), st.modelled_lo.min() if yerr is not None else 0) - 0.2,
           max(st.observed_change.max(), st.modelled_hi.max() if yerr is not None else 0) + 0.2]
    ax.plot(lim, lim, color="0.4", lw=0.8, ls="--", label="modelled = observed")
    ax.axhline(0, color="0.85", lw=0.6)
    ax.axvline(0, color="0.85", lw=0.6)
    ax.set_xlabel("observed change in IMR, 2013 to 2017 (per 1,000)")
    ax.set_ylabel("modelled change (per 1,000), 95% predictive interval")
    ax.set_title(f"Replay 2013-2017 (trend: {trend}); red: observed outside the interval",
                 fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_text(res) -> str:
    """replay.md: how well the replay does, and why (numbers from ``res``)."""
    s = res.summary
    t = res.table
    nat = t[(t.state == ALL) & (t.race == ALL)].iloc[0]
    races = t[(t.state == ALL) & (t.race != ALL) & t.observed_change.notna()]
    insample = res.trend == "packaged"
    lines = [
        "# Replay 2013-2017: modelled vs observed change in infant mortality", "",
        f"Trend model: **{res.trend}** "
        + ("(the calibration's own trend, fitted to data that include 2013-2017: the national "
           "level and the state slopes are IN-SAMPLE; shown for comparison, not as a test)."
           if insample else
           "(refitted on data through 2012: national level, state levels and slopes; race "
           "slopes as packaged, fitted to 2018-2023. The change is a forecast; the only "
           "in-sample part is the calibration's 2013-2015 level, which largely cancels in a "
           "change)."), "",
        f"* States: the observed change lies inside the model's 95% predictive interval in "
        f"{s['states_within']} of {s['states']} states"
        + (f" (draws: {s['draws']})." if s['draws'] else " (no draws: no intervals)."),
        f"* Mean absolute error of the state changes: {s['state_change_mae']:.3f} per 1,000, "
        f"against {s['state_change_mae_no_change']:.3f} for predicting no change; correlation "
        f"of modelled and observed state changes {s['state_change_corr']:.2f}.",
        f"* Nation: observed {nat.observed_change:+.2f} per 1,000 ({nat.observed_2013:.2f} to "
        f"{nat.observed_2017:.2f}), modelled {nat.modelled_change:+.2f}"
        + ("" if np.isnan(nat.modelled_lo) else
           f" ({nat.modelled_lo:+.2f} to {nat.modelled_hi:+.2f})")
        + f", of which the levers (Medicaid expansion and the CoIIN) {s['national_levers_change']:+.2f}.",
    ]
    for r in races.itertuples():
        lines.append(f"* Nation, {r.race}: observed {r.observed_change:+.1f}, modelled "
                     f"{r.modelled_change:+.2f}"
                     + ("" if np.isnan(r.modelled_lo) else
                        f" ({r.modelled_lo:+.2f} to {r.modelled_hi:+.2f})") + ".")
    lines += [
        "", "## Why", "",
        "* Most year-to-year change of a state's IMR is noise: a state with 20,000 births and "
        "130 deaths has a Poisson standard error of about 0.6 per 1,000 per year, so the "
        "predictive intervals are wide and an interval count near the nominal 95% says little "
        "about skill; the error against 'no change' and the correlation do.",
        "* The model's state differences in change come from the trend model's state slopes "
        "(2007-2012 for the forecast) and from where the levers act (expansion states, CoIIN "
        "teams). State slopes over a few noisy years carry little signal, and the levers' "
        "effects (a few hundredths to tenths per 1,000) are small against the noise.",
        "* The levers' national contribution rests on the evidence library's effects at the "
        "ABM's coverage (an ASSUMPTION-laden path: which states chose which strategy is not "
        "published). The Medicaid expansion effect is a null difference-in-differences for all "
        "races (Wiggins 2020), so expansion moves the change little except for Hispanic births.",
        "* Observed national rates by race are one-decimal figures (America's Children HEALTH2) "
        "and the 2017 NH AIAN rate is single race (2013 bridged race): their changes carry "
        "rounding and a definition change. NH API is not compared (no comparable 2017 group).",
        "* Nothing was adjusted to these observations. Rows outside their interval are "
        "information, not a gate.",
    ]
    return "\n".join(lines) + "\n"


def cmd_replay(args) -> int:
    """Run ``imsim replay``; InputError propagates (the CLI prints it, exit 2)."""
    from imsim.analysis.replay import run_replay

    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    if not 0 <= args.replicates <= 5000:
        raise InputError(f"--replicates {args.replicates} is out of range; allowed: 0 to 5000")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise InputError(f"--seed {args.seed} is out of range; allowed: 0 to 2**63 - 1")
    cal = None
    if args.calibration:
        from imsim.analysis.runner import get_calibration

        cal = get_calibration(args.calibration)
    res = run_replay(replicates=args.replicates, seed=args.seed, trend=args.trend,
                     calibration=cal)
    with atomic_folder(args.out, name="replay") as st:
        tmp = Path(st.tmp)
        res.table.to_csv(tmp / "replay.csv", index=False)
        res.parts.to_csv(tmp / "replay_parts.csv", index=False)
        (tmp / "replay.md").write_text(report_text(res))
        (tmp / "replay.json").write_text(json.dumps(
            {**res.summary, "seconds": time.perf_counter() - t0}, indent=2))
        (tmp / "figures").mkdir()
        write_figure(res.table, tmp / "figures" / "replay.png", res.trend)
        out = st.out
    s = res.summary
    print(f"imsim replay ({res.trend}): observed 2013-2017 change inside the 95% predictive "
          f"interval in {s['states_within']} of {s['states']} states; state MAE "
          f"{s['state_change_mae']:.3f} vs {s['state_change_mae_no_change']:.3f} for no change; "
          f"nation observed {s['national_observed_change']:+.2f}, modelled "
          f"{s['national_modelled_change']:+.2f}; wrote {out}/ in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
