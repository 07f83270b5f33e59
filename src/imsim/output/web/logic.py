"""The workbench's logic without the browser: the page's scenario mapping, its validation, the
instant headline, the background draws, and the results folder the server may touch.

Everything here is plain Python over the library (:func:`imsim.config.scenario.parse_scenario`,
:func:`imsim.analysis.runner.run`, :func:`imsim.output.runfolder.save_result`), so it is tested
without a browser; :mod:`imsim.output.web.app` only draws it.
"""
from __future__ import annotations

import base64
import copy
import json
import math
import mimetypes
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imsim.core.constants import RACES, STATES, STRATEGIES
from imsim.core.errors import InputError

#: What a new page starts with: three states, safe sleep at half coverage.
DEFAULT_SPEC: dict = {"name": "workbench", "years": [2026, 2030], "states": ["AL", "GA", "MS"],
                      "strategies": {"safe_sleep": {"coverage": 0.5}}}

#: Human names of the strategies and races (as the reports write them).
STRATEGY_LABELS = {"safe_sleep": "Safe sleep", "smoking_cessation": "Smoking cessation",
                   "preterm_prevention": "Preterm prevention",
                   "preconception_care": "Preconception care",
                   "risk_appropriate_care": "Risk-appropriate care",
                   "social_determinants": "Social determinants"}
RACE_LABELS = {"nh_white": "NH white", "nh_black": "NH black", "hispanic": "Hispanic",
               "nh_api": "NH Asian/PI", "nh_aian": "NH AI/AN", "ALL": "All"}

#: A U.S. tile map: (row, column) of each state, one square per state.
TILES: dict[str, tuple[int, int]] = {
    "AK": (0, 0), "ME": (0, 11),
    "VT": (1, 10), "NH": (1, 11),
    "WA": (2, 1), "ID": (2, 2), "MT": (2, 3), "ND": (2, 4), "MN": (2, 5), "IL": (2, 6),
    "WI": (2, 7), "MI": (2, 8), "NY": (2, 9), "RI": (2, 10), "MA": (2, 11),
    "OR": (3, 1), "NV": (3, 2), "WY": (3, 3), "SD": (3, 4), "IA": (3, 5), "IN": (3, 6),
    "OH": (3, 7), "PA": (3, 8), "NJ": (3, 9), "CT": (3, 10),
    "CA": (4, 1), "UT": (4, 2), "CO": (4, 3), "NE": (4, 4), "MO": (4, 5), "KY": (4, 6),
    "WV": (4, 7), "VA": (4, 8), "MD": (4, 9), "DE": (4, 10),
    "AZ": (5, 2), "NM": (5, 3), "KS": (5, 4), "AR": (5, 5), "TN": (5, 6), "NC": (5, 7),
    "SC": (5, 8), "DC": (5, 9),
    "OK": (6, 4), "LA": (6, 5), "MS": (6, 6), "AL": (6, 7), "GA": (6, 8),
    "HI": (7, 0), "TX": (7, 4), "FL": (7, 9),
}

MIN_DRAWS, MAX_DRAWS = 40, 1000


# ---------------------------------------------------------------------------------------------
# The results folder: the only place the server reads files from and writes to
# ---------------------------------------------------------------------------------------------

def inside(root: str | Path, name: str, what: str = "file") -> Path:
    """Resolve ``name`` (relative to ``root``, or absolute) and refuse it outside ``root``.

    Symbolic links are followed before the check, so a link pointing out is refused too.

    Parameters
    ----------
    root : path
        The server's results folder.
    name : str
        What the user typed.
    what : str
        Named in the message.

    Returns
    -------
    Path
        The resolved path, inside ``root``.

    Raises
    ------
    InputError
        One line when ``name`` is empty or resolves outside ``root``.
    """
    root = Path(root).resolve()
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"no {what} name given; allowed: a name inside {root}")
    if "\x00" in name:
        raise InputError(f"{what} {name!r} holds a NUL character; allowed: a name inside {root}")
    path = (root / name.strip()).resolve()
    if path != root and root not in path.parents:
        raise InputError(f"{what} {name.strip()} is outside the results folder; allowed: a "
                         f"name inside {root}")
    return path


def save_yaml(root: str | Path, name: str, spec: dict) -> Path:
    """Validate ``spec`` and write it as ``<root>/<name>`` (``.yaml``/``.yml``), atomically.

    Raises
    ------
    InputError
        For a path outside ``root``, another suffix, or an invalid scenario (nothing written).
    """
    from imsim.config.scenario import parse_scenario
    from imsim.core.folders import atomic_file

    path = inside(root, name)
    if path.suffix not in (".yaml", ".yml"):
        raise InputError(f"{name.strip()}: a scenario file ends in .yaml or .yml")
    parse_scenario(copy.deepcopy(spec))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, overwrite=True) as tmp:
        Path(tmp).write_text(spec_yaml(spec), encoding="utf-8")
    return path


def load_yaml(root: str | Path, name: str) -> dict:
    """Read ``<root>/<name>`` with the command line's reader and validate it as a scenario.

    Returns
    -------
    dict
        The file's mapping, as written (the page edits it).

    Raises
    ------
    InputError
        The command line's one-line message (file, key path, value, what is allowed).
    """
    from imsim.config.scenario import parse_scenario
    from imsim.core.validation import read_yaml

    path = inside(root, name)
    data = read_yaml(path)
    parse_scenario(copy.deepcopy(data), file=str(path))
    return data


def parse_uploaded(text: str, file: str) -> dict:
    """A dropped YAML file's text, read and validated like ``imsim validate``."""
    from imsim.config.scenario import parse_scenario
    from imsim.core.validation import parse_yaml

    data = parse_yaml(text, file=file)
    parse_scenario(copy.deepcopy(data), file=file)
    return data


def spec_yaml(spec: dict) -> str:
    """The page's scenario as YAML (keys in the page's order)."""
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, allow_unicode=True)


# ---------------------------------------------------------------------------------------------
# Page fields <-> the scenario mapping
# ---------------------------------------------------------------------------------------------

def number_or_text(text: str) -> Any:
    """``7`` -> 7, ``0.5`` -> 0.5; anything else stays text (for validation to name)."""
    t = text.strip()
    try:
        return int(t) if re.fullmatch(r"[+-]?\d+", t) else float(t)
    except ValueError:
        return t


def parse_coverage(text: str) -> Any:
    """A coverage field: ``0.5`` (one number) or a ramp ``2026: 0.2, 2030: 0.6``.

    What cannot be read is passed on as text, so the scenario's own validation names it.
    """
    t = (text or "").strip()
    if ":" in t:
        out: dict = {}
        for part in t.strip("{}").split(","):
            if not part.strip():
                continue
            k, _, v = part.partition(":")
            key = number_or_text(k)
            if not isinstance(key, int):
                return t
            out[key] = number_or_text(v)
        return out
    return number_or_text(t) if t else t


def format_coverage(value: Any) -> str:
    """The coverage field's text for a scenario's coverage value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def parse_reach(text: str) -> Any:
    """A reach field: ``nh_black: 1, nh_white: 0.8`` (empty: no reach key)."""
    t = (text or "").strip()
    if not t:
        return None
    out: dict = {}
    for part in t.strip("{}").split(","):
        if part.strip():
            k, sep, v = part.partition(":")
            if not sep:
                return t
            out[k.strip()] = number_or_text(v)
    return out


def format_reach(value: Any) -> str:
    """The reach field's text for a scenario's reach value."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return "" if value is None else str(value)


def with_value(spec: dict, path: tuple, value: Any) -> dict:
    """A copy of ``spec`` with ``path`` set to ``value`` (``None`` removes the key)."""
    new = copy.deepcopy(spec)
    node = new
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return new


def toggle_strategy(spec: dict, sid: str, on: bool) -> dict:
    """Add (coverage 0.5) or remove a strategy, keeping the others' order."""
    new = copy.deepcopy(spec)
    strategies = new.get("strategies") if isinstance(new.get("strategies"), dict) else {}
    if on and sid not in strategies:
        strategies[sid] = {"coverage": 0.5}
    elif not on:
        strategies.pop(sid, None)
    new["strategies"] = {k: strategies[k] for k in list(STRATEGIES) + list(strategies)
                         if k in strategies}
    if not new["strategies"]:
        new.pop("strategies")
    return new


def toggle_state(spec: dict, state: str) -> dict:
    """Add or remove one state (``all`` becomes the 51 states less this one)."""
    states = spec.get("states")
    states = list(STATES) if states == "all" else list(states or [])
    states = [s for s in states if s != state] if state in states else states + [state]
    return with_value(spec, ("states",), [s for s in STATES if s in states] or [state])


# ---------------------------------------------------------------------------------------------
# Validation and the instant headline
# ---------------------------------------------------------------------------------------------

def validate(spec: dict):
    """(scenario, None, warnings) or (None, one-line message, [])."""
    from imsim.config.scenario import parse_scenario

    try:
        scenario = parse_scenario(copy.deepcopy(spec))
    except InputError as exc:
        return None, exc.format(), []
    return scenario, None, list(scenario.horizon_warnings())


@dataclass
class Outcome:
    """What the page shows of one run (point values, or with its draws' intervals)."""

    headline: dict
    by_race: list[dict]
    disparity: dict | None
    by_state: list[dict]
    warnings: list[str]
    seconds: float
    draws: int = 0
    attribution: list[dict] = field(default_factory=list)
    trajectories: list[dict] = field(default_factory=list)


def _f(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def outcome(result, seconds: float) -> Outcome:
    """The page's numbers from a finished run."""
    from imsim.analysis import results as R

    s = result.summary
    total = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
    head = R.headline(result, total)
    head.update(births=_f(total.births), deaths_baseline=_f(total.deaths_baseline),
                imr_baseline=_f(total.imr_baseline), imr_scenario=_f(total.imr_scenario))
    ok = R.interval_reliable(result)
    by_race = []
    for race in (*RACES, "ALL"):
        rows = s[(s.state == "ALL") & (s.race == race)]
        if rows.empty:
            continue
        r = rows.iloc[0]
        by_race.append({"race": RACE_LABELS[race], "births": _f(r.births),
                        "imr_baseline": _f(r.imr_baseline), "imr_scenario": _f(r.imr_scenario),
                        "deaths_averted": _f(r.deaths_averted),
                        "lo": _f(r.deaths_averted_lo) if ok else None,
                        "hi": _f(r.deaths_averted_hi) if ok else None})
    d = result.table("disparities")
    dd = d[(d.state == "ALL") & (d.race == "nh_black")]
    disparity = None
    if not dd.empty:
        r = dd.iloc[0]
        disparity = {"rd_baseline": _f(r.rate_difference_baseline),
                     "rd_scenario": _f(r.rate_difference_scenario),
                     "rd_change": _f(r.rate_difference_change),
                     "rd_change_lo": _f(r.rate_difference_change_lo) if ok else None,
                     "rd_change_hi": _f(r.rate_difference_change_hi) if ok else None,
                     "rr_baseline": _f(r.rate_ratio_baseline),
                     "rr_scenario": _f(r.rate_ratio_scenario),
                     "gap_closed_pct": _f(r.gap_closed_pct)}
    st = s[(s.state != "ALL") & (s.race == "ALL")]
    by_state = [{"state": r.state, "births": _f(r.births), "deaths_averted": _f(r.deaths_averted),
                 "lo": _f(r.deaths_averted_lo) if ok else None,
                 "hi": _f(r.deaths_averted_hi) if ok else None,
                 "imr_baseline": _f(r.imr_baseline), "imr_scenario": _f(r.imr_scenario),
                 "imr_change_pct": _f(r.imr_change_pct)} for r in st.itertuples()]
    return Outcome(headline=head, by_race=by_race, disparity=disparity, by_state=by_state,
                   warnings=list(result.warnings), seconds=seconds, draws=R.n_draws(result),
                   trajectories=trajectories(result))


def instant(spec: dict) -> tuple[Outcome | None, str | None]:
    """The expected engine at point values (draw 0 only): the headline of a page change.

    Returns
    -------
    (Outcome, None) or (None, message)
        The message is the command line's one line for an invalid scenario.
    """
    from imsim.analysis.runner import run

    t0 = time.perf_counter()
    scenario, error, warns = validate(spec)
    if error:
        return None, error
    try:
        result = run(scenario, engine="expected", replicates=1)
    except InputError as exc:
        return None, exc.format()
    out = outcome(result, time.perf_counter() - t0)
    out.warnings = warns + out.warnings
    return out, None


def check_draws(n) -> str | None:
    """One line when the page's draw count is not a whole number from MIN_DRAWS to MAX_DRAWS."""
    if isinstance(n, bool) or not isinstance(n, int) or not MIN_DRAWS <= n <= MAX_DRAWS:
        return (f"uncertainty draws {n} is out of range; allowed: a whole number from "
                f"{MIN_DRAWS} (fewer give no 95% interval) to {MAX_DRAWS}")
    return None


def with_draws(spec: dict, draws: int, on_draw=None, attribution: bool = True):
    """The same scenario with ``draws`` uncertainty draws (the background job).

    Returns
    -------
    (result, Outcome)
        The run (to save as a folder) and the page's numbers with intervals.
    """
    from imsim.analysis.runner import run

    scenario, error, _ = validate(spec)
    if error:
        raise InputError(error)
    t0 = time.perf_counter()
    result = run(scenario, engine="expected", replicates=int(draws), on_draw=on_draw)
    out = outcome(result, time.perf_counter() - t0)
    if attribution:
        out.attribution = attribution_rows(result)
    return result, out


def attribution_rows(result) -> list[dict]:
    """Deaths averted by strategy, summed over states (Shapley shares of the portfolio)."""
    a = result.table("attribution")
    if a.empty:
        return []
    g = a.groupby("strategy", sort=False)["deaths_averted"].sum()
    total = float(g.sum())
    return [{"strategy": STRATEGY_LABELS.get(k, k), "deaths_averted": float(v),
             "share_pct": 100 * float(v) / total if total else None} for k, v in g.items()]


def save_run(root: str | Path, result) -> Path:
    """Write ``result`` as a new run folder ``<root>/<name>-<timestamp>/`` (as ``imsim run``)."""
    from imsim.core.folders import new_folder
    from imsim.output.runfolder import save_result

    out = new_folder(result.scenario.name, parent=Path(root))
    return save_result(result, out)


# ---------------------------------------------------------------------------------------------
# Existing run and recommend folders (read-only)
# ---------------------------------------------------------------------------------------------

def run_folders(root: str | Path) -> list[dict]:
    """The run and recommend folders directly inside ``root``, newest first."""
    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    for p in root.iterdir():
        if not p.is_dir() or p.name.startswith("."):
            continue
        page = next((p / n for n in ("report.html", "index.html") if (p / n).is_file()), None)
        if page is None:
            continue
        head = ""
        rj = p / "results.json"
        if rj.is_file():
            try:
                data = json.loads(rj.read_text(encoding="utf-8"))
                h = data.get("deaths_averted") or {}
                if isinstance(h, dict) and h.get("value") is not None:
                    head = f"{h['value']:,.0f} deaths averted"
            except (OSError, ValueError, TypeError, KeyError):
                head = ""
        found.append({"name": p.name, "page": page.name, "headline": head,
                      "mtime": p.stat().st_mtime})
    return sorted(found, key=lambda r: -r["mtime"])


_SRC = re.compile(r'(src|href)="([^"#:?]+\.(?:png|svg|jpg|css))"')


def page_html(root: str | Path, name: str) -> str:
    """An HTML page of a results folder with its images inlined (for an ``<iframe srcdoc>``).

    Only files inside ``root`` are read; the page's own links stay as written.
    """
    path = inside(root, name, what="page")
    if path.suffix != ".html" or not path.is_file():
        raise InputError(f"{name}: not an HTML page of the results folder")
    text = path.read_text(encoding="utf-8")

    def inline(m):
        try:
            f = inside(root, str((path.parent / m.group(2)).relative_to(Path(root).resolve())))
        except (InputError, ValueError):
            return m.group(0)
        if not f.is_file():
            return m.group(0)
        mime = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
        data = base64.b64encode(f.read_bytes()).decode("ascii")
        return f'{m.group(1)}="data:{mime};base64,{data}"'

    return _SRC.sub(inline, text)


# ---------------------------------------------------------------------------------------------
# The collaborative's coverage trajectories, and recommend for the page's states
# ---------------------------------------------------------------------------------------------

def trajectories(result) -> list[dict]:
    """Mean coverage of the collaborative's team-strategy pairs by quarter and strategy
    (empty without a ``collaborative`` block)."""
    if result.scenario.collaborative is None:
        return []
    c = result.table("coverage")
    if c.empty or "quarter" not in c:
        return []
    g = c.groupby(["year", "quarter", "strategy"], sort=True)["coverage"].agg(["mean", "min",
                                                                                "max", "size"])
    return [{"t": y + (q - 1) / 4, "year": int(y), "quarter": int(q), "strategy": s,
             "mean": float(r["mean"]), "min": float(r["min"]), "max": float(r["max"]),
             "teams": int(r["size"])} for (y, q, s), r in g.iterrows()]


def recommend_plan(spec: dict, draws: int, max_strategies: int = 3) -> dict:
    """A ``recommend`` plan from the page: its states, years and strategies (as candidates, with
    their coverage and options), the cost library, ``draws`` draws, the page's seed."""
    keep = ("name", "description", "states", "years", "strategies", "collaborative", "seed",
            "effects", "births_change_per_year")
    plan = {k: copy.deepcopy(spec[k]) for k in keep if k in spec}
    n = len(spec.get("strategies") or {}) if isinstance(spec.get("strategies"), dict) else 0
    plan.update(max_strategies=max(1, min(int(max_strategies), n or 1)), costs="library",
                draws=int(draws))
    return plan


def run_recommend(root: str | Path, spec: dict, draws: int) -> Path:
    """Run ``imsim recommend`` on :func:`recommend_plan` and write its folder inside ``root``.

    Raises
    ------
    InputError
        The plan's one-line message (the same as ``imsim recommend`` gives).
    """
    from imsim.analysis.recommend import parse_plan, recommend
    from imsim.core.folders import new_folder
    from imsim.output.recommendation import save

    rp = parse_plan(recommend_plan(spec, draws))
    rec = recommend(rp)
    name = str(spec.get("name") or "workbench")
    out = new_folder(f"recommend-{name}", parent=Path(root))
    return save(rec, out)
