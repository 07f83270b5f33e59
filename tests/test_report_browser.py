"""The report is self-contained and renders in a real browser (headless Chromium when present)."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

import imsim
from imsim.core.constants import ALL
from imsim.config.scenario import parse_scenario

SPEC = {
    "name": "report-test",
    "description": "Safe sleep <script>alert('x')</script> & cessation \"quoted\"",
    "years": [2016, 2017],
    "states": ["AL", "MS"],
    "seed": 2,
    "replicates": 40,             # the fewest draws for which the report shows an interval
    "strategies": {"safe_sleep": {"coverage": 0.5},
                   "smoking_cessation": {"coverage": 0.4, "program": "incentives"}},
}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    result = imsim.run(parse_scenario(SPEC))
    out = result.save(tmp_path_factory.mktemp("report") / "run")
    s = result.summary
    tot = s[(s.state == ALL) & (s.race == ALL)].iloc[0]
    return out, tot


class _Checker(HTMLParser):
    """Collects tags, attributes and nesting errors of a document."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.doctype = None
        self.text_by_id: dict[str, list[str]] = {}
        self._open_ids: list[tuple[str, int]] = []
        self.style = []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in VOID:
            return
        self.stack.append(tag)
        if "id" in a:
            self.text_by_id.setdefault(a["id"], [])
            self._open_ids.append((a["id"], len(self.stack)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            if tag in self.stack:
                while self.stack and self.stack.pop() != tag:
                    pass
            return
        depth = len(self.stack)
        self.stack.pop()
        self._open_ids = [(i, d) for i, d in self._open_ids if d < depth]

    def handle_data(self, data):
        for i, _ in self._open_ids:
            self.text_by_id[i].append(data)
        if self.stack and self.stack[-1] == "style":
            self.style.append(data)


def _parse(html: str) -> _Checker:
    p = _Checker()
    p.feed(html)
    p.close()
    return p


def _headline_number(tot) -> str:
    """The report's headline: the median of the paired draws, as a whole number of deaths."""
    return f"{round(tot.deaths_averted_median):,.0f}"


def test_report_is_well_formed_and_self_contained(run_dir):
    out, tot = run_dir
    html = (out / "report.html").read_text(encoding="utf-8")
    p = _parse(html)
    assert p.doctype is not None and p.doctype.lower() == "doctype html"
    assert p.errors == []
    assert p.stack == [], f"unclosed tags: {p.stack}"
    tags = [t for t, _ in p.tags]
    assert tags.count("html") == 1 and tags.count("body") == 1 and "title" in tags
    # Nothing is fetched from elsewhere: no scripts, stylesheets, frames or remote URLs.
    assert "script" not in tags, "scenario text must be escaped, not rendered as a script"
    for tag, attrs in p.tags:
        assert tag not in ("link", "iframe", "object", "embed"), tag
        for k, v in attrs.items():
            if k in ("src", "href", "srcset", "data", "poster", "action") and v:
                assert not re.match(r"\s*(https?:)?//", v, re.I), (tag, k, v[:80])
                if tag == "a" and re.fullmatch(r"states/[A-Z]{2}\.html", v):
                    # links to the run folder's own state pages (themselves self-contained)
                    assert (out / v).is_file(), v
                    continue
                assert v.startswith("data:") or v.startswith("#"), (tag, k, v[:80])
    style = "".join(p.style)
    assert "@import" not in style and not re.search(r"url\(\s*['\"]?(https?:)?//", style)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)


def test_report_images_are_embedded_pngs(run_dir):
    out, _ = run_dir
    p = _parse((out / "report.html").read_text(encoding="utf-8"))
    imgs = [a for t, a in p.tags if t == "img"]
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 4
    assert len(imgs) == len(pngs)
    embedded = set()
    for a in imgs:
        src = a.get("src", "")
        assert src.startswith("data:image/png;base64,"), src[:60]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == PNG_MAGIC
        embedded.add(data)
        assert a.get("alt")
    assert embedded == {f.read_bytes() for f in pngs}


def test_report_headline_and_escaping(run_dir):
    out, tot = run_dir
    p = _parse((out / "report.html").read_text(encoding="utf-8"))
    assert "headline" in p.text_by_id
    headline = " ".join("".join(p.text_by_id["headline"]).split())
    assert tot.deaths_averted > 0
    assert _headline_number(tot) in headline
    assert "95% interval" in headline
    assert "median of 40 paired draws" in headline
    assert f"{round(tot.deaths_averted_lo):,.0f} to {round(tot.deaths_averted_hi):,.0f}" \
        in headline
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;" in text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium")
    out, tot = run_dir
    report = (out / "report.html").resolve()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
           report.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    p = _parse(dom)
    assert "headline" in p.text_by_id, dom[:500]
    headline = " ".join("".join(p.text_by_id["headline"]).split())
    assert _headline_number(tot) in headline
    imgs = [a for t, a in p.tags if t == "img"]
    assert len(imgs) == len(list((out / "figures").glob("*.png")))
    assert all(a.get("src", "").startswith("data:image/png;base64,") for a in imgs)
    assert "script" not in [t for t, _ in p.tags]
