"""Serving the UI: hypercorn's trio worker on a socket bound before anything is served.

Binding first turns a port in use (or a host that is not this machine's) into one clear
error before any request is answered; the bound address (with the real port when
`--port 0` asked for any free one) is then printed on stdout. SIGINT and SIGTERM stop it
(exit code 0).
"""

from __future__ import annotations

import logging
import signal
from typing import TextIO

import trio
from hypercorn.config import Config
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from floxide._errors import CliError
from floxide._ui._app import is_loopback, make_app
from floxide._ui._data import Source

__all__ = ["serve"]


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    """SIGINT (Ctrl-C) or SIGTERM stops the server: a normal end, exit code 0."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def serve(source: Source, host: str, port: int, out: TextIO) -> None:
    """Serve `source` on host:port until SIGINT (Ctrl-C) or SIGTERM."""
    config = Config()
    bare = host.strip("[]")
    config.bind = [f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("floxide.ui")
    config.graceful_timeout = 1.0
    try:
        sockets = config.create_sockets()
    except OSError as e:
        why = e.strerror or str(e)
        raise CliError(f"cannot listen on {host}:{port}: {why}", 2) from e
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
    app = make_app(source, loopback_only=is_loopback(host))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        binds = await nursery.start(
            lambda task_status: worker_serve(
                wrap_app(app, config.wsgi_max_body_size, "asgi"),  # type: ignore[arg-type]
                config,
                sockets=sockets,
                task_status=task_status,
            )
        )
        for bind in binds:
            print(f"floxide ui: {source.url} at {bind}/ (Ctrl-C stops)", file=out, flush=True)
