"""The `imsim run` report a planner can act on: the baseline headlined as a baseline, modelled
vs observed rates, the trend by year, human labels, whole-year coverage ticks and one
self-contained page per state."""
from __future__ import annotations

import base64
import re

import pytest

import imsim
from imsim.config.scenario import parse_scenario
from imsim.inputs.data import load_table

STATES = ["AL", "GA", "MS"]
BASE = {"name": "base-pages", "years": [2013, 2015], "states": STATES, "seed": 1,
        "engine": "expected", "replicates": 1}
STRAT = {"name": "strat-pages", "years": [2026, 2030], "states": STATES, "seed": 3,
         "engine": "expected", "replicates": 1,
         "strategies": {"safe_sleep": {"coverage": {2026: 0.2, 2028: 0.5, 2030: 0.6}},
                        "smoking_cessation": {"coverage": 0.4}}}
MACHINE_IDS = ("nh_black", "nh_white", "nh_aian", "nh_api", "safe_sleep", "smoking_cessation")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    result = imsim.run(parse_scenario(BASE))
    return result, result.save(tmp_path_factory.mktemp("pages") / "base")


@pytest.fixture(scope="module")
def strat_run(tmp_path_factory):
    result = imsim.run(parse_scenario(STRAT))
    return result, result.save(tmp_path_factory.mktemp("pages") / "strat")


def _visible(html: str) -> str:
    html = re.sub(r"<(style|script|title)[^>]*>.*?</\1>", " ", html, flags=re.S | re.I)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _obs(state, race):
    t = load_table("targets")
    r = t[(t.target == "imr") & (t.period == "2013-2015") & (t.state == state) & (t.race == race)]
    assert len(r) == 1
    return r.iloc[0]


def test_baseline_report_headlines_the_baseline_and_shows_observed(base_run):
    result, out = base_run
    html = (out / "report.html").read_text(encoding="utf-8")
    head = html.split('id="headline">', 1)[1].split("</p>", 1)[0]
    assert "deaths averted" not in head
    assert "0 infant deaths averted" not in html
    tot = result.summary[(result.summary.state == "ALL") & (result.summary.race == "ALL")].iloc[0]
    assert f"{round(tot.births):,}" in head and f"{round(tot.deaths_baseline):,}" in head
    # baseline by race with intervals
    base = html.split('id="baseline">', 1)[1].split("</table>", 1)[0]
    assert "Non-Hispanic black" in base and base.count("&ndash;") >= 6
    # modelled vs observed: observed values and intervals from targets.csv for the same cells
    tab = html.split('id="observed-vs-modelled">', 1)[1].split("</table>", 1)[0]
    rows = {tuple(_visible(c) for c in re.findall(r"<td>(.*?)</td>", r)[:2]): r
            for r in re.findall(r"<tr>(.*?)</tr>", tab)}
    by = result.table("by_year")
    for st, race, label in [("GA", "nh_black", "Non-Hispanic black"), ("AL", "ALL", "All races"),
                            ("MS", "hispanic", "Hispanic")]:
        o = _obs(st, race)
        name = {"GA": "Georgia", "AL": "Alabama", "MS": "Mississippi"}[st]
        row = rows[(name, label)]
        assert f"{o.value:.2f}" in row
        assert f"{o.lo:.2f}&ndash;{o.hi:.2f}" in row
        c = by[(by.state == st) & (by.race == race)]
        assert f"{1000 * c.deaths_baseline.sum() / c.births.sum():.2f}" in row
    # figures: observed-vs-modelled and by-year trend, no empty deaths-averted chart
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert {"observed_vs_modelled.png", "imr_by_year.png"} <= figs
    assert "deaths_averted_by_state.png" not in figs


def test_no_machine_ids_in_visible_text(strat_run, base_run):
    for _, out in (strat_run, base_run):
        for page in [out / "report.html", out / "states" / "GA.html"]:
            text = _visible(page.read_text(encoding="utf-8"))
            for mid in MACHINE_IDS:
                assert mid not in text, (page.name, mid)
    text = _visible((strat_run[1] / "report.html").read_text(encoding="utf-8"))
    assert "Safe sleep" in text and "Non-Hispanic black" in text
    assert "infant deaths averted" in text


def test_coverage_ticks_are_whole_years_and_legend_outside(strat_run):
    from imsim.output.figures import coverage_figure

    result, _ = strat_run
    fig = coverage_figure(result)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d{4}", s) for s in labels), labels
    leg = ax.get_legend()
    assert {t.get_text() for t in leg.get_texts()} == {"Safe sleep", "Smoking cessation"}
    # the legend sits right of the plotting area (outside the lines)
    r = fig.canvas.get_renderer()
    assert leg.get_window_extent(r).x0 >= ax.get_window_extent(r).x1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_deaths_are_whole_numbers_in_tables(strat_run):
    _, out = strat_run
    html = (out / "report.html").read_text(encoding="utf-8")
    sec = html.split("<h2>Which strategy does the work", 1)[1].split("<h2>", 1)[0]
    first = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", sec)]
    assert first and all(re.fullmatch(r"-?[\d,]+", r[1]) for r in first if r)


@pytest.mark.parametrize("which", ["strat", "base"])
def test_state_pages_exist_embed_images_and_are_linked(which, strat_run, base_run):
    result, out = strat_run if which == "strat" else base_run
    report = (out / "report.html").read_text(encoding="utf-8")
    pages = sorted(p.stem for p in (out / "states").glob("*.html"))
    assert pages == sorted(STATES)
    s = result.summary
    for st in STATES:
        assert f"href='states/{st}.html'" in report
        html = (out / "states" / f"{st}.html").read_text(encoding="utf-8")
        imgs = re.findall(r"<img [^>]*src=\"([^\"]+)\"", html)
        assert imgs
        for src in imgs:
            assert src.startswith("data:image/png;base64,")
            assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
        text = _visible(html).replace(" :", ":")
        tot = s[(s.state == st) & (s.race == "ALL")].iloc[0]
        if which == "strat":
            assert f"{round(tot.deaths_averted):,} infant deaths averted" in text
            assert "Safe sleep: coverage 20% in 2026 to 60% in 2030" in text
            assert "Smoking cessation: coverage 40% every year" in text
            assert "Disparity" in text
        else:
            assert f"{round(tot.deaths_baseline):,} infant deaths" in text
        o = _obs(st, "nh_black")
        assert f"{o.value:.2f} ({o.lo:.2f}" in html
