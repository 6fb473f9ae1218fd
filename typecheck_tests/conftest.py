"""Running mypy with floxide's plugin over test files, and reading what it says.

mypy runs are the slow part of these tests, so every run shares one cache directory
(the standard library, attrs, trio and floxide are analysed once per session) and the
case files are checked together in a single run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CASES = Path(__file__).resolve().parent / "cases"

# pytest-mypy-plugins runs the `mypy` found on PATH: use this interpreter's.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

_LINE = re.compile(
    r"^(?P<path>[^:\n]+):(?P<line>\d+): (?P<severity>error|note|warning): (?P<text>.*?)"
    r"(?:  \[(?P<code>[a-z0-9-]+)\])?$"
)


@dataclass(frozen=True)
class Message:
    """One line of mypy output."""

    path: str
    line: int
    severity: str
    text: str
    code: str | None

    def __str__(self) -> str:
        code = f"  [{self.code}]" if self.code else ""
        return f"{self.path}:{self.line}: {self.severity}: {self.text}{code}"


@dataclass(frozen=True)
class MypyRun:
    """The parsed result of one mypy run."""

    messages: tuple[Message, ...]
    stdout: str
    stderr: str
    returncode: int

    def in_file(self, path: Path, cwd: Path) -> list[Message]:
        """Messages about `path` (given relative to `cwd` or absolute)."""
        wanted = {str(path), str(path.relative_to(cwd)) if path.is_relative_to(cwd) else ""}
        return [m for m in self.messages if m.path in wanted]


def run_mypy(
    files: Iterable[Path | str],
    *,
    cwd: Path,
    cache_dir: Path,
    config: Path = PYPROJECT,
    extra: Sequence[str] = (),
) -> MypyRun:
    """Run mypy (with the project's config: strict, stubs, the floxide plugin) in `cwd`."""
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(config),
        "--cache-dir",
        str(cache_dir),
        "--show-error-codes",
        "--no-error-summary",
        "--no-pretty",
        "--no-color-output",
        "--hide-error-context",
        *extra,
        *map(str, files),
    ]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    messages = tuple(
        Message(m["path"], int(m["line"]), m["severity"], m["text"], m["code"])
        for m in map(_LINE.match, done.stdout.splitlines())
        if m is not None
    )
    if done.returncode not in (0, 1) or done.stderr.strip():
        raise AssertionError(f"mypy failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return MypyRun(messages, done.stdout, done.stderr, done.returncode)


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache directory for every run of the session."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(scope="session")
def case_run(mypy_cache: Path) -> MypyRun:
    """mypy over every file of `cases/`, in one run."""
    files = sorted(CASES.glob("case_*.py"))
    return run_mypy(files, cwd=CASES, cache_dir=mypy_cache)
