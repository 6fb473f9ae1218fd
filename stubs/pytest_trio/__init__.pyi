"""Type stub for pytest-trio (untyped upstream): what floxide's tests use."""

from collections.abc import Callable
from typing import TypeVar

_F = TypeVar("_F", bound=Callable[..., object])

__version__: str

def trio_fixture(func: _F) -> _F:
    """Mark `func` (an async fixture) to run inside the test's trio run."""
