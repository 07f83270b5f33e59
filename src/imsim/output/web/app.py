"""The workbench page (Solara). Started by ``imsim serve``; draws what
:mod:`imsim.output.web.logic` computes, nothing else.
"""
from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path

import solara
import solara.lab
import solara.util

from imsim.config.scenario import (
    OHPC_EFFECTS,
    PRETERM_COMPONENTS,
    PRETERM_DEFAULT_COMPONENTS,
    SD_POLICIES,
    SMOKING_PROGRAMS,
)
from imsim.core.constants import STATES, STRATEGIES
from imsim.core.errors import InputError
from imsim.output.web import logic as L

ROOT = Path(os.environ.get("IMSIM_SERVE_RESULTS", "results")).resolve()

CSS = """
.imsim-tiles {display: grid; grid-template-columns: repeat(12, 34px); grid-auto-rows: 30px;
              gap: 3px; margin: 6px 0;}
.imsim-tiles .v-btn {min-width: 32px !important; padding: 0 !important; height: 28px !important;
                     font-size: 11px;}
.imsim-table {border-collapse: collapse; font-size: 13px; margin: 4px 0 10px 0;}
.imsim-table th, .imsim-table td {border-bottom: 1px solid #ddd; padding: 2px 8px;
                                  text-align: right;}
.imsim-table th:first-child, .imsim-table td:first-child {text-align: left;}
.imsim-headline {font-size: 22px; font-weight: 600;}
.imsim-scroll {max-height: 360px; overflow-y: auto;}
"""


def _n(x, digits=0):
    return "" if x is None else f"{x:,.{digits}f}"


def _interval(lo, hi, digits=0):
    return "" if lo is None or hi is None else f"{_n(lo, digits)} to {_n(hi, digits)}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f'<table class="imsim-table"><tr>{th}</tr>{body}</table>'


def _p(inner: str):
    """A paragraph of trusted HTML (not solara.Markdown: it fetches KaTeX from a CDN)."""
    solara.HTML(tag="div", unsafe_innerHTML=inner, style={"margin": "8px 0"})


def _color(change_pct):
    """Tile colour by the state's IMR change (darker green: larger fall)."""
    if change_pct is None:
        return "#e0e0e0"
    t = max(0.0, min(1.0, -change_pct / 10.0))
    r, g, b = (int(235 - 190 * t), int(245 - 105 * t), int(235 - 170 * t))
    return f"rgb({r},{g},{b})"


@solara.component
def TileMap(spec, out):
    """A U.S. tile map: click to add or remove a state; coloured by its IMR change."""
    selected = spec.value.get("states")
    selected = set(STATES) if selected == "all" else set(selected or [])
    change = {r["state"]: r["imr_change_pct"] for r in (out.by_state if out else [])}
    tiles = []
    for st, (row, col) in L.TILES.items():
        on = st in selected
        tiles.append(solara.Button(
            st, text=not on, outlined=not on,
            on_click=lambda st=st: spec.set(L.toggle_state(spec.value, st)),
            style={"grid-row": str(row + 1), "grid-column": str(col + 1),
                   "background-color": _color(change.get(st)) if on else "#ffffff"},
            classes=[f"imsim-tile-{st}"]))
    solara.Div(children=tiles, classes=["imsim-tiles"])
    solara.Text("Click a tile to add or remove a state; colour: IMR change (darker: larger "
                "fall, up to 10%).", style={"font-size": "12px"})


@solara.component
def StrategyControls(spec, sid: str):
    """One strategy: on/off, coverage, reach by race and its program options."""
    strategies = spec.value.get("strategies") or {}
    block = strategies.get(sid)
    label = L.STRATEGY_LABELS[sid]
    solara.Checkbox(label=label, value=block is not None,
                    on_value=lambda on: spec.set(L.toggle_strategy(spec.value, sid, on)))
    if not isinstance(block, dict):
        return
    with solara.Row(style={"margin-left": "24px", "flex-wrap": "wrap"}):
        solara.InputText(f"{label} coverage", value=L.format_coverage(block.get("coverage")),
                         on_value=lambda t: spec.set(L.with_value(
                             spec.value, ("strategies", sid, "coverage"), L.parse_coverage(t))),
                         style={"max-width": "230px"}, continuous_update=True)
        solara.InputText(f"{label} reach by race", value=L.format_reach(block.get("reach")),
                         on_value=lambda t: spec.set(L.with_value(
                             spec.value, ("strategies", sid, "reach"), L.parse_reach(t))),
                         style={"max-width": "260px"}, continuous_update=True)
        if sid == "smoking_cessation":
            solara.Select("program", values=list(SMOKING_PROGRAMS),
                          value=block.get("program", SMOKING_PROGRAMS[0]),
                          on_value=lambda v: spec.set(L.with_value(
                              spec.value, ("strategies", sid, "program"), v)))
        if sid == "preterm_prevention":
            solara.SelectMultiple("components", all_values=list(PRETERM_COMPONENTS),
                                  values=list(block.get("components",
                                                        PRETERM_DEFAULT_COMPONENTS)),
                                  on_value=lambda v: spec.set(L.with_value(
                                      spec.value, ("strategies", sid, "components"), list(v))))
            solara.Select("17-OHPC effect", values=list(OHPC_EFFECTS),
                          value=block.get("ohpc_effect", OHPC_EFFECTS[0]),
                          on_value=lambda v: spec.set(L.with_value(
                              spec.value, ("strategies", sid, "ohpc_effect"), v)))
        if sid == "social_determinants":
            solara.Select("policy", values=list(SD_POLICIES),
                          value=block.get("policy", SD_POLICIES[0]),
                          on_value=lambda v: spec.set(L.with_value(
                              spec.value, ("strategies", sid, "policy"), v)))


@solara.component
def Controls(spec, draws):
    """The page's inputs: name, years, states, strategies, draws."""
    s = spec.value
    solara.InputText("Scenario name", value=str(s.get("name", "")),
                     on_value=lambda t: spec.set(L.with_value(spec.value, ("name",), t)),
                     continuous_update=True)
    years = s.get("years") if isinstance(s.get("years"), list) else [2026, 2030]
    with solara.Row():
        solara.InputText("First year", value=str(years[0]),
                         on_value=lambda t: spec.set(L.with_value(
                             spec.value, ("years",), [L.number_or_text(t), years[-1]])),
                         continuous_update=True)
        solara.InputText("Last year", value=str(years[-1]),
                         on_value=lambda t: spec.set(L.with_value(
                             spec.value, ("years",), [years[0], L.number_or_text(t)])),
                         continuous_update=True)
    everyone = s.get("states") == "all"
    solara.Checkbox(label="All states (national)", value=everyone,
                    on_value=lambda on: spec.set(L.with_value(
                        spec.value, ("states",), "all" if on else ["AL", "GA", "MS"])))
    if not everyone:
        solara.SelectMultiple("States", values=[x for x in (s.get("states") or [])
                                                if x in STATES],
                              all_values=list(STATES),
                              on_value=lambda v: spec.set(L.with_value(
                                  spec.value, ("states",), [x for x in STATES if x in v])))
    _p("<b>Strategies</b> — coverage: one share (<code>0.5</code>) or a ramp "
       "(<code>2026: 0.2, 2030: 0.6</code>); reach by race: <code>nh_black: 1, "
       "nh_white: 0.8</code> (a share 0 to 1 of coverage; races not listed: 1)")
    for sid in STRATEGIES:
        StrategyControls(spec, sid)
    solara.InputInt(f"Uncertainty draws (background, {L.MIN_DRAWS} to {L.MAX_DRAWS})",
                    value=draws.value, continuous_update=True,
                    on_value=lambda v: draws.set(v if v is not None else 0))


_FINISHED: dict = {}   # the last finished draws per page key, for "Save run folder"


@solara.component
def Results(spec, key, out, error, draws):
    """The numbers. Holds the background draws, so their progress re-renders only this part
    (not the inputs, whose typed text a re-render would overwrite)."""
    progress = solara.use_reactive(0.0)

    draws_error = L.check_draws(draws.value)

    def background(cancel: threading.Event):
        if error or draws_error:
            return None
        progress.set(0.0)
        last = [time.monotonic()]

        def tick(done, total):
            if cancel.is_set():
                raise solara.util.CancelledError()   # a newer page state supersedes it
            if time.monotonic() - last[0] > 0.5 or done == total:   # a few updates, not 1/draw
                last[0] = time.monotonic()
                progress.set(done / total)

        n = draws.value
        result, outcome = L.with_draws(spec.value, n, on_draw=tick)
        _FINISHED.clear()
        _FINISHED[(key, n)] = result
        return key, n, outcome

    bg = solara.use_thread(background, dependencies=[key, draws.value], intrusive_cancel=False)
    warnings = out.warnings if out else []
    if error:
        solara.Error(error, classes=["imsim-error"])
        return
    if out is None:
        solara.Text("computing...")
        return
    h = out.headline
    solara.Text(f"{_n(h['point'])} infant deaths averted", classes=["imsim-headline"])
    full = bg.value if bg.state == solara.ResultState.FINISHED else None
    if full is not None and full[:2] != (key, draws.value):
        full = None                          # a finished run of an earlier page: not shown
    if full is not None:
        fh = full[2].headline
        text = (f"95% interval {_interval(fh['lo'], fh['hi'])} (median {_n(fh['value'])}, "
                f"{fh['draws']} draws)" if fh["interval_reliable"] else fh["note"])
        solara.Text(text, classes=["imsim-interval"])
    elif draws_error:
        solara.Error(draws_error, classes=["imsim-error"], dense=True)
    elif bg.state == solara.ResultState.ERROR and bg.error is not None:
        solara.Error(f"uncertainty draws failed: {bg.error}")
    else:
        solara.Text(f"95% interval: computing {draws.value} draws in the background...",
                    classes=["imsim-interval"])
        solara.ProgressLinear(value=progress.value * 100)
    solara.Text(f"{_n(h['births'])} births; IMR {_n(h['imr_baseline'], 2)} -> "
                f"{_n(h['imr_scenario'], 2)} per 1,000 (expected engine at point values, "
                f"{out.seconds:.2f} s)", style={"font-size": "13px"})
    for w in warnings:
        solara.Warning(w, dense=True)
    fo = full[2] if full is not None else None
    rows = fo.by_race if fo else out.by_race
    _p("<b>IMR by race of the mother</b> (per 1,000 live births)")
    solara.HTML(unsafe_innerHTML=_table(
        ["race", "births", "IMR before", "IMR after", "deaths averted", "95% interval"],
        [[r["race"], _n(r["births"]), _n(r["imr_baseline"], 2), _n(r["imr_scenario"], 2),
          _n(r["deaths_averted"]), _interval(r["lo"], r["hi"])] for r in rows]))
    d = (fo or out).disparity
    if d:
        ci = _interval(d["rd_change_lo"], d["rd_change_hi"], 3)
        _p(
            f"<b>Disparity (NH black − NH white IMR)</b>: {_n(d['rd_baseline'], 2)} → "
            f"{_n(d['rd_scenario'], 2)} per 1,000, a change of {_n(d['rd_change'], 3)}"
            + (f" (95% interval {ci})" if ci else "")
            + f"; rate ratio {_n(d['rr_baseline'], 2)} → {_n(d['rr_scenario'], 2)}; gap closed "
            f"{_n(d['gap_closed_pct'], 1)}%")
    _p("<b>Attribution by strategy</b> (Shapley shares of the portfolio's deaths averted, "
       "summed over states)")
    if fo is not None and fo.attribution:
        solara.HTML(unsafe_innerHTML=_table(
            ["strategy", "deaths averted", "share"],
            [[a["strategy"], _n(a["deaths_averted"], 1), f"{_n(a['share_pct'], 1)}%"]
             for a in fo.attribution]))
    elif fo is None:
        solara.Text("computed with the draws...")
    rows = (fo or out).by_state
    _p("<b>By state</b>")
    solara.HTML(unsafe_innerHTML='<div class="imsim-scroll">' + _table(
        ["state", "births", "deaths averted", "95% interval", "IMR before", "IMR after",
         "change"],
        [[r["state"], _n(r["births"]), _n(r["deaths_averted"], 1),
          _interval(r["lo"], r["hi"], 1), _n(r["imr_baseline"], 2), _n(r["imr_scenario"], 2),
          f"{_n(r['imr_change_pct'], 1)}%"] for r in rows]) + "</div>")
    if out.trajectories:
        Trajectories(out.trajectories)


@solara.component
def Trajectories(rows):
    """The collaborative's coverage by quarter: mean over its teams per strategy (range shaded)."""
    from matplotlib.figure import Figure

    _p("<b>Collaborative: coverage trajectories</b> (mean over the teams working on each "
       "strategy; shaded: lowest to highest team)")
    fig = Figure(figsize=(7, 3.2), layout="constrained")
    ax = fig.add_subplot()
    for sid in STRATEGIES:
        pts = [r for r in rows if r["strategy"] == sid]
        if not pts:
            continue
        t = [r["t"] for r in pts]
        line, = ax.plot(t, [r["mean"] for r in pts], label=L.STRATEGY_LABELS[sid])
        ax.fill_between(t, [r["min"] for r in pts], [r["max"] for r in pts], alpha=0.12,
                        color=line.get_color())
    ax.set_xlabel("year")
    ax.set_ylabel("coverage")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    solara.FigureMatplotlib(fig, format="png")


@solara.component
def FilePanel(spec, draws):
    """Save/load/drop/apply scenario YAML and save the run folder, inside the results folder."""
    name = solara.use_reactive("workbench.yaml")
    message = solara.use_reactive(("", ""))
    text = solara.use_reactive(L.spec_yaml(spec.value))
    current = L.spec_yaml(spec.value)
    solara.use_effect(lambda: text.set(current), [current])

    def act(fn):
        try:
            message.set(("ok", fn()))
        except InputError as exc:
            message.set(("error", exc.format()))
        except OSError as exc:
            message.set(("error", f"{exc.filename or ''}: {exc.strerror or exc}".strip(": ")))

    def save():
        return f"saved {L.save_yaml(ROOT, name.value, spec.value)}"

    def load():
        spec.set(L.load_yaml(ROOT, name.value))
        return f"loaded {L.inside(ROOT, name.value)}"

    def apply():
        from imsim.core.validation import parse_yaml

        data = parse_yaml(text.value, file="YAML")
        from imsim.config.scenario import parse_scenario

        parse_scenario(dict(data) if isinstance(data, dict) else data, file="YAML")
        spec.set(data)
        return "applied"

    def dropped(f):
        act(lambda: (spec.set(L.parse_uploaded(f["data"].decode("utf-8", "replace"),
                                               f["name"])), f"loaded {f['name']}")[1])

    def save_run():
        result = _FINISHED.get((L.spec_yaml(spec.value), draws.value))
        if result is None:
            raise InputError("the uncertainty draws are still running (or the scenario is "
                             "invalid); save when the interval is shown")
        return f"saved run folder {L.save_run(ROOT, result)}"

    _p(f"Files are read and written only inside the results folder <code>"
       f"{html.escape(str(ROOT))}</code>.")
    with solara.Row(style={"flex-wrap": "wrap", "align-items": "center"}):
        solara.InputText("File name (inside the results folder)", value=name,
                         style={"max-width": "320px"}, continuous_update=True)
        solara.Button("Save YAML", on_click=lambda: act(save), color="primary")
        solara.Button("Load YAML", on_click=lambda: act(load))
        solara.Button("Save run folder", on_click=lambda: act(save_run))
    solara.FileDrop(label="Or drop a scenario YAML file here", on_file=dropped,
                    lazy=False)
    kind, msg = message.value
    if kind == "error":
        solara.Error(msg, classes=["imsim-file-error"])
    elif kind == "ok":
        solara.Success(msg, classes=["imsim-file-ok"])
    solara.InputTextArea("Scenario YAML (edit and apply: by_state, exposures, effects, ...)",
                         value=text, rows=14, continuous_update=True)
    solara.Button("Apply YAML", on_click=lambda: act(apply))


@solara.component
def RecommendPanel(spec, draws, refresh):
    """Run `imsim recommend` for the page's states and strategies (cost library), in a thread."""
    trigger = solara.use_reactive(0)
    message = solara.use_reactive(("", ""))

    def work():
        if trigger.value == 0:
            return
        try:
            path = L.run_recommend(ROOT, spec.value, draws.value)
        except InputError as exc:
            message.set(("error", exc.format()))
        else:
            message.set(("ok", f"wrote {path}; open it below"))
            refresh.set(refresh.value + 1)
        return

    job = solara.use_thread(work, dependencies=[trigger.value], intrusive_cancel=False)
    _p("<b>Recommend</b> for the page's states: every portfolio of up to three of its strategies "
       "(their coverage and options as set), costs from the cost library, the page's number "
       "of draws; the folder (index and one brief per state) opens below.")
    running = trigger.value > 0 and job.state in (solara.ResultState.STARTING,
                                                  solara.ResultState.RUNNING)
    solara.Button("Run recommend", on_click=lambda: (message.set(("", "")),
                                                      trigger.set(trigger.value + 1)),
                  disabled=running)
    if running:
        solara.Text("recommend is running (tens of seconds)...")
        solara.ProgressLinear(True)
    kind, msg = message.value
    if kind == "error":
        solara.Error(msg, classes=["imsim-recommend-error"])
    elif kind == "ok":
        solara.Success(msg)


@solara.component
def RunsPanel(spec, draws):
    """Recommend, and the run and recommend folders of the results folder, read-only."""
    refresh = solara.use_reactive(0)
    RecommendPanel(spec, draws, refresh)
    chosen = solara.use_reactive("")
    page = solara.use_reactive("")
    folders = solara.use_memo(lambda: L.run_folders(ROOT), [refresh.value])
    solara.Button("Refresh list", on_click=lambda: refresh.set(refresh.value + 1))
    if not folders:
        solara.Text(f"No run or recommend folders in {ROOT} yet.")
        return
    labels = {f"{f['name']} {('- ' + f['headline']) if f['headline'] else ''}".strip():
              f"{f['name']}/{f['page']}" for f in folders}
    solara.Select("Open a results folder (read-only)", values=list(labels),
                  value=next((k for k, v in labels.items() if v == chosen.value), None),
                  on_value=lambda k: (chosen.set(labels.get(k, "")), page.set("")))
    if chosen.value:
        try:
            body = L.page_html(ROOT, page.value or chosen.value)
        except InputError as exc:
            solara.Error(exc.format())
            return
        folder = chosen.value.split("/")[0]
        briefs = sorted(p.name for p in (ROOT / folder / "briefs").glob("*.html")) \
            if (ROOT / folder / "briefs").is_dir() else []
        states = sorted(p.name for p in (ROOT / folder / "states").glob("*.html")) \
            if (ROOT / folder / "states").is_dir() else []
        sub = [chosen.value] + [f"{folder}/briefs/{b}" for b in briefs] + \
            [f"{folder}/states/{s}" for s in states]
        if len(sub) > 1:
            solara.Select("Page", values=sub, value=page.value or chosen.value,
                          on_value=page.set)
        solara.v.Html(tag="iframe", attributes={
            "srcdoc": body, "sandbox": "",
            "style": "width: 100%; height: 900px; border: 1px solid #ccc;"})


@solara.component
def Page():
    """The workbench: inputs on the left, results, files and folders in tabs on the right."""
    spec = solara.use_reactive(dict(L.DEFAULT_SPEC))
    draws = solara.use_reactive(L.MIN_DRAWS)
    key = L.spec_yaml(spec.value)
    out, error = solara.use_memo(lambda: L.instant(spec.value), [key])
    solara.Title("imsim workbench")
    solara.Style(CSS)
    with solara.AppBarTitle():
        solara.Text("imsim — infant mortality strategy workbench")
    with solara.Columns([5, 7]):
        with solara.Column():
            Controls(spec, draws)
        with solara.Column(), solara.lab.Tabs():
            with solara.lab.Tab("Results"):
                Results(spec, key, out, error, draws)
                TileMap(spec, out)
            with solara.lab.Tab("Scenario file"):
                FilePanel(spec, draws)
            with solara.lab.Tab("Run folders and recommend"):
                RunsPanel(spec, draws)
