"""``imsim check``: the command, and the folder its comparison is written to.

The computation -- every published figure of ``validation.csv`` against the model's value with
its interval -- is :func:`imsim.analysis.check.run_check`. This module writes ``check.csv``,
``check.png`` and ``check.md`` into a new folder (default ``results/check-<timestamp>/``),
atomically (see :mod:`imsim.core.folders`), and is the command line of ``imsim check``. See
docs/check.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from imsim.analysis.check import CHECK_COLUMNS, MEDICAID_COVERAGE, QUANTITIES, CheckResult, run_check
from imsim.core.errors import InputError
from imsim.core.folders import atomic_folder, check_new

__all__ = ["add_parser", "cmd_check", "main", "save_check", "write_figure", "write_markdown"]

#: Where default check folders go (relative to the working directory).
RESULTS = "results"
FOLDER_NAME = "check"


def _label(row) -> str:
    q = QUANTITIES.get(row.quantity)
    name = q.label if q is not None else row.quantity
    pop = "" if row.population == "ALL" else f"{row.population}, "
    return f"{name} ({pop}{row.period})"


def _group(quantity: str) -> str:
    q = QUANTITIES.get(quantity)
    return q.group if q is not None else "Other"


def write_figure(result: CheckResult, path: Path) -> Path:
    """Draw published vs modelled values with their intervals, one panel per group and unit.

    Published: black squares with their interval; modelled: circles with the 95% interval of the
    draws, green when the intervals overlap and red when they do not. A panel whose values are all
    positive and span more than a factor of 50 has a logarithmic axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    t = result.table.copy()
    units = result.validation["unit"] if "unit" in result.validation else pd.Series([""] * len(t))
    t["panel"] = [f"{_group(q)}: {u}" for q, u in zip(t["quantity"], units.reset_index(drop=True))]
    panels = list(dict.fromkeys(t["panel"]))
    sizes = [int((t["panel"] == g).sum()) for g in panels]
    # Laid out by hand (tight_layout would draw the whole figure once more): 0.3 in per row,
    # 0.6 in between panels for a title and tick labels, 0.75 in above for the title and legend.
    gap, top, bottom = 0.6, 0.75, 0.4
    axes_h = [0.3 * n + 0.2 for n in sizes]
    height = sum(axes_h) + gap * (len(panels) - 1) + top + bottom
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, height),
                             gridspec_kw={"height_ratios": axes_h}, squeeze=False)
    fig.subplots_adjust(left=0.38, right=0.98, top=1 - top / height, bottom=bottom / height,
                        hspace=gap / (sum(axes_h) / len(panels)))
    for ax, g in zip(axes[:, 0], panels):
        sub = t[t["panel"] == g].reset_index(drop=True)
        y = np.arange(len(sub))[::-1].astype(float)
        pub, mod = sub["published"].astype(float), sub["modelled"].astype(float)
        plo = sub["published_lo"].astype(float).fillna(pub)
        phi = sub["published_hi"].astype(float).fillna(pub)
        mlo = sub["modelled_lo"].astype(float).fillna(mod)
        mhi = sub["modelled_hi"].astype(float).fillna(mod)
        ax.errorbar(pub, y + 0.15, xerr=np.clip([pub - plo, phi - pub], 0, None), fmt="s", color="black",
                    ms=4, lw=1.2, capsize=2, label="published")
        for ok, colour in ((True, "#1a9850"), (False, "#d73027")):
            m = (sub["within"] == ok).to_numpy() & mod.notna().to_numpy()
            if m.any():
                ax.errorbar(mod[m], y[m] - 0.15, xerr=np.clip([(mod - mlo)[m], (mhi - mod)[m]], 0, None),
                            fmt="o", color=colour, ms=4, lw=1.2, capsize=2,
                            label="modelled, intervals overlap" if ok else "modelled, no overlap")
        vals = pd.concat([plo, phi, mlo, mhi]).dropna()
        if len(vals) and (vals > 0).all() and vals.max() / vals.min() > 50:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif len(vals) and vals.min() < 0 < vals.max():
            ax.axvline(0, color="#999", lw=0.6)
        ax.set_yticks(y, [textwrap.shorten(_label(r), 70, placeholder="...") for r in sub.itertuples()],
                      fontsize=7.5)
        ax.set_ylim(-0.7, len(sub) - 0.3)
        ax.set_title(textwrap.shorten(g, 84, placeholder="..."), fontsize=9, loc="left", fontweight="bold")
        ax.tick_params(axis="x", labelsize=7.5)
        ax.grid(axis="x", color="#ddd", lw=0.5)
    handles, labels = [], []
    for ax in axes[:, 0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(f"imsim check: {result.summary()}", x=0.01, y=1 - 0.12 / height, ha="left", va="top",
                 fontsize=10)
    fig.legend(handles, labels, loc="upper right", bbox_to_anchor=(0.99, 1 - 0.06 / height), fontsize=8,
               ncol=3, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    return f"{x:.3g}" if abs(x) >= 0.01 else f"{x:.2g}"


def write_markdown(result: CheckResult, path: Path, command: str = "imsim check") -> Path:
    """Write ``check.md``: what was compared, how to read it, and the table by group."""
    from imsim.core.version import __version__
    from imsim.inputs.data import data_hash

    t = result.table
    val = result.validation
    lines = [
        "# imsim check: the model against published figures",
        "",
        f"**{result.summary()}.** `{command}` -- imsim {__version__}, data {data_hash()}, "
        f"{result.replicates} draw(s), seed {result.seed}, "
        f"{_dt.datetime.now().isoformat(timespec='seconds')}.",
        "",
        "Each row is a published figure that was *not* used to fit the model (sources: `source` column "
        "of check.csv and docs/check.md). `modelled` is the model's value of the same quantity (draw 0: "
        "evidence point values and the calibration's point); `modelled_lo`/`modelled_hi` are the "
        "2.5th-97.5th percentiles over the uncertainty draws. **within** = the published interval and the "
        "modelled interval overlap; it is information, not a test. `reason` says why a row that is not "
        "within can differ (how the model measures the quantity differently); the model is never adjusted "
        "to make a row pass.",
        "",
        f"Medicaid-expansion rows: ASSUMPTION coverage {MEDICAID_COVERAGE[0]:g} of the low-income births of "
        f"the expansion states (range {MEDICAID_COVERAGE[1]:g}-{MEDICAID_COVERAGE[0]:g}; the modelled interval "
        "spans both ends). CoIIN rows: the collaborative model with its default parameters in HHS Regions IV "
        "and VI, 2013-2014.",
        "",
    ]
    tt = t.copy()
    tt["group"] = [_group(q) for q in tt["quantity"]]
    for g in dict.fromkeys(tt["group"]):
        sub = tt[tt["group"] == g]
        lines += [f"## {g}", "", "| figure | published [lo, hi] | modelled [lo, hi] | within | reason |",
                  "|---|---|---|---|---|"]
        for r in sub.itertuples():
            lines.append(f"| {_label(r)} | {_fmt(r.published)} [{_fmt(r.published_lo)}, {_fmt(r.published_hi)}] "
                         f"| {_fmt(r.modelled)} [{_fmt(r.modelled_lo)}, {_fmt(r.modelled_hi)}] | "
                         f"{'yes' if r.within else 'no'} | {r.reason or ''} |")
        lines.append("")
    notes = val[val["note"].fillna("").str.match(r"^(INPUT|FITTED QUANTITY|PARTLY USED)")
                | val["note"].fillna("").str.contains("NOT INDEPENDENT")]
    if len(notes):
        lines += ["## Not independent checks", "",
                  ("These figures are also used by the model (an input, partly, or the same quantity fitted "
                   "to another source or year), so agreement is expected rather than evidence "
                   "(validation.csv `note`):"), ""]
        for r in notes.itertuples():
            lines.append(f"- {_label(r)}: {textwrap.shorten(str(r.note), 300, placeholder='...')}")
        lines.append("")
    Path(path).write_text("\n".join(lines), encoding="utf-8")
    return Path(path)


def save_check(result: CheckResult, out: str | os.PathLike | None = None,
               command: str = "imsim check") -> Path:
    """Write ``check.csv``, ``check.png`` and ``check.md`` into a new folder, atomically.

    Parameters
    ----------
    result : CheckResult
        The result of :func:`imsim.analysis.check.run_check`.
    out : path, optional
        The folder to create; it must not exist or be empty. Default: a fresh
        ``results/check-<timestamp>/``.
    command : str
        The command line recorded in check.md.

    Returns
    -------
    Path
        The folder written.
    """
    with atomic_folder(out, name=FOLDER_NAME, parent=RESULTS) as st:
        result.table[CHECK_COLUMNS].to_csv(st.tmp / "check.csv", index=False, float_format="%.6g")
        write_figure(result, st.tmp / "check.png")
        write_markdown(result, st.tmp / "check.md", command)
    return st.out


# ---------------------------------------------------------------------------------------------
# Command line (registered by imsim.cli)
# ---------------------------------------------------------------------------------------------

DESCRIPTION = """\
Compare the model with published figures that were NOT used to fit it: shares of infant deaths
and infant mortality by gestational age, gestational age of births by race/Hispanic origin,
neonatal share and SUID by race, the level III odds ratio the model implies (vs Lasswell et al.
2010), Medicaid-expansion difference-in-differences (Constantin & Wehby 2023, Bhatt &
Beck-Sague 2018, Wiggins et al. 2020) and the 2011-2014 CoIIN evaluation (Hirai et al. 2018).
The figures, each with its source, are the packaged table validation.csv (docs/check.md).

For every figure the model computes the same quantity (national 2013-2015 baseline, or the
strategy/collaborative run described in docs/check.md) over the uncertainty draws, and writes
into a new folder:
  check.csv   quantity, published, published_lo, published_hi, modelled, modelled_lo,
              modelled_hi, within, source, population, period, reason
  check.png   published (black) vs modelled (green: intervals overlap, red: they do not)
  check.md    the same table by group, and which figures are not independent checks

within = the published interval and the modelled 95% interval overlap. It is information, not
a pass/fail gate: the command exits 0 whenever it ran. reason explains a row that is not within
(e.g. "model GA measure differs", "model has no time trend")."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``imsim check`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "check", help="compare the model with published figures not used to fit it",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  imsim check                                  200 draws, results/check-<timestamp>/\n"
               "  imsim check --replicates 3 --out results/c   quick look\n"
               "  imsim check --seed 7                         other draws\n\n"
               "Exit codes: 0 ran (whatever the number within), 2 bad input.")
    p.add_argument("--out", metavar="DIR", help="folder to create (default: results/check-<timestamp>/); "
                   "must not exist or be empty")
    p.add_argument("--replicates", type=int, default=200, metavar="N",
                   help="uncertainty draws for the modelled intervals (default 200; 1 = point only)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the draws (default 0)")
    return p


def cmd_check(args) -> int:
    """Run ``imsim check``; InputError propagates (the CLI prints it and exits 2)."""
    t0 = time.perf_counter()
    if args.out:
        check_new(args.out)                  # before any work
    if not 1 <= args.replicates <= 5000:
        raise InputError(f"--replicates must be 1 to 5000, got {args.replicates}")
    if not 0 <= args.seed < 2**63:
        raise InputError(f"--seed {args.seed} is out of range; allowed 0 to 2**63 - 1")
    result = run_check(replicates=args.replicates, seed=args.seed)
    command = " ".join(["imsim check"] + (["--out", str(args.out)] if args.out else [])
                       + ["--replicates", str(args.replicates), "--seed", str(args.seed)])
    out = save_check(result, args.out, command)
    print(f"imsim check: {result.summary()} ({args.replicates} draw(s), seed {args.seed}); "
          f"wrote {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv=None) -> int:
    """Standalone entry point (``python -m imsim.output.checkfolder``), same exit codes."""
    parser = argparse.ArgumentParser(prog="imsim")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "check":
        argv = ["check", *argv]
    args = parser.parse_args(argv)
    try:
        return cmd_check(args)
    except InputError as exc:
        print(f"imsim: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
