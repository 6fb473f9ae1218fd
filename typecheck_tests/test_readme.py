"""The mypy output shown in README.md is what the plugin really prints for `readme/`."""

from __future__ import annotations

from pathlib import Path

from typecheck_tests.conftest import ROOT, run_mypy

HERE = Path(__file__).resolve().parent / "readme"


def test_readme_shows_real_plugin_output(mypy_cache: Path) -> None:
    run = run_mypy(["shop.py", "route.py"], cwd=HERE, cache_dir=mypy_cache)
    readme = (ROOT / "README.md").read_text()
    printed = [str(m) for m in run.messages]
    assert any("[floxide-edge]" in line for line in printed), run.stdout
    missing = [line for line in printed if line not in readme]
    assert not missing, "README.md does not show:\n" + "\n".join(missing)


def test_readme_shows_real_check_output() -> None:
    """The `floxide check` run shown in README.md is what the command prints."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "floxide.cli", "check", "shop.py", "route.py"],
        cwd=HERE, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    readme = (ROOT / "README.md").read_text()
    shown = "$ floxide check shop.py route.py\n" + done.stdout + done.stderr
    assert shown in readme, shown
