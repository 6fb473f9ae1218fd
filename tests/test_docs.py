"""The documentation site (mkdocs.yml, docs/) builds strictly, offline, and covers everything.

`make docs` builds it into site/; here it is built into a temporary directory, then every
page is checked for resources from other hosts (scripts, styles, fonts, images: the site
must work without a network), and the pages are checked to cover every example and every
public module.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.test_exports import PUBLIC_MODULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
LOCAL_HOSTS = {"", "localhost", "127.0.0.1"}
OUTSIDE_URL = re.compile(r"""https?://[^/\s"'<>)\\]+""")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    return out


def _outside(text: str) -> list[str]:
    urls = (m.group(0) for m in OUTSIDE_URL.finditer(text))
    return [url for url in urls if (urlsplit(url).hostname or "") not in LOCAL_HOSTS]


class _Resources(HTMLParser):
    """Collects URLs to other hosts in attributes, inline styles and scripts, and the classes
    used (nothing is fetched from elsewhere, and no link leads off the offline site)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.fetched: list[str] = []
        self.classes: set[str] = set()
        self._inline: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name == "class" and value:
                self.classes.update(value.split())
            if not value:
                continue
            self.fetched += _outside(value)
        self._inline = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag: str) -> None:
        self._inline = None

    def handle_data(self, data: str) -> None:
        if self._inline is not None:
            self.fetched += _outside(data)


def _files(site: Path, suffix: str) -> Iterator[Path]:
    yield from sorted(site.rglob(f"*{suffix}"))


def test_nothing_is_fetched_from_another_host(site: Path) -> None:
    pages = list(_files(site, ".html"))
    assert len(pages) > 30
    for page in pages:
        text = page.read_text(encoding="utf-8")
        # No URL of another host at all: no script, style, font or image from a CDN, no
        # link off the offline site, not even an SVG namespace (docs/hooks/offline.py).
        assert _outside(text) == [], f"{page.relative_to(site)} names {_outside(text)}"
        parser = _Resources()
        parser.feed(text)
        assert parser.fetched == [], f"{page.relative_to(site)} loads {parser.fetched}"
        # The theme's script loads mermaid from a CDN for `mermaid` diagrams, and asks a code
        # host for a repository's stars when `repo_url` is set: neither may appear.
        assert "mermaid" not in parser.classes, page
        assert "md-source" not in parser.classes, page
    for sheet in _files(site, ".css"):
        css = sheet.read_text(encoding="utf-8")
        assert not re.search(r"""(url\(|@import)\s*["']?https?:""", css), sheet
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".css", ".js", ".json"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, path


def test_images_are_served_by_the_site(site: Path) -> None:
    for name in ("ui-runs.png", "ui-run.png"):
        assert (DOCS / "img" / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert (site / "img" / name).is_file()
    ui = (site / "concepts" / "ui.html").read_text(encoding="utf-8")
    assert 'src="../img/ui-runs.png"' in ui and 'src="../img/ui-run.png"' in ui


# Names documented under another path: `floxide.source` by its defining module, because its
# package also has a submodule `source` that a static reader documents instead.
DOCUMENTED_AS = {"floxide.source": "floxide._nodes.source.source"}


def test_the_api_reference_covers_every_public_name(site: Path) -> None:
    """Each public name has an entry, under its module or another public module exporting it."""
    reference = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    for module in PUBLIC_MODULES:
        assert f"::: {module.__name__}" in reference, module.__name__
    html = "\n".join(p.read_text(encoding="utf-8") for p in _files(site / "reference", ".html"))
    homes: dict[int, list[str]] = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            homes.setdefault(id(getattr(module, name)), []).append(f"{module.__name__}.{name}")
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            paths = homes[id(getattr(module, name))]
            anchors = [DOCUMENTED_AS.get(path, path) for path in paths]
            assert any(f'id="{a}"' in html for a in anchors), f"no entry for {paths}"


def test_every_example_has_a_page_with_its_source(site: Path) -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for program in sorted(EXAMPLES.glob("*.py")):
        if program.stem == "__init__":
            continue
        page = f"examples/{program.stem.replace('_', '-')}.md"
        assert f'--8<-- "examples/{program.name}"' in (DOCS / page).read_text(), page
        assert page in nav, f"{page} is not in the navigation"
        built = (site / page).with_suffix(".html").read_text(encoding="utf-8")
        assert f"python -m examples.{program.stem}" in built


def _text(page: Path) -> str:
    """A built page's text, without its tags (code is split into highlighted spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_tutorial_and_changelog_are_included(site: Path) -> None:
    tutorial = _text(site / "tutorial.html")
    assert "class Triage(Workflow[Ctx, list[Ticket], Summary])" in tutorial
    assert "--8<--" not in tutorial  # every include was resolved, its markers dropped
    assert "floxide worker examples.tutorial.tickets:triage" in tutorial
    changelog = (site / "changelog.html").read_text(encoding="utf-8")
    assert "Unreleased" in changelog
    assert "floxide/fastest" in (site / "benchmarks.html").read_text(encoding="utf-8")


def test_readme_is_the_front_page_that_links_to_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme and "make docs" in readme
    assert "docs/" in readme
    assert len(readme.splitlines()) < 150


def test_the_front_pages_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for page in (ROOT / "README.md", DOCS / "index.md"):
        code = re.search(r"```python\n(.*?)```", page.read_text(), re.S)
        assert code is not None, page
        exec(compile(code.group(1), str(page), "exec"), {"__name__": "readme_example"})
        assert capsys.readouterr().out == "hi: 14\n", page
