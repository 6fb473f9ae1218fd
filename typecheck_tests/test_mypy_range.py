"""The supported mypy range stated in pyproject.toml is the one `make test` runs."""

from __future__ import annotations

import re
import tomllib

from typecheck_tests.conftest import PYPROJECT, ROOT


def test_the_oldest_and_newest_tested_are_the_stated_bounds() -> None:
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    (stated,) = [r for r in extras["mypy"] if r.startswith("mypy")]
    (dev,) = [r for r in extras["dev"] if r.startswith("mypy")]
    oldest = re.search(r">=([\d.]+)", stated)
    makefile = (ROOT / "Makefile").read_text()
    tested = re.search(r"^MYPY_OLDEST := ([\d.]+)$", makefile, re.M)
    assert oldest and tested and oldest[1] == tested[1]
    assert re.search(r"for step in .*\btypecheck typecheck-oldest\b", makefile)
    upper = re.search(r"<([\d.]+)", stated)
    assert upper and f"<{upper[1]}" in dev  # the venv (the newest) is inside the range
