"""The Snakemake HTML report of a real run, opened in headless Chromium: it loads without
errors, every category is there, and every figure in it displays (a decoded image)."""

from __future__ import annotations

import os
import shutil

import pytest
from helpers import smk

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
CATEGORIES = [
    "Findings",
    "Lab 1a — Decode",
    "Lab 1b — Nsight Compute",
    "Lab 2 — Roofline",
    "Lab 3 — AllReduce",
    "Napkin models",
    "§1 — Memory hierarchy",
    "§6 — TP communication",
]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if CHROMIUM is None or sync_playwright is None:
        msg = "needs Debian's chromium and the playwright package (pip install -e .[dev])"
        if os.environ.get("HWLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_report_loads_and_shows_every_figure(tiny_run, browser):
    wd, cfg, res = tiny_run
    html = res / "report.html"
    proc = smk(wd, "--report", str(html), configfile=cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert html.stat().st_size > 100_000

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(html.as_uri())
    page.wait_for_selector("text=Results", timeout=30_000)
    shown = 0
    for category in CATEGORIES:
        page.goto(html.as_uri())
        page.get_by_text(category, exact=True).first.click()
        rows = page.locator("tr", has_text=".png")
        for i in range(rows.count()):
            rows.nth(i).locator("a[iconname=eye]").click()
            img = page.locator("img[src^='data:image/png']").first
            img.wait_for(timeout=10_000)
            width = img.evaluate("e => e.complete ? e.naturalWidth : 0")
            assert width > 100, (category, i)
            shown += 1
            page.goto(html.as_uri())
            page.get_by_text(category, exact=True).first.click()
    # roofline, decode sweep, kernel classes, the decode model, the Lab 1b figure, allreduce,
    # the memory hierarchy
    assert shown == 7
    assert errors == [], errors
