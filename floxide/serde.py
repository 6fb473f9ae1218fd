"""The cattrs converter floxide uses for contexts, inputs, outputs and work items.

Values are (un)structured by the types declared on nodes and workflows
(`Node[Ctx, In, Out]`), so what comes back from a checkpoint or a backend is an instance
of the declared type: an attrs class comes back as that class, an enum as its member,
`SharedState[int]` as a cell holding the value. Unions of several classes (`Above | Below`)
are written with a type tag, `{"$type": "Below", "value": {...}}`, so each member comes
back as itself. `None` (NoneType) fits only null. A value declared `Any` or `object` is
written as its run-time class and comes back as the JSON data it was written as: declare
a precise type to get an instance back.

Register your own hooks on `converter` for types cattrs does not know::

    from floxide.serde import converter
    converter.register_unstructure_hook(Money, lambda m: str(m))
    converter.register_structure_hook(Money, lambda s, _: Money(s))

A payload that does not fit its type fails with a `CheckpointError` naming the field path,
for example ``invalid value for type, expected int @ $.items[3].input.value``.
"""

from __future__ import annotations

import enum
import json
import json.encoder
import types
import typing
from collections import abc
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, Literal, TypeVar, get_args, get_origin

import cattrs
from cattrs.preconf.json import JsonConverter, make_converter
from cattrs.v import format_exception

from floxide._context import register_shared_state_hooks
from floxide._errors import CheckpointError, FloxideError
from floxide._exact import first_difference
from floxide._merge_serde import register_counter_hooks

__all__ = [
    "TYPE_TAG",
    "check_exact",
    "converter",
    "dumps",
    "loads",
    "structure",
    "structure_exact",
    "type_name",
    "unstructure",
]

T = TypeVar("T")

TYPE_TAG = "$type"
"""Key naming the member of a tagged union in its serialized form."""

converter: JsonConverter = make_converter()
"""The converter for every value floxide serializes; register your hooks on it."""

_PRIMITIVES: frozenset[Any] = frozenset({str, int, float, bool, bytes})
_JSON_SCALARS: frozenset[Any] = frozenset({str, int, float, bool})
_EXACT_SCALARS: dict[Any, tuple[type, ...]] = {
    int: (int,),
    str: (str,),
    float: (float, int),
    bool: (bool,),
}
"""Declared scalar types and the run-time types that fit them without a round trip."""


def type_name(tp: Any) -> str:
    """A short, stable name for a type, used as a union tag and in messages."""
    origin = get_origin(tp)
    if origin is not None:
        return repr(tp).replace("typing.", "")
    return str(getattr(tp, "__qualname__", None) or repr(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _members(tp: Any) -> tuple[Any, ...]:
    return tuple(a for a in get_args(tp) if a is not type(None))


def _needs_tag(tp: Any) -> bool:
    """A union that cattrs cannot tell apart by itself: several non-primitive members."""
    if not _is_union(tp):
        return False
    members = _members(tp)
    return len(members) > 1 and any(m not in _PRIMITIVES for m in members)


def _raw(member: Any) -> bool:
    """Members written without a tag: JSON scalars, literals and None."""
    return member in _JSON_SCALARS or get_origin(member) is Literal or member is type(None)


def _match(member: Any, value: object) -> bool:
    if member is type(None):
        return value is None
    if get_origin(member) is Literal:
        return any(value == a and type(value) is type(a) for a in get_args(member))
    cls = get_origin(member) or member
    if not isinstance(cls, type):
        return False
    if cls is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if cls is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, cls)


def _tags(tp: Any) -> dict[str, Any]:
    tagged = [m for m in _members(tp) if not _raw(m)]
    names = [type_name(m) for m in tagged]
    if len(set(names)) != len(names):  # same qualname in two modules: qualify them
        names = [f"{getattr(m, '__module__', '')}.{n}" for m, n in zip(tagged, names, strict=True)]
    return dict(zip(names, tagged, strict=True))


def _tagged_unstructure(tp: Any) -> Callable[[Any], Any]:
    members = _members(tp)
    tags = {id(m): name for name, m in _tags(tp).items()}

    def unstructure_union(value: Any) -> Any:
        # exact class first, so a subclass listed next to its base is written as itself
        for m in members:
            if (get_origin(m) or m) is type(value):
                break
        else:
            m = next((m for m in members if _match(m, value)), None)
            if m is None:
                if value is None:
                    return None
                raise TypeError(f"{type(value).__name__} value {value!r} is not a member of {tp}")
        if _raw(m):
            return converter.unstructure(value, m)
        return {TYPE_TAG: tags[id(m)], "value": converter.unstructure(value, m)}

    return unstructure_union


def _tagged_structure(tp: Any) -> Callable[[Any, Any], Any]:
    tags = _tags(tp)
    raw = [m for m in _members(tp) if _raw(m)]
    optional = type(None) in get_args(tp)

    def structure_union(data: Any, _: Any) -> Any:
        if data is None and optional:
            return None
        if isinstance(data, dict) and TYPE_TAG in data:
            member = tags.get(data[TYPE_TAG])
            if member is None:
                raise ValueError(
                    f"unknown {TYPE_TAG} {data[TYPE_TAG]!r}; expected one of {sorted(tags)}"
                )
            return converter.structure(data.get("value"), member)
        for m in raw:
            if _match(m, data):
                return converter.structure(data, m)
        raise ValueError(
            f"expected one of {type_name(tp)} "
            f"(classes tagged with {TYPE_TAG!r}), got {type(data).__name__}"
        )

    return structure_union


converter.register_unstructure_hook_factory(_needs_tag, _tagged_unstructure)
converter.register_structure_hook_factory(_needs_tag, _tagged_structure)


def _enum_structure(tp: type[enum.Enum]) -> Callable[[Any, Any], enum.Enum]:
    def structure_enum(data: Any, _: Any) -> enum.Enum:
        try:
            return tp(data)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise ValueError(f"{data!r} is not a {tp.__name__} (one of {allowed})") from None

    return structure_enum


converter.register_structure_hook_factory(
    lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _enum_structure
)


def _is_abstract_sequence(tp: Any) -> bool:
    return (get_origin(tp) or tp) in (abc.Sequence, abc.MutableSequence)


def _sequence_as_list(tp: Any) -> Callable[[Any, Any], list[Any]]:
    args = get_args(tp)
    list_type: Any = list[args[0]] if args else list  # type: ignore[valid-type]
    as_list = converter.get_structure_hook(list_type)

    def structure_sequence(data: Any, _: Any) -> list[Any]:
        return as_list(data, list)  # type: ignore[no-any-return]

    return structure_sequence


# A join's input is declared `Sequence[X]` and the executor hands it a list: keep it a list.
converter.register_structure_hook_factory(_is_abstract_sequence, _sequence_as_list)


def _structure_none(data: Any, _: Any) -> None:
    if data is not None:
        raise ValueError(f"expected null, got {type(data).__name__}")
    return None


# `Node[None, None, int]` declares NoneType (typing turns `None` into it): only null fits.
converter.register_structure_hook_factory(lambda t: t is type(None), lambda _: _structure_none)


def _unstructure_object(value: Any) -> Any:
    cls = type(value)
    return value if cls is object else converter.unstructure(value, unstructure_as=cls)


# A value declared `object` is written as its run-time class (like `Any`) and read back as
# the JSON data it was written as: every payload fits `object`.
converter.register_unstructure_hook_factory(lambda t: t is object, lambda _: _unstructure_object)
converter.register_structure_hook_factory(lambda t: t is object, lambda _: lambda data, _: data)


register_shared_state_hooks(converter)
register_counter_hooks(converter)


def _format(exc: BaseException, tp: type | None) -> str:
    text = format_exception(exc, tp)
    if text == "invalid value" and str(exc):
        text = f"invalid value ({exc})"
    return text


def _describe(exc: BaseException, path: str) -> str:
    try:
        messages = cattrs.transform_error(exc, path=path, format_exception=_format)
    except Exception:  # pragma: no cover - defensive: never hide the original error
        messages = [f"{type(exc).__name__}: {exc} @ {path}"]
    return "; ".join(messages)


def unstructure(
    value: object, tp: Any = Any, *, path: str = "$", error: type[FloxideError] = CheckpointError
) -> Any:
    """`value` as JSON-ready data, written as its declared type `tp`.

    Raises `error` (a `CheckpointError` by default) naming `path` when it cannot be written.
    """
    try:
        if tp is Any or isinstance(tp, TypeVar):
            return converter.unstructure(value)
        return converter.unstructure(value, unstructure_as=tp)
    except Exception as exc:
        raise _cannot_unstructure(value, tp, path, exc, error) from exc


def _cannot_unstructure(
    value: object, tp: Any, path: str, exc: Exception, error: type[FloxideError]
) -> FloxideError:
    """The error for `value` that its type's hook (`tp`) failed to unstructure."""
    return error(
        f"cannot serialize {type(value).__name__} value at {path} as {type_name(tp)}: "
        f"{type(exc).__name__}: {exc}"
    )


def structure(
    data: object, tp: Any, *, path: str = "$", error: type[FloxideError] = CheckpointError
) -> Any:
    """Rebuild a value of type `tp` from `data`.

    When `data` does not fit `tp`, raises `error` (a `CheckpointError` by default) whose
    message names each offending field path under `path`.
    """
    if tp is Any or isinstance(tp, TypeVar):
        return data
    try:
        return converter.structure(data, tp)
    except Exception as exc:
        raise _cannot_structure(tp, path, exc, error) from exc


def structure_exact(
    data: object,
    tp: Any,
    *,
    path: str = "$",
    error: type[Exception] = ValueError,
    what: str = "value",
) -> Any:
    """Like `structure`, for data a user gives: it must fit `tp` exactly (no float for an
    int, no bool for a number, no string for a list, no unknown keys). Raises `error`
    naming the JSON path of the first misfit; the value otherwise."""
    if tp is Any or isinstance(tp, TypeVar) or tp is object:
        return data
    try:
        value = converter.structure(data, tp)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except Exception as exc:
        raise error(f"{what} does not fit {type_name(tp)}: {_describe(exc, path)}") from None
    try:
        written = converter.unstructure(value, unstructure_as=tp)
    except RecursionError:
        raise error(f"{what} is nested too deeply") from None
    except Exception as exc:
        raise error(f"{what} does not fit {type_name(tp)}: {exc}") from None
    misfit = first_difference(data, written, path)
    if misfit is not None:
        raise error(f"{what} does not fit {type_name(tp)}: {misfit}")
    return value


def check_exact(value: object, tp: Any, *, what: str = "value") -> None:
    """`ValueError` unless the Python `value` fits its declared type `tp` exactly (the
    check `structure_exact` makes, on the value as the converter writes it). A value the
    converter cannot write as `tp` at all is left to the encoder, which names its path."""
    if (
        tp is Any
        or isinstance(tp, TypeVar)
        or tp is object
        or type(value) in _EXACT_SCALARS.get(tp, ())
    ):
        return
    try:
        data = converter.unstructure(value, unstructure_as=tp)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except Exception:  # not serializable as `tp`: the encoder reports it, with its path
        return
    if not _is_json(data):
        return  # not JSON data (a value no hook writes): the encoder reports it
    try:
        written = converter.unstructure(converter.structure(data, tp), unstructure_as=tp)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except Exception as exc:
        raise ValueError(f"{what} does not fit {type_name(tp)}: {_describe(exc, '$')}") from None
    if isinstance(value, str) and not isinstance(data, str):  # read as a list of letters
        raise ValueError(f"{what} does not fit {type_name(tp)}: $: got a string, {value!r}")
    misfit = first_difference(data, written)
    if misfit is not None:
        raise ValueError(f"{what} does not fit {type_name(tp)}: {misfit}")


def _is_json(data: object) -> bool:
    """Whether `data` is JSON data (what the encoder writes without a hook)."""
    if data is None or isinstance(data, str | int | float | bool):
        return True
    if isinstance(data, list | tuple):
        return all(_is_json(v) for v in data)
    if isinstance(data, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in data.items())
    return False


def _cannot_structure(
    tp: Any, path: str, exc: Exception, error: type[FloxideError]
) -> FloxideError:
    """The error for data at `path` that its type's hook (`tp`) failed to structure."""
    return error(f"stored value does not fit {type_name(tp)}: {_describe(exc, path)}")


def _compact_encoder() -> Callable[[object], str]:
    """`json.dumps(data, separators=(",", ":"), ensure_ascii=False)`, set up once.

    `json.dumps` with non-default arguments builds a new encoder on every call, which costs
    more than encoding a small payload. The C encoder is used directly when there is one;
    without circular-reference markers it is reentrant, and a cycle ends in `RecursionError`.
    """
    base = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    try:
        c_encode = make(None, base.default, encode_basestring, None, ":", ",", False, False, True)
    except TypeError:  # pragma: no cover - no C accelerator, or another signature
        return base.encode

    def encode(data: object) -> str:
        return "".join(c_encode(data, 0))

    return encode


_encode_json: Callable[[object], str] = _compact_encoder()
"""Compact JSON text for already unstructured data (what `dumps` writes, as `str`)."""


def dumps(data: object, *, path: str = "$", error: type[FloxideError] = CheckpointError) -> bytes:
    """Compact JSON bytes for already unstructured `data`.

    Data JSON cannot hold (a value cattrs has no hook for) raises `error` naming `path`.
    """
    try:
        return _encode_json(data).encode()
    except _JSON_ERRORS as exc:
        raise _cannot_dump(path, exc, error) from exc


_JSON_ERRORS = (TypeError, ValueError, RecursionError)
"""What `_encode_json` (and encoding its text as UTF-8) raises for data JSON cannot hold."""


def _cannot_dump(path: str, exc: BaseException, error: type[FloxideError]) -> FloxideError:
    """The error for data at `path` that JSON cannot hold."""
    return error(
        f"cannot serialize the value at {path}: {exc} (register a hook for its type "
        f"on floxide.serde.converter, or declare a serializable type)"
    )


def loads(
    raw: bytes | str, *, what: str = "checkpoint data", error: type[FloxideError] = CheckpointError
) -> Any:
    """Parse JSON bytes; unreadable bytes raise `error` saying `what` they were."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, TypeError) as exc:
        raise error(f"{what} is corrupt (not valid JSON): {exc}") from exc
