"""The public surface: every exported name exists, is documented and reports its public home;
every exception is a `FloxideError`, defined in `floxide._errors`, drawn in its docstring."""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
import pkgutil
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import floxide
import floxide.backends
import floxide.checkpoints
import floxide.cli
import floxide.distributed
import floxide.serde
import floxide.testing
from floxide import _errors

PUBLIC_MODULES: tuple[ModuleType, ...] = (
    floxide,
    floxide.backends,
    floxide.checkpoints,
    floxide.distributed,
    floxide.serde,
    floxide.testing,
    floxide.cli,
)
PACKAGES = (floxide, floxide.backends, floxide.checkpoints, floxide.distributed, floxide.testing)
"""The public modules that re-export names defined in private modules."""

ALLOWED_PRIVATE_EXCEPTIONS = {
    ("floxide._sqlite", "_Abort"),  # control flow inside one module
    ("floxide.distributed._worker", "_DecodeError"),
    # the PostgreSQL transaction runner's signals: roll back and return, run a group again
    ("floxide.backends._postgres_conn", "Rollback"),
    ("floxide.backends._postgres_conn", "_Redo"),
    ("floxide._ui._app", "_BadRequest"),  # a bad URL or form: answered 400 by the route
    # the Redis fast lane's signal: this call goes to coredis (nothing of it was sent)
    ("floxide.backends._redis_lane", "Unavailable"),
}


def _ids(modules: tuple[ModuleType, ...]) -> list[str]:
    return [m.__name__ for m in modules]


def _exported() -> Iterator[tuple[ModuleType, str, Any]]:
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            yield module, name, getattr(module, name)


def _is_public(module_name: str) -> bool:
    return not any(part.startswith("_") for part in module_name.split("."))


def _defines(obj: object) -> bool:
    """A class or function (not a type alias, constant or converter instance)."""
    return inspect.isclass(obj) or inspect.isfunction(obj)


def _all_modules() -> Iterator[ModuleType]:
    yield floxide
    for info in pkgutil.walk_packages(floxide.__path__, "floxide."):
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue


# --------------------------------------------------------------------------- __all__


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=_ids(PUBLIC_MODULES))
def test_every_exported_name_exists_once(module: ModuleType) -> None:
    assert len(set(module.__all__)) == len(module.__all__), "a name is listed twice"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ lists missing names {missing}"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=_ids(PUBLIC_MODULES))
def test_no_private_name_is_exported(module: ModuleType) -> None:
    leaked = [name for name in module.__all__ if name.startswith("_")]
    assert not leaked, f"{module.__name__}.__all__ exports private names {leaked}"


@pytest.mark.parametrize("module", PACKAGES, ids=_ids(PACKAGES))
def test_no_public_name_is_left_out_of_all(module: ModuleType) -> None:
    """A floxide class or function reachable under a public name is listed in `__all__`,
    unless it is listed by the public module it reports (a re-import such as
    `floxide.backends.BackendError`, at home in `floxide`)."""
    unlisted = []
    for name, obj in vars(module).items():
        if name.startswith("_") or name in module.__all__ or not _defines(obj):
            continue
        home = obj.__module__
        if not home.startswith("floxide"):
            continue  # a third-party or standard-library import
        if _is_public(home) and name in getattr(sys.modules[home], "__all__", ()):
            continue
        unlisted.append(name)
    assert not unlisted, f"{module.__name__} has public names not in __all__: {unlisted}"


@pytest.mark.parametrize(
    ("module", "name", "obj"),
    [e for e in _exported() if _defines(e[2])],
    ids=[f"{m.__name__}.{n}" for m, n, o in _exported() if _defines(o)],
)
def test_exported_classes_and_functions_are_documented(
    module: ModuleType, name: str, obj: Any
) -> None:
    own_doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert own_doc and own_doc.strip(), f"{module.__name__}.{name} has no docstring"


@pytest.mark.parametrize(
    ("module", "name", "obj"),
    [e for e in _exported() if _defines(e[2])],
    ids=[f"{m.__name__}.{n}" for m, n, o in _exported() if _defines(o)],
)
def test_exported_names_report_their_public_module(
    module: ModuleType, name: str, obj: Any
) -> None:
    home = obj.__module__
    assert _is_public(home), f"{module.__name__}.{name} reports private module {home!r}"
    found = getattr(sys.modules[home], obj.__name__, None)
    assert found is obj, f"{home}.{obj.__name__} is not {module.__name__}.{name}"
    if inspect.isclass(obj) and not issubclass(obj, enum.Enum):  # enums show no module
        assert repr(obj) == f"<class '{home}.{obj.__qualname__}'>"


def test_reprs_name_the_public_module() -> None:
    assert repr(floxide.Node) == "<class 'floxide.Node'>"
    assert repr(floxide.NodeError) == "<class 'floxide.NodeError'>"
    assert repr(floxide.backends.RunRecord) == "<class 'floxide.backends.RunRecord'>"
    assert floxide.distributed.RunRecord is floxide.backends.RunRecord
    assert repr(floxide.distributed.Orchestrator) == "<class 'floxide.distributed.Orchestrator'>"
    assert floxide.workflow.__module__ == "floxide"
    assert floxide.Workflow.run.__module__ == "floxide"
    assert floxide.distributed.RemoteError.__module__ == "floxide.distributed"


@pytest.mark.parametrize(
    ("module", "name", "obj"),
    [e for e in _exported() if inspect.isclass(e[2])],
    ids=[f"{m.__name__}.{n}" for m, n, o in _exported() if inspect.isclass(o)],
)
def test_annotations_of_exported_classes_still_resolve(
    module: ModuleType, name: str, obj: type
) -> None:
    """Changing `__module__` must not break `get_type_hints` (attrs and cattrs use it)."""
    typing.get_type_hints(obj)


def test_published_attrs_classes_still_serialize() -> None:
    counter = floxide.Counter().add(2)
    data = floxide.serde.unstructure(counter, floxide.Counter)
    assert floxide.serde.structure(data, floxide.Counter) == counter
    policy = floxide.RetryPolicy(max_attempts=2)
    assert floxide.serde.converter.structure(
        floxide.serde.converter.unstructure(policy), floxide.RetryPolicy
    ) == policy


def test_retry_error_is_an_alias_of_retry_on() -> None:
    assert floxide.RetryError is floxide.RetryOn
    assert floxide.RetryOn.__name__ == "RetryOn" and floxide.RetryOn.__module__ == "floxide"
    assert not issubclass(floxide.RetryOn, BaseException)
    assert floxide.RetryPolicy().retry_on is floxide.RetryError.ALL


# --------------------------------------------------------------------------- exceptions


def test_every_exported_exception_is_a_floxide_error() -> None:
    for module, name, obj in _exported():
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            assert issubclass(obj, floxide.FloxideError), f"{module.__name__}.{name}"


def test_every_exception_in_errors_is_exported_by_a_public_module() -> None:
    public = {id(obj) for _, _, obj in _exported()}
    internal = {"CliError"}  # the command line reports it; it is still a FloxideError
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        assert issubclass(cls, _errors.FloxideError), name
        assert name in internal or id(cls) in public, f"{name} is not exported anywhere"


def test_exceptions_keep_their_builtin_bases() -> None:
    assert issubclass(floxide.NoRouteError, LookupError)
    assert issubclass(floxide.StrayJoinError, RuntimeError)
    assert issubclass(floxide.NodeTimeoutError, TimeoutError)
    assert issubclass(floxide.MergeConflictError, ValueError)
    assert issubclass(floxide.WorkflowDefinitionError, TypeError)
    assert issubclass(floxide.distributed.UnknownRunError, KeyError)
    assert issubclass(floxide.backends.PayloadError, floxide.BackendError)
    assert issubclass(floxide.RunTimeoutError, floxide.RunCancelled)


def test_no_exception_is_defined_outside_errors() -> None:
    """Every exception class is written in `floxide/_errors.py` (a module's own private
    control-flow exception excepted)."""
    stray = []
    for module in _all_modules():
        if module is _errors or module.__file__ is None:
            continue
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            obj = getattr(module, node.name, None)
            if not (inspect.isclass(obj) and issubclass(obj, BaseException)):
                continue
            if (module.__name__, node.name) not in ALLOWED_PRIVATE_EXCEPTIONS:
                stray.append(f"{module.__name__}.{node.name}")
    assert not stray, f"exceptions defined outside floxide._errors: {stray}"


def _drawn_hierarchy() -> dict[str, str | None]:
    """{exception: parent} as drawn in `floxide._errors`' docstring."""
    doc = _errors.__doc__ or ""
    block = doc.split("```text\n", 1)[1].split("```", 1)[0]
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in block.splitlines():
        stripped = line.lstrip(" │├└─")
        name = stripped.split()[0]
        depth = len(line) - len(stripped)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def test_the_docstring_draws_the_real_hierarchy() -> None:
    drawn = _drawn_hierarchy()
    assert set(drawn) == set(_errors.__all__)
    for name, parent in drawn.items():
        cls = getattr(_errors, name)
        if parent is None:
            assert cls.__bases__ == (Exception,), name
        else:
            assert cls.__bases__[0] is getattr(_errors, parent), f"{name} under {parent}"
