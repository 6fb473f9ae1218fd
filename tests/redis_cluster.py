"""Start and stop a real 3-master Redis Cluster on free loopback ports for tests.

Three `redis-server --cluster-enabled yes` processes in a temporary directory, joined by
`redis-cli --cluster create ... --cluster-replicas 0`; ready once every node reports
`cluster_state:ok`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.redis_server import RedisServer, free_port


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free and valid too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def redis_cli_path() -> str | None:
    return shutil.which("redis-cli")


def _info(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"CLUSTER INFO\r\n")
        data = b""
        deadline = time.monotonic() + 2
        while b"cluster_state" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk or time.monotonic() > deadline:
                break
            data += chunk
        return data


class RedisCluster:
    """Three cluster-enabled redis-servers made one cluster (no replicas)."""

    def __init__(self, exe: str, cli: str, workdir: Path, masters: int = 3) -> None:
        self.cli = cli
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        args += ["--cluster-node-timeout", "5000"]
        self.nodes = [
            RedisServer(exe, workdir / f"node{n}", extra_args=args) for n in range(masters)
        ]
        for node in self.nodes:
            node.port = cluster_port()

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        for node in self.nodes:
            for _ in range(3):  # a free port may be taken by the time the server binds it
                try:
                    node.start()
                    break
                except RuntimeError:
                    node.port = cluster_port()
            else:
                raise RuntimeError("a cluster node did not start")
        create = [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        subprocess.run(
            create, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in _info(p) for p in self.ports):
                return
            time.sleep(0.1)
        raise RuntimeError("the Redis cluster did not reach cluster_state:ok within 30 s")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
