"""The README's Pact provider verification, run as written against a real server: pacts written by a
pact-python consumer test hold against the mock, with provider states seeded through the control plane;
a pact the mock does not honour fails the verification."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import Server, doc_blocks

pytestmark = pytest.mark.system

pact = pytest.importorskip("pact")

KEY = "zl_test_portal"


def consumer_pact(folder: Path, refund_status: str) -> None:
    """What a returns portal's consumer test records: a refund of an inspected return, and a list."""
    from pact import Pact, match

    contract = Pact("returns-portal", "3plship-returns").with_specification("V4")
    (contract.upon_receiving("a refund of an inspected return")
        .given("an inspected return", id="ret_portal1", account=KEY)
        .with_request("POST", "/returns/ret_portal1/refund")
        .with_header("Authorization", f"Bearer {KEY}")
        .with_body({"amount": 10.0}, content_type="application/json")
        .will_respond_with(200)
        .with_body({"success": True, "data": {"id": "ret_portal1", "refund_status": refund_status,
                                              "refund_amount": match.number(20)}},
                   content_type="application/json"))
    (contract.upon_receiving("the returns of an order")
        .given("an inspected return", id="ret_portal1", account=KEY)
        .with_request("GET", "/returns")
        .with_query_parameter("order_id", "ord_2")
        .with_header("Authorization", f"Bearer {KEY}")
        .will_respond_with(200)
        .with_body({"success": True, "data": match.each_like({"id": match.str("ret_portal1"),
                                                              "status": "inspected"})},
                   content_type="application/json"))
    with contract.serve() as portal:  # the consumer's side: its client against Pact's own mock
        refund = requests.post(f"{portal.url}/returns/ret_portal1/refund", json={"amount": 10.0},
                               headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert refund.json()["data"]["refund_status"] == refund_status
        listed = requests.get(f"{portal.url}/returns", params={"order_id": "ord_2"},
                              headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
        assert listed.json()["data"][0]["status"] == "inspected"
    contract.write_file(folder / "pacts")


def readme_verification(url: str) -> Any:
    (source,) = doc_blocks("Consumer-driven contracts: verify your pacts against the mock", "python")
    namespace: dict[str, Any] = {}
    exec(compile(source.replace("http://127.0.0.1:8080", url), "ci-contract-checks.md", "exec"), namespace)
    return namespace["test_the_consumer_pacts_hold_against_the_mock"]


@pytest.fixture
def server() -> Any:
    server = Server("--store", "memory", "--self-check").start()
    yield server
    server.stop()


def test_the_readme_verification_passes_for_pacts_the_mock_honours(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACT_DO_NOT_TRACK", "true")  # no usage report leaves the machine
    consumer_pact(tmp_path, "processing")
    monkeypatch.chdir(tmp_path)
    readme_verification(server.url)()
    # the interactions really reached the mock, each after its state was seeded
    journal = requests.get(f"{server.url}/__admin/journal?provider=3plship", timeout=10).json()["entries"]
    assert {(e["method"], e["path"], e["status"]) for e in journal} >= {
        ("POST", "/3plship/api/v1/returns/ret_portal1/refund", 200), ("GET", "/3plship/api/v1/returns", 200)}


def test_the_readme_verification_fails_for_a_pact_the_mock_does_not_honour(
        server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PACT_DO_NOT_TRACK", "true")
    consumer_pact(tmp_path, "completed")  # the portal assumes a refund completes at once: it takes days
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="Failed to execute verifier"):
        readme_verification(server.url)()
    report = capfd.readouterr().out  # the verifier (Rust, through its FFI) writes to the process's stdout
    assert "$.data.refund_status" in report and "completed" in report and "processing" in report, report
