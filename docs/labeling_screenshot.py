"""Take docs/labeling.png: the labeling page on the shared shoe images, in headless Debian chromium.

    .venv/bin/python docs/labeling_screenshot.py [--data DIR] [--out docs/labeling.png]
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1000, "height": 760}
PLAN_SIZE = 20
PORT = 8765


def main() -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from ctxsim.demo import data_dir
    from ctxsim.labeling.app import create_app
    from ctxsim.labeling.plan import make_plan

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", help="shared data folder (default: $CTXSIM_DATA or ../shared/data)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("labeling.png")))
    args = parser.parse_args()

    images = data_dir(args.data) / "zappos" / "images"
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.csv"
        make_plan(images, PLAN_SIZE, seed=7).write_csv(plan)
        app = create_app(plan, Path(tmp) / "votes.sqlite", images=images, tokens={"demo": "demo-token-0123456789"})
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=PORT, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"http://127.0.0.1:{PORT}/label/demo-token-0123456789")
                for key in ("ArrowLeft", "b", "ArrowLeft"):  # a few answers, so progress shows
                    page.wait_for_selector("#task[data-state=ready]")
                    page.keyboard.press(key)
                    page.wait_for_selector("#task[data-state=ready]")
                box = page.locator("#left").bounding_box()  # hover A without scrolling, to show the highlight
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.screenshot(path=args.out)
                browser.close()
        finally:
            server.should_exit = True
            thread.join()
    print(args.out)


if __name__ == "__main__":
    main()
