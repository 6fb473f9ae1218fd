"""`floxide ui`: the JSON API and the HTML pages, over HTTP, against a real server process
on a free loopback port (SQLite backends and checkpoint stores made by real runs)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import trio

from floxide.checkpoints import SqliteCheckpointStore
from tests.distributed_workflows import NoFallback, Plain
from tests.ui_flows import Ctx, no_fallback, pipeline
from tests.ui_server import ROOT, env, finish_runs, start_run, status_of, ui_server, worker

EVIL = '<img src=x onerror="alert(1)">&amp;'


@pytest.fixture(scope="module")
def runs_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A SQLite backend holding: a completed run, a failed run, a pending run, and a
    run whose id is an HTML injection attempt."""
    tmp = tmp_path_factory.mktemp("ui")
    url = f"sqlite:///{tmp / 'runs.db'}"
    start_run(url, 10, "done-1")
    start_run(url, 5, EVIL)  # item 4 fails: its message holds <script>
    finish_runs(url)
    start_run(url, -1, "failed-1", no_fallback(), Plain())
    finish_runs(url, no_fallback())
    start_run(url, 5, "pending-1")
    yield url, tmp


@pytest.fixture(scope="module")
def server(runs_db: tuple[str, Path]) -> Iterator[str]:
    with ui_server("--backend", runs_db[0]) as ui:
        yield ui.url


def test_api_runs_newest_first_with_progress_filter_and_pages(server: str) -> None:
    data = httpx.get(f"{server}/api/runs").json()
    ids = [r["run_id"] for r in data["runs"]]
    assert ids == ["pending-1", "failed-1", EVIL, "done-1"]
    assert data["total"] == 4
    done = data["runs"][3]
    assert done["workflow"] == "Basket" and done["status"] == "completed"
    assert done["progress"]["done"] == done["progress"]["known"] > 10
    assert done["created_at"] > 0 and done["duration"] >= 0
    assert data["runs"][0]["progress"] == {"done": 0, "known": 1}
    failed = httpx.get(f"{server}/api/runs", params={"status": "failed"}).json()
    assert [r["run_id"] for r in failed["runs"]] == ["failed-1"]
    page2 = httpx.get(f"{server}/api/runs", params={"per": 2, "page": 2}).json()
    assert [r["run_id"] for r in page2["runs"]] == [EVIL, "done-1"]
    assert httpx.get(f"{server}/api/runs", params={"status": "nope"}).status_code == 400


def test_api_run_detail_counts_errors_outputs(server: str) -> None:
    run = httpx.get(f"{server}/api/runs/done-1").json()
    assert run["status"] == "completed" and run["graph_known"]
    nodes = run["nodes"]
    assert list(nodes) == ["split", "check", "polish", "price", "rescue", "total"]
    assert nodes["check"]["done"] == 10 and nodes["total"]["done"] == 1
    # items 4 (-> 6) fails twice: one attempt retried, then its fallback takes over
    assert nodes["price"]["failed"] == 1 and nodes["price"]["retried"] == 1
    assert nodes["rescue"]["done"] == 1
    assert run["progress"]["failed"] == 1 and run["progress"]["retried"] == 1
    assert run["outputs"] == [
        {
            "position": [],
            "node": "total",
            "value": sum(0 if (i + 2) % 7 == 6 else (i + 2) * 10 for i in range(10)),
        }
    ]
    assert all("Traceback" in (e["traceback"] or "") for e in run["errors"])
    assert all(e["node"] == "price" for e in run["errors"])
    assert run["metrics"]["done"] == run["progress"]["done"]
    assert run["metrics"]["per_node"]["check"]["count"] == 10
    summary = httpx.get(f"{server}/api/runs/done-1", params={"summary": 1}).json()
    assert "errors" not in summary and summary["errors_total"] == 2
    ctx = httpx.get(f"{server}/api/runs/done-1", params={"context": 1}).json()
    assert ctx["value"] == {"label": "basket"}


def test_failed_run_shows_error_and_retry(server: str) -> None:
    run = httpx.get(f"{server}/api/runs/failed-1").json()
    assert run["status"] == "failed" and "negative input -1" in run["error"]
    assert run["actions"] == ["retry"]
    assert run["nodes"]["inc"]["failed"] == 1
    page = httpx.get(f"{server}/runs/failed-1").text
    assert "negative input -1" in page and "Traceback" in page
    assert 'data-action="retry"' in page


def test_run_page_draws_the_graph(server: str) -> None:
    page = httpx.get(f"{server}/runs/done-1").text
    svg = page[page.index("<svg") : page.index("</svg>")]
    drawn = re.findall(r'<g class="node [^"]*" data-node="([^"]+)"', svg)
    assert drawn == ["split", "check", "polish", "price", "rescue", "total"]
    assert re.search(r'class="node state-done composite', svg)  # polish: nested box
    inner = svg[svg.index('data-node="polish"') :]
    assert '<text class="node-name" x="10" y="19">first</text>' in inner
    assert "link-fallback" in svg and ">on failure<" in svg  # price -> rescue
    assert 'class="link link-join' in svg and 'data-target="total"' in svg
    assert re.search(r'data-node="price"[^>]*>.*?data-k="failed">1<', svg, re.S)
    assert "state-failed" in re.search(r'<g class="([^"]*)" data-node="price"', svg)[1]


def test_everything_shown_is_escaped(server: str) -> None:
    listing = httpx.get(f"{server}/").text
    assert EVIL not in listing and "&lt;img src=x onerror=" in listing
    page = httpx.get(f"{server}/runs/{quote(EVIL, safe='')}")
    assert page.status_code == 200
    assert "<img" not in page.text and "<script>alert" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # the error message
    assert unescape(re.search(r'<code class="run-id">(.*?)</code>', page.text)[1]) == EVIL
    assert httpx.get(f"{server}/api/runs/{quote(EVIL, safe='')}").json()["run_id"] == EVIL


def test_unknown_run_and_page_and_bad_query(server: str) -> None:
    r = httpx.get(f"{server}/runs/nope%3Cb%3E")
    assert r.status_code == 404 and "no run &#x27;nope&lt;b&gt;&#x27;" in r.text
    assert "Traceback" not in r.text
    r = httpx.get(f"{server}/api/runs/nope")
    assert r.status_code == 404 and r.json() == {"error": f"no run 'nope' in {_source(server)}"}
    assert httpx.get(f"{server}/elsewhere").status_code == 404
    r = httpx.get(f"{server}/", params={"page": "x"})
    assert r.status_code == 400 and "page must be a whole number" in r.text


def _source(server: str) -> str:
    return httpx.get(f"{server}/api/runs").json()["source"]


def test_offline_and_safe_headers(server: str) -> None:
    r = httpx.get(f"{server}/runs/done-1")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/ui.js", "/static/ui.css"):
        body = httpx.get(server + asset).text
        assert (
            body
            and "http://" not in body
            and "https://" not in body.replace("http://www.w3.org", "")
        )
    # everything the page loads comes from this server
    for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert ref.startswith("/"), ref
    # a page reached through a foreign host name (DNS rebinding) is refused
    assert httpx.get(f"{server}/api/runs", headers={"host": "evil.example"}).status_code == 421


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page)[1]


def test_buttons_need_token_and_same_origin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    start_run(url, 3, "r1")
    with ui_server("--backend", url) as ui:
        page = httpx.get(f"{ui.url}/runs/r1").text
        token = _csrf(page)
        assert 'data-action="pause"' in page
        post = f"{ui.url}/runs/r1"
        assert httpx.post(post, data={"action": "pause"}).status_code == 403
        assert (
            httpx.post(post, data={"action": "pause", "csrf": "x" * len(token)}).status_code == 403
        )
        foreign = {"origin": "http://evil.example"}
        r = httpx.post(post, data={"action": "pause", "csrf": token}, headers=foreign)
        assert r.status_code == 403
        r = httpx.post(
            post, data={"action": "pause", "csrf": token}, headers={"sec-fetch-site": "cross-site"}
        )
        assert r.status_code == 403
        assert status_of(url, "r1") == "pending"  # none of those wrote anything
        r = httpx.post(post, data={"action": "pause", "csrf": token}, headers={"origin": ui.url})
        assert r.status_code == 303 and status_of(url, "r1") == "paused"
        page = httpx.get(ui.url + r.headers["location"]).text
        assert "pause requested: the run is now paused" in page
        r = httpx.post(post, data={"action": "pause", "csrf": token}, headers={"origin": ui.url})
        assert r.status_code == 303 and "refused=pause" in r.headers["location"]
        api = httpx.post(
            f"{ui.url}/api/runs/r1",
            data={"action": "resume"},
            headers={"x-csrf-token": token, "origin": ui.url},
        )
        assert api.json() == {"run_id": "r1", "status": "running"}
        api = httpx.post(
            f"{ui.url}/api/runs/r1", data={"action": "cancel"}, headers={"x-csrf-token": token}
        )
        assert api.json()["status"] == "cancelled"
        assert (
            httpx.post(
                f"{ui.url}/api/runs/r1", data={"action": "resume"}, headers={"x-csrf-token": token}
            ).status_code
            == 409
        )


def test_retry_button_continues_a_failed_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    start_run(url, -1, "f1", no_fallback(), Plain())
    finish_runs(url, no_fallback())
    with ui_server("--backend", url) as ui:
        token = _csrf(httpx.get(f"{ui.url}/runs/f1").text)
        r = httpx.post(
            f"{ui.url}/api/runs/f1", data={"action": "retry"}, headers={"x-csrf-token": token}
        )
        assert r.json()["status"] in ("pending", "running")


def test_read_only_hides_buttons_and_refuses_posts(runs_db: tuple[str, Path]) -> None:
    url = runs_db[0]
    with ui_server("--backend", url, "--read-only") as ui:
        page = httpx.get(f"{ui.url}/runs/pending-1").text
        assert "<form" not in page and 'name="csrf"' not in page
        assert httpx.get(f"{ui.url}/api/runs/pending-1").json()["actions"] == []
        for path in ("/runs/pending-1", "/api/runs/pending-1"):
            r = httpx.post(ui.url + path, data={"action": "pause", "csrf": "x"})
            assert r.status_code == 403 and "read-only" in r.text
    assert status_of(url, "pending-1") == "pending"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floxide.cli", "ui", *args],
        env=env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_user_mistakes_are_one_line_exit_2(tmp_path: Path) -> None:
    r = _cli("--backend", f"sqlite:///{tmp_path / 'missing.db'}", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert "does not exist" in r.stderr and not list(tmp_path.iterdir())  # nothing created
    r = _cli("--checkpoints", str(tmp_path / "missing.db"), cwd=tmp_path)
    assert r.returncode == 2 and "does not exist" in r.stderr and not list(tmp_path.iterdir())
    (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
    r = _cli("--checkpoints", str(tmp_path / "other.db"), cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert (tmp_path / "other.db").read_bytes() == b"not a database at all" * 100
    (tmp_path / "other.db").unlink()
    r = _cli("--backend", "nosuch://x", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    url = f"sqlite:///{tmp_path / 'p.db'}"
    start_run(url, 1, "x")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        r = _cli("--backend", url, "--port", port, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    r = _cli("--backend", url, "--port", "99999", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_never_shows_a_credential() -> None:
    from floxide._ui._app import make_app
    from floxide._ui._data import BackendSource
    from floxide.backends import open_backend

    async def go() -> tuple[str, str]:
        backend = open_backend("redis://alice:s3cr3t-pw@127.0.0.1:1/0?prefix=x")
        app = make_app(BackendSource(backend, read_only=False))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            page = (await c.get("/")).text
            api = (await c.get("/api/runs")).text
        await backend.aclose()
        return page, api

    page, api = trio.run(go)
    for text in (page, api):
        assert "s3cr3t" not in text
    assert "alice:***@127.0.0.1:1" in page


def test_workers_page_lists_live_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    start_run(url, 2, "w1")
    with worker(url, tmp_path), ui_server("--backend", url) as ui:
        found: list[dict[str, object]] = []
        for _ in range(150):
            found = httpx.get(f"{ui.url}/api/workers").json()
            if found:
                break
            trio.run(trio.sleep, 0.1)
        assert found and str(found[0]["graph"]).startswith("tests.ui_flows.Basket@")
        assert found[0]["concurrency"] == 2 and "last_seen" in found[0]
        page = httpx.get(f"{ui.url}/workers").text
        assert "tests.ui_flows.Basket@" in page and "Last heartbeat" in page


def test_graph_of_a_module_not_importable_names_its_nodes(tmp_path: Path) -> None:
    (tmp_path / "elsewhere_flow.py").write_text(
        "from floxide import workflow\nfrom tests.ui_flows import Basket\n\n\n"
        "@workflow\nclass Elsewhere(Basket):\n    pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import elsewhere_flow  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'g.db'}"
    start_run(url, 4, "g1", _with_class(elsewhere_flow.Elsewhere))
    with ui_server("--backend", url) as ui:  # elsewhere_flow is not on its path
        run = httpx.get(f"{ui.url}/api/runs/g1").json()
        assert not run["graph_known"] and "cannot be imported" in run["graph_note"]
        page = httpx.get(f"{ui.url}/runs/g1").text
        assert 'data-node="split"' in page and "cannot be imported" in page


def _with_class(cls: type) -> object:
    wf = pipeline
    return cls(**{n: getattr(wf, n) for n in wf.graph.node_names})


# ------------------------------------------------------------------ checkpoint stores
def test_checkpoint_store_runs_are_listed_and_drawn(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"

    async def go() -> None:
        async with SqliteCheckpointStore(path) as store:
            await pipeline.run_with_checkpoint(Ctx(), 5, store=store, run_id="cp-done")
            os.environ["FLOXIDE_UI_TEST_DELAY"] = "0.3"
            try:
                with trio.move_on_after(0.5):  # interrupted: items pending, a join open
                    await pipeline.run_with_checkpoint(Ctx(), 6, store=store, run_id="cp-open")
            finally:
                del os.environ["FLOXIDE_UI_TEST_DELAY"]

    trio.run(go)
    before = path.read_bytes()
    with ui_server("--checkpoints", str(path)) as ui:
        listing = httpx.get(f"{ui.url}/api/runs").json()
        assert [r["run_id"] for r in listing["runs"]] == ["cp-open", "cp-done"]
        assert [r["status"] for r in listing["runs"]] == ["running", "completed"]
        done = httpx.get(f"{ui.url}/api/runs/cp-done").json()
        assert done["outputs"][0]["value"] == sum(
            0 if (i + 2) % 7 == 6 else (i + 2) * 10 for i in range(5)
        )
        assert done["graph_known"] and next(iter(done["nodes"])) == "split"
        open_run = httpx.get(f"{ui.url}/api/runs/cp-open").json()
        assert open_run["pending_items"] and open_run["progress"]["queued"] > 0
        assert sum(n["queued"] for n in open_run["nodes"].values()) == len(
            open_run["pending_items"]
        )
        assert open_run["joins"] and open_run["joins"][0]["source"] == "split"
        assert open_run["joins"][0]["joins"] == ["total"]
        page = httpx.get(f"{ui.url}/runs/cp-open").text
        assert 'data-node="total"' in page and "Join state" in page and "Pending items" in page
        assert "runs inside its composite" in page  # polish's workflow, nested
        assert "<form" not in page  # a checkpointed run is steered by its program
        r = httpx.post(f"{ui.url}/runs/cp-open", data={"action": "pause"})
        assert r.status_code == 403
        assert httpx.get(f"{ui.url}/runs/nope").status_code == 404
        assert httpx.get(f"{ui.url}/api/workers").json() == []
    assert ui.proc.returncode == 0  # SIGINT stops it normally
    assert path.read_bytes() == before  # the store was only read


def test_help_names_the_options() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "floxide.cli", "ui", "--help"],
        env=env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for option in ("--backend", "--checkpoints", "--host", "--port", "--read-only"):
        assert option in r.stdout
    assert "127.0.0.1" in r.stdout and "8000" in r.stdout


def test_json_is_the_pages_data(server: str) -> None:
    run = httpx.get(f"{server}/api/runs/done-1").json()
    page = httpx.get(f"{server}/runs/done-1").text
    for name, counts in run["nodes"].items():
        row = re.search(rf'<tr data-node="{name}">(.*?)</tr>', page, re.S)[1]
        assert f'data-k="done">{counts["done"]}<' in row
    assert json.loads(json.dumps(run)) == run
    assert NoFallback.__name__  # the failed run's workflow is importable here


def test_per_node_failed_and_retried_follow_the_run_counters() -> None:
    from floxide._ui._data import split_errors
    from floxide.backends import ErrorRecord

    def err(
        node: str, item: str, attempt: int, handled: bool = True, kind: str = "node"
    ) -> ErrorRecord:
        return ErrorRecord(node, item, attempt, kind, "boom", handled=handled)

    # mid-run: price's first attempts were retried (their second attempts still queued)
    retries = [err("price", str(i), 1) for i in range(3)]
    assert split_errors(retries, {"price"}, 0) == ({}, {"price": 3})
    # then two second attempts failed and the fallback took over
    later = [*retries, err("price", "0", 2), err("price", "1", 2)]
    assert split_errors(later, {"price"}, 2) == ({"price": 2}, {"price": 3})
    # a node without fallback: handled means retried; unhandled failed the run
    mixed = [err("a", "0", 1), err("a", "0", 2, handled=False), err("b", "1", 1, kind="lease")]
    assert split_errors(mixed, set(), 1) == ({"a": 1}, {"a": 1, "b": 1})


@pytest.mark.parametrize("backend_kind", ["redis", "postgres"], indirect=True)
def test_every_server_backend(backend_url: str) -> None:
    """The same pages over Redis and PostgreSQL (per-node load, paged list, a button)."""
    start_run(backend_url, 6, "srv-done")
    finish_runs(backend_url)
    start_run(backend_url, 2, "srv-pending")
    with ui_server("--backend", backend_url) as ui:
        listing = httpx.get(f"{ui.url}/api/runs", params={"per": 1}).json()
        assert listing["total"] == 2 and [r["run_id"] for r in listing["runs"]] == ["srv-pending"]
        done = httpx.get(f"{ui.url}/api/runs/srv-done").json()
        assert done["status"] == "completed" and done["nodes"]["check"]["done"] == 6
        assert done["outputs"] and done["graph_known"]
        pending = httpx.get(f"{ui.url}/api/runs/srv-pending").json()
        assert pending["nodes"]["split"]["queued"] == 1
        page = httpx.get(f"{ui.url}/runs/srv-pending").text
        r = httpx.post(
            f"{ui.url}/api/runs/srv-pending",
            data={"action": "pause"},
            headers={"x-csrf-token": _csrf(page)},
        )
        assert r.json()["status"] == "paused"
    assert status_of(backend_url, "srv-pending") == "paused"
