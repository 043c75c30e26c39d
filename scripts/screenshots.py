"""Screenshots of the served page for the README (docs/img/serve_*.png), taken in headless Chromium.

Serves the demo index (``bash scripts/demo.sh`` builds runs/demo/db), runs the demo's group-by query,
and captures the results with the group chart, the token highlights of the top result, the chart, and
the same query on a 390 px phone screen (serve_narrow.png, the whole page).

    python scripts/screenshots.py [--db runs/demo/db] [--out docs/img]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from airsearch.indexers.serve import ServeConfig, create_app
from playwright.sync_api import sync_playwright

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
PROMPT = "Write a question about how long an event lasts. Sentence: The concert went on late into the night."
RESPONSE = "How long did the concert last?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="runs/demo/db")
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(ServeConfig(db=args.db)), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=shutil.which("chromium"), args=FLAGS, headless=True,
            viewport={"width": 1500, "height": 950},
        )  # fmt: skip
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        page.fill("#prompt", PROMPT)
        page.fill("#response", RESPONSE)
        page.fill("#k", "8")
        page.select_option("#group-by", "task")
        page.click("#search")
        page.wait_for_selector("#results .result")
        page.screenshot(path=str(out / "serve_results.png"))
        page.locator("#groups").screenshot(path=str(out / "serve_groups.png"))
        page.locator("#results .result").first.click()
        page.wait_for_selector("#row-tokens .tok.pos")
        page.screenshot(path=str(out / "serve_tokens.png"))
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        page.fill("#prompt", PROMPT)
        page.fill("#response", RESPONSE)
        page.fill("#k", "3")
        page.select_option("#group-by", "task")
        page.click("#search")
        page.wait_for_selector("#group-chart .group")
        page.screenshot(path=str(out / "serve_narrow.png"), full_page=True)
        browser.close()
    server.should_exit = True
    print("wrote", *sorted(str(p) for p in out.glob("serve_*.png")))


if __name__ == "__main__":
    main()
