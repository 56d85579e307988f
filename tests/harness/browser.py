"""A real headless browser for the status page: Debian's `chromium` driven by Playwright (its own
browser download is not needed), and the layout checks the tests make on what it renders.

    with chromium() as browser: page = browser.new_page(...)
"""

from __future__ import annotations

import contextlib
import shutil
import struct
from pathlib import Path

from tests.harness import missing


def require_chromium() -> str:
    """The chromium binary, with Playwright importable; skip (fail under CI=true) without."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        missing("chromium not installed (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright not installed (pip install -e '.[test]')")
    return path


@contextlib.contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    path = require_chromium()
    with sync_playwright() as p:
        # --no-sandbox: CI runs the tests as root, where chromium's sandbox refuses to start.
        browser = p.chromium.launch(executable_path=path, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


# Every element's box, the page's widths, and the sections' order, measured in the page.
_LAYOUT = """() => {
  const boxes = [...document.querySelectorAll("body *")].filter((e) => {
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== "hidden";
  }).map((e) => {
    const r = e.getBoundingClientRect();
    return {tag: e.tagName, id: e.id, cls: e.className, left: r.left, right: r.right,
            top: r.top + scrollY, bottom: r.bottom + scrollY};
  });
  const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
    return {top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right}; };
  return {width: innerWidth, scrollWidth: document.documentElement.scrollWidth, boxes,
          header: box("header"),
          sections: [...document.querySelectorAll("main section")].map((s) => ({
            id: s.id, ...box("#" + s.id)}))};
}"""


def layout_problems(page) -> list[str]:
    """What is wrong with the rendered layout: anything wider than the viewport, the header
    not above the sections, sections overlapping or out of order."""
    m = page.evaluate(_LAYOUT)
    problems = []
    if m["scrollWidth"] > m["width"]:
        problems.append(f"the page scrolls sideways: {m['scrollWidth']} > {m['width']} px")
    for b in m["boxes"]:
        if b["right"] > m["width"] + 0.5 or b["left"] < -0.5:
            problems.append(f"{b['tag']}#{b['id']}.{b['cls']} overflows the viewport: "
                            f"{b['left']:.0f}..{b['right']:.0f} of {m['width']} px")
    sections = m["sections"]
    if not sections or m["header"]["bottom"] > sections[0]["top"]:
        problems.append(f"the header is not above the sections: {m['header']} {sections[:1]}")
    for a, b in zip(sections, sections[1:]):
        if a["bottom"] > b["top"]:
            problems.append(f"section {a['id']} overlaps {b['id']}")
    return problems


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    data = Path(path).read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])
