"""Every file in `examples/` type-checks clean under `mypy --strict` with the plugin.

All examples are checked in one mypy run (with the project's config: strict, `stubs/`,
`plugins = ["floxide_mypy"]`); each file is then its own test, failing on any error
reported in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from typecheck_tests.conftest import ROOT, MypyRun, run_mypy

EXAMPLES = sorted(
    p for p in (ROOT / "examples").rglob("*.py") if "__pycache__" not in p.parts
)


@pytest.fixture(scope="module")
def examples_run(mypy_cache: Path) -> MypyRun:
    return run_mypy(
        [p.relative_to(ROOT) for p in EXAMPLES], cwd=ROOT, cache_dir=mypy_cache, extra=["--strict"]
    )


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/ has no Python files to type-check"


@pytest.mark.parametrize("example", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_example_typechecks_clean(example: Path, examples_run: MypyRun) -> None:
    errors = [m for m in examples_run.in_file(example, ROOT) if m.severity == "error"]
    assert not errors, "\n".join(map(str, errors))
