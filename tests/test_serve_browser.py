"""The served page in real headless Chromium (Debian's ``chromium``, driven by Playwright): load the
page, give the token, run a query, open a result, see highlighted tokens, download results and a
selection. ``scripts/setup.sh`` installs the browser and the Python package, so CI runs this test."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time

import pytest
import uvicorn
from airsearch.indexers.build import build_index
from airsearch.indexers.config import IndexConfig
from airsearch.indexers.serve import ServeConfig, create_app

from airsearch.encoder import AirRepEncoder
from tests.helpers.corpora import make_rows, write_corpus

TOKEN = "browser-token"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:  # not a skip: CI must run this test (scripts/setup.sh installs the browser)
        raise AssertionError("Debian's chromium is not installed; run scripts/setup.sh")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("browser")
    corpus = write_corpus(tmp / "train.jsonl", make_rows(30))
    build_index(IndexConfig(corpus=[str(corpus)], db=str(tmp / "db"), encoder=str(tiny_encoder_dir)))
    app = create_app(
        ServeConfig(db=str(tmp / "db"), token=TOKEN), encoder=AirRepEncoder.load(tiny_encoder_dir)
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_page_query_explain_and_downloads(server, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=chromium_path(),
            args=CHROMIUM_FLAGS,
            headless=True,
            accept_downloads=True,
        )
        try:
            page = browser.new_page()
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server) else outside.append(r.url))
            page.goto(server + "/")
            page.wait_for_selector("#token-box:not([hidden])")
            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
            assert "30 rows" in page.text_content("#table-info")

            page.fill("#prompt", "[beta] the cat sat on a mat")
            page.fill("#response", "dogs ran far away")
            page.fill("#k", "5")
            page.select_option("#group-by", "task")
            page.check("#opponents")
            page.click("#search")
            page.wait_for_selector("#results .result")
            assert page.locator("#results .result").count() == 5
            assert page.locator("#opponent-results .result").count() == 5
            assert page.locator("#group-chart .group").count() == 3  # alpha, beta, gamma
            shown = [page.locator("#results .result").nth(i).get_attribute("data-id") for i in range(5)]

            page.locator("#results .result").first.click()
            page.wait_for_selector("#row-tokens .tok.pos, #row-tokens .tok.neg")
            assert page.text_content("#detail-id") == shown[0]
            highlighted = page.locator("#row-tokens .tok.pos, #row-tokens .tok.neg").count()
            assert (
                highlighted > 3 and page.locator("#query-tokens .tok.pos, #query-tokens .tok.neg").count() > 3
            )
            total = sum(
                float(x)
                for x in page.eval_on_selector_all(
                    "#row-tokens .tok", "es => es.map(e => e.dataset.contribution)"
                )
            )
            score = float(page.text_content("#detail-score").split()[-1])
            assert total == pytest.approx(score, abs=1e-3)  # the shares add up to the shown score

            with page.expect_download() as dl:
                page.click("#download-results")
            rows = [json.loads(line) for line in dl.value.path().read_text(encoding="utf-8").splitlines()]
            assert [r["id"] for r in rows] == shown and [r["rank"] for r in rows] == [1, 2, 3, 4, 5]

            page.fill("#select-n", "7")
            with page.expect_download() as dl:
                page.click("#download-selection")
            selected = [json.loads(line) for line in dl.value.path().read_text(encoding="utf-8").splitlines()]
            assert len(selected) == 7 and [r["rank"] for r in selected] == list(range(1, 8))
            assert outside == []  # the page fetches nothing from elsewhere
        finally:
            browser.close()
