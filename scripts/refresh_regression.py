"""Refresh the committed fixed-seed regression baseline in ``tests/regression/``.

``tests/test_regression.py`` reruns a few scenarios with a fixed engine, seed and number of
replicates and compares their ``summary`` table with the CSV files written here. Refresh them only
on purpose -- when a change is *meant* to move the numbers (a model fix, new data, a new way of
making random draws) -- and say why in the commit message::

    python scripts/refresh_regression.py            # rerun, check, write tests/regression/
    python scripts/refresh_regression.py --check    # compare with the committed files only

Each case is run twice and nothing is written unless both runs agree exactly (a baseline that a
rerun cannot reproduce would only make the test flaky) and every table passes basic checks; all
files are then replaced together. ``regression.json`` records the command, the imsim version,
the git commit, the date and each case's settings.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "tests" / "regression"
MANIFEST = "regression.json"
COMMAND = "python scripts/refresh_regression.py"

#: Count columns that are sums of whole numbers, compared exactly.
_COUNTS = ["deaths_baseline", "deaths_scenario", "deaths_averted",
           "preterm_baseline", "preterm_scenario", "preterm_averted"]
#: Output file -> how it is made. ``exact``: columns compared exactly (births are whole in both
#: engines; the microsim also counts whole deaths and preterm births).
CASES: dict[str, dict] = {
    "baseline_summary.csv": {"scenario": "scenarios/baseline.yaml", "engine": "expected",
                             "seed": 1, "replicates": 20, "exact": ["births"]},
    "safe_sleep_summary.csv": {"scenario": "scenarios/safe_sleep.yaml", "engine": "expected",
                               "seed": 1, "replicates": 20, "exact": ["births"]},
    "microsim_south_summary.csv": {"scenario": "scenarios/safe_sleep_south.yaml",
                                   "engine": "microsim", "seed": 3, "replicates": 3,
                                   "exact": ["births"] + _COUNTS},
}
KEYS = ["state", "race"]
#: Relative tolerance of floating columns. A difference of two arms (``*_averted``) is held to
#: 1e-9 of the baseline arm it is computed from, which absorbs rounding noise in differences that
#: should be zero (preterm births "averted" by safe sleep come out as ~1e-12, not 0); every
#: column has an absolute floor of 1e-9.
RTOL = 1e-9
ATOL = 1e-9
DIFFERENCE_OF = {"deaths_averted": "deaths_baseline", "deaths_averted_lo": "deaths_baseline",
                 "deaths_averted_hi": "deaths_baseline", "preterm_averted": "preterm_baseline"}


# ---------------------------------------------------------------------------------------------
# Running and comparing (also used by tests/test_regression.py)
# ---------------------------------------------------------------------------------------------

def run_case(name: str):
    """The ``summary`` table of case ``name``, through the public API."""
    import imsim

    case = CASES[name]
    scenario = imsim.load_scenario(ROOT / case["scenario"])
    result = imsim.run(scenario, engine=case["engine"], seed=case["seed"],
                       replicates=case["replicates"])
    return result.summary.reset_index(drop=True)


def read_baseline(path: Path):
    """A committed baseline CSV, read back exactly as written (NaN from empty cells only)."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def write_baseline(df, path: Path) -> None:
    """Write with 17 significant digits, so every float reads back bit for bit."""
    df.to_csv(path, index=False, float_format="%.17g", na_rep="", lineterminator="\n")


def compare(expected, actual, exact=("births",), max_report: int = 20) -> list[str]:
    """Differences between a committed table and a fresh one, one line per differing column
    (at most ``max_report``) with its worst row; empty if they agree.

    Rows must have the same keys in the same order; every committed column must be present
    (new columns may be added); ``exact`` columns must be equal; other numeric columns equal
    within ``RTOL`` (see ``DIFFERENCE_OF``, ``ATOL``) and NaN where the committed value is NaN.
    """
    import numpy as np

    problems: list[str] = []
    missing = [c for c in expected.columns if c not in actual.columns]
    if missing:
        problems.append(f"columns missing from the fresh table: {missing}")
    ek = list(zip(*(expected[k].astype(str) for k in KEYS)))
    ak = list(zip(*(actual[k].astype(str) for k in KEYS))) if not missing else []
    if not missing and ek != ak:
        problems.append(f"row keys differ: {len(ek)} committed rows, {len(ak)} fresh rows; "
                        f"first committed {ek[:3]}, first fresh {ak[:3]}")
    if problems:
        return problems
    n_cols = 0
    for col in expected.columns:
        if col in KEYS:
            continue
        e = expected[col].to_numpy(dtype=float)
        a = actual[col].to_numpy(dtype=float)
        if col in exact:
            bad = ~((e == a) | (np.isnan(e) & np.isnan(a)))
        else:
            scale = np.abs(e)
            if DIFFERENCE_OF.get(col) in expected.columns:
                scale = np.fmax(scale, np.abs(expected[DIFFERENCE_OF[col]].to_numpy(float)))
            with np.errstate(invalid="ignore"):
                close = np.abs(a - e) <= ATOL + RTOL * scale
            bad = ~(close | (np.isnan(e) & np.isnan(a)))
        if not bad.any():
            continue
        n_cols += 1
        if n_cols > max_report:
            continue
        rows = np.flatnonzero(bad)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(a[rows] - e[rows]) / np.abs(e[rows])
        worst = rows[np.argmax(np.where(np.isnan(rel), np.inf, rel))]   # NaN vs number first
        key = ", ".join(str(expected[k].iloc[worst]) for k in KEYS)
        how = "compared exactly" if col in exact else f"rel. tol. {RTOL:g}"
        problems.append(f"{col}: {rows.size} of {len(e)} rows differ ({how}); e.g. ({key}): "
                        f"committed {e[worst]:.17g}, now {a[worst]:.17g}")
    if n_cols > max_report:
        problems.append(f"... and {n_cols - max_report} more columns")
    return problems


def check_table(name: str, df) -> list[str]:
    """Sanity checks before a table may become the baseline."""
    import numpy as np

    problems = []
    if df.empty:
        problems.append("empty table")
    for k in KEYS:
        if k not in df.columns:
            problems.append(f"no {k!r} column")
    if not problems and df.duplicated(KEYS).any():
        problems.append("duplicate state x race rows")
    for col in CASES[name]["exact"]:
        if col not in df.columns:
            problems.append(f"no {col!r} column")
            continue
        v = df[col].to_numpy(dtype=float)
        if not np.all(np.isfinite(v)) or not np.all(v == np.round(v)):
            problems.append(f"{col} is not whole numbers, so it cannot be compared exactly")
    num = df.select_dtypes("number").to_numpy(dtype=float)
    if np.isinf(num).any():
        problems.append("infinite values")
    return [f"{name}: {p}" for p in problems]


# ---------------------------------------------------------------------------------------------
# Refreshing
# ---------------------------------------------------------------------------------------------

def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _manifest(tables: dict, timings: dict) -> dict:
    from importlib import metadata

    import imsim

    versions = {}
    for pkg in ("numpy", "pandas", "numba", "scipy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    status = _git("status", "--porcelain", "--", "src")
    return {
        "note": "Generated; refresh only on purpose with the command below, and say why in "
                "the commit message. Compared by tests/test_regression.py.",
        "command": COMMAND,
        "imsim_version": imsim.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_src_modified": None if status is None else bool(status),
        "python": sys.version.split()[0],
        "dependencies": versions,
        "files": {name: {**CASES[name],
                         "rows": len(tables[name]),
                         "seconds": round(timings[name], 2)}
                  for name in CASES},
    }


def _case_settings() -> dict:
    return {name: dict(case) for name, case in CASES.items()}


def _recorded_cases() -> dict | None:
    """The case settings recorded in the committed manifest (None if unreadable)."""
    try:
        files = json.loads((OUT_DIR / MANIFEST).read_text(encoding="utf-8"))["files"]
        return {name: {k: files[name][k] for k in case} for name, case in CASES.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_all(tables: dict, manifest: dict) -> None:
    """Write every file to a temporary folder beside the target, then move them in."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OUT_DIR, prefix=".refresh-") as tmp:
        tmp = Path(tmp)
        for name, df in tables.items():
            write_baseline(df, tmp / name)
            back = read_baseline(tmp / name)          # the file must compare equal to itself
            if compare(back, df, exact=CASES[name]["exact"]):
                raise RuntimeError(f"{name} does not read back as written; nothing replaced")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for name in list(tables) + [MANIFEST]:
            os.replace(tmp / name, OUT_DIR / name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare fresh runs with the committed files; write nothing")
    parser.add_argument("--once", action="store_true",
                        help="run each case once (skip the reproducibility rerun)")
    parser.add_argument("--force", action="store_true",
                        help="write even if nothing changed (new date and commit)")
    args = parser.parse_args(argv)
    # The baseline must come from this checkout, not from another installed imsim.
    sys.path.insert(0, str(ROOT / "src"))

    t_start = time.perf_counter()
    tables, timings, problems = {}, {}, []
    for name, case in CASES.items():
        t0 = time.perf_counter()
        try:
            df = run_case(name)
        except Exception as exc:           # e.g. imsim.run broken mid-refactor: say which case
            print(f"{name}: running {case['scenario']} failed ({type(exc).__name__}: {exc}); "
                  "nothing written", file=sys.stderr)
            raise
        timings[name] = time.perf_counter() - t0
        tables[name] = df
        problems += check_table(name, df)
        if not args.once and not args.check:
            again = run_case(name)
            diff = compare(df, again, exact=[c for c in df.columns if c not in KEYS],
                           max_report=4)
            problems += [f"{name}: not reproducible on a rerun: {d}" for d in diff]
        print(f"{name}: {case['scenario']} engine={case['engine']} seed={case['seed']} "
              f"replicates={case['replicates']}: {len(df)} rows, {timings[name]:.1f} s")

    changed = 0
    for name in CASES:
        path = OUT_DIR / name
        if not path.exists():
            print(f"  {name}: new")
            changed += 1
            continue
        diff = compare(read_baseline(path), tables[name], exact=CASES[name]["exact"],
                       max_report=20)
        changed += bool(diff)
        print(f"  {name}: " + ("unchanged" if not diff else "CHANGED\n    " + "\n    ".join(diff)))
    if problems:
        print("\nNot written:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    if args.check:
        print(f"\n{changed} of {len(CASES)} files differ from the committed baseline.")
        return 1 if changed else 0
    if not changed and not args.force and _recorded_cases() == _case_settings():
        print("\nThe baseline is up to date; nothing written (--force rewrites it).")
        return 0
    _write_all(tables, _manifest(tables, timings))
    print(f"\nWrote {len(CASES)} files and {MANIFEST} to {OUT_DIR.relative_to(ROOT)}/ "
          f"in {time.perf_counter() - t_start:.1f} s. Commit them with the reason the numbers "
          "moved.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
