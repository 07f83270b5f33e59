"""Import CDC WONDER "Export" text files as imsim calibration targets.

A WONDER export is one tab-delimited table followed by a quoted notes footer. The first column is
``Notes`` (empty on data lines, ``Total`` on total lines); each grouping variable gives a quoted label
column and a ``<label> Code`` column; measures (``Deaths``, ``Births``, ``Death Rate``...) are unquoted
numbers or markers (``Suppressed``, ``Not Available``, ``Not Applicable``, ``Missing County``,
``Unreliable``, ``<rate> (Unreliable)``). The table ends at the first line that is exactly ``"---"``;
the footer holds ``Dataset:``, the query parameters (years, ``Group By``, ``Show Totals``,
``Show Suppressed``, ``Calculate Rates Per``), messages and caveats. With ``Show Suppressed: False``
suppressed rows are simply absent: a missing state (x race) cell is reported as ``suppressed``, not 0.

:func:`parse_wonder` reads one file; :func:`import_wonder` maps files to the targets schema
(:data:`TARGET_COLUMNS`); :func:`write_targets` / :func:`validate_targets` write and check targets CSVs.
Every problem with a file raises :class:`imsim.core.errors.InputError` naming the file and row/footer line.
"""
from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from imsim.core.constants import ALL, RACES, STATE_NAMES, STATES
from imsim.core.errors import InputError, did_you_mean
from imsim.core.folders import atomic_file, check_new_file

TARGET_COLUMNS: tuple[str, ...] = (
    "state", "race", "year_start", "year_end", "measure", "deaths", "births", "rate", "flag")
FLAGS: tuple[str, ...] = ("ok", "unreliable", "suppressed", "missing")
MEASURES: tuple[str, ...] = ("imr", "births")
STATE_FIPS: dict[str, str] = dict(zip(STATES, (
    "01 02 04 05 06 08 09 10 11 12 13 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 "
    "37 38 39 40 41 42 44 45 46 47 48 49 50 51 53 54 55 56").split()))
_FIPS_STATE = {v: k for k, v in STATE_FIPS.items()}
_NAME_STATE = {v.lower(): k for k, v in STATE_NAMES.items()}
_MARKERS = {m: m.replace(" ", "_") for m in ("suppressed", "not available", "not applicable",
                                               "unreliable", "missing county", "missing")}
_ALLOWED_CELLS = ("a number, Suppressed, Not Available, Not Applicable, Missing County, "
                  "Unreliable or '<rate> (Unreliable)'")
_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+|\d{1,3}(,\d{3})+(\.\d*)?)$")
_UNRELIABLE = re.compile(r"^(.*?)\s*\(Unreliable\)$", re.IGNORECASE)
_COUNT_COLUMNS = {"deaths", "births", "population", "female population", "total population"}
_KEY_LINE = re.compile(r"^([A-Za-z][^:]{0,80}):(?:\s+(.*)|)$")
_YEAR_KEYS = ("Year of Death", "Year", "Year/Month", "Year of Birth")
_ALLOWED_GROUPS = ("State (or County when its labels end in ', XX'), the mother's race and "
                   "Hispanic origin, and Year / Year of Death")


@dataclass
class WonderTable:
    """One parsed WONDER export.

    ``data`` / ``totals``: data lines / ``Total`` lines with ``row`` (file line), ``Notes``, each grouping
    label and ``<label> Code`` (``""`` where a total collapses it), counts and rates as float (NaN for
    markers) plus ``<measure> marker`` (``""``, ``suppressed``, ``unreliable``, ``not_available``,
    ``not_applicable``, ``missing_county``, ``missing``). ``meta`` (footer): ``dataset``, ``title``,
    ``parameters``, ``years``, ``year_parameter``, ``dataset_years``, ``group_by``, ``show_totals``,
    ``show_suppressed``, ``show_zero_values``, ``rates_per``, ``messages``, ``caveats``, ``lines``.
    """

    path: Path
    group_by: list[str]
    measures: list[str]
    data: pd.DataFrame
    totals: pd.DataFrame
    meta: dict


def _unquote(field: str) -> str:
    s = field.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1].replace('""', '"')
    return s.strip()


def _parse_cell(text: str) -> tuple[float, str]:
    """Return (value, marker) of a measure cell; raise ValueError if it is neither."""
    s = text.strip()
    if m := _UNRELIABLE.match(s):
        return _parse_cell(m.group(1))[0], "unreliable"
    if s.lower() in _MARKERS or not s:
        return math.nan, _MARKERS.get(s.lower(), "missing")
    if not _NUMBER.match(s.lstrip("-")):
        raise ValueError("not a number")
    if s.startswith("-"):
        raise ValueError("negative")
    return float(s.replace(",", "")), ""


def _years_from(value: str) -> list[int]:
    years: set[int] = set()
    for a, b in re.findall(r"(\d{4})\s*(?:to|-)\s*(\d{4})", value):
        years.update(range(int(a), int(b) + 1))
    years.update(int(y) for y in re.findall(r"(?<![\d/])(\d{4})(?![\d/])", value))
    return sorted(years)


def _parse_footer(lines: list[tuple[int, str]]) -> dict:
    meta: dict = {"dataset": None, "parameters": {}, "lines": {}, "messages": [], "caveats": []}
    section, block, prev = 0, None, None
    for lineno, raw in lines:
        text = _unquote(raw)
        if raw.strip() == '"---"':
            section, block, prev = section + 1, None, None
        elif not raw.strip().startswith('"'):         # unquoted block labels: Messages:, Caveats:
            block = raw.strip().rstrip(":").lower()
        elif block in ("messages", "caveats"):         # numbered items, wrapped over lines
            if re.match(r"^\d+\.\s", text) or not meta[block]:
                meta[block].append(text)
            else:
                meta[block][-1] += " " + text
        elif section == 0 and text != "Query Parameters:":
            if m := _KEY_LINE.match(text):
                prev = m.group(1).strip()
                meta["parameters"][prev], meta["lines"][prev] = (m.group(2) or "").strip(), lineno
            elif prev is not None and text:
                meta["parameters"][prev] += " " + text  # wrapped parameter line
    params = meta["parameters"]
    meta["dataset"] = params.pop("Dataset", None)
    meta["title"] = params.get("Title")
    gb = params.get("Group By", "")
    meta["group_by"] = [g.strip() for g in re.split(";" if ";" in gb else ",", gb) if g.strip()]
    meta["show_totals"] = params.get("Show Totals")
    for key in ("Show Suppressed", "Show Zero Values"):
        v = params.get(key)
        meta[key.lower().replace(" ", "_")] = None if v is None else v.strip().lower() == "true"
    rp = params.get("Calculate Rates Per")
    meta["rates_per"] = int(rp.replace(",", "")) if rp and rp.replace(",", "").isdigit() else None
    meta["year_parameter"] = next((k for k in _YEAR_KEYS if k in params), None)
    yv = params.get(meta["year_parameter"]) if meta["year_parameter"] else None
    meta["years"] = _years_from(yv) or None if yv else None
    dm = re.search(r"(\d{4})\s*-\s*(\d{4})", meta["dataset"] or "")
    meta["dataset_years"] = (int(dm.group(1)), int(dm.group(2))) if dm else None
    return meta


def parse_wonder(path: str | os.PathLike) -> WonderTable:
    """Parse one CDC WONDER export file (CRLF or LF; UTF-8 with or without BOM).

    Parameters
    ----------
    path : str or path
        The export (``.txt``).

    Returns
    -------
    WonderTable
        The data and total lines, grouping columns, measures and footer metadata.

    Raises
    ------
    InputError
        For an unreadable/empty file, no table, a header mismatch (field counts, label/code
        pairs, footer ``Group By``), a cell that is neither a number nor a marker, a negative
        value.
    """
    path = Path(path)
    name, where = str(path), "row 1"
    from imsim.core.validation import read_bytes_bounded

    raw = read_bytes_bounded(path, "WONDER export", MAX_WONDER_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start}); save the WONDER export as text",
                         file=name) from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    end = next((i for i, ln in enumerate(lines) if ln.strip() == '"---"'), len(lines))
    table = [(i + 1, ln) for i, ln in enumerate(lines[:end]) if ln.strip()]
    if not table:
        what = "empty file" if not text.strip() else "no table before the notes footer"
        raise InputError(f'{what}; expected a CDC WONDER export (tab-delimited table, then "---" '
                         "and the notes)", file=name)
    hdr = table[0][1]
    header = [_unquote(f) for f in hdr.split("\t")]
    cols = header[1:]
    if "\t" not in hdr or header[0] != "Notes":
        raise InputError('no table: the first line is not a tab-delimited WONDER header such as '
                         '"Notes"<TAB>"State"<TAB>"State Code"<TAB>Deaths<TAB>Births', file=name, where=where)
    if len(set(header)) != len(header):
        raise InputError(f"header mismatch: duplicate column names in {header}", file=name, where=where)
    groups, measures, i = [], [], 0
    while i < len(cols):
        if i + 1 < len(cols) and cols[i + 1] == f"{cols[i]} Code":
            groups.append(cols[i])
            i += 2
        elif cols[i].endswith(" Code"):
            raise InputError(f"header mismatch: column '{cols[i]}' does not follow its label column "
                             f"'{cols[i][:-5]}'", file=name, where=where)
        else:
            measures.append(cols[i])
            i += 1
    if not measures:
        raise InputError("header mismatch: no measure columns (Deaths, Births...)", file=name, where=where)
    parsed = [m for m in measures if m.lower() in _COUNT_COLUMNS or "rate" in m.lower()]
    data, totals = [], []
    for lineno, line in table[1:]:
        cells = line.split("\t")
        if len(cells) != len(header):
            raise InputError(f"header mismatch: line has {len(cells)} tab-separated fields but the "
                             f"header has {len(header)}", file=name, where=f"row {lineno}")
        cells = [_unquote(c) for c in cells]
        rec = {"row": lineno, "Notes": cells[0], **dict(zip(cols, cells[1:]))}
        for m in parsed:
            try:
                rec[m], rec[f"{m} marker"] = _parse_cell(rec[m])
            except ValueError as exc:
                problem = "is negative" if str(exc) == "negative" else f"is not {_ALLOWED_CELLS}"
                raise InputError(f"{m} value '{rec[m]}' {problem}", file=name, where=f"row {lineno}") from None
        (totals if cells[0] == "Total" else data).append(rec)
    columns = ["row", "Notes"] + [c for g in groups for c in (g, f"{g} Code")]
    columns += [c for m in measures for c in ((m, f"{m} marker") if m in parsed else (m,))]
    meta = _parse_footer([(i + 1, ln) for i, ln in enumerate(lines[end + 1:], start=end + 1)])
    if meta["group_by"] and [g.lower() for g in meta["group_by"]] != [g.lower() for g in groups]:
        raise InputError(f"header mismatch: the table is grouped by {groups} but the notes say "
                         f"'Group By: {'; '.join(meta['group_by'])}'", file=name,
                         where=f"footer line {meta['lines'].get('Group By')}")
    return WonderTable(path, groups, measures, pd.DataFrame(data, columns=columns),
                       pd.DataFrame(totals, columns=columns), meta)


# ----------------------------------------------------------------------------- import
def _race_of(label: str) -> str | None:
    s = label.lower()
    if "unknown" in s or "not stated" in s:
        return "unknown"
    if "more than one" in s or ("other" in s and "pacific" not in s):
        return "other"
    return next((r for k, r in (("white", "white"), ("black", "black"), ("indian", "aian"),
                                ("asian", "api"), ("pacific", "api")) if k in s), None)


def _hisp_of(label: str) -> str | None:
    s = label.strip().lower().replace("-", " ")
    if "unknown" in s or "not stated" in s:
        return "unknown"
    if s.startswith(("not hispanic", "non hispanic")):
        return "nh"
    if "hispanic" in s or "latino" in s:
        return "hispanic"
    return None


def _map_race(dims: dict, row: dict, nh_only: bool, approx: bool) -> str | None:
    """Return a race id, ALL, 'drop:<why>' or None (cannot map; totals only)."""
    comb, rcol, hcol = dims.get("combined"), dims.get("race"), dims.get("hispanic")
    if comb:
        v = row[comb]
        h, r = _hisp_of(v), _race_of(v)
        if not v or h == "hispanic":
            return "hispanic" if v else ALL
        if "unknown" in (h, r):
            return "drop:unknown"
        return None if None in (h, r) else ("drop:other" if r == "other" else f"nh_{r}")
    rv = row[rcol] if rcol else ""
    hv = row[hcol] if hcol else ""
    if not rv and not hv:
        return ALL
    h = _hisp_of(hv) if hv else None
    if hv and h is None:
        return None                                   # unrecognised Hispanic-origin label
    if h == "unknown":
        return "drop:unknown"
    if h == "hispanic":
        return "hispanic" if (not rv or row.get("_data")) else None
    if hv and not rv:
        return None                                   # non-Hispanic, all races: no imsim group
    if (hcol and not hv) or not (hcol or nh_only or approx):
        return None                                   # race including Hispanic mothers
    r = _race_of(rv)
    if r is None:
        return None                                   # unrecognised race label
    return f"drop:{r}" if r in ("unknown", "other") else f"nh_{r}"


def _classify(table: WonderTable, name: str) -> dict:
    dims: dict = {}
    for g in table.group_by:
        s = g.lower()
        key = ("state" if s in ("state", "state of residence", "residence state") else "county"
               if "county" in s else "year" if s in ("year", "year of death") else "combined"
               if "race" in s and "hispanic" in s else "hispanic" if "hispanic" in s else "race"
               if "race" in s else None)
        if key is None:
            raise InputError(f"grouped by '{g}', a grouping imsim cannot use; allowed groupings: "
                             f"{_ALLOWED_GROUPS} (use '{g}' as a filter instead)", file=name,
                             where=f"footer line {table.meta['lines'].get('Group By', '?')}")
        dims[key] = g
    if "hispanic" in dims and "race" not in dims:
        values = set(table.data[dims["hispanic"]])
        if any(_race_of(v) not in (None, "unknown") for v in values):
            dims["combined"] = dims.pop("hispanic")    # e.g. "Non-Hispanic White"
        else:
            raise InputError("grouped by Hispanic origin without race: non-Hispanic rows cannot be split "
                             "into imsim's race groups; group by the mother's race as well", file=name)
    return dims


def _state_of(row: dict, dims: dict, name: str) -> str:
    if "state" in dims:
        code, label = row[dims["state"] + " Code"], row[dims["state"]]
        st = _FIPS_STATE.get(code.zfill(2) if code.isdigit() else code) or _NAME_STATE.get(label.lower())
        if st is None:
            raise InputError(f"unknown state '{label}' (code '{code}'); allowed: the 50 states and "
                             "the District of Columbia", file=name, where=f"row {row['row']}")
        return st
    m = re.search(r",\s*([A-Z]{2})\s*$", row[dims["county"]])
    if not m or m.group(1) not in STATES:
        raise InputError(f"grouped by County but the label '{row[dims['county']]}' does not end in "
                         "', XX'; counties are aggregated to states only when the label names the state "
                         "(or group by State)", file=name, where=f"row {row['row']}")
    return m.group(1)


def _sum(vals: list[tuple[float, str]]) -> tuple[float, str]:
    """Sum (value, marker) cells; 'Missing County' counts as zero (it is in 'Unidentified')."""
    vals = [(v, mk) for v, mk in vals if mk != "missing_county"]
    if bad := [mk for v, mk in vals if math.isnan(v)]:
        return math.nan, "suppressed" if "suppressed" in bad else "missing"
    return sum(v for v, _ in vals), ""


def _target(rows: list[dict], measure: str, per: float, incomplete: str) -> dict:
    (deaths, dflag), (births, bflag) = (
        _sum([(r[c], r[f"{c} marker"]) for r in rows]) if c in rows[0] else (math.nan, "missing")
        for c in ("Deaths", "Births"))
    if incomplete:
        deaths, births, dflag, bflag = math.nan, math.nan, incomplete, incomplete
    rate, rflag = math.nan, ""
    if measure == "imr":
        rcol = next((c for c in rows[0] if c.lower().endswith("rate") and "death" in c.lower()), None)
        if len(rows) == 1 and rcol:
            rate, rflag = rows[0][rcol] * 1000.0 / per, rows[0][f"{rcol} marker"]
        if not math.isnan(deaths) and births > 0:
            rate = deaths / births * 1000.0
        unreliable = rflag == "unreliable" or (len(rows) > 1 and deaths < 20)
        flag = ((dflag or "missing") if math.isnan(deaths) else "missing") if math.isnan(rate) else (
            "unreliable" if unreliable else "ok")
    else:
        deaths, flag = math.nan, bflag or "ok"
    return {"deaths": deaths, "births": births, "rate": rate, "flag": flag}


def _restricting_filters(meta: dict) -> dict:
    skip = {"Title", "Group By", "Show Totals", "Show Zero Values", "Show Suppressed",
            "Calculate Rates Per", "Population Option", "Rate Options", meta["year_parameter"]}
    return {k: v for k, v in meta["parameters"].items()
            if k not in skip and v and not v.lower().startswith("all")}


def _import_one(path, approx: bool) -> tuple[list[dict], list[str]]:
    table = parse_wonder(path)
    name, meta, warns = str(table.path), table.meta, []
    ds = meta["dataset"] or ""
    cols = {m.lower() for m in table.measures}
    if (not re.search("linked birth|natality", ds.lower()) if ds else
            "population" in cols and "births" not in cols):
        raise InputError(f"dataset '{ds or 'unnamed, with a Population column'}' is not a linked birth/"
                         "infant death or natality export; allowed: CDC WONDER 'Linked Birth / Infant Death "
                         "Records' (Deaths, Births) or 'Natality' (Births) exports", file=name,
                         where=f"footer line {meta['lines']['Dataset']}" if ds else None)
    if "deaths" not in cols and "births" not in cols:
        raise InputError(f"no Deaths and no Births column (columns: {', '.join(table.measures)}); a "
                         "linked birth/infant death export needs Deaths and Births, a natality export "
                         "Births", file=name)
    measure = "births" if "natality" in ds.lower() or not ds and "deaths" not in cols else "imr"
    if (need := "Deaths" if measure == "imr" else "Births").lower() not in cols:
        raise InputError(f"{ds} export without a {need} column; re-export with {need} selected", file=name)
    dims = _classify(table, name)
    geo = "state" if "state" in dims else ("county" if "county" in dims else None)
    filters = _restricting_filters(meta)
    state_filter = next((v for k, v in filters.items() if k.lower() in ("states", "state")), None)
    race_filters = {k: v for k, v in filters.items() if "race" in k.lower() or "hispanic" in k.lower()}
    if state_filter and not geo:
        raise InputError(f"not grouped by State but filtered to some states ('{state_filter}'); group "
                         "by State or select all states", file=name,
                         where=f"footer line {meta['lines'].get('States')}")
    has_race = any(k in dims for k in ("race", "hispanic", "combined"))
    if race_filters and not has_race:
        k, v = next(iter(race_filters.items()))
        raise InputError(f"not grouped by race but filtered to '{k}: {v}'; group by race and "
                         "Hispanic origin or select all races", file=name,
                         where=f"footer line {meta['lines'].get(k)}")
    nh_only = any("hispanic" in k.lower() and all(_hisp_of(p) == "nh" for p in re.split(r"[;,]", v))
                  for k, v in race_filters.items())
    if "race" in dims and "hispanic" not in dims and not nh_only:
        if not approx:
            raise InputError(f"grouped by '{dims['race']}' without Hispanic origin; group by Mother's "
                             "Bridged Race and Mother's Hispanic Origin (or give "
                             "--bridged-race-as-non-hispanic to `imsim data import-wonder`, "
                             "bridged_race_as_non_hispanic=True in Python, to map each race to "
                             "its non-Hispanic group)", file=name)
        warns.append(f"{name}: '{dims['race']}' includes Hispanic mothers; mapped to non-Hispanic "
                     "groups")
    for k, v in filters.items():
        if k not in race_filters and v != state_filter:
            warns.append(f"{name}: counts are restricted by the filter '{k}: {v}'")
    per = meta["rates_per"] or 1000
    yl = meta["years"]
    pooled = (yl[0], yl[-1]) if yl else meta["dataset_years"]
    if "year" not in dims and (pooled is None or yl and len(yl) != yl[-1] - yl[0] + 1):
        problem = (f"years {yl} are not a continuous range" if pooled else
                   "cannot tell which years the counts cover (no year parameter in the notes)")
        raise InputError(f"{problem}; group by Year of Death or select a continuous range of years",
                         file=name, where=f"footer line {meta['lines'].get(meta['year_parameter'], '?')}")
    if pooled is not None and "year" not in dims:
        for y in pooled:
            _check_wonder_year(y, name, f"footer line {meta['lines'].get(meta['year_parameter'], '?')}")
    hidden_is_suppression = geo is not None and meta["show_suppressed"] is not True
    absent = "suppressed" if hidden_is_suppression else "missing"
    agg_dims = [dims[k] + " Code" for k in ("county", "race", "combined") if k in dims]

    def key_of(row: dict) -> tuple | None:
        st = (_state_of(row, dims, name) if row[dims[geo]] else ALL) if geo else ALL
        race = _map_race(dims, row, nh_only, approx)
        m = re.match(r"\d{4}", row[dims["year"] + " Code"]) if "year" in dims else None
        return st, race, int(m.group()) if m else None

    groups, comps, seen, dropped = {}, {}, {}, {}
    code_cols = [g + " Code" for g in table.group_by]
    for row in table.data.to_dict("records"):
        raw_key = tuple(row[c] for c in code_cols)
        if raw_key in seen:
            raise InputError(f"duplicate row: same grouping as row {seen[raw_key]}", file=name,
                             where=f"row {row['row']}")
        seen[raw_key] = row["row"]
        row["_data"] = True
        st, race, yr = key_of(row)
        _check_wonder_row(row, yr, name)
        if race is None:
            labels = ", ".join(row[dims[k]] for k in ("race", "hispanic", "combined") if k in dims)
            raise InputError(f"cannot map '{labels}' to imsim's race/Hispanic-origin groups", file=name,
                             where=f"row {row['row']}")
        if race.startswith("drop:"):
            dropped.setdefault(race[5:], []).append(row["row"])
            continue
        groups.setdefault((st, race, yr), []).append(row)
        comps.setdefault((st if geo == "county" else None, race), set()).add(
            tuple(row[c] for c in agg_dims))
    for why, rows in dropped.items():
        warns.append(f"{name}: dropped {len(rows)} row(s) with {why} race/Hispanic origin "
                     f"(rows {', '.join(map(str, rows[:10]))}{'...' if len(rows) > 10 else ''})")
    out: dict[tuple, dict] = {}
    for (st, race, yr), rows in groups.items():
        expected = comps[(st if geo == "county" else None, race)]
        have = {tuple(r[c] for c in agg_dims) for r in rows}
        incomplete = "suppressed" if hidden_is_suppression and not expected <= have else ""
        out[(st, race, yr)] = _target(rows, measure, per, incomplete)
    # absent cells of the state x race x year grid
    states = [s for s in STATES if s in _parse_state_filter(state_filter)] if geo else [ALL]
    races = [r for r in (*RACES, ALL) if any(k[1] == r for k in out)] if has_race else [ALL]
    years = sorted({k[2] for k in out if k[2] is not None}) if "year" in dims else [None]
    for key in itertools.product(states, races, years):
        out.setdefault(key, {"deaths": math.nan, "births": math.nan, "rate": math.nan, "flag": absent})
    # WONDER's Total lines: collapsed dimensions become ALL (or the pooled years)
    for row in table.totals.to_dict("records"):
        if (geo and not row[dims[geo]] and state_filter) or (geo == "county" and row[dims[geo]]):
            continue
        st, race, yr = key_of(row)
        if race is None or race.startswith("drop:") or (race == ALL and race_filters):
            continue
        if "year" in dims and yr is None:
            yrs = meta["years"] or years
            if not yrs or len(yrs) != yrs[-1] - yrs[0] + 1:
                continue
            yr = (yrs[0], yrs[-1])
        tgt, key = _target([row], measure, per, ""), (st, race, yr)
        if key not in out or (out[key]["flag"] in ("suppressed", "missing")
                              and tgt["flag"] in ("ok", "unreliable")):
            out[key] = tgt
    if geo == "county" and meta["show_suppressed"] is not True and "Births" in table.data:
        grand = table.totals[(table.totals[dims["county"]] == "")]
        if len(grand) != 1 or grand["Births"].iloc[0] != table.data["Births"].sum():
            warns.append(f"{name}: county rows may be hidden (Show Suppressed: False); state sums "
                         "may be low")
    records = []
    for (st, race, yr), t in out.items():
        ys, ye = (yr, yr) if isinstance(yr, int) else (yr if yr else pooled)
        records.append({"state": st, "race": race, "year_start": ys, "year_end": ye,
                        "measure": measure, **t, "source_file": table.path.name, "dataset": ds})
    return records, warns


def _check_wonder_year(year, name: str, where: str) -> None:
    if year is not None and not FIRST_TARGET_YEAR <= int(year) <= _last_year():
        raise InputError(f"year {year} is out of range; allowed: {FIRST_TARGET_YEAR} to "
                         f"{_last_year()} (CDC WONDER's Linked Birth / Infant Death Records "
                         f"start in {FIRST_TARGET_YEAR}; imsim fits 2013-2017)", file=name,
                         where=where)


def _check_wonder_row(row: dict, year, name: str) -> None:
    """One data line of a WONDER export: its year in range, deaths not above births."""
    _check_wonder_year(year, name, f"row {row['row']}")
    d, b = row.get("Deaths"), row.get("Births")
    if isinstance(d, float) and isinstance(b, float) and d == d and b == b and d > b:
        raise InputError(f"Deaths {d:,.0f} exceed Births {b:,.0f}; infant deaths are counted "
                         "among the births of the same row", file=name, where=f"row {row['row']}")


def _parse_state_filter(value: str | None) -> set[str]:
    if not value:
        return set(STATES)
    found = {_FIPS_STATE[c] for c in re.findall(r"\((\d{2})\)", value) if c in _FIPS_STATE}
    found = found or {st for n, st in _NAME_STATE.items() if re.search(rf"\b{re.escape(n)}\b", value.lower())}
    return found or set(STATES)


def import_wonder(paths, *, bridged_race_as_non_hispanic: bool = False) -> pd.DataFrame:
    """Import CDC WONDER exports (linked birth/infant death or natality) as targets.

    Parameters
    ----------
    paths : str or path or iterable of (str or path)
        One path or an iterable of paths.
    bridged_race_as_non_hispanic : bool
        Files grouped by race without Hispanic origin are refused unless True: then each race is
        mapped to its non-Hispanic group (approximate: those races include Hispanic mothers).

    Returns
    -------
    pandas.DataFrame
        :data:`TARGET_COLUMNS`, ``source_file``, ``dataset``; rate per 1,000 births (recomputed from
        deaths/births when both known). ``df.attrs["warnings"]`` lists dropped/approximated rows.

    Raises
    ------
    InputError
        For a file :func:`parse_wonder` refuses, an unsupported dataset, grouping or filter, a
        duplicate row, or two files with the same target (state, race, years, measure).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records, warns, origin = [], [], {}
    for p in paths:
        recs, w = _import_one(p, bridged_race_as_non_hispanic)
        for r in recs:
            key = (r["state"], r["race"], r["year_start"], r["year_end"], r["measure"])
            if key in origin and origin[key] != str(p):
                raise InputError(f"duplicates the targets of {origin[key]} (state {key[0]}, race "
                                 f"{key[1]}, years {key[2]}-{key[3]}); check the 'Year' line of "
                                 "both files' notes and import only one of them", file=str(p))
            origin[key] = str(p)
        records += recs
        warns += w
    cols = [*TARGET_COLUMNS, "source_file", "dataset"]
    df = pd.DataFrame(records, columns=cols)
    order = {v: i for i, v in enumerate((ALL, *STATES, *RACES))}
    df = _typed(df).assign(_s=df["state"].map(order), _r=df["race"].map(order),
                           _n=df["year_end"] - df["year_start"])
    df = df.sort_values(["source_file", "measure", "_s", "_r", "_n", "year_start"], kind="stable")
    df = df.drop(columns=["_s", "_r", "_n"]).reset_index(drop=True)
    df.attrs["warnings"] = warns
    return df


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    df = df.astype({"year_start": "int64", "year_end": "int64"})
    return df.assign(deaths=pd.to_numeric(df["deaths"]).round().astype("Int64"), rate=pd.to_numeric(
        df["rate"]).astype("float64"), births=pd.to_numeric(df["births"]).round().astype("Int64"))


# ----------------------------------------------------------------------------- targets CSV
def write_targets(df: pd.DataFrame, out_path: str | os.PathLike, *,
                  overwrite: bool = False) -> Path:
    """Validate ``df`` and write it as a targets CSV, atomically.

    Parameters
    ----------
    df : DataFrame
        Targets in the :data:`TARGET_COLUMNS` schema (:func:`import_wonder`).
    out_path : path
        The CSV to write.
    overwrite : bool
        Replace an existing file. By default an existing, non-empty file is refused (checked
        before validating, and again when the file is moved into place).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InputError
        When ``df`` is not valid or ``out_path`` exists; nothing is written.
    """
    out = Path(out_path)
    if not overwrite:
        check_new_file(out)
    validate_targets(df)
    with atomic_file(out, overwrite=overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            df.to_csv(fh, index=False, float_format="%.6g")
    return out


def _hint(value: str, allowed) -> str:
    v = str(value).strip()
    guess = v.upper() if v.upper() in allowed else _NAME_STATE.get(v.lower())
    return f" (did you mean '{guess}'?)" if guess in allowed else did_you_mean(v, allowed)


#: The first year a targets row or a WONDER export may cover (CDC WONDER's Linked Birth /
#: Infant Death Records database starts in 2007; imsim's fit uses 2013-2017).
FIRST_TARGET_YEAR = 2007
#: Targets CSVs larger than this are refused before they are parsed.
MAX_TARGETS_BYTES = 20_000_000
#: WONDER exports larger than this are refused before they are parsed.
MAX_WONDER_BYTES = 50_000_000
#: A plain non-negative decimal number, as targets files write them (no nan/inf, at most 15
#: digits before the point: longer numbers are refused, not rounded).
_PLAIN_NUMBER = re.compile(r"^(\d{1,15}(\.\d{0,15})?|\.\d{1,15})([eE][-+]?\d{1,3})?$")


def _last_year() -> int:
    import datetime

    return datetime.date.today().year


def _rounding(text: str) -> float:
    """Half a unit of the last digit ``text`` shows (``'5.81'`` -> 0.005; ``'6'`` -> 0.5)."""
    mant, _, exp = text.lower().partition("e")
    decimals = len(mant.partition(".")[2])
    return 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0))


def validate_targets(df_or_path) -> pd.DataFrame:
    """Check a targets table and return it typed.

    Parameters
    ----------
    df_or_path : pandas.DataFrame or str or path
        The table, or a targets CSV (rows in messages are file lines, the header is row 1). A
        table with a ``source_file`` column (from :func:`import_wonder`) names that file in
        messages.

    Returns
    -------
    pandas.DataFrame
        The table with integer years, nullable-integer ``deaths``/``births`` and float64
        ``rate`` (per 1,000 live births for ``imr``).

    Raises
    ------
    InputError
        For an unreadable CSV (a folder, a FIFO or device, over :data:`MAX_TARGETS_BYTES`, not
        UTF-8, malformed), missing columns, unknown state/race/measure/flag (exact codes only),
        counts that are not plain numbers (``nan``, ``inf``, more than 15 digits), negative or
        fractional counts, years outside :data:`FIRST_TARGET_YEAR` to this year,
        year_start > year_end, an IMR outside 0-1000 per 1,000, deaths above births, births 0
        for a rate, a rate that contradicts its deaths and births (beyond the rounding of its
        last digit), duplicate targets, or a flag ``ok``/``unreliable`` without a value.
    """
    import io

    from imsim.core.validation import read_text_file

    name = None if isinstance(df_or_path, pd.DataFrame) else str(df_or_path)
    if name is None:
        df = df_or_path.copy()
    else:
        text = read_text_file(df_or_path, "targets", limit=MAX_TARGETS_BYTES)
        import csv

        try:
            lines = csv.reader(io.StringIO(text, newline=""), strict=True)
            width = None
            for row in lines:
                if width is None:
                    width = len(row)
                elif row and len(row) != width:
                    raise InputError(f"row has {len(row)} fields but the header has {width}",
                                     file=name, where=f"line {lines.line_num}")
        except csv.Error as exc:
            raise InputError(f"cannot read targets CSV ({exc})", file=name,
                             where=f"line {lines.line_num}") from None
        try:
            df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise InputError(f"cannot read targets CSV ({' '.join(str(exc).split())})",
                             file=name) from None
    if missing := [c for c in TARGET_COLUMNS if c not in df.columns]:
        raise InputError(f"missing column(s) {missing}; a targets file needs {list(TARGET_COLUMNS)}", file=name)
    for col in ("state", "race", "measure", "flag"):
        df[col] = df[col].map(lambda x: x.strip() if isinstance(x, str) else x)
    allowed = {"state": (*STATES, ALL), "race": (*RACES, ALL), "measure": MEASURES, "flag": FLAGS}
    files = df["source_file"].astype(str).tolist() if "source_file" in df.columns else None
    first, last = FIRST_TARGET_YEAR, _last_year()
    seen: dict[tuple, int] = {}
    for i, row in enumerate(df.to_dict("records")):
        where, v, texts = f"row {i + 2}", {}, {}

        def fail(msg: str):
            raise InputError(msg, file=name or (files[i] if files else None), where=where)
        for col, ok in allowed.items():
            if not isinstance(row[col], str) or row[col] not in ok:
                fail(f"unknown {col} {ascii(str(row[col]))[:40]}{_hint(row[col], ok)}; allowed: "
                     f"{', '.join(ok)}")
        for col in ("year_start", "year_end", "deaths", "births", "rate"):
            raw = row[col]
            if raw is None or (not isinstance(raw, str) and pd.isna(raw)):
                text = ""
            elif isinstance(raw, str):
                text = raw.strip()
            elif isinstance(raw, float) and not math.isfinite(raw):
                text = str(raw)
            else:
                text = f"{raw:.15g}" if isinstance(raw, float) else str(raw)
            texts[col] = text
            if text == "" and col.startswith("year"):
                fail(f"{col} is empty; give a 4-digit year")
            negative = text.startswith("-") and bool(_PLAIN_NUMBER.match(text[1:]))
            if text and not negative and not _PLAIN_NUMBER.match(text):
                shown = text if len(text) <= 20 else f"{text[:17]}... ({len(text)} characters)"
                fail(f"{col} {ascii(shown)} is not a number; allowed: a plain decimal number "
                     "such as 812 or 5.81 (no nan or inf, at most 15 digits before the point)")
            v[col] = float(text) if text else math.nan
            if math.isinf(v[col]):
                fail(f"{col} {ascii(text[:20])} is not a finite number; allowed: a plain "
                     "decimal number such as 812 or 5.81")
            if v[col] < 0:
                fail(f"{col} is negative ({text}); counts and rates must be >= 0")
            if col != "rate" and text and v[col] != int(v[col]):
                fail(f"{col} '{text}' is not a whole number")
            if col.startswith("year") and not first <= v[col] <= last:
                fail(f"{col} {text} is out of range; allowed: a year from {first} to {last} "
                     f"(CDC WONDER's linked birth/infant death data start in {first})")
        if v["year_start"] > v["year_end"]:
            fail(f"year_start {int(v['year_start'])} is after year_end {int(v['year_end'])}")
        if row["measure"] == "imr" and v["rate"] > 1000:
            fail(f"rate {texts['rate']} is out of range; an IMR is per 1,000 live births, 0-1000")
        d, b, r = v["deaths"], v["births"], v["rate"]
        if d == d and b == b and d > b:
            fail(f"deaths {texts['deaths']} exceed births {texts['births']}; infant deaths are "
                 "counted among the births of the same cell")
        value = "rate" if row["measure"] == "imr" else "births"
        if row["flag"] in ("ok", "unreliable") and math.isnan(v[value]):
            fail(f"flag '{row['flag']}' but no {value}; use flag 'suppressed' or 'missing' for absent values")
        if row["flag"] in ("ok", "unreliable") and b == 0:
            fail(f"births is 0 with flag '{row['flag']}'; a rate needs births > 0 (use flag "
                 "'missing')")
        if row["measure"] == "imr" and d == d and b == b and r == r and b > 0:
            implied = 1000.0 * d / b
            tol = _rounding(texts["rate"]) + 1e-9 * max(1.0, implied)
            if abs(r - implied) > tol:
                fail(f"rate {texts['rate']} contradicts deaths/births: 1000 x {texts['deaths']} / "
                     f"{texts['births']} = {implied:.4g} per 1,000 (allowed: equal within the "
                     f"rounding of the rate's last digit, +-{tol:.2g})")
        key = (row["state"], row["race"], row["measure"], v["year_start"], v["year_end"])
        if key in seen:
            fail(f"duplicate target (same state, race, years and measure as row {seen[key]})")
        seen[key] = i + 2
    for col in ("year_start", "year_end", "deaths", "births", "rate"):
        df[col] = pd.to_numeric(df[col].replace("", pd.NA) if df[col].dtype == object else df[col])
    return _typed(df)
