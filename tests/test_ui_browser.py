"""`floxide ui` in a real browser: headless Chromium (Debian's `chromium`, driven by
playwright, which never downloads a browser here) against a real UI server and a real
`floxide worker` process on SQLite.

Skipped when chromium (or playwright) is missing, unless FLOXIDE_REQUIRE_CHROMIUM=1 (as
`.ci/run` sets): then they fail. Screenshots go to the test's temporary directory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ui_server import (
    CHROMIUM_FLAGS,
    chromium_path,
    start_run,
    status_of,
    ui_server,
    worker,
)


def _require(what: str) -> None:
    if os.environ.get("FLOXIDE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{what} but FLOXIDE_REQUIRE_CHROMIUM=1")
    pytest.skip(what)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        _require("chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors  # no script error on any page


def _counts(pg: Any, node: str) -> dict[str, int]:
    got: dict[str, int] = pg.evaluate(
        """(node) => {
          const g = [...document.querySelectorAll('svg.graph g[data-node]')]
            .find(el => el.getAttribute('data-node') === node);
          const out = {};
          for (const t of g.querySelectorAll('tspan[data-k]'))
            out[t.getAttribute('data-k')] = parseInt(t.textContent, 10);
          return out;
        }""",
        node,
    )
    return got


def test_graph_live_counts_and_pause_button(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    start_run(url, 16, "live-1")
    with ui_server("--backend", url) as ui, worker(url, tmp_path, FLOXIDE_UI_TEST_DELAY="0.4"):
        page.goto(f"{ui.url}/runs/live-1")
        # the drawn graph: every node of the workflow, by name, and the composite's nodes
        names = page.eval_on_selector_all(
            "svg.graph g[data-node]", "els => els.map(e => e.getAttribute('data-node'))"
        )
        assert names == ["split", "check", "polish", "price", "rescue", "total"]
        labels = page.eval_on_selector_all(
            "svg.graph g.node > text.node-name", "els => els.map(e => e.textContent)"
        )
        assert {"first", "second"} <= set(labels)
        assert page.locator("svg.graph .link-fallback").count() == 1
        assert page.locator("svg.graph .link-join").count() == 1
        # live: the counts change while the page stays open (no reload)
        page.evaluate("window.__same_page = true")
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while time.monotonic() < deadline:
            seen.add(_counts(page, "price")["done"])
            if len(seen) >= 3:
                break
            page.wait_for_timeout(200)
        assert len(seen) >= 3, f"price's done count never moved: {seen}"
        assert page.evaluate("window.__same_page") is True
        assert int(page.get_attribute("body", "data-updates") or 0) > 1
        assert "running" in (page.get_attribute("#run-status", "class") or "")
        state = page.eval_on_selector(
            'svg.graph g[data-node="price"]', "el => el.getAttribute('class')"
        )
        assert "state-" in state
        page.screenshot(path=str(tmp_path / "run-live.png"), full_page=True)
        # the pause button: the backend then reports the run paused
        page.click("form[data-action=pause] button")
        page.wait_for_selector("#run-status.status-paused", timeout=20_000)
        assert status_of(url, "live-1") == "paused"
        assert page.is_visible("form[data-action=resume] button")
        assert not page.is_visible("form[data-action=pause] button")
        assert "pause requested" in page.inner_text("main")
        page.click("form[data-action=resume] button")
        page.wait_for_selector("#run-status.status-running", timeout=20_000)


def test_runs_list_filter_and_links(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'list.db'}"
    for i in range(3):
        start_run(url, 2, f"run-{i}")
    with ui_server("--backend", url, "--read-only") as ui:
        page.goto(ui.url + "/")
        rows = page.eval_on_selector_all(
            "table.runs tbody tr", "els => els.map(e => e.getAttribute('data-run'))"
        )
        assert rows == ["run-2", "run-1", "run-0"]
        page.click("a.filter.status-completed")
        assert "no completed runs" in page.inner_text("table.runs")
        page.click("a.filter.status-all")
        page.click("text=run-1")
        page.wait_for_selector("svg.graph")
        assert page.locator("form.action").count() == 0  # read-only: no buttons
        page.click("a.load-context")
        page.wait_for_selector("#context-body pre.json")
        assert '"label": "basket"' in page.inner_text("#context-body")
        page.goto(ui.url + "/workers")
        assert "no live workers" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "workers.png"))
