"""Dredd, pointed at the served OpenAPI documents as its own documentation says, sends every operation's
example request and gets the documented answer (tests/dredd/hooks.js: a seeded mock, fault rules for the
documented 5xx and 429, a missing credential for 401). npm fetches Dredd once per venv."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT, Server

from mockserver.contracts import contract

pytestmark = pytest.mark.system

DREDD_VERSION = "14.1.0"
HOOKS = ROOT / "tests" / "dredd" / "hooks.js"


@pytest.fixture(scope="module")
def dredd() -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (CI has it: Debian's nodejs)")
    home = Path(sys.prefix) / "dredd"  # inside the venv: `make clean` removes it with the rest
    binary = home / "node_modules" / ".bin" / "dredd"
    if not binary.exists():
        subprocess.run([npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", "--loglevel", "error",
                        f"dredd@{DREDD_VERSION}"], check=True, timeout=300, capture_output=True)
    return binary


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    # --self-check: every answer is validated against the whole contract, which Dredd cannot read
    server = Server("--store", "memory", "--self-check").start()
    yield server
    server.stop()


@pytest.mark.parametrize(("provider", "auth"), [("3plship", ["--header", "Authorization: Bearer zl_test_demo"]),
                                                ("35up", ["--user", "shop-a:secret"])])
def test_dredd_sends_every_example_and_gets_the_documented_answers(
        dredd: Path, server: Server, provider: str, auth: list[str]) -> None:
    c = contract(provider)
    env = {**os.environ, "RETURNS_MOCK_URL": server.url, "RETURNS_MOCK_PROVIDER": provider,
           "RETURNS_MOCK_SCENARIO": str(FIXTURES / "scenarios" / "example.json")}
    result = subprocess.run(
        [str(dredd), f"{server.url}/{provider}/openapi.json", server.url + c.mock_prefix, *auth,
         "--hookfiles", str(HOOKS), "--color", "false"],
        capture_output=True, text=True, timeout=120, env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-5000:]
    assert "no example" not in out, out[-5000:]
    summary = re.search(r"complete: (\d+) passing, (\d+) failing, (\d+) errors", out)
    assert summary is not None and summary.group(2, 3) == ("0", "0"), out[-5000:]
    passed = {(m, s, re.sub(r"\?.*", "", p)) for m, s, p in re.findall(r"^pass: (\w+) \((\d+)\) (\S+)", out, re.M)}
    operations = [(m, path) for path, item in c.openapi["paths"].items() for m in item if m != "parameters"]
    for method, path in operations:
        pattern = re.sub(r"\\\{[^/]+\\\}", "[^/]+", re.escape(path)) + "$"
        statuses = {s for m, s, p in passed if m == method.upper() and re.match(pattern, p)}
        # the success answer, what a fault answers, and a missing credential: each one sent and matched
        assert {"401", "429", "500", "502", "503", "504"} <= statuses, (method, path, statuses)
        assert any(s.startswith("2") for s in statuses), (method, path, statuses)
