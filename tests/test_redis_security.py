"""Redis for production: TLS (`rediss://`, client certificates), ACL users, percent-encoded
passwords, clear authentication errors, and no credential in anything a run produces.

The servers are real: a redis-server with `--tls-port` and certificates made here with the
`openssl` command line, and one with a password and an ACL user.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from floxide import BackendError
from floxide.backends import open_backend
from floxide.distributed import Orchestrator
from tests.distributed_workflows import Ctx, fan_join
from tests.redis_server import RedisServer, free_port, redis_server_path
from tests.test_cli import cli
from tests.test_distributed import with_workers

PASSWORD = "p@ss/w?#%rd"
ENCODED = "p%40ss%2Fw%3F%23%25rd"
USER_PASSWORD = "u$er-s3cret"


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        pytest.fail("the openssl command is needed to make test certificates (.ci/run installs it)")
    subprocess.run([exe, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and, signed by it, a server and a client certificate (for 127.0.0.1)."""
    d = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=floxide-test-ca", "-keyout", "ca.key", "-out", "ca.crt", cwd=d,
    )  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.crt", cwd=d,
        )  # fmt: skip
    return d


def _server(tmp: Path, args: list[str]) -> Iterator[RedisServer]:
    exe = redis_server_path()
    if exe is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(exe, tmp, extra_args=args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_server(certs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A redis-server speaking TLS (client certificates required) and wanting a password;
    yields its TLS port."""
    port = free_port()
    args = [
        "--tls-port", str(port),
        "--tls-cert-file", str(certs / "server.crt"),
        "--tls-key-file", str(certs / "server.key"),
        "--tls-ca-cert-file", str(certs / "ca.crt"),
        "--tls-auth-clients", "yes",
        "--requirepass", PASSWORD,
    ]  # fmt: skip
    yield from (port for _ in _server(tmp_path_factory.mktemp("redis-tls"), args))


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with a default password and an ACL user `app` (all commands and keys)."""
    user = ["app", "on", f">{USER_PASSWORD}", "~*", "&*", "+@all"]
    args = ["--requirepass", PASSWORD, "--user", *user]
    yield from _server(tmp_path_factory.mktemp("redis-acl"), args)


def tls_url(port: int, certs: Path, *, client: bool = True, auth: str = f":{ENCODED}@") -> str:
    query = f"ssl_ca_certs={certs / 'ca.crt'}"
    if client:
        query += f"&ssl_certfile={certs / 'client.crt'}&ssl_keyfile={certs / 'client.key'}"
    return f"rediss://{auth}127.0.0.1:{port}/0?{query}"


async def _run_one(url: str) -> int:
    backend = open_backend(url)
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    result: list[int] = []

    async def body(_: object) -> None:
        run_id = await orch.start_run(Ctx(), 5)
        result.append(await orch.wait(run_id, timeout=30))

    await with_workers(wf, backend, body)
    return result[0]


async def test_rediss_runs_a_workflow_with_client_certificates(
    tls_server: int, certs: Path
) -> None:
    assert await _run_one(tls_url(tls_server, certs)) == sum(i * i for i in range(5))


async def test_rediss_without_a_client_certificate_is_refused(
    tls_server: int, certs: Path
) -> None:
    backend = open_backend(tls_url(tls_server, certs, client=False))
    with pytest.raises(BackendError, match="unreachable") as info:
        with trio.fail_after(10):
            await backend.list_runs()
    assert PASSWORD not in str(info.value) and ENCODED not in str(info.value)


async def test_rediss_checks_the_server_certificate(tls_server: int, certs: Path) -> None:
    url = f"rediss://:{ENCODED}@127.0.0.1:{tls_server}/0"  # the system CAs do not know ours
    with pytest.raises(BackendError, match="TLS: CERTIFICATE_VERIFY_FAILED"):
        with trio.fail_after(10):
            await open_backend(url).list_runs()
    insecure = tls_url(tls_server, certs) + "&ssl_cert_reqs=none"
    insecure = insecure.replace(f"ssl_ca_certs={certs / 'ca.crt'}&", "")
    assert isinstance(await open_backend(insecure).list_runs(), list)


def test_rediss_options_are_checked(certs: Path) -> None:
    base = "rediss://:pw@127.0.0.1:1/0"
    with pytest.raises(BackendError, match="ssl_cert_reqs='sometimes'"):
        open_backend(base + "?ssl_cert_reqs=sometimes")
    with pytest.raises(BackendError, match="no such file"):
        open_backend(base + "?ssl_ca_certs=/nonexistent/ca.crt")
    with pytest.raises(BackendError, match="need a rediss:// URL"):
        open_backend(f"redis://127.0.0.1:1/0?ssl_ca_certs={certs / 'ca.crt'}")
    with pytest.raises(BackendError, match="unknown option 'prefx'") as info:
        open_backend("redis://:secretpw@127.0.0.1:1/0?prefx=a")
    assert "secretpw" not in str(info.value)
    assert "***" in open_backend(base).url and "pw" not in open_backend(base).url


async def test_acl_user_and_percent_encoded_password(acl_server: RedisServer) -> None:
    port = acl_server.port
    assert await _run_one(f"redis://app:{USER_PASSWORD}@127.0.0.1:{port}/0") == 30
    assert await _run_one(f"redis://:{ENCODED}@127.0.0.1:{port}/0") == 30


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        ("", "needs a password"),
        (":wrong@", "refused the user or password"),
        ("app:wrong@", "refused the user or password"),
        ("nobody:x@", "refused the user or password"),
    ],
)
async def test_a_wrong_or_missing_password_is_one_clear_error(
    acl_server: RedisServer, auth: str, message: str
) -> None:
    url = f"redis://{auth}127.0.0.1:{acl_server.port}/0"
    with pytest.raises(BackendError) as info:
        with trio.fail_after(10):
            await Orchestrator(fan_join(), open_backend(url)).start_run(Ctx(), 3)
    text = str(info.value)
    assert message in text and f"127.0.0.1:{acl_server.port}/0" in text
    assert "wrong" not in text and "HELLO" not in text


async def test_no_credential_in_anything_a_run_produces(
    acl_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Logs at every level, errors, CLI output, repr and stored records of a run with a
    password: none holds the password, encoded or not."""
    caplog.set_level(logging.DEBUG)
    url = f"redis://app:{USER_PASSWORD}@127.0.0.1:{acl_server.port}/0?prefix=leak"
    backend = open_backend(url)
    wf = fan_join()
    orch = Orchestrator(wf, backend)
    seen: list[str] = [repr(backend), str(backend.url), repr(orch)]

    async def body(_: object) -> None:
        run_id = await orch.start_run(Ctx(), 4)
        await orch.wait(run_id, timeout=30)
        seen.append(repr(await orch.info(run_id)))
        seen.append(repr(await orch.metrics(run_id)))
        seen.append(repr(await orch.errors(run_id)))
        seen.append(repr(await orch.workers()))
        seen.append(repr(await orch.list_runs()))
        try:
            await orch.info("missing")
        except Exception as e:
            seen.append(str(e))

    await with_workers(wf, backend, body)
    bad = f"redis://app:{USER_PASSWORD}x@127.0.0.1:{acl_server.port}/0"
    try:
        await open_backend(bad).list_runs()
    except BackendError as e:
        seen.append(str(e))
    for args in (["list"], ["status", "missing"], ["errors", "missing"]):
        for where in (url, bad):
            command = ["runs", *args, "--backend", where]
            seen.extend(await trio.to_thread.run_sync(lambda c=command: cli(capsys, *c)[1:]))
    seen.extend(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    everything = "\n".join(seen)
    assert "127.0.0.1" in everything and "app:***@" in everything
    assert USER_PASSWORD not in everything
    assert "u%24er-s3cret" not in everything
