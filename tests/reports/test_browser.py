"""report.html opened in headless Debian chromium: every figure and thumbnail decodes, the tables are there."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ctxsim.reports.report import build_report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def test_report_renders_in_chromium(scored, scored_dir: Path, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), f"{CHROMIUM} is not installed: `make browser` installs Debian's chromium"
    (scored_dir / "images" / "x3.png").unlink()  # the gallery's placeholder must render too
    out = tmp_path / "rep"
    build_report(scored, out, images_root=scored_dir, notes={"combiner": "majority vote"})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.goto((out / "report.html").as_uri(), wait_until="load")
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            contexts = page.eval_on_selector_all("#per-context tbody tr td:first-child", "tds => tds.map(t => t.textContent)")
            counts = page.eval_on_selector_all("#counts tbody tr", "trs => trs.length")
            figures = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.alt)")
        finally:
            browser.close()
    assert len(widths) == 4 + 2 * 3  # four figures, two triplets of thumbnails
    assert all(w > 0 for w in widths), widths
    assert set(contexts) == {"(all)", "blue", "red"} and len(contexts) == 3 * 4  # 3 contexts x 4 models
    assert counts == 3
    assert figures == ["accuracy per context", "model x context accuracy heatmap", "reliability diagram", "risk-coverage curves"]
    assert errors == []
