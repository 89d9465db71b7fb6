"""The README's examples are run, so they stay true."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, Server, cli

pytestmark = pytest.mark.system

README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_fixture_examples_pass(pytester: pytest.Pytester) -> None:
    (source,) = re.findall(r"```python\n(.*?)```", section("In your pytest suite: no server needed"), flags=re.S)
    pytester.makepyfile(test_readme_example=source)
    pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-strict").assert_outcomes(passed=3)


def test_the_python_example_runs() -> None:
    (source,) = re.findall(r"```python\n(.*?)```", section("The app in-process, with your own clock"), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()


@pytest.mark.parametrize("section", ["35up with curl", "3plship with curl"])
def test_the_curl_examples_work_against_the_server(section: str, tmp_path: Path) -> None:
    text = README.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        script = script.replace("http://127.0.0.1:8080", server.url)
        # Print each shown answer's HTTP status after its body, to check them in order.
        script = re.sub(r"^curl -s ", "curl -s -w ' %{http_code}\\n' ", script, flags=re.M)
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    codes = [line.rsplit(" ", 1)[-1] for line in result.stdout.strip().splitlines() if line.strip()]
    expected = {"35up with curl": ["201", "200", "422", "409"],
                "3plship with curl": ["201", "200", "200", "200", "200"]}[section]
    assert codes == expected, (shlex.quote(script), result.stdout)


def test_the_verify_example_against_the_mock_passes(tmp_path: Path) -> None:
    section = README.split("## Contract checks in CI", 1)[1].split("\n## ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock verify --provider 35up --base-url http://")]
    (serve,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock serve")]
    server = Server(*shlex.split(serve)[2:-1]).start()  # the README's flags, on a free port
    try:
        args = shlex.split(line.replace("http://127.0.0.1:8080", server.url))[1:]
        result = cli(*args, "--max-examples", "5", timeout=300)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout


def test_the_plain_schemathesis_examples_pass_with_every_check(tmp_path: Path) -> None:
    """schemathesis run --checks all against the server: 3plship with any zl_test_ key, 35up with the
    credentials the server was started with (the README's two commands, on a free port, fewer examples)."""
    section = README.split("## Contract checks in CI", 1)[1].split("\n## ", 1)[0]
    runs = [ln for ln in section.splitlines() if ln.startswith("schemathesis run ")]
    (serve,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock serve")]
    assert len(runs) == 2
    server = Server(*shlex.split(serve)[2:-1]).start()
    try:
        for line in runs:
            args = shlex.split(line.replace("http://127.0.0.1:8080", server.url))[2:]
            result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run", *args,
                                     "--max-examples", "5", "--seed", "1", "--no-color"],
                                    capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert result.returncode == 0, result.stdout[-3000:]
            cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
            assert cases is not None and cases.group(1) == cases.group(2), result.stdout[-3000:]
    finally:
        server.stop()


def test_the_control_plane_curl_examples_work(tmp_path: Path) -> None:
    (script,) = re.findall(r"```sh\n(.*?)```", section("Control plane (`/__admin`)"), flags=re.S)
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        script = re.sub(r"^curl -s ", "curl -s -w ' %{http_code}\\n' ", script.replace("http://127.0.0.1:8080",
                                                                                        server.url), flags=re.M)
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=60, cwd=ROOT)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["201", "200", "200", "200"]
    assert '"status":"expired"' in lines[2]


def test_the_signature_example_verifies_a_real_delivery_signature() -> None:
    (source,) = re.findall(r"```python\n(.*?)```", section("Realism: rate limits, faults, webhooks"), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    from mockserver.threeplship.webhooks import sign

    body = b'{"id": "evt_1", "type": "return.created"}'
    assert namespace["verify_3plship_signature"](body, sign(body, "whsec_abc"), "whsec_abc")
    assert not namespace["verify_3plship_signature"](body + b" ", sign(body, "whsec_abc"), "whsec_abc")
