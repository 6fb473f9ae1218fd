"""Redis backend URLs: `redis[s]://[USER[:PASSWORD]@]HOST:PORT/DB?prefix=...&ttl=...` and
`redis[s]+cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]?prefix=...` (Redis Cluster:
any reachable node is a seed; no database number).

User and password are percent-decoded (so a password may hold `@ / ? # %`). `rediss://`
speaks TLS and takes `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (paths) and
`ssl_cert_reqs` (`required` by default, `optional`, `none`), as redis-py names them.
`shards=N` spreads a deployment's queues over N hash slots (runs are pinned to one by their
id): 1 by default on one server, 16 on a cluster; every client of a deployment must use
the same number. Every error names the URL with its password masked.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from floxide._errors import BackendError
from floxide.backends._registry import masked_url

__all__ = ["RedisTarget", "TlsOptions", "parse_redis_url"]

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_KNOWN = {"prefix", "ttl", "shards", *_TLS_OPTIONS}
CLUSTER_SHARDS = 16
"""Queue shards on a cluster unless the URL says `shards=N`."""
_MAX_SHARDS = 1024


@dataclass(frozen=True, repr=False)
class TlsOptions:
    """How a `rediss://` connection checks the server and shows itself."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    cert_reqs: str = "required"

    def context(self) -> ssl.SSLContext:
        """A client TLS context (the system's CAs unless `ca_certs` names others)."""
        ctx = ssl.create_default_context(cafile=self.ca_certs)
        if self.cert_reqs == "none":
            ctx.check_hostname = False
        ctx.verify_mode = _CERT_REQS[self.cert_reqs]
        if self.certfile is not None:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx


@dataclass(frozen=True, repr=False)
class RedisTarget:
    """What a Redis URL names; `url` is the URL to show (password masked, no query)."""

    url: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    prefix: str
    tls: TlsOptions | None
    nodes: tuple[tuple[str, int], ...] = ()
    """The seed nodes of a cluster (empty for one server)."""
    shards: int = 1

    def __repr__(self) -> str:
        return f"RedisTarget({self.url!r})"


def parse_redis_url(url: str) -> RedisTarget:
    """The target of a `redis[s]://` or `redis[s]+cluster://` URL; `BackendError` if it is
    malformed."""
    shown = masked_url(url.split("?", 1)[0])

    def bad(why: str) -> BackendError:
        return BackendError(f"backend URL {shown!r}: {why}")

    scheme = url.split("://", 1)[0].lower()
    cluster = scheme.endswith("+cluster")
    nodes: tuple[tuple[str, int], ...] = ()
    try:
        parts = urlsplit(url)
        if cluster:
            user, password, nodes = _cluster_netloc(parts.netloc)
            host, port = nodes[0]
        else:
            port = parts.port or 6379
            host = parts.hostname or "127.0.0.1"
            user = unquote(parts.username) if parts.username else None
            password = unquote(parts.password) if parts.password is not None else None
    except ValueError:
        if cluster:
            raise bad(
                "expected redis[s]+cluster://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT...]"
            ) from None
        raise bad("expected redis[s]://[USER[:PASSWORD]@]HOST:PORT/DB") from None
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise bad(f"the database must be a number, got {db_text!r}")
    if cluster and db_text != "0":
        raise bad("a Redis Cluster has one database: leave the path out")
    params = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(params) - _KNOWN)
    if unknown:
        raise bad(f"unknown option {unknown[0]!r} (known: {', '.join(sorted(_KNOWN))})")
    options = {k: v[-1] for k, v in params.items()}
    tls: TlsOptions | None = None
    if scheme.startswith("rediss"):
        tls = _tls(options, bad)
    elif any(k in options for k in _TLS_OPTIONS):
        raise bad("TLS options need a rediss:// URL")
    prefix = options.get("prefix") or "floxide"
    if "{" in prefix or "}" in prefix:
        raise bad(f"prefix={prefix!r}: '{{' and '}}' are kept for the keys' hash tags")
    shards_text = options.get("shards") or str(CLUSTER_SHARDS if cluster else 1)
    if not shards_text.isdigit() or not 1 <= int(shards_text) <= _MAX_SHARDS:
        raise bad(f"shards={shards_text!r}: a whole number from 1 to {_MAX_SHARDS}")
    return RedisTarget(
        url=shown,
        host=host,
        port=port,
        db=int(db_text),
        username=user,
        password=password,
        prefix=prefix,
        tls=tls,
        nodes=nodes,
        shards=int(shards_text),
    )


def _cluster_netloc(netloc: str) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    """User, password and seed nodes of a cluster URL's `USER:PASSWORD@H:P,H:P`."""
    userinfo, _, hosts = netloc.rpartition("@")
    user: str | None = None
    password: str | None = None
    if userinfo:
        name, sep, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if sep else None
    nodes = []
    for entry in hosts.split(","):
        split = urlsplit(f"//{entry.strip()}")
        if not split.hostname:
            raise ValueError(entry)
        nodes.append((split.hostname, split.port or 6379))
    return user, password, tuple(nodes)


def _tls(options: dict[str, str], make: Callable[[str], BackendError]) -> TlsOptions:
    reqs = options.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise make(f"ssl_cert_reqs={reqs!r}: use required, optional or none")
    paths: dict[str, str | None] = {}
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        value = options.get(name) or None
        if value is not None and not Path(value).is_file():
            raise make(f"{name}={value!r}: no such file")
        paths[name] = value
    if paths["ssl_keyfile"] is not None and paths["ssl_certfile"] is None:
        raise make("ssl_keyfile needs ssl_certfile")
    tls = TlsOptions(paths["ssl_ca_certs"], paths["ssl_certfile"], paths["ssl_keyfile"], reqs)
    try:
        tls.context()
    except (OSError, ssl.SSLError) as e:
        raise make(f"the TLS files cannot be used ({type(e).__name__}: {e})") from None
    return tls
