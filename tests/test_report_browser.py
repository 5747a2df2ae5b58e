"""The HTML report as a reader sees it: opened in headless Chromium, every figure decodes and
every table has rows. A full-page screenshot is kept for a human look."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import reports
from reports.synthetic import TASKS, demo_frame

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
]


def screenshot_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("DIPBENCH_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def report_page(index: Path, shot: Path) -> Iterator[Any]:
    """A report's ``index.html`` opened in headless Chromium, its comparison table rendered;
    a full-page screenshot to ``shot`` when the caller is done with the page."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(index.as_uri(), wait_until="load")
            page.wait_for_selector("table#comparison tbody tr")
            yield page
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    index = reports.build_report(demo_frame(tmp_path / "recon"), tmp_path / "report",
                                 title="Synthetic benchmark", recon_root=tmp_path / "recon")
    shot = screenshot_dir(tmp_path) / "report.png"
    with report_page(index, shot) as page:
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        rows = page.eval_on_selector_all("table", "els => els.map(t => [t.id, t.tBodies[0].rows.length])")
        tooltip = page.get_attribute("table#comparison td.skip", "title")
    assert len(images) == 3 + 2 * len(TASKS)  # and per task the spectral-bias figure and the examples
    assert all(complete and width > 0 for _, complete, width in images), images
    assert [t for t, _ in rows] == ["comparison", "es-gap", "seed-spread", "failed"]
    assert all(n > 0 for _, n in rows), rows
    assert tooltip == "skipped: DnCNN is trained for denoising only"
    assert shot.stat().st_size > 10_000
