"""Every HTML page imsim writes renders in a real browser: headless Chromium (Debian's, as
`.ci/run` installs it) driven by Playwright, every image loaded, no console errors.

Covers the run report, a state page, the recommend index and a brief, and a compare page. Skips
cleanly, with the reason, where Playwright or Chromium is missing.
"""
from __future__ import annotations

import shutil

import pytest
import imsim
from imsim.config.scenario import parse_scenario

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")

SPEC = {"name": "pages", "years": [2026, 2027], "states": ["AL", "MS"], "seed": 4,
        "replicates": 3, "strategies": {"safe_sleep": {"coverage": 0.5},
                                        "smoking_cessation": {"coverage": 0.4}}}
PLAN = {"name": "pages", "states": ["AL", "MS"], "years": [2026, 2027], "draws": 4, "seed": 3,
        "max_strategies": 2,
        "strategies": {"safe_sleep": {"coverage": 0.5}, "smoking_cessation": {"coverage": 0.3},
                       "risk_appropriate_care": {"coverage": 0.5}},
        "costs": {"safe_sleep": 20, "smoking_cessation": 600, "risk_appropriate_care": 2500}}


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    from imsim.analysis.recommend import parse_plan, recommend
    from imsim.output.recommendation import save as save_recommendation

    tmp = tmp_path_factory.mktemp("pages")
    a = imsim.run(parse_scenario(SPEC)).save(tmp / "a")
    spec_b = dict(SPEC, strategies={"safe_sleep": {"coverage": 0.8}})
    b = imsim.run(parse_scenario(spec_b)).save(tmp / "b")
    rec = save_recommendation(recommend(parse_plan(PLAN)), tmp / "rec", figures=True)
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "imsim"
    subprocess.run([str(exe), "compare", str(a), str(b), "--out", str(tmp / "cmp"),
                    "--no-intervals"], check=True, capture_output=True)
    return {"report": a / "report.html", "state": a / "states" / "AL.html",
            "index": rec / "index.html", "brief": rec / "briefs" / "AL.html",
            "compare": tmp / "cmp" / "compare.html"}


@pytest.mark.parametrize("page", ["report", "state", "index", "brief", "compare"])
def test_page_renders_with_every_image_and_no_console_error(pages, page, tmp_path):
    path = pages[page]
    assert path.exists(), path
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            pg = browser.new_page()
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(path.resolve().as_uri(), wait_until="load")
            n_img = pg.evaluate("document.images.length")
            broken = pg.evaluate("Array.from(document.images)"
                                 ".filter(i => !(i.complete && i.naturalWidth > 0)).length")
            title = pg.title()
            pg.screenshot(path=str(tmp_path / f"{page}.png"), full_page=False)
        finally:
            browser.close()
    assert errors == []
    assert broken == 0
    assert title.strip()
    assert n_img >= 1
