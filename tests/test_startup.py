"""Start-up of `imsim run` (issue 15, target 4): saving a run does not import scipy.stats or
matplotlib.pyplot, and the cheaper paths give the same numbers and pixels as the ones they
replace. The wall time itself is measured by benchmarks/bench_startup.py, not here."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np


def test_chi2_ppf_is_scipy_stats_bit_for_bit():
    from scipy.stats import chi2

    from imsim.output.statepages import _chi2_ppf

    rng = np.random.default_rng(15)
    deaths = np.r_[0.5, 1.0, 2.0, 3.7, 10.0, 41.0, rng.uniform(0, 100, 200),
                   rng.uniform(100, 2e5, 200), 70106.3]
    for d in deaths:
        for q, df in ((0.025, 2 * d), (0.975, 2 * (d + 1))):
            assert _chi2_ppf(q, df) == float(chi2.ppf(q, df)), (q, df)


def _draw(fig, ax):
    ax.bar(np.arange(4), [5.0, 11.2, 5.0, 3.9], 0.6, color="#999", label="baseline")
    ax.errorbar([0.0, 2.0], [5.1, 4.8], yerr=[[0.1, 0.2], [0.3, 0.1]], fmt="D", color="#111")
    ax.set_xticks(np.arange(4), ["NH white", "NH black", "Hispanic", "API"], fontsize=7)
    ax.set_title("IMR by race")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, bbox_inches="tight")
    return buf.getvalue()


def test_new_figure_saves_the_same_png_as_pyplot():
    import matplotlib

    from imsim.output.canvas import new_figure

    fig = new_figure((7, 3.6))
    ours = _draw(fig, fig.subplots())
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig2, ax2 = plt.subplots(figsize=(7, 3.6))
    try:
        theirs = _draw(fig2, ax2)
    finally:
        plt.close(fig2)
    assert ours[:8] == b"\x89PNG\r\n\x1a\n"
    assert ours == theirs


SCRIPT = """
import json, sys
from imsim.cli import main
rc = main(["run", sys.argv[1], "--out", sys.argv[2], "--quiet"])
print(json.dumps({"rc": rc, "loaded": [m for m in ("scipy.stats", "matplotlib.pyplot")
                                        if m in sys.modules]}))
"""


def test_run_saves_without_scipy_stats_or_pyplot(tmp_path):
    # Two states: the state pages carry charts, the report its figures and the Poisson headline.
    sc = tmp_path / "two.yaml"
    sc.write_text("name: two\nyears: [2013, 2015]\nstates: [GA, AL]\nseed: 1\n"
                  "engine: expected\nreplicates: 1\n", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(sc), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["rc"] == 0
    assert info["loaded"] == [], info
    assert (out / "report.html").exists() and len(list((out / "figures").glob("*.png"))) >= 4
    page = (out / "states" / "GA.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in page
