"""`returns-mock verify` passes on a conforming implementation and catches each kind of defect."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from helpers import Server, ThreadedServer, cli

from mockserver.domain.config import Config
from mockserver.providers.provider import Credentials
from mockserver.providers.threeplship.core import Returns3plship
from mockserver.store import MemoryStore
from mockserver.verify import Report, Target, TargetError, verify
from mockserver.web import create_app, mock_of

pytestmark = pytest.mark.system

USERS = {"verifier": "secret"}
KEY = "zl_test_verifier"
BASE = {"35up": "/35up/v1", "3plship": "/3plship/api/v1"}


def target(provider: str, url: str) -> Target:
    return Target(provider, url + BASE[provider], Credentials(api_key=KEY, username="verifier", password="secret"))


def mock(**config: Any) -> Any:
    providers = {"35up": {"users": USERS, **config.pop("up35", {})}, "3plship": {"keys": [KEY]}}
    return create_app(Config(providers=providers, **config), store=MemoryStore())


def run(provider: str, app: Any, **kwargs: Any) -> Report:
    with ThreadedServer(app) as server:
        return verify(target(provider, server.url), max_examples=kwargs.pop("max_examples", 8), seed=3, **kwargs)


def checks(report: Report) -> set[tuple[str, str]]:
    return {(v.suite, v.check) for v in report.violations}


class Rewrite:
    """Middleware that breaks a conforming app's answers: the deliberately wrong implementation."""

    def __init__(self, app: Any, change: Callable[[str, str, int, Any], tuple[int, Any]]) -> None:
        self.app = app
        self.change = change

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda _: None

        body = b"".join(self.app(environ, capture))
        code = int(captured["status"].split()[0])
        data = json.loads(body) if body else None
        new_code, new_data = self.change(environ["REQUEST_METHOD"], environ["PATH_INFO"], code, data)
        if isinstance(new_data, bytes):
            out, content_type = new_data, "text/html"
        else:
            out, content_type = json.dumps(new_data).encode(), "application/json"
        headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "content-type")]
        start_response(f"{new_code} X", [*headers, ("Content-Type", content_type),
                                         ("Content-Length", str(len(out)))])
        return [out]


@pytest.mark.parametrize("provider", ["35up", "3plship"])
def test_a_conforming_implementation_passes(provider: str) -> None:
    report = run(provider, mock(self_check=True))
    assert report.ok, report.summary()
    suites = {suite for suite, _ in report.cases}
    assert suites == {"contract", "scenario"}
    assert sum(n for (suite, _), n in report.cases.items() if suite == "scenario") >= 10


def test_wrong_field_types_are_caught() -> None:
    def stringly(method: str, path: str, code: int, data: Any) -> tuple[int, Any]:
        if isinstance(data, dict) and "items" in data:
            data["items"] = [{**item, "quantity": str(item["quantity"])} for item in data["items"]]
        return code, data

    report = run("35up", Rewrite(mock(), stringly))
    assert ("contract", "response_schema_conformance") in checks(report)
    assert ("scenario", "response_conformance") in checks(report)
    assert "items[0].quantity must be an integer" in report.summary()


def test_wrong_status_codes_are_caught() -> None:
    def created_is_ok(method: str, path: str, code: int, data: Any) -> tuple[int, Any]:
        return (200 if code == 201 else code), data

    report = run("3plship", Rewrite(mock(), created_is_ok))
    assert ("contract", "status_code_conformance") in checks(report)
    assert ("scenario", "response_conformance") in checks(report)


def test_a_server_error_is_caught() -> None:
    def crash_on_update(method: str, path: str, code: int, data: Any) -> tuple[int, Any]:
        if method == "PATCH":
            return 500, b"<html><body>Internal Server Error</body></html>"
        return code, data

    report = run("35up", Rewrite(mock(), crash_on_update))
    assert ("contract", "not_a_server_error") in checks(report)
    assert any(v.suite == "scenario" and "500" in v.message for v in report.violations)


def test_a_broken_35up_lifecycle_rule_is_caught() -> None:
    report = run("35up", mock(up35={"lifecycle": "permissive"}), max_examples=3)
    broken = [v for v in report.violations if v.suite == "scenario"]
    assert [v.case for v in broken] == ["up35_refuses_what_the_lifecycle_forbids"]
    assert "created cannot move straight to refunded: expected 409, got 200" in broken[0].message
    assert broken[0].reproducer.startswith("curl -X PATCH")


def test_a_broken_3plship_lifecycle_rule_is_caught() -> None:
    app = mock()
    backend = mock_of(app).backends["3plship"]
    assert isinstance(backend, Returns3plship)
    graph = backend.lifecycle._graph
    graph["initiated"].append("inspected")  # lets a return skip 'received'
    report = run("3plship", app, max_examples=3)
    broken = [v for v in report.violations if v.suite == "scenario"]
    assert [v.case for v in broken] == ["pl_status_flow_and_refund"]
    assert "initiated cannot skip to inspected" in broken[0].message


def test_refused_credentials_and_unreachable_targets_raise_target_error() -> None:
    with ThreadedServer(mock()) as server:
        wrong = Target("3plship", server.url + BASE["3plship"], Credentials(api_key="zl_test_other"))
        with pytest.raises(TargetError, match="refused the credentials"):
            verify(wrong)
    with pytest.raises(TargetError, match="cannot reach"):
        verify(Target("35up", "http://127.0.0.1:9/35up/v1", Credentials(username="a", password="b")))


def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("verify", *args, timeout=300)


def test_cli_against_the_real_server_writes_junit_and_exits_0(tmp_path: Path) -> None:
    server = Server("--store", "memory", "--3plship-key", KEY).start()
    try:
        junit = tmp_path / "verify.xml"
        result = verify_cli("--provider", "3plship", "--base-url", server.url + BASE["3plship"], "--api-key", KEY,
                            "--max-examples", "5", "--seed", "1", "--junit-xml", str(junit))
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout
    assert "No violations." in result.stdout
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert {s.get("name") for s in suites} == {"contract", "scenario"}
    assert all(s.get("failures") == "0" for s in suites)
    assert len(ET.parse(junit).getroot().findall(".//testcase")) >= 7


def test_cli_exits_1_with_reproducers_on_violations(tmp_path: Path) -> None:
    server = Server("--store", "memory", "--lifecycle", "permissive", "--35up-user", "verifier:secret").start()
    try:
        junit = tmp_path / "verify.xml"
        result = verify_cli("--provider", "35up", "--base-url", server.url + BASE["35up"], "--username", "verifier",
                            "--password", "secret", "--max-examples", "3", "--junit-xml", str(junit))
    finally:
        server.stop()
    assert result.returncode == 1
    assert "up35_refuses_what_the_lifecycle_forbids" in result.stdout and "curl -X PATCH" in result.stdout
    failures = ET.parse(junit).getroot().findall(".//failure")
    assert [f.get("type") for f in failures] == ["status_code"]


@pytest.mark.parametrize(("args", "message"), [
    (["--provider", "3plship", "--base-url", "http://127.0.0.1:9/x"], "needs --api-key"),
    (["--provider", "35up", "--base-url", "http://127.0.0.1:9/x", "--username", "u"], "needs --username and"),
    (["--provider", "3plship", "--base-url", "ftp://x", "--api-key", "k"], "http(s) URL"),
    (["--provider", "3plship", "--base-url", "http://127.0.0.1:9/x", "--api-key", "k"], "cannot reach"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = verify_cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
