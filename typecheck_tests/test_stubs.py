"""`stubs/` types the untyped third-party modules floxide's typed code imports."""

from __future__ import annotations

from pathlib import Path

from typecheck_tests.conftest import ROOT, run_mypy

PROBE = '''
from collections.abc import AsyncIterator

import pytest_trio


@pytest_trio.trio_fixture
async def value() -> AsyncIterator[int]:
    yield 1


reveal_type(value)
'''


def test_pytest_trio_is_typed_through_stubs(tmp_path: Path, mypy_cache: Path) -> None:
    probe = tmp_path / "probe_pytest_trio.py"
    probe.write_text(PROBE.lstrip())
    run = run_mypy([probe], cwd=ROOT, cache_dir=mypy_cache)
    said = [(m.severity, m.text) for m in run.in_file(probe, ROOT)]
    assert said == [("note", 'Revealed type is "def () -> typing.AsyncIterator[int]"')], run.stdout
