"""Tools from npm, pointed at the served OpenAPI documents as their own documentation says: Redocly and
Spectral lint them clean (the providers' and the control plane's, /__admin/openapi.json); Dredd sends every
operation's example request and gets the documented answer (tests/dredd/hooks.js: a seeded mock, fault
rules for the documented 5xx and 429, a missing credential for 401). npm fetches each tool once per venv."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, Server, cli, readme_blocks, shell_commands

from mockserver.contract import contract

pytestmark = pytest.mark.system

DREDD_VERSION = "14.1.0"
REDOCLY_VERSION = "2.77.0"
SPECTRAL_VERSION = "6.16.3"
HOOKS = ROOT / "tests" / "dredd" / "hooks.js"


def npm_tool(package: str, version: str, binary: str) -> Path:
    """An npm package's command, installed once per venv (inside it: `make clean` removes it with the rest)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed (CI has it: Debian's nodejs)")
    home = Path(sys.prefix) / "npm-tools" / f"{package.replace('/', '_')}-{version}"
    command = home / "node_modules" / ".bin" / binary
    if not command.exists():
        subprocess.run([npm, "install", "--prefix", str(home), "--no-audit", "--no-fund", "--loglevel", "error",
                        f"{package}@{version}"], check=True, timeout=300, capture_output=True)
    return command


@pytest.fixture(scope="module")
def dredd() -> Path:
    return npm_tool("dredd", DREDD_VERSION, "dredd")


@pytest.mark.parametrize("provider", ["35up", "3plship", "admin"])
def test_redocly_finds_no_error_and_no_warning_in_the_served_documents(provider: str, tmp_path: Path) -> None:
    redocly = npm_tool("@redocly/cli", REDOCLY_VERSION, "redocly")
    document = tmp_path / f"{provider}.json"
    document.write_text(cli("openapi", provider).stdout)
    result = subprocess.run([str(redocly), "lint", str(document), "--format", "json"], capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"})
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["totals"] == {"errors": 0, "warnings": 0, "ignored": 0}, report


@pytest.mark.parametrize("provider", ["35up", "3plship", "admin"])
def test_spectral_finds_nothing_in_the_served_documents(provider: str, tmp_path: Path) -> None:
    """Spectral's OpenAPI ruleset, warnings and hints included (info-contact, operation tags, ...)."""
    spectral = npm_tool("@stoplight/spectral-cli", SPECTRAL_VERSION, "spectral")
    document, ruleset, report = tmp_path / f"{provider}.json", tmp_path / ".spectral.yaml", tmp_path / "report.json"
    document.write_text(cli("openapi", provider).stdout)
    ruleset.write_text('extends: ["spectral:oas"]\n')
    result = subprocess.run([str(spectral), "lint", str(document), "--ruleset", str(ruleset), "--format", "json",
                             "--output", str(report), "--fail-severity", "hint"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and json.loads(report.read_text()) == [], result.stdout + result.stderr


def test_the_readme_dredd_commands_send_every_example_and_get_the_documented_answers(dredd: Path) -> None:
    (block,) = [b for b in readme_blocks("Contract checks in CI") if "npx dredd" in b]
    serve, export, *runs = shell_commands(block)
    assert serve.startswith("returns-mock serve ") and serve.endswith(" &") and export.startswith("export ")
    server = Server(*shlex.split(serve)[2:-1]).start()  # the README's flags, on a free port
    try:
        env = {**os.environ, **dict(item.split("=", 1) for item in shlex.split(export)[1:])}
        for run in runs:
            command = run.replace("http://127.0.0.1:8080", server.url).replace("npx dredd", str(dredd))
            provider = re.match(r"RETURNS_MOCK_PROVIDER=(\S+) ", command)
            assert provider is not None, run
            env["RETURNS_MOCK_URL"] = server.url
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120,
                                    env=env, cwd=ROOT)
            check(provider.group(1), result)
    finally:
        server.stop()


def check(provider: str, result: subprocess.CompletedProcess[str]) -> None:
    c = contract(provider)
    out = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # Dredd colours its output
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
        assert {"401", "429", "500", "502", "503", "504"} <= statuses, (provider, method, path, statuses)
        assert any(s.startswith("2") for s in statuses), (provider, method, path, statuses)
