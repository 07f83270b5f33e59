"""Time the workbench: one coverage change to a refreshed headline (issue 16: < 1 s for ten
states at point values, < 2 s nationally).

Plain script (not a test):  python benchmarks/bench_webapp.py [repeats]

1. Server side: :func:`imsim.output.web.logic.instant` (validate the page's scenario with the
   command line's parser, run the expected engine at point values, build the headline, IMR by
   race, disparity and by-state numbers) after a coverage change, for ten southern states and
   for all 51 areas, with all six strategies on.
2. In the browser, when Solara, Playwright and Chromium are installed: a live ``imsim serve``,
   the coverage field changed, the time until the page shows the new headline.
Prints median, min and max of ``repeats`` changes.
"""
from __future__ import annotations

import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from imsim.output.web import logic as L

TEN = ["AL", "AR", "FL", "GA", "LA", "MS", "NC", "SC", "TN", "TX"]
ALL_SIX = {"safe_sleep": {"coverage": 0.5}, "smoking_cessation": {"coverage": 0.3},
           "preterm_prevention": {"coverage": 0.5}, "preconception_care": {"coverage": 0.4},
           "risk_appropriate_care": {"coverage": 0.9},
           "social_determinants": {"coverage": 0.5, "policy": "income_support"}}


def _stats(times):
    return (f"median {statistics.median(times):.3f} s (min {min(times):.3f}, "
            f"max {max(times):.3f}, {len(times)} changes)")


def server_side(repeats: int) -> None:
    for label, states in (("ten states", TEN), ("national (51)", "all")):
        spec = {"name": "bench", "years": [2026, 2030], "states": states,
                "strategies": ALL_SIX}
        L.instant(spec)                                    # warm-up (imports, JIT, caches)
        times = []
        for i in range(repeats):
            cov = round(0.30 + 0.6 * (i + 1) / (repeats + 1), 4)   # a new value each time
            changed = L.with_value(spec, ("strategies", "safe_sleep", "coverage"), cov)
            t0 = time.perf_counter()
            out, err = L.instant(changed)
            times.append(time.perf_counter() - t0)
            assert err is None, err
        print(f"server, coverage change -> headline, {label}, 6 strategies: {_stats(times)}; "
              f"{out.headline['point']:,.0f} deaths averted")


def _end_with_us():
    """In the server child: the kernel ends it when this process ends (no orphaned server if
    the test run is killed)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)   # PR_SET_PDEATHSIG


def in_browser(repeats: int) -> None:
    import importlib.util

    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)),
                    None)
    if chromium is None or importlib.util.find_spec("solara") is None \
            or importlib.util.find_spec("playwright") is None:
        print("browser: skipped (needs chromium, solara and playwright)")
        return
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = Path(tempfile.mkdtemp())
    exe = Path(sys.executable).parent / "imsim"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--results", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_end_with_us)  # noqa: PLW1509
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True,
                                  args=["--no-sandbox", "--disable-gpu"])
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            pg.goto(url)
            pg.wait_for_selector(".imsim-headline", timeout=120_000)
            for label, national in (("three states (the page's default)", False),
                                    ("national (51)", True)):
                if national:
                    pg.get_by_label("All states (national)").check(force=True)
                    pg.wait_for_function("() => document.querySelector('.imsim-headline')",
                                         timeout=60_000)
                    time.sleep(3)
                box = pg.get_by_label("Safe sleep coverage", exact=True)
                times = []
                for i in range(repeats):
                    old = pg.inner_text(".imsim-headline")
                    cov = f"{0.30 + 0.6 * (i + 1) / (repeats + 1):.4f}"
                    t0 = time.perf_counter()
                    box.fill(cov)
                    pg.wait_for_function(
                        "old => { const h = document.querySelector('.imsim-headline');"
                        " return h && h.innerText !== old; }", arg=old, timeout=30_000,
                        polling=10)
                    times.append(time.perf_counter() - t0)
                print(f"browser, coverage typed -> new headline shown, {label}: {_stats(times)}")
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    server_side(n)
    in_browser(n)
