"""A throwaway PostgreSQL cluster for the suite: Debian's initdb and pg_ctl on a free loopback port.

PostgreSQL refuses to run as root, so when the tests run as root (as CI does) the cluster belongs to the
`postgres` user. Clients log in over TCP with a password (scram), as a real deployment would, so that the
tests also see that the password never shows.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from helpers import free_port

USER, PASSWORD = "mock", "s3cret-pw"


def binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found: apt-get install postgresql (.ci/run does)")
    return Path(found[-1]).parent


class Cluster:
    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        """PostgreSQL's defaults (fsync, synchronous commits); the tests' cluster skips the disk flushes."""
        self.bin = binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="returns-mock-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._databases = itertools.count(1)
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def start(self) -> Cluster:
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                      "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                        f"{'' if self.durable else '-c fsync=off '}-c max_connections=200", "start")
        self.sql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{USER}') THEN "
                 f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; END IF; END $$;")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run(str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                         "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement).stdout

    def new_database(self) -> str:
        """A fresh database owned by the test user; its URL, password included."""
        name = f"t{next(self._databases)}"
        self.sql(f"CREATE DATABASE {name} OWNER {USER}")
        return self.url(name)

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def round_trips(url: str, requests: dict[str, tuple[str, Any, list[tuple[str, str]], Any]],
                count: int = 100) -> dict[str, float]:
    """Round trips to the database per request, for each named request (method, path, headers, body of the
    n-th; a path may be a function of n too): counted at the wire, libpq tracing every protocol message of
    every pooled connection, each Query or Sync the client sends being one round trip (the journal's batches
    included, spread over requests).
    The app runs in this process on the database at `url`."""
    from mockserver.domain.config import Config
    from mockserver.store import postgres
    from mockserver.web import create_app, mock_of
    from mockserver.web.direct import call

    folder = Path(tempfile.mkdtemp(prefix="returns-mock-trace-"))
    configure = postgres._configure
    files: list[Any] = []

    def traced(conn: Any) -> None:  # the pool opens connections from several threads at once
        configure(conn)
        handle, _ = tempfile.mkstemp(suffix=".trace", dir=folder)
        files.append(handle)
        conn.pgconn.trace(handle)

    def sent() -> int:
        return sum(len(re.findall(r"\tF\t\d+\t(?:Query|Sync)\b", path.read_text())) for path in folder.iterdir())

    postgres._configure = traced
    found: dict[str, float] = {}
    app = create_app(Config(store=url))
    try:
        for name, (method, path, headers, body) in requests.items():
            for n in range(20):  # warm: the pool filled, the statements prepared
                call(app, method, path(n) if callable(path) else path, "", headers, body(n) if callable(body) else body)
            before = sent()
            for n in range(count):
                status, _, answer = call(app, method, path(1000 + n) if callable(path) else path, "", headers,
                                         body(1000 + n) if callable(body) else body)
                assert status < 300, answer[:300]
            time.sleep(0.2)  # the journal's last batch
            found[name] = (sent() - before) / count
    finally:
        postgres._configure = configure
        mock_of(app).close()
        mock_of(app).store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return found
