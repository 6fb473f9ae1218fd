"""Make the documentation's screenshots of `floxide ui` (docs/img/ui-runs.png, ui-run.png).

    .venv/bin/python benchmarks/ui_screenshots.py [--out docs/img]

Stores a few runs of the UI tests' `Basket` workflow (a fan-out, a composite node, a
retried node with a fallback, a join) in a temporary SQLite backend: some completed, one
failed, one paused, one pending and one running on a real `floxide worker` process;
starts `floxide ui` on it and photographs the runs list and the running run's page in
headless Chromium (Debian's `chromium`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.distributed_workflows import Plain  # noqa: E402
from tests.ui_flows import no_fallback  # noqa: E402
from tests.ui_server import (  # noqa: E402
    CHROMIUM_FLAGS,
    chromium_path,
    finish_runs,
    start_run,
    ui_server,
    worker,
)


def _control(ui: str, run_id: str, action: str) -> None:
    page = httpx.get(f"{ui}/runs/{run_id}").text
    token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = httpx.post(
        f"{ui}/api/runs/{run_id}", data={"action": action}, headers={"x-csrf-token": token}
    )
    r.raise_for_status()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args()
    exe = chromium_path()
    if exe is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["FLOXIDE_UI_TEST_SUFFIX"] = ""  # plain error messages (the tests' hold HTML)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'shots.db'}"
        for i, n in enumerate((12, 30, 8)):
            start_run(url, n, f"basket-{i + 1:03d}")
        finish_runs(url)
        start_run(url, -1, "order-17", no_fallback(), Plain())
        finish_runs(url, no_fallback())
        start_run(url, 20, "basket-004")
        start_run(url, 40, "basket-005")
        start_run(url, 120, "basket-006")
        with ui_server("--backend", url) as ui:
            _control(ui.url, "basket-004", "pause")
            with worker(url, Path(tmp), FLOXIDE_UI_TEST_DELAY="0.25"):
                for _ in range(200):  # until the running run is well under way
                    run = httpx.get(f"{ui.url}/api/runs/basket-006?summary=1").json()
                    if run["nodes"]["price"]["done"] >= 25:
                        break
                    time.sleep(0.1)
                with sync_playwright() as p:
                    b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS)
                    page = b.new_page(viewport={"width": 1280, "height": 640})
                    page.goto(ui.url + "/")
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(args.out / "ui-runs.png"))
                    page.set_viewport_size({"width": 1280, "height": 900})
                    page.goto(ui.url + "/runs/basket-006")
                    page.wait_for_timeout(2500)  # a few live updates
                    page.screenshot(path=str(args.out / "ui-run.png"))
                    b.close()
    print(f"wrote {args.out / 'ui-runs.png'} and {args.out / 'ui-run.png'}")


if __name__ == "__main__":
    main()
