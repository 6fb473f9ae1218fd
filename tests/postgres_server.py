"""Start and stop a real PostgreSQL server (Debian's `postgresql` package) for tests.

`initdb` runs into a temporary directory owned by the `postgres` user (the server refuses
to run as root), `pg_ctl start` listens on a free loopback port with its socket in that
directory, and `stop` shuts it down again (fast mode). The cluster trusts loopback
connections; `create_role` adds a password-protected role for credential tests.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.redis_server import free_port


def postgres_bin_dir() -> Path | None:
    """The newest `/usr/lib/postgresql/N/bin` with `initdb`, or None; fails the test
    session when PostgreSQL is required (FLOXIDE_REQUIRE_POSTGRES=1)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    if os.environ.get("FLOXIDE_REQUIRE_POSTGRES") == "1":
        pytest.fail("PostgreSQL is not installed but FLOXIDE_REQUIRE_POSTGRES=1")
    return None


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory, restartable on the same port."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="floxide-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "--auth-local=trust",
                "--auth-host=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        with (self.data / "pg_hba.conf").open("a") as f:  # the test role needs its password
            f.write("host all floxide_pw 127.0.0.1/32 scram-sha-256\n")
        hba = (self.data / "pg_hba.conf").read_text().splitlines()
        moved = [line for line in hba if "floxide_pw" in line]
        rest = [line for line in hba if "floxide_pw" not in line]
        (self.data / "pg_hba.conf").write_text("\n".join(moved + rest) + "\n")

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(_as_postgres(args), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    @property
    def url(self) -> str:
        """URL of the server's `postgres` database as the cluster's superuser."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
            " -c fsync=on -c max_connections=200"
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                opts,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        self.stop("immediate")
        self.start()

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser (autocommit)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
