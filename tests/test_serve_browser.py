"""The served page in real headless Chromium (Debian's ``chromium``, driven by Playwright): load the
page, give the token, run a query, open a result, see highlighted tokens, download results and a
selection; a 390 px phone viewport cuts nothing off, a filter that matches nothing says so, hidden
controls stay hidden, a reranked list and its row detail show the same score, /docs and /favicon.ico
work offline, a method column is offered and searched. Any console error or page exception fails a test. ``scripts/setup.sh`` installs the
browser and the Python package, so CI runs this test."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def serving(cfg: ServeConfig, encoder_dir) -> Iterator[str]:
    """``cfg``'s app on a free local port, in a thread; yields its URL."""
    app = create_app(cfg, encoder=AirRepEncoder.load(encoder_dir))
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
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_encoder_dir):
    tmp = tmp_path_factory.mktemp("browser")
    rows = make_rows(30)
    rows[0]["note"] = "a very long metadata value " * 12  # a chip wider than any card
    corpus = write_corpus(tmp / "train.jsonl", rows)
    build_index(IndexConfig(corpus=[str(corpus)], db=str(tmp / "db"), encoder=str(tiny_encoder_dir)))
    with serving(ServeConfig(db=str(tmp / "db"), token=TOKEN), tiny_encoder_dir) as url:
        yield url


@contextlib.contextmanager
def browser_page(server: str, tmp_path, **context: object) -> Iterator[object]:
    """A fresh headless Chromium page on ``server``; on leaving, asserts that the page logged no console
    error, raised no exception and fetched nothing from another origin."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=chromium_path(),
            args=CHROMIUM_FLAGS,
            headless=True,
            accept_downloads=True,
            **context,
        )
        try:
            page = browser.new_page()
            outside: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: None if r.url.startswith(server) else outside.append(r.url))
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"exception: {e}"))
            yield page
            assert errors == [], errors
            assert outside == []  # the page fetches nothing from elsewhere
        finally:
            browser.close()


def sign_in(page, server: str) -> None:
    page.goto(server + "/")
    page.wait_for_selector("#token-box:not([hidden])")
    page.fill("#token", TOKEN)
    page.dispatch_event("#token", "change")
    page.wait_for_function("document.querySelector('#status').textContent === 'ready'")


def test_page_query_explain_and_downloads(server, tmp_path):
    with browser_page(server, tmp_path) as page:
        sign_in(page, server)
        assert "30 rows" in page.text_content("#table-info")

        page.fill("#prompt", "[beta] the cat sat on a mat")
        page.fill("#response", "dogs ran far away")
        page.fill("#k", "5")
        page.select_option("#group-by", "task")
        page.check("#opponents")
        page.click("#search")
        page.wait_for_selector("#results .result")
        assert page.locator("#results .result").count() == 5
        # opponents are negative rows only; the untrained tiny encoder scores every row positive
        assert page.locator("#opponent-results .result").count() == 0
        assert page.is_visible("#opponents-title") and page.is_visible("#opponents-empty")
        assert page.text_content("#results-title") == "Proponents, ranked by AirRep, exact search"
        assert "airrep, AirRep dot product" in page.text_content("#results-score")
        assert page.locator("#results .kind").all_text_contents() == ["airrep"] * 5
        assert "attribution" in page.text_content("#hint") and "retrieval" in page.text_content("#hint")
        assert page.locator("#group-chart .group").count() == 3  # alpha, beta, gamma
        shown = [page.locator("#results .result").nth(i).get_attribute("data-id") for i in range(5)]

        page.locator("#results .result").first.click()
        page.wait_for_selector("#row-tokens .tok.pos, #row-tokens .tok.neg")
        assert page.text_content("#detail-id") == shown[0]
        highlighted = page.locator("#row-tokens .tok.pos, #row-tokens .tok.neg").count()
        assert highlighted > 3 and page.locator("#query-tokens .tok.pos, #query-tokens .tok.neg").count() > 3
        total = sum(
            float(x)
            for x in page.eval_on_selector_all(
                "#row-tokens .tok", "es => es.map(e => e.dataset.contribution)"
            )
        )
        score = float(page.text_content("#detail-score").split()[-1])
        assert total == pytest.approx(score, abs=1e-3)  # the shares add up to the shown score
        assert not page.is_visible("#detail-list-score")  # the list's score is this AirRep score
        template = page.eval_on_selector_all("#row-tokens .tok.special", "es => es.map(e => e.textContent)")
        assert {"[CLS]", "[SEP]", "question", "answer"} <= set(template)  # greyed, not content

        with page.expect_download() as dl:
            page.click("#download-results")
        rows = [json.loads(line) for line in dl.value.path().read_text(encoding="utf-8").splitlines()]
        assert [r["id"] for r in rows] == shown and [r["rank"] for r in rows] == [1, 2, 3, 4, 5]

        page.fill("#select-n", "7")
        with page.expect_download() as dl:
            page.click("#download-selection")
        selected = [json.loads(line) for line in dl.value.path().read_text(encoding="utf-8").splitlines()]
        assert len(selected) == 7 and [r["rank"] for r in selected] == list(range(1, 8))


def test_hidden_controls_stay_hidden_and_empty_results_say_why(server, tmp_path):
    with browser_page(server, tmp_path) as page:
        sign_in(page, server)
        # no --lm: no rerank dropdown; nothing searched yet: no detail, groups or result headings
        for hidden in (
            "#rerank-box",
            "#column-box",
            "#detail",
            "#groups",
            "#results-title",
            "#results-empty",
            "#opponents-empty",
        ):
            assert not page.is_visible(hidden), hidden
            assert page.eval_on_selector(hidden, "e => getComputedStyle(e).display") == "none", hidden
        page.fill("#response", "dogs ran far away")
        page.click("#add-filter")
        page.select_option(".f-column", "task")
        page.fill(".f-value", "no-such-task")
        page.click("#search")
        page.wait_for_selector("#results-empty:not([hidden])")
        assert page.locator("#results .result").count() == 0
        assert "No rows match these filters" in page.text_content("#results-empty")
        assert not page.is_visible("#rerank-box")


def test_narrow_phone_viewport_cuts_nothing_off(server, tmp_path):
    with browser_page(server, tmp_path, viewport={"width": 390, "height": 844}) as page:
        sign_in(page, server)
        page.fill("#response", "the cat sat on a mat")
        page.fill("#k", "30")
        page.select_option("#group-by", "task")
        page.click("#search")
        page.wait_for_function("document.querySelector('#status').textContent === '30 results'")
        assert page.locator("#group-chart .group").count() == 3
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
        for selector in ("#results-panel", "#query-panel", "#results .result", "#groups"):
            box = page.locator(selector).first.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, (selector, box)
        cards = page.eval_on_selector_all(
            "#results .result",
            """es => es.map(li => { const r = li.getBoundingClientRect();
                 return [...li.querySelectorAll('.chip, .rid, .score')].every(c => {
                   const b = c.getBoundingClientRect(); return b.left >= r.left - 0.5 && b.right <= r.right + 0.5; }); })""",
        )
        assert len(cards) == 30 and all(cards)  # every chip, id and score inside its card
        long_chip = page.locator(".chip", has_text="a very long metadata value").first
        assert (
            long_chip.get_attribute("title").count("a very long metadata value") == 12
        )  # whole in the tooltip
        names = page.eval_on_selector_all("#group-chart .name", "es => es.map(e => [e.title, e.textContent])")
        assert names and all(t.startswith(text.split(" (")[0]) for t, text in names)
        page.screenshot(path=str(tmp_path / "narrow.png"))


def test_api_docs_and_favicon_work_offline(server, tmp_path):
    with browser_page(server, tmp_path) as page:
        page.goto(server + "/docs")
        page.wait_for_selector(".endpoint")
        text = page.text_content("#endpoints")
        for route in ("/api/health", "/api/query", "/api/explain", "/api/select", "/api/rows/{row_id}"):
            assert route in text, route
        assert "k" in page.eval_on_selector_all(".fields td.rid", "es => es.map(e => e.textContent)")
        icon = page.request.get(server + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_reranked_list_and_row_detail_show_the_same_score(
    tiny_lm_db, tiny_lm_dir, tiny_encoder_dir, tmp_path
):
    cfg = ServeConfig(db=str(tiny_lm_db), lm=str(tiny_lm_dir), rerank_methods=("gradcos",))
    with serving(cfg, tiny_encoder_dir) as url, browser_page(url, tmp_path) as page:
        page.goto(url + "/")
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        assert page.is_visible("#rerank-box")
        page.fill("#response", "the answer")
        page.fill("#k", "3")
        page.select_option("#rerank", "gradcos")
        page.click("#search")
        page.wait_for_selector("#results .result")
        assert page.text_content("#results-title").startswith("Proponents, ranked by grad-cos")
        assert page.locator("#results .kind").all_text_contents() == ["gradcos"] * 3
        first = page.locator("#results .result").first
        listed = first.locator(".score").text_content()
        first.click()
        page.wait_for_selector("#detail-list-score:not([hidden])")
        assert f"gradcos {listed}" in page.text_content("#detail-list-score")
        assert page.text_content("#detail-score").startswith("AirRep dot product")


def test_page_lists_the_method_columns_and_searches_one(tiny_lm_db, tiny_lm_dir, tiny_encoder_dir, tmp_path):
    """With ``--lm`` the page offers the table's method columns; searching one lists the CLI's
    ``query --method`` rows and scores."""
    from tests.helpers.cli import run

    db = tmp_path / "db"
    shutil.copytree(tiny_lm_db, db)
    run("method-column", "--db", db, "--method", "gradcos", "--lm", tiny_lm_dir)
    (cli,) = json.loads(
        run("query", "--db", db, "--method", "m_gradcos", "--lm", tiny_lm_dir, "--response", "the answer",
            "-k", 3, "--json").stdout
    )  # fmt: skip
    cfg = ServeConfig(db=str(db), lm=str(tiny_lm_dir), rerank_methods=("gradcos",))
    with serving(cfg, tiny_encoder_dir) as url, browser_page(url, tmp_path) as page:
        page.goto(url + "/")
        page.wait_for_function("document.querySelector('#status').textContent === 'ready'")
        assert page.is_visible("#column-box")
        offered = page.eval_on_selector_all("#method-column option", "es => es.map(e => e.value)")
        assert offered == ["", "m_gradcos"]
        page.fill("#response", "the answer")
        page.fill("#k", "3")
        page.select_option("#method-column", "m_gradcos")
        page.click("#search")
        page.wait_for_selector("#results .result")
        ids = [page.locator("#results .result").nth(i).get_attribute("data-id") for i in range(3)]
        assert ids == [c["id"] for c in cli["proponents"]]
        assert page.locator("#results .kind").all_text_contents() == ["gradcos"] * 3
        titles = page.eval_on_selector_all("#results .score", "es => es.map(e => e.title)")
        assert [float(t.rsplit(": ", 1)[1]) for t in titles] == pytest.approx(
            [c["score"] for c in cli["proponents"]], rel=1e-5
        )
