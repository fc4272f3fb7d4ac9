"""A generated report opened in headless Chromium: it renders offline, every image loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it with apt-get)",
)


def test_report_renders_offline_in_chromium(report_dir: Path, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    page_path = report_dir / "claims-all.html"
    requested: list[str] = []
    failed: list[str] = []
    console: list[str] = []  # a Content-Security-Policy violation is logged here
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda request: requested.append(request.url))
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("console", lambda message: console.append(message.text))
            page.goto(page_path.as_uri(), wait_until="load")
            scripts = page.evaluate("document.scripts.length")
            body_font = page.evaluate("getComputedStyle(document.body).fontFamily")
            broken_images = page.eval_on_selector_all(
                "img", "images => images.filter(i => !(i.complete && i.naturalWidth > 0)).length"
            )
            image_count = page.eval_on_selector_all("img", "images => images.length")
            heading = page.inner_text("h1")
            screenshot = tmp_path / "claims-all.png"
            page.screenshot(path=str(screenshot), full_page=True)
            page.set_viewport_size({"width": 420, "height": 900})  # a phone: no sideways page
            narrow_width = page.evaluate("document.documentElement.scrollWidth")
            page.screenshot(path=str(tmp_path / "claims-all-420.png"), full_page=True)
        finally:
            browser.close()
    outside = [url for url in requested if not url.startswith(("file:", "data:"))]
    assert not failed, failed
    assert not outside, outside
    assert console == [], console
    assert scripts == 0
    assert "system-ui" in body_font  # the inline stylesheet applies under the policy
    assert narrow_width <= 420
    assert image_count >= 5 and broken_images == 0
    assert "Myofascial release claims" in heading
    assert screenshot.stat().st_size > 50_000
