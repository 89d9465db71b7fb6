"""proxy --shadow: every exchange applied to a mock mirroring the upstream, and each difference named.

No real provider is reachable here: the upstreams are another `returns-mock serve` with other options, and
a fake provider that drifts from the mock in ways the providers' pages leave open."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from helpers import Server, basic, bearer, cli
from werkzeug.serving import make_server

from mockserver.contract import masking
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app

KEY = bearer("zl_test_shadow")
RETURN = {"order_id": "ord_shadow", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 49.99, "customer_email": "ana@example.com",
          "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"}}


def shadow_proxy(upstream: str, *extra: str) -> Server:
    return Server("--3plship-upstream", f"{upstream}/3plship/api/v1", "--35up-upstream", f"{upstream}/35up/v1",
                  "--shadow", *extra, command="proxy").start()


@pytest.fixture
def upstream(request: pytest.FixtureRequest) -> Iterator[Server]:
    server = Server("--store", "memory", *getattr(request, "param", ())).start()
    yield server
    server.stop()


def full_flow(base: str, order: str = "ord_shadow", order_35up: str = "1001") -> list[int]:
    """Both providers' whole flows: create, list, moves, refund, webhook subscription, an unknown id."""
    pl, up = f"{base}/3plship/api/v1", f"{base}/35up/v1"
    statuses = []
    created = requests.post(f"{pl}/returns", headers=KEY, json={**RETURN, "order_id": order}, timeout=10)
    statuses.append(created.status_code)
    return_id = created.json()["data"]["id"]
    statuses.append(requests.get(f"{pl}/returns?order_id={order}", headers=KEY, timeout=10).status_code)
    for status in ("received", "inspected"):
        statuses.append(requests.patch(f"{pl}/returns/{return_id}/status", headers=KEY, json={"status": status},
                                       timeout=10).status_code)
    statuses.append(requests.post(f"{pl}/returns/{return_id}/refund", headers=KEY, json={"amount": 20},
                                  timeout=10).status_code)
    statuses.append(requests.post(f"{pl}/returns/{return_id}/refund", headers=KEY, json={"amount": 20},
                                  timeout=10).status_code)  # a second refund: refused alike
    statuses.append(requests.post(f"{pl}/webhooks", headers=KEY, timeout=10,
                                  json={"url": "http://127.0.0.1:9/hook", "events": ["return.created"]}).status_code)
    statuses.append(requests.patch(f"{pl}/returns/ret_unknown/status", headers=KEY, json={"status": "received"},
                                   timeout=10).status_code)
    auth = basic()
    statuses.append(requests.post(f"{up}/returns", headers=auth, timeout=10, json={
        "orderId": order_35up, "items": [{"itemId": "i1", "sku": "shop/sku-1", "quantity": 1}]}).status_code)
    for status in ("awaiting_return", "customer_shipped", "seller_received"):
        statuses.append(requests.patch(f"{up}/returns/{order_35up}", headers=auth, json={"status": status},
                                       timeout=10).status_code)
    statuses.append(requests.patch(f"{up}/returns/{order_35up}", headers=auth, json={"status": "created"},
                                   timeout=10).status_code)  # backwards: refused alike
    return statuses


def summary(exchanges: int, diverged: int = 0, consequences: int = 0, uncompared: int = 0) -> dict[str, int]:
    return {"exchanges": exchanges, "diverged": diverged, "root_causes": diverged - consequences,
            "consequences": consequences, "uncompared": uncompared}


def drift(proxy: Server) -> dict[str, Any]:
    answer: dict[str, Any] = requests.get(f"{proxy.url}/__admin/drift", timeout=10).json()
    return answer


def differences(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(method, path with 3plship ids as {id}, pointer, kind) of every difference reported."""
    return [(e["method"], re.sub(r"/returns/ret_\w+", "/returns/{id}", e["path"]), d["pointer"], d["kind"])
            for e in report["entries"] for d in e["differences"]]


def test_an_upstream_identical_to_the_mock_gives_no_drift_over_both_providers_flows(upstream: Server) -> None:
    proxy = shadow_proxy(upstream.url)
    try:
        statuses = full_flow(proxy.url)
        assert statuses == [201, 200, 200, 200, 200, 409, 201, 404, 201, 200, 200, 200, 409]
        assert drift(proxy) == {"entries": [], "summary": summary(13)}
        # 1,000 more requests: creates, reads, moves, refunds of many returns and accounts.
        session = requests.Session()
        pl = f"{proxy.url}/3plship/api/v1"
        sent = 0
        for n in range(200):
            key = bearer(f"zl_test_load{n % 7}")
            created = session.post(f"{pl}/returns", headers=key, json={**RETURN, "order_id": f"ord_{n}"}, timeout=10)
            return_id = created.json()["data"]["id"]
            session.get(f"{pl}/returns?order_id=ord_{n}&limit=5", headers=key, timeout=10)
            session.get(f"{pl}/returns?page=2&limit=10", headers=key, timeout=10)
            session.patch(f"{pl}/returns/{return_id}/status", headers=key, json={"status": "received"}, timeout=10)
            session.post(f"{pl}/returns/{return_id}/refund", headers=key, json={"amount": 1}, timeout=10)  # 409
            sent += 5
        report = drift(proxy)
        assert report["summary"] == summary(13 + sent), report["entries"][:3]
        assert sent == 1000
    finally:
        proxy.stop()


def test_concurrent_clients_of_one_account_are_shadowed_in_the_upstreams_order(upstream: Server) -> None:
    """Each exchange runs on a thread of the proxy's own; one account's go one at a time, in their order of
    arrival, each applied to the mirror before the next reaches the upstream: 16 clients of two accounts
    creating and counting their returns at once see no drift (a count read out of order would differ)."""
    proxy = shadow_proxy(upstream.url)
    pl = f"{proxy.url}/3plship/api/v1"

    def client(n: int) -> None:
        key = bearer(f"zl_test_turns{n % 2}")
        with requests.Session() as session:
            for i in range(12):
                session.post(f"{pl}/returns", headers=key, json={**RETURN, "order_id": f"ord_t{n}_{i}"}, timeout=30)
                session.get(f"{pl}/returns?limit=100", headers=key, timeout=30)

    try:
        clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(timeout=120)
        report = drift(proxy)
        assert report["summary"] == summary(16 * 12 * 2), report["entries"][:3]
    finally:
        proxy.stop()


@pytest.mark.parametrize(("upstream", "expected"), [
    (("--lifecycle", "permissive"), [("PATCH", "/35up/v1/returns/1001", "", "mock_refuses")]),
    (("--refund-business-days", "7"), [("POST", "/3plship/api/v1/returns/{id}/refund", "/data/refund/expected_at",
                                        "value")]),
], indirect=["upstream"], ids=["35up lifecycle permissive", "3plship refunds in 7 business days"])
def test_an_upstream_with_other_rules_is_named_where_it_differs(upstream: Server,
                                                                expected: list[tuple[str, str, str, str]]) -> None:
    proxy = shadow_proxy(upstream.url)
    try:
        full_flow(proxy.url) if expected[0][1].startswith("/3plship") else _35up_skip(proxy.url)
        assert differences(drift(proxy)) == expected
    finally:
        proxy.stop()


def _35up_skip(base: str) -> None:
    """A 35up return moved past a step: only the permissive lifecycle allows it."""
    auth = basic()
    requests.post(f"{base}/35up/v1/returns", headers=auth, timeout=10,
                  json={"orderId": "1001", "items": [{"itemId": "i1", "sku": "shop/sku-1", "quantity": 1}]})
    requests.patch(f"{base}/35up/v1/returns/1001", headers=auth, json={"status": "customer_shipped"}, timeout=10)


@pytest.mark.parametrize("upstream", [("--rate-limit", "5/minute")], indirect=True)
def test_a_rate_limited_upstream_is_a_refusal_the_mock_does_not_make(upstream: Server) -> None:
    proxy = shadow_proxy(upstream.url)
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        statuses = [requests.post(f"{pl}/returns", headers=KEY, json={**RETURN, "order_id": f"o{n}"},
                                  timeout=10).status_code for n in range(7)]
        assert statuses == [201] * 5 + [429] * 2
        report = drift(proxy)
        assert report["summary"] == summary(7, 2)
        assert differences(report) == [("POST", "/3plship/api/v1/returns", "", "mock_accepts")] * 2
        assert all((e["upstream_status"], e["mock_status"]) == (429, 201) for e in report["entries"])
        assert report["entries"][0]["account"] == "zl_test_***adow"  # the key itself is never shown
    finally:
        proxy.stop()


@pytest.mark.parametrize("upstream", [("--3plship-key", "zl_test_only")], indirect=True)
def test_an_upstream_that_knows_one_key_refuses_what_the_mock_accepts(upstream: Server) -> None:
    proxy = shadow_proxy(upstream.url)
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        known = bearer("zl_test_only")
        assert requests.post(f"{pl}/returns", headers=known, json=RETURN, timeout=10).status_code == 201
        assert requests.post(f"{pl}/returns", headers=KEY, json=RETURN, timeout=10).status_code == 401
        assert differences(drift(proxy)) == [("POST", "/3plship/api/v1/returns", "", "mock_accepts")]
    finally:
        proxy.stop()


# --- a provider that drifts from the mock ------------------------------------------------------


def drifting(app: Callable[..., Any]) -> Callable[..., Any]:
    """The mock's own app, changed where the providers' public pages leave room: a 3plship return with an
    extra field (`warehouse`) and without one (`refund_shipping`), `requestId` in the success meta instead
    of `request_id`, and another error code for an unknown return."""

    def changed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return None

        body = b"".join(app(environ, capture))
        if environ["PATH_INFO"].startswith("/3plship/") and body[:1] == b"{":
            document = orjson.loads(body)
            data = document.get("data")
            if isinstance(data, dict) and "refund_shipping" in data:
                data["warehouse"] = "WH-1"
                del data["refund_shipping"]
            meta = document.get("meta", {})
            if document.get("success") and "request_id" in meta:
                meta["requestId"] = meta.pop("request_id")
            if document.get("error", {}).get("code") == "NOT_FOUND":
                document["error"]["code"] = "RETURN_NOT_FOUND"
            body = orjson.dumps(document)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return changed


@pytest.fixture
def fake_provider() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, drifting(create_app(Config(), store=MemoryStore())), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_provider_that_drifts_is_named_field_by_field_and_nothing_else(fake_provider: str, tmp_path: Path) -> None:
    har = tmp_path / "shadow.har"
    proxy = shadow_proxy(fake_provider, "--record", str(har))
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        created = requests.post(f"{pl}/returns", headers=KEY, json=RETURN, timeout=10)
        assert created.json()["data"]["warehouse"] == "WH-1"  # the client gets the upstream's answer, unchanged
        requests.patch(f"{pl}/returns/ret_unknown/status", headers=KEY, json={"status": "received"}, timeout=10)
        report = drift(proxy)
        assert sorted(differences(report)) == sorted([
            ("POST", "/3plship/api/v1/returns", "/data/warehouse", "missing"),
            ("POST", "/3plship/api/v1/returns", "/data/refund_shipping", "extra"),
            ("POST", "/3plship/api/v1/returns", "/meta/requestId", "missing"),
            ("POST", "/3plship/api/v1/returns", "/meta/request_id", "extra"),
            ("PATCH", "/3plship/api/v1/returns/{id}/status", "/error/code", "error_code"),
        ])
        code = next(d for e in report["entries"] for d in e["differences"] if d["kind"] == "error_code")
        assert (code["upstream"], code["mock"]) == ("RETURN_NOT_FOUND", "NOT_FOUND")
        assert report["summary"] == summary(2, 2)
        # The recording carries each entry's drift.
        entries = json.loads(har.read_text())["log"]["entries"]
        assert [len(e["_drift"]) for e in entries] == [4, 1]
        missing = {"pointer": "/data/warehouse", "upstream": "WH-1", "kind": "missing",  # no "mock": absent there
                   "schema": "3plship/return.json#"}
        assert missing in entries[0]["_drift"]
        assert requests.delete(f"{proxy.url}/__admin/drift", timeout=10).status_code == 204
        assert drift(proxy) == {"entries": [], "summary": summary(0)}
    finally:
        proxy.stop()


def test_drift_ignore_leaves_a_pointer_out(fake_provider: str) -> None:
    proxy = shadow_proxy(fake_provider, "--drift-ignore", "/data/warehouse", "--drift-ignore", "/meta/*")
    try:
        requests.post(f"{proxy.url}/3plship/api/v1/returns", headers=KEY, json=RETURN, timeout=10)
        assert differences(drift(proxy)) == [("POST", "/3plship/api/v1/returns", "/data/refund_shipping", "extra")]
    finally:
        proxy.stop()


def test_without_shadow_there_is_no_drift_to_show(upstream: Server) -> None:
    proxy = Server("--3plship-upstream", f"{upstream.url}/3plship/api/v1", command="proxy").start()
    try:
        answer = requests.get(f"{proxy.url}/__admin/drift", timeout=10)
        assert answer.status_code == 409
        assert "--shadow" in answer.json()["error"]["message"]
    finally:
        proxy.stop()


@pytest.mark.parametrize(("upstream", "drifted"), [((), False), (("--refund-business-days", "7"), True)],
                         indirect=["upstream"], ids=["identical upstream", "refunds in 7 business days"])
def test_a_recording_replays_offline_with_the_same_report(upstream: Server, drifted: bool, tmp_path: Path) -> None:
    har = tmp_path / "recorded.har"
    proxy = Server("--3plship-upstream", f"{upstream.url}/3plship/api/v1", "--35up-upstream", f"{upstream.url}/35up/v1",
                   "--record", str(har), command="proxy").start()
    try:
        full_flow(proxy.url)
    finally:
        proxy.stop()
    run = cli("drift", str(har))
    assert run.returncode == (1 if drifted else 0), run.stdout + run.stderr
    assert run.stdout.startswith(f"{har}: 13 exchange(s) replayed, {1 if drifted else 0} with drift ")
    if drifted:
        assert "value at /data/refund/expected_at: recorded '" in run.stdout
        report = json.loads(cli("drift", str(har), "--format", "json").stdout)
        assert differences(report) == [("POST", "/3plship/api/v1/returns/{id}/refund", "/data/refund/expected_at",
                                        "value")]


def test_an_unusable_recording_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.har").write_text('{"log": {"entries": [{"request": {}}]}}')
    run = cli("drift", str(tmp_path / "x.har"))
    assert run.returncode == 2
    assert run.stderr.strip() == "returns-mock: error: log.entries[0] needs a request and a response object"


@pytest.mark.parametrize(("upstream", "drifted"), [((), False), (("--refund-business-days", "7"), True)],
                         indirect=["upstream"], ids=["identical target", "refunds in 7 business days"])
def test_verify_compare_mock_reports_each_difference_of_the_scenarios(upstream: Server, drifted: bool) -> None:
    run = cli("verify", "--provider", "3plship", "--base-url", f"{upstream.url}/3plship/api/v1",
              "--api-key", "zl_test_compare", "--max-examples", "1", "--compare-mock", timeout=300)
    assert run.returncode == (1 if drifted else 0), run.stdout + run.stderr
    compared = re.search(r"^  compared with a local mock: (\d+) exchange\(s\), (\d+) with differences", run.stdout,
                         re.M)
    assert compared is not None, run.stdout  # said whether or not anything differs
    assert int(compared.group(1)) > 10 and int(compared.group(2)) == (1 if drifted else 0)
    if drifted:
        assert "1 violation:" in run.stdout
        assert "[compare-mock] pl_status_flow_and_refund — value: /data/refund/expected_at in POST /returns/ret_" \
               in run.stdout
        assert "/refund: target '" in run.stdout
        ignored = cli("verify", "--provider", "3plship", "--base-url", f"{upstream.url}/3plship/api/v1",
                      "--api-key", "zl_test_compare", "--max-examples", "1", "--compare-mock",
                      "--drift-ignore", "/data/refund/expected_at", timeout=300)
        assert ignored.returncode == 0, ignored.stdout
        assert re.search(r"^  compared with a local mock: \d+ exchange\(s\), 0 with differences", ignored.stdout, re.M)
    else:
        assert "No violations." in run.stdout


def test_a_difference_in_a_credential_shows_masked() -> None:
    from mockserver.contract.drift import Answered, compare

    found = compare(Answered(200, [], {"data": {"api_key": "zl_live_upstreamsecret1", "settings": {"token": "t-up"},
                                                "n": 1}}),
                    Answered(200, [], {"data": {"api_key": "zl_live_mocksecret22", "settings": {"token": "t-mock"},
                                                "n": 2}}), None)
    shown = {d.pointer: (d.upstream, d.mock) for d in found}
    assert shown == {"/data/api_key": ("zl_live_REDACTED", "zl_live_REDACTED"),
                     "/data/settings/token": ("[REDACTED]", "[REDACTED]"), "/data/n": (1, 2)}


@pytest.mark.parametrize(("args", "message"), [
    (("--drift-ignore", "data/x", "--shadow"), "argument --drift-ignore: expected a JSON pointer such as "
                                               "/data/carrier, got 'data/x'"),
    (("--drift-ignore", "/data/x"), "--drift-ignore: only with --shadow"),
])
def test_a_bad_shadow_flag_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    run = cli("proxy", "--3plship-upstream", "http://127.0.0.1:9/api/v1", *args)
    assert run.returncode == 2
    assert run.stderr.strip() == f"returns-mock: error: {message}"


def test_the_mirror_sends_no_webhooks_of_its_own(upstream: Server) -> None:
    """A subscription made through the shadow proxy is the provider's: its receiver gets each event once,
    from the provider, never a second copy from the mock inside the proxy."""
    from test_webhooks import Receiver

    proxy = shadow_proxy(upstream.url)
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        with Receiver() as receiver:
            assert requests.post(f"{pl}/webhooks", headers=KEY, timeout=10,
                                 json={"url": receiver.url, "events": ["return.created"]}).status_code == 201
            requests.post(f"{pl}/returns", headers=KEY, json=RETURN, timeout=10)
            receiver.wait_for(1)
            time.sleep(1.5)  # the mirror's deliverer polls every 0.1 s: a second copy would be here by now
            assert len(receiver.received) == 1
        assert drift(proxy)["summary"] == summary(2)
    finally:
        proxy.stop()


# --- offline: whatever the upstream's host, each account its own, refused credentials refused -----------


@pytest.fixture
def fake_real_provider() -> Iterator[Any]:
    """The independent fake provider (tests/independent): 3plship under /api/v1 and 35up under /v1, as the
    real hosts have them, on a loopback port: a sandbox, for the recording."""
    import sys

    from helpers import ROOT

    sys.path.insert(0, str(ROOT / "tests" / "independent" / "fake_provider"))
    import fake_provider

    server = fake_provider.serve_in_thread(fake_provider.make_app())
    yield server
    server.stop()


def test_a_recording_made_in_front_of_a_sandbox_replays_by_the_provider_it_names(fake_real_provider: Any,
                                                                                  tmp_path: Path) -> None:
    har = tmp_path / "sandbox.har"
    proxy = Server("--3plship-upstream", fake_real_provider.base_3plship, "--35up-upstream",
                   fake_real_provider.base_35up, "--shadow", "--record", str(har), command="proxy").start()
    try:
        pl, up = f"{proxy.url}/3plship/api/v1", f"{proxy.url}/35up/v1"
        for key in ("zl_test_sandbox_one", "zl_test_sandbox_two", "zl_live_sandbox_three"):  # one return each
            requests.post(f"{pl}/returns", headers=bearer(key), json=RETURN, timeout=10)
            requests.get(f"{pl}/returns", headers=bearer(key), timeout=10)  # each sees its own only
        requests.post(f"{pl}/returns", headers=bearer("zl_prod_nokey"), json=RETURN, timeout=10)  # refused: 401
        requests.post(f"{pl}/returns", json=RETURN, timeout=10)  # no credentials: 401
        for user in ("shop-a", "shop-b"):
            requests.post(f"{up}/returns", auth=(user, "pw"), timeout=10, json={
                "orderId": "1001", "items": [{"itemId": "i1", "sku": "shop/sku-1", "quantity": 1}]})
        live = drift(proxy)
    finally:
        proxy.stop()
    assert live["summary"] == summary(10), live["entries"][:2]
    entries = json.loads(har.read_text())["log"]["entries"]
    assert {e["_provider"] for e in entries} == {"3plship", "35up"}
    assert entries[0]["request"]["url"].startswith(fake_real_provider.base_3plship)  # not one of the real hosts
    assert len({e.get("_account_id") for e in entries if e["_provider"] == "3plship"} - {None}) == 3
    assert "zl_test_sandbox_one" not in har.read_text()  # an identity, never the key
    run = cli("drift", str(har), "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout) == live
    # The same 3plship traffic as another tool records it: the credentials as sent, nothing that names the
    # provider. Its host says nothing, until told.
    keys = {masking.account_hint(k): k for k in ("zl_test_sandbox_one", "zl_test_sandbox_two", "zl_live_sandbox_three")}
    entries = [e for e in entries if e["_provider"] == "3plship"]
    for entry in entries:
        if "_account_hint" in entry:
            entry["request"]["headers"] = [{"name": "Authorization", "value": f"Bearer {keys[entry['_account_hint']]}"},
                                           *(h for h in entry["request"]["headers"] if h["name"] != "Authorization")]
        for name in [k for k in entry if k.startswith("_")]:
            del entry[name]
    foreign = tmp_path / "foreign.har"
    foreign.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}))
    run = cli("drift", str(foreign))
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and "belongs to a known provider" in run.stderr
    assert "--provider-host" in run.stderr
    port = fake_real_provider.port
    run = cli("drift", str(foreign), "--provider-host", f"127.0.0.1:{port}=3plship", "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["summary"] == summary(8)


def test_a_header_the_contract_requires_is_compared_and_its_absence_is_a_violation(tmp_path: Path) -> None:
    import sys

    from helpers import ROOT

    sys.path.insert(0, str(ROOT / "tests" / "independent" / "fake_provider"))
    import fake_provider

    upstream = fake_provider.serve_in_thread(fake_provider.make_app(deviation="header_3pl_ratelimit_missing_on_errors"))
    proxy = Server("--3plship-upstream", upstream.base_3plship, "--shadow", command="proxy").start()
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        assert requests.patch(f"{pl}/returns/ret_nothere/status", headers=KEY, json={"status": "received"},
                              timeout=10).status_code == 404
        report = drift(proxy)
        violations = requests.get(f"{proxy.url}/__admin/violations", timeout=10).json()["violations"]
    finally:
        proxy.stop()
        upstream.stop()
    assert [(d["pointer"], d["kind"], "upstream" in d) for e in report["entries"] for d in e["differences"]] == [
        ("X-RateLimit-Limit", "header", False), ("X-RateLimit-Remaining", "header", False),
        ("X-RateLimit-Reset", "header", False)]
    assert {(v["field"], v["source"]) for v in violations} == {
        ("X-RateLimit-Limit", "response"), ("X-RateLimit-Remaining", "response"), ("X-RateLimit-Reset", "response")}
    assert all(v["schema"].startswith("3plship/openapi.json#/components/headers/") for v in violations)


def test_the_shadow_keeps_its_bounds_and_delete_frees_the_drift(fake_provider: str) -> None:
    proxy = shadow_proxy(fake_provider, "--journal-size", "5", "--drift-size", "20000")
    try:
        pl = f"{proxy.url}/3plship/api/v1"
        for n in range(12):  # each create drifts (warehouse, request_id): kept while its return is
            requests.post(f"{pl}/returns", headers=KEY, json={**RETURN, "order_id": f"ord_{n}"}, timeout=10)
        report = drift(proxy)
        assert report["summary"]["diverged"] == 12
        assert [e["id"] for e in report["entries"]] == list(range(8, 13))
        assert len(json.dumps(report["entries"])) <= 20000
        assert requests.delete(f"{proxy.url}/__admin/drift", timeout=10).status_code == 204
        assert drift(proxy) == {"entries": [], "summary": summary(0)}
    finally:
        proxy.stop()


@pytest.mark.parametrize(("entry", "message"), [
    ({"startedDateTime": "9999-12-31T23:59:59.999Z"}, "log.entries[0].startedDateTime: '9999-12-31T23:59:59.999Z'"),
    ({"_account": 123}, "log.entries[0]._account must be a string, not int"),
    ({"request": {"method": "POST", "url": "http://[::1/"}}, "log.entries[0].request.url: 'http://[::1/' is not a URL"),
    ({"request": {"method": "POST", "url": "https://app.3plship.com/api/v1/returns", "headers": [{"name": 1}]}},
     "log.entries[0].request.headers[0] must be an object with a string name and value"),
    ({"_provider": "acme"}, "log.entries[0]._provider: 'acme' is not a provider"),
])
def test_an_unusable_entry_is_one_line_naming_it_and_exit_2(tmp_path: Path, entry: dict[str, Any],
                                                            message: str) -> None:
    base: dict[str, Any] = {"startedDateTime": "2026-01-05T10:00:00.000Z",
                            "request": {"method": "POST", "url": "https://app.3plship.com/api/v1/returns",
                                        "headers": [], "postData": {"mimeType": "application/json", "text": "{}"}},
                            "response": {"status": 422, "headers": [], "content": {"text": "{}"}}}
    path = tmp_path / "hostile.har"
    path.write_text(json.dumps({"log": {"entries": [{**base, **entry}]}}))
    for command in ("drift", "validate-har"):
        run = cli(command, str(path))
        assert run.returncode == 2, (command, run.stdout, run.stderr)
        assert run.stderr.count("\n") == 1 and message in run.stderr, (command, run.stderr)


def test_a_recording_nested_too_deeply_is_one_line_and_exit_2_and_a_deep_body_is_compared_as_it_is(
        tmp_path: Path) -> None:
    deep = tmp_path / "deep.har"
    deep.write_text('{"log": {"entries": [' + "[" * 50_000 + "]" * 50_000 + "]}}")
    body = tmp_path / "body.har"
    nested = "[" * 50_000 + "]" * 50_000
    body.write_text(json.dumps({"log": {"entries": [{
        "request": {"method": "POST", "url": "https://app.3plship.com/api/v1/returns",
                    "headers": [{"name": "Authorization", "value": "Bearer zl_test_deep_body"}],
                    "postData": {"mimeType": "application/json", "text": nested}},
        "response": {"status": 400, "headers": [], "content": {"mimeType": "application/json", "text": nested}}}]}}))
    for command in ("drift", "validate-har"):
        run = cli(command, str(deep))
        assert (run.returncode, run.stderr.count("\n")) == (2, 1) and "nested too deeply" in run.stderr, run.stderr
        run = cli(command, str(body))
        assert run.returncode in (0, 1) and "Traceback" not in run.stderr, run.stderr


def test_files_that_cannot_be_read_whole_are_refused_with_one_line(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe.har"
    os.mkfifo(fifo)
    big = tmp_path / "big.har"
    big.write_text(json.dumps({"log": {"entries": []}}) + " " * 2000)
    for command in ("drift", "validate-har"):
        for args, message in (([str(fifo)], ": a FIFO; give a regular file"),
                              (["/dev/zero"], ": a device; give a regular file"),
                              ([str(big), "--max-file-bytes", "1000"],
                               "larger than 1000 bytes (--max-file-bytes)")):
            run = cli(command, *args, timeout=30)
            assert (run.returncode, run.stderr.count("\n")) == (2, 1), (command, args, run.stderr)
            assert message in run.stderr
