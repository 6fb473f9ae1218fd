"""The mypy output shown in README.md (and on the documentation's static checks page) is what
the plugin really prints for `readme/`."""

from __future__ import annotations

from pathlib import Path

from typecheck_tests.conftest import ROOT, run_mypy

HERE = Path(__file__).resolve().parent / "readme"
PAGES = (ROOT / "README.md", ROOT / "docs" / "concepts" / "static-checks.md")


def test_readme_shows_real_plugin_output(mypy_cache: Path) -> None:
    run = run_mypy(["shop.py", "route.py"], cwd=HERE, cache_dir=mypy_cache)
    printed = [str(m) for m in run.messages]
    assert any("[floxide-edge]" in line for line in printed), run.stdout
    for page in PAGES:
        missing = [line for line in printed if line not in page.read_text()]
        assert not missing, f"{page.name} does not show:\n" + "\n".join(missing)


def test_readme_shows_real_check_output() -> None:
    """The `floxide check` run shown in README.md is what the command prints."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "floxide.cli", "check", "shop.py", "route.py"],
        cwd=HERE, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    shown = "$ floxide check shop.py route.py\n" + done.stdout + done.stderr
    for page in PAGES:
        assert shown in page.read_text(), (page.name, shown)
