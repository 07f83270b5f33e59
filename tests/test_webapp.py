"""`imsim serve`, the planner's workbench in the browser.

The page is driven in a real browser (headless Chromium from the distribution, as `.ci/run`
installs it, through Playwright) against a live server started here as a subprocess: load the
page, change a coverage and see the headline change, save the scenario as YAML and load it back
identically, trigger validation errors and see the command line's one-line message, and a path
outside the results folder refused. A screenshot is kept under tests/artifacts/ (git-ignored).
The logic below the page (paths, fields, validation) is tested without a browser.

Skips cleanly, with the reason, where Solara, Playwright or Chromium is missing.
"""
from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from imsim.config.scenario import parse_scenario
from imsim.core.errors import InputError
from imsim.output.web import logic as L

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------------------------
# The logic, no browser
# ---------------------------------------------------------------------------------------------

def test_paths_outside_the_results_folder_are_refused(tmp_path):
    root = tmp_path / "res"
    root.mkdir()
    (tmp_path / "secret.yaml").write_text("name: x\n")
    os.symlink(tmp_path / "secret.yaml", root / "link.yaml")
    for bad in ("../secret.yaml", str(tmp_path / "secret.yaml"), "/etc/passwd", "a/../../x.yaml",
                "link.yaml", "", "   "):
        with pytest.raises(InputError) as e:
            L.inside(root, bad)
        assert "\n" not in e.value.format()
    assert L.inside(root, "sub/plan.yaml") == (root / "sub" / "plan.yaml").resolve()
    spec = copy.deepcopy(L.DEFAULT_SPEC)
    with pytest.raises(InputError, match="outside the results folder"):
        L.save_yaml(root, "../escape.yaml", spec)
    assert not (tmp_path / "escape.yaml").exists()
    with pytest.raises(InputError, match="outside the results folder"):
        L.load_yaml(root, "link.yaml")
    with pytest.raises(InputError, match="outside the results folder"):
        L.page_html(root, "../secret.yaml")


def test_yaml_round_trip_and_cli_messages(tmp_path):
    spec = L.with_value(L.DEFAULT_SPEC, ("strategies", "safe_sleep", "coverage"),
                        L.parse_coverage("2026: 0.2, 2030: 0.6"))
    spec = L.toggle_strategy(spec, "smoking_cessation", True)
    spec = L.with_value(spec, ("strategies", "safe_sleep", "reach"),
                        L.parse_reach("nh_black: 1, nh_white: 0.8"))
    path = L.save_yaml(tmp_path, "plans/a.yaml", spec)
    assert L.load_yaml(tmp_path, "plans/a.yaml") == spec
    assert parse_scenario(L.load_yaml(tmp_path, "plans/a.yaml")).model_dump() == \
        parse_scenario(copy.deepcopy(spec)).model_dump()
    assert path.read_text() == L.spec_yaml(spec)
    # An invalid field gets exactly the message `imsim validate` gives (without the file name).
    bad = L.with_value(spec, ("strategies", "safe_sleep", "coverage"), L.parse_coverage("1.5"))
    with pytest.raises(InputError) as e:
        parse_scenario(copy.deepcopy(bad))
    _, msg, _ = L.validate(bad)
    assert msg == e.value.format() and "strategies.safe_sleep.coverage" in msg
    with pytest.raises(InputError):
        L.save_yaml(tmp_path, "bad.yaml", bad)     # nothing invalid is written
    assert not (tmp_path / "bad.yaml").exists()
    with pytest.raises(InputError, match=r"\.yaml or \.yml"):
        L.save_yaml(tmp_path, "a.txt", spec)
    assert L.format_coverage(L.parse_coverage("2026: 0.2, 2030: 0.6")) == "2026: 0.2, 2030: 0.6"
    assert L.parse_coverage("half") == "half"      # passed on for the schema to name
    assert L.toggle_state({"states": "all"}, "AL")["states"] == [
        s for s in L.STATES if s != "AL"]


def test_instant_headline_matches_a_point_run():
    from imsim.analysis.runner import run

    spec = copy.deepcopy(L.DEFAULT_SPEC)
    out, err = L.instant(spec)
    assert err is None
    s = run(parse_scenario(copy.deepcopy(spec)), replicates=1).summary
    row = s[(s.state == "ALL") & (s.race == "ALL")].iloc[0]
    assert out.headline["point"] == pytest.approx(float(row.deaths_averted), rel=1e-12)
    assert [r["state"] for r in out.by_state] == ["AL", "GA", "MS"]
    more = L.with_value(spec, ("strategies", "safe_sleep", "coverage"), 0.9)
    assert L.instant(more)[0].headline["point"] > out.headline["point"]


def test_serve_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    """No solara, a taken port, a --results that is a file: one line each, exit 2."""
    from imsim.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        if _has("solara"):
            assert main(["serve", "--port", str(port), "--results", str(tmp_path / "r")]) == 2
            err = capsys.readouterr().err
            assert "cannot listen there" in err and err.count("\n") == 1
    (tmp_path / "f").write_text("x")
    if _has("solara"):
        assert main(["serve", "--port", "1", "--results", str(tmp_path / "f")]) == 2
        assert "is a file" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "out of range" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "solara", None)          # as if not installed
    assert main(["serve", "--port", "8765", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'imsim[web]'" in err and err.count("\n") == 1


def test_recommend_plan_from_the_page():
    from imsim.analysis.recommend import parse_plan

    spec = L.toggle_strategy(copy.deepcopy(L.DEFAULT_SPEC), "smoking_cessation", True)
    plan = L.recommend_plan(spec, 40)
    assert plan["max_strategies"] == 2 and plan["costs"] == "library" and plan["draws"] == 40
    rp = parse_plan(plan)
    assert list(rp.scenario.states) == ["AL", "GA", "MS"]
    assert L.check_draws(40) is None and L.check_draws(10_000) and L.check_draws(True)


# ---------------------------------------------------------------------------------------------
# In the browser
# ---------------------------------------------------------------------------------------------

browser = pytest.mark.skipif(not _has("solara"), reason="solara is not installed "
                             "(pip install 'imsim[web]')")
browser2 = pytest.mark.skipif(not _has("playwright"), reason="playwright is not installed")
browser3 = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")


def _end_with_us():
    """In the server child: the kernel ends it when this process ends (no orphaned server if
    the test run is killed)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    results = tmp_path / "res"
    exe = Path(sys.executable).parent / "imsim"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--results", str(results)],
                            stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_end_with_us)  # noqa: PLW1509
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120      # generous: a loaded CI machine
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("server did not start: "
                                     f"{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.2)
        print(f"server up after {time.monotonic() - deadline + 120:.1f} s")
        yield url, results
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _headline(pg) -> float:
    return float(re.sub(r"[^0-9.]", "", pg.inner_text(".imsim-headline").split()[0]))


def _set(pg, label: str, text: str):
    box = pg.get_by_label(label, exact=True)
    box.fill(text)
    box.press("Enter")


@browser
@browser2
@browser3
def test_workbench_in_the_browser(server):
    from playwright.sync_api import expect, sync_playwright

    url, results = server
    expect.set_options(timeout=30_000)        # a loaded machine: waits, not sleeps
    t0 = time.monotonic()
    errors: list[str] = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu",
                                    "--disable-background-networking", "--no-first-run"])
        try:
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            pg.on("pageerror", lambda e: errors.append(str(e)))
            offsite: list[str] = []
            pg.on("request", lambda r: offsite.append(r.url)
                  if not r.url.startswith(url[:-1]) and not r.url.startswith("data:") else None)
            pg.set_default_timeout(30_000)
            pg.goto(url, wait_until="load")
            pg.wait_for_selector(".imsim-headline", timeout=120_000)
            print(f"page with its headline after {time.monotonic() - t0:.1f} s")
            h1 = _headline(pg)
            assert h1 > 0

            # A coverage change refreshes the headline (more coverage, more deaths averted).
            before = pg.inner_text(".imsim-headline")
            _set(pg, "Safe sleep coverage", "0.9")
            expect(pg.locator(".imsim-headline")).not_to_have_text(before)
            h2 = _headline(pg)
            assert h2 > h1

            # Save the scenario as YAML inside the results folder.
            pg.get_by_role("tab", name="Scenario file").click()
            _set(pg, "File name (inside the results folder)", "plan.yaml")
            pg.get_by_role("button", name="Save YAML").click()
            pg.wait_for_selector(".imsim-file-ok")
            saved = results / "plan.yaml"
            text = saved.read_text()
            scenario = parse_scenario(L.load_yaml(results, "plan.yaml"))
            assert scenario.strategies.safe_sleep.coverage == 0.9

            # Change it, then load the file back: the same scenario, the same headline.
            _set(pg, "Safe sleep coverage", "0.2")
            expect(pg.get_by_label("Safe sleep coverage", exact=True)).to_have_value("0.2")
            pg.wait_for_function(f"() => !document.querySelector('.imsim-headline')"
                                 f".innerText.startsWith('{h2:,.0f} ')")
            pg.get_by_role("button", name="Load YAML").click()
            expect(pg.get_by_label("Safe sleep coverage", exact=True)).to_have_value("0.9")
            expect(pg.locator(".imsim-headline")).to_have_text(
                f"{h2:,.0f} infant deaths averted")
            expect(pg.locator("textarea").first).to_have_value(text)
            pg.get_by_role("button", name="Save YAML").click()   # saved again: identical
            pg.wait_for_selector(".imsim-file-ok")
            assert saved.read_text() == text

            # A path outside the results folder is refused, in one line, nothing written.
            _set(pg, "File name (inside the results folder)", "../escape.yaml")
            pg.get_by_role("button", name="Save YAML").click()
            err = pg.wait_for_selector(".imsim-file-error")
            assert "outside the results folder" in err.inner_text()
            assert not (results.parent / "escape.yaml").exists()

            # A bad coverage: the command line's one-line message, inline.
            _set(pg, "Safe sleep coverage", "1.5")
            bad = L.with_value(L.load_yaml(results, "plan.yaml"),
                               ("strategies", "safe_sleep", "coverage"), 1.5)
            with pytest.raises(InputError) as e:
                parse_scenario(bad)
            pg.get_by_role("tab", name="Results").click()
            box = pg.wait_for_selector(".imsim-error")
            assert e.value.format() in box.inner_text()
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "webapp.png"
            _set(pg, "Safe sleep coverage", "0.9")
            pg.wait_for_selector(".imsim-headline")
            pg.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}; browser part {time.monotonic() - t0:.1f} s")
        finally:
            b.close()
    assert errors == []
    assert offsite == []                      # every asset from the local server
    assert "Traceback" not in (results.parent / "server.log").read_text()
