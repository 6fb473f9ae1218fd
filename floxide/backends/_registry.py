"""Which backend opens a URL: a registry of URL schemes, filled by the built-in backends,
by third-party packages at import (`register_backend`) and by the `floxide.backends`
entry point group (loaded on the first URL whose scheme is not registered yet).

An entry point's name is the scheme and its object the opener, e.g. in pyproject.toml::

    [project.entry-points."floxide.backends"]
    mystore = "mystore.floxide:open_backend"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points
from urllib.parse import urlsplit, urlunsplit

from floxide._errors import BackendError
from floxide.backends._base import Backend

__all__ = ["ENTRY_POINT_GROUP", "Opener", "masked_url", "open_backend", "register_backend"]

Opener = Callable[[str], Backend]
"""Opens a backend from its whole URL (options included); connects lazily."""
ENTRY_POINT_GROUP = "floxide.backends"

_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)
_openers: dict[str, Opener] = {}
_examples: dict[str, str] = {}


def register_backend(scheme: str, opener: Opener, *, example: str | None = None) -> None:
    """Make `open_backend` open URLs of `scheme` (e.g. "mystore") with `opener(url)`.

    A later registration of the same scheme replaces the earlier one. `example` shows how
    such a URL looks in the error for an unknown scheme (default "SCHEME://").
    """
    name = scheme.lower()
    if not _SCHEME.fullmatch(name):
        raise ValueError(f"not a URL scheme: {scheme!r} (letters, digits, '+', '-', '.')")
    if not callable(opener):
        raise TypeError(f"the opener of scheme {scheme!r} must be callable, got {opener!r}")
    _openers[name] = opener
    _examples[name] = example or f"{name}://"


def open_backend(url: str) -> Backend:
    """Open the backend a URL names, by its scheme (see `register_backend`).

    Nothing is contacted yet: connection problems surface, as `BackendError` naming the URL
    (credentials masked), on first use.
    """
    scheme = urlsplit(url).scheme.lower()
    opener = _openers.get(scheme) or _from_entry_points(scheme, url)
    if opener is None:
        *others, last = _examples.values()
        known = f"{', '.join(others)} or {last}" if others else last
        raise BackendError(f"unknown backend URL {masked_url(url)!r}: use {known}")
    return opener(url)


def _from_entry_points(scheme: str, url: str) -> Opener | None:
    if not scheme:
        return None
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        try:
            opener = ep.load()
        except Exception as e:
            raise BackendError(
                f"backend URL {masked_url(url)!r}: the {ENTRY_POINT_GROUP!r} entry point "
                f"{ep.value!r} for scheme {scheme!r} failed to load ({type(e).__name__}: {e})"
            ) from e
        if scheme not in _openers:  # loading may have registered it already
            register_backend(scheme, opener)
        return _openers[scheme]
    return None


def masked_url(url: str) -> str:
    """`url` with its password shown as `***` (`redis://USER:***@HOST:PORT/DB`), in the
    user part and in a `password=` query option (as libpq URLs may carry it)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if password is None:
        if not _QUERY_PASSWORD.search(parts.query):
            return url
        base, _, query = url.partition("?")
        return base + "?" + _QUERY_PASSWORD.sub(r"\1***", query)
    if _QUERY_PASSWORD.search(parts.query):
        parts = parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
