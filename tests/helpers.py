"""What the test files share: auth headers, fixtures on disk, the CLI in a subprocess, a real server."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from mockserver.live import ThreadedServer

__all__ = [
    "FIXTURES",
    "PL",
    "ROOT",
    "START",
    "UP35",
    "WORKER",
    "Server",
    "ThreadedServer",
    "basic",
    "bearer",
    "cli",
    "doc_blocks",
    "doc_files",
    "doc_section",
    "fixture",
    "free_port",
    "mock_or_proxy",
    "readme_blocks",
    "shell_commands",
]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

# A Monday, so business-day arithmetic in tests is easy to read.
START = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)

WORKER = "X-Returns-Mock-Worker"
"""The response header naming the worker process (pid) that answered, on a server with several workers."""

UP35 = "/35up/v1"
PL = "/3plship/api/v1"


def doc_files() -> list[Path]:
    """The documentation a user reads: README.md and every page of the site (docs/)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def doc_section(title: str) -> str:
    """The text under the one heading named TITLE in README.md or docs/ (any level), up to the next heading
    of the same level or above; headings inside fenced blocks are not headings."""
    found: list[str] = []
    for path in doc_files():
        lines, fenced, level, taken = path.read_text().splitlines(keepends=True), False, 0, list[str]()
        for line in lines:
            if line.startswith("```"):
                fenced = not fenced
            heading = None if fenced else re.match(r"(#{1,6}) (.*)", line)
            if heading and level and len(heading.group(1)) <= level:
                found.append("".join(taken))
                level, taken = 0, []
            if level:
                taken.append(line)
            if heading and heading.group(2).strip() == title:
                level = len(heading.group(1))
        if level:
            found.append("".join(taken))
    assert len(found) == 1, f"{len(found)} headings named {title!r} in README.md and docs/"
    return found[0]


def doc_blocks(section: str, language: str = "sh") -> list[str]:
    """The fenced blocks of one section of README.md or docs/ (see doc_section)."""
    return re.findall(rf"```{language}\n(.*?)```", doc_section(section), flags=re.S)


readme_blocks = doc_blocks  # its name from before docs/ existed


def shell_commands(block: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def basic(username: str = "shop-a", password: str = "secret") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def bearer(key: str = "zl_test_keyA") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`returns-mock ARGS` in a subprocess, as a user would run it; its output captured as text."""
    return subprocess.run([sys.executable, "-m", "mockserver.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`returns-mock serve` (or another serving command: `proxy`) in a subprocess on a loopback port."""

    def __init__(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                 command: str = "serve") -> None:
        self.command = command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--port", str(self.port), *args]
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = ""
        """What the server printed (its banner, logs), once stopped."""

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mockserver.cli", self.command, *self.args], cwd=self.cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {out}")
            try:
                requests.get(self.url + "/", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # workers a kill -9 left behind
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.stdout is not None:
                self.output = self.proc.stdout.read().decode("utf-8", "replace")
        self.proc = None



@contextlib.contextmanager
def mock_or_proxy(kind: str, *args: str) -> Iterator[Server]:
    """`kind` "serve": `returns-mock serve ARGS`; "proxy" (or "proxy --shadow"): a proxy in front of one, both
    providers forwarded. Stopped on leaving."""
    mock = Server(*args).start()
    front = mock
    try:
        if kind != "serve":
            front = Server("--3plship-upstream", mock.url + PL, "--35up-upstream", mock.url + UP35,
                           *kind.split()[1:], command="proxy").start()
        yield front
    finally:
        if front is not mock:
            front.stop()
        mock.stop()
