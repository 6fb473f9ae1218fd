"""The UI's ASGI application (Starlette): pages, the JSON API, static files, the buttons.

Reads are GETs; the only writes are the buttons' POSTs (pause, resume, cancel, retry),
each checked three ways: the form's CSRF token (a secret made per process), the request's
Origin (or Referer, or Sec-Fetch-Site) naming this very server, and not `--read-only`.
While bound to a loopback address the server also refuses requests whose Host header is
not a loopback name (a web page elsewhere cannot reach it by DNS rebinding). Every
response carries a Content-Security-Policy allowing nothing but this server's own
script, style and images.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from floxide._errors import FloxideError
from floxide._ui import _html
from floxide._ui._data import ACTIONS, Source

__all__ = ["LOOPBACK_NAMES", "is_loopback", "make_app"]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]
_STATIC = {
    "ui.js": "text/javascript; charset=utf-8",
    "ui.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_MAX_PER = 500
_MAX_FORM = 16 * 1024


def is_loopback(host: str) -> bool:
    """True for a name or address of this machine's loopback interface."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BadRequest(Exception):
    """A user's mistake in a URL or form: 400 with this message."""


def _static(name: str) -> bytes:
    return (resources.files("floxide._ui") / "static" / name).read_bytes()


def _dumps(value: Any) -> bytes:
    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [fix(x) for x in v]
        return v

    return json.dumps(fix(value), ensure_ascii=False, default=str).encode()


def json_response(value: Any, status: int = 200) -> Response:
    return Response(_dumps(value), status, media_type="application/json")


class _Guard:
    """Host check and security headers around the whole application."""

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.loopback_only:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if not is_loopback(name):
                body = b"this floxide ui answers only to a loopback host name\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 421,
                        "headers": [(b"content-type", b"text/plain"), *_SECURITY_HEADERS],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def make_app(source: Source, *, loopback_only: bool = True, csrf: str | None = None) -> ASGIApp:
    """The application over `source`; `csrf` is the buttons' token (random by default)."""
    token = csrf or secrets.token_urlsafe(32)
    static = {name: _static(name) for name in _STATIC}

    def html(text: str, status: int = 200) -> Response:
        return Response(text, status, media_type="text/html; charset=utf-8")

    def not_found(request: Request, what: str) -> Response:
        if request.url.path.startswith("/api/"):
            return json_response({"error": what}, 404)
        return html(_html.message_page("Not found", what, source.url), 404)

    def handled(
        fn: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapper(request: Request) -> Response:
            api = request.url.path.startswith("/api/")
            try:
                return await fn(request)
            except _BadRequest as e:
                if api:
                    return json_response({"error": str(e)}, 400)
                return html(_html.message_page("Bad request", str(e), source.url), 400)
            except FloxideError as e:
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                if api:
                    return json_response({"error": message}, 503)
                return html(_html.message_page("Cannot read the runs", message, source.url), 503)

        return wrapper

    def number(request: Request, name: str, default: int, low: int, high: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _BadRequest(f"{name} must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise _BadRequest(f"{name} must be between {low} and {high}, got {value}")
        return value

    def status_filter(request: Request) -> str | None:
        status = request.query_params.get("status") or None
        if status is not None and status not in source.statuses:
            raise _BadRequest(f"status must be one of {', '.join(source.statuses)}, got {status!r}")
        return status

    async def runs_data(request: Request) -> tuple[dict[str, Any], int]:
        per = number(request, "per", 50, 1, _MAX_PER)
        if "offset" in request.query_params:
            offset = number(request, "offset", 0, 0, 10**12)
        else:
            offset = (number(request, "page", 1, 1, 10**10) - 1) * per
        per = number(request, "limit", per, 1, _MAX_PER)
        return await source.runs(status_filter(request), offset, per), per

    @handled
    async def runs_page(request: Request) -> Response:
        data, per = await runs_data(request)
        if request.query_params.get("fragment") == "table":
            return html(_html.runs_table(data))
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "fragment"]
        url = "/?" + urlencode([*query, ("fragment", "table")])
        return html(_html.runs_page(data, source.statuses, per, url))

    @handled
    async def api_runs(request: Request) -> Response:
        data, _ = await runs_data(request)
        return json_response(data)

    @handled
    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        fragment = request.query_params.get("fragment")
        found = await source.view(run_id)
        if found is None:
            return not_found(request, f"no run {run_id!r} in {source.url}")
        run, shape = found
        if fragment == "details":
            return html(_html.details_fragment(run))
        context = None
        if request.query_params.get("context"):
            context = await source.context(run_id)
        message = ""
        did, refused_action = request.query_params.get("did"), request.query_params.get("refused")
        if did in ACTIONS:
            message = f"{did} requested: the run is now {run['status']}"
        elif refused_action in ACTIONS:
            message = f"cannot {refused_action} this run: it is {run['status']}"
        return html(
            _html.run_page(run, shape, source.url, token, source.can_control, message, context)
        )

    @handled
    async def api_run(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if request.query_params.get("context"):
            ctx = await source.context(run_id)
            if ctx is None:
                return not_found(request, f"no run {run_id!r} in {source.url}")
            return json_response(ctx)
        run = await source.run(run_id, summary=bool(request.query_params.get("summary")))
        if run is None:
            return not_found(request, f"no run {run_id!r} in {source.url}")
        return json_response(run)

    def refused(request: Request, status: int, why: str) -> Response:
        if request.url.path.startswith("/api/"):
            return json_response({"error": why}, status)
        return html(_html.message_page("Refused", why, source.url), status)

    def same_origin(request: Request) -> bool:
        host = request.headers.get("host", "")
        origins = {f"http://{host}", f"https://{host}"}
        origin = request.headers.get("origin")
        if origin is not None:
            return origin in origins
        referer = request.headers.get("referer")
        if referer is not None:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}" in origins
        return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")

    @handled
    async def act(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if not source.can_control:
            why = (
                "this UI is read-only (--read-only)"
                if source.kind == "backend"
                else "a checkpointed run is steered by the program that resumes it"
            )
            return refused(request, 403, why)
        if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return refused(request, 403, "cross-site request refused")
        if not same_origin(request):
            return refused(request, 403, "request from another origin refused")
        body = await request.body()
        if len(body) > _MAX_FORM:
            return refused(request, 413, "form too large")
        form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        given = request.headers.get("x-csrf-token") or (form.get("csrf") or [""])[0]
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return refused(request, 403, "missing or wrong CSRF token")
        action = (form.get("action") or [""])[0]
        if action not in ACTIONS:
            raise _BadRequest(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        api = request.url.path.startswith("/api/")
        try:
            status = await source.control(run_id, action)
        except KeyError:
            return not_found(request, f"no run {run_id!r} in {source.url}")
        except FloxideError as e:
            if api:
                return json_response({"error": str(e).splitlines()[0]}, 409)
            return RedirectResponse(_redirect(run_id, "refused", action), 303)
        if api:
            return json_response({"run_id": run_id, "status": status})
        return RedirectResponse(_redirect(run_id, "did", action), 303)

    @handled
    async def workers_page(request: Request) -> Response:
        workers = await source.workers()
        if request.query_params.get("fragment") == "table":
            return html(_html.workers_table(workers, source.url, source.kind))
        return html(_html.workers_page(workers, source.url, source.kind))

    @handled
    async def api_workers(request: Request) -> Response:
        return json_response(await source.workers())

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            return not_found(request, f"no file {name!r}")
        return Response(static[name], media_type=_STATIC[name])

    async def missing(request: Request, exc: Exception) -> Response:
        return not_found(request, f"no page {request.url.path!r}")

    async def wrong_method(request: Request, exc: Exception) -> Response:
        return refused(request, 405, f"{request.method} is not allowed here")

    app = Starlette(
        routes=[
            Route("/", runs_page),
            Route("/workers", workers_page),
            Route("/runs/{run_id:path}", run_page, methods=["GET", "HEAD"]),
            Route("/runs/{run_id:path}", act, methods=["POST"]),
            Route("/api/runs", api_runs),
            Route("/api/runs/{run_id:path}", api_run, methods=["GET", "HEAD"]),
            Route("/api/runs/{run_id:path}", act, methods=["POST"]),
            Route("/api/workers", api_workers),
            Route("/static/{name}", static_file),
        ],
        exception_handlers={404: missing, 405: wrong_method},
    )
    return _Guard(app, loopback_only)


def _redirect(run_id: str, key: str, action: str) -> str:
    """The run's page, saying what became of the button press (no free text in URLs)."""
    return f"{_html.run_path(run_id)}?{key}={action}"
