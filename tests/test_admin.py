"""The control plane: health, reset, clock, seed, returns, journal, violations, deterministic mode, security."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from helpers import FIXTURES, PL, UP35, WORKER, Server, basic, bearer, cli, fixture

from mockserver import __version__
from mockserver.domain.clock import isoformat
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app, mock_of

SCENARIO = json.loads((FIXTURES / "scenarios" / "example.json").read_text())


@pytest.fixture
def admin() -> FlaskClient:
    app = create_app(Config(clock="frozen", clock_start="2026-01-05T10:00:00Z", self_check=True),
                     store=MemoryStore())
    app.testing = True
    return app.test_client()


def seed(client: FlaskClient, document: Any = SCENARIO) -> Any:
    return client.post("/__admin/seed", json=document)


def admin_return(client: FlaskClient, provider: str, rid: str, account: str | None = None) -> Any:
    query = f"?account={account}" if account else ""
    response = client.get(f"/__admin/returns/{provider}/{rid}{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_health(admin: FlaskClient) -> None:
    body = admin.get("/__admin/health").get_json()
    assert body == {"status": "ok", "version": __version__, "store": "memory", "engine": "memory",
                    "pid": os.getpid(), "clock": {"now": "2026-01-05T10:00:00.000Z", "mode": "frozen"}}


def test_seed_preloads_returns_in_any_state_for_any_account(admin: FlaskClient) -> None:
    response = seed(admin)
    assert response.status_code == 201
    assert response.get_json()["seeded"] == 7
    listed = admin.get("/__admin/returns").get_json()["returns"]
    assert [(r["provider"], r["account"], r["id"], r["status"]) for r in listed] == [
        ("35up", "shop-a", "1001", "created"), ("35up", "shop-a", "1002", "awaiting_return"),
        ("35up", "shop-b", "1001", "closed"), ("3plship", "zl_test_demo", "ret_seedinitiated", "initiated"),
        ("3plship", "zl_test_demo", "ret_seedinspected", "inspected"),
        ("3plship", "zl_test_demo", "ret_seedrefunding", "inspected"),
        ("3plship", "zl_live_other", "ret_seedcompleted", "completed")]
    closed = admin_return(admin, "35up", "1001", "shop-b")
    assert [h["status"] for h in closed["history"]] == ["created", "rejected", "closed"]
    # Seeded returns behave like any other through the provider API.
    assert admin.patch(f"{UP35}/returns/1002", json={"status": "customer_shipped"},
                       headers=basic("shop-a")).status_code == 200
    assert admin.post(f"{PL}/returns/ret_seedinspected/refund", headers=bearer("zl_test_demo")).status_code == 200
    assert admin.post(f"{PL}/returns/ret_seedrefunding/refund", headers=bearer("zl_test_demo")).status_code == 409
    assert admin.get(f"{PL}/returns", headers=bearer("zl_live_other")).get_json()["data"][0]["refund_status"] == \
        "completed"


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d["returns"][0]["return"].pop("items"), "returns[0].return.items"),
    (lambda d: d["returns"][3].update(account="sk_bad"), "returns[3].account"),
    (lambda d: d["returns"][1].update(status="approved"), "returns[1].status"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d["returns"][2].update(provider="acme"), "returns[2].provider"),
    (lambda d: d["returns"][4].update(id="not-a-ret-id"), "returns[4].id"),
])
def test_a_bad_scenario_is_rejected_whole_naming_the_field(admin: FlaskClient, change: Any, field: str) -> None:
    document = copy.deepcopy(SCENARIO)
    change(document)
    response = seed(admin, document)
    assert response.status_code == 422
    assert field in [d.get("field") for d in response.get_json()["error"]["details"]]
    assert admin.get("/__admin/returns").get_json()["returns"] == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["returns"][3].update(refund={}), "needs a return that was received and inspected"),
    (lambda d: d["returns"][5].update(refund={"amount": 99}), "more than the refundable 15"),
    (lambda d: d["returns"].append(copy.deepcopy(d["returns"][0])), "a second 35up return 1001"),
])
def test_a_scenario_breaking_a_rule_stores_nothing(admin: FlaskClient, change: Any, message: str) -> None:
    document = copy.deepcopy(SCENARIO)
    change(document)
    response = seed(admin, document)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "invalid_scenario"
    assert message in response.get_json()["error"]["message"]
    assert admin.get("/__admin/returns").get_json()["returns"] == []


def test_a_scenario_clashing_with_stored_state_stores_nothing(admin: FlaskClient) -> None:
    admin.post(f"{UP35}/returns", json={**fixture("35up/create-return.request.json"), "orderId": "1002"},
               headers=basic("shop-a"))
    response = seed(admin)
    assert response.status_code == 422 and "1002 already exists" in response.get_json()["error"]["message"]
    assert len(admin.get("/__admin/returns").get_json()["returns"]) == 1


def test_clock_moves_and_35up_expiry_follows_just_before_and_after_the_deadline(admin: FlaskClient) -> None:
    seed(admin)
    response = admin.post("/__admin/clock", json={"advance": "P29DT23H59M59.999S"})
    assert response.get_json() == {"now": "2026-02-04T09:59:59.999Z", "mode": "frozen"}
    assert admin_return(admin, "35up", "1002")["status"] == "awaiting_return"
    admin.post("/__admin/clock", json={"advance": "PT0.001S"})
    expired = admin_return(admin, "35up", "1002")
    assert expired["status"] == "expired" and expired["history"][-1]["at"] == "2026-02-04T10:00:00.000Z"


def test_3plship_refund_completion_follows_the_clock(admin: FlaskClient) -> None:
    seed(admin)
    assert admin.get("/__admin/clock").get_json()["now"] == "2026-01-05T10:00:00.000Z"  # a Monday
    admin.post("/__admin/clock", json={"set": "2026-01-12T09:59:59.999Z"})  # Monday + 5 business days - 1 ms
    assert admin_return(admin, "3plship", "ret_seedrefunding")["resource"]["refund_status"] == "processing"
    admin.post("/__admin/clock", json={"set": "2026-01-12T10:00:00Z"})
    done = admin_return(admin, "3plship", "ret_seedrefunding")
    assert done["status"] == "completed" and done["resource"]["refund"]["completed_at"] == "2026-01-12T10:00:00.000Z"


@pytest.mark.parametrize("body", [{}, {"advance": "P1Y"}, {"advance": "10 days"}, {"set": "yesterday"},
                                  {"advance": "P1D", "set": "2026-01-01T00:00:00Z"}, {"mode": "slow"}])
def test_bad_clock_requests_are_422(admin: FlaskClient, body: Any) -> None:
    response = admin.post("/__admin/clock", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(("body", "field"), [
    ({"set": "1969-12-31T23:59:59.999Z"}, "set"),
    ({"set": "9000-01-01T00:00:00Z"}, "set"),
    ({"advance": "P2600000D"}, "advance"),
    ({"advance": "-P20500D"}, "advance"),
    ({"advance": "P99999999999W"}, "advance"),  # longer than a timedelta can hold
    ({"mode": "real", "set": "9000-01-01T00:00:00Z"}, "set"),
])
def test_the_clock_stays_in_its_range_and_a_refused_move_changes_nothing(
        admin: FlaskClient, body: Any, field: str) -> None:
    response = admin.post("/__admin/clock", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == field
    assert admin.get("/__admin/clock").get_json() == {"now": "2026-01-05T10:00:00.000Z", "mode": "frozen"}


def test_the_clock_keeps_every_millisecond_and_works_at_the_ends_of_its_range(admin: FlaskClient) -> None:
    # Through a float timestamp, some instants after 2038 came out a millisecond early.
    for instant in ("2039-01-01T00:00:00.003Z", "2100-07-01T12:00:00.999Z"):
        assert admin.post("/__admin/clock", json={"set": instant}).get_json()["now"] == instant
    for instant in ("1970-01-01T00:00:00.000Z", "8999-12-31T23:59:59.999Z"):
        admin.post("/__admin/clock", json={"set": instant})
        created = admin.post(f"{PL}/returns", json=fixture("3plship/create-return.minimal.request.json"),
                             headers=bearer())
        assert created.status_code == 201 and created.get_json()["data"]["created_at"] == instant
        assert admin.get(f"{PL}/returns", headers=bearer()).status_code == 200


def test_clock_mode_switch(admin: FlaskClient) -> None:
    assert admin.post("/__admin/clock", json={"mode": "real"}).get_json()["mode"] == "real"
    assert admin.post("/__admin/clock", json={"mode": "frozen", "set": "2030-01-01T00:00:00+02:00"}).get_json() == {
        "now": "2029-12-31T22:00:00.000Z", "mode": "frozen"}


def test_reset_narrows_by_provider_and_account(admin: FlaskClient) -> None:
    seed(admin)
    assert admin.post("/__admin/reset?provider=35up&account=shop-a").get_json()["removed"] == 2
    assert admin.post("/__admin/reset?provider=3plship").get_json()["removed"] == 4
    assert [r["account"] for r in admin.get("/__admin/returns").get_json()["returns"]] == ["shop-b"]
    admin.get(f"{PL}/returns", headers=bearer())
    assert admin.post("/__admin/reset").get_json()["removed"] == 1
    assert admin.get("/__admin/journal").get_json()["entries"] == []
    assert admin.post("/__admin/reset?provider=nope").status_code == 422


def test_returns_lookup_errors(admin: FlaskClient) -> None:
    seed(admin)
    assert admin.get("/__admin/returns/35up/1001").status_code == 409  # two accounts have order 1001
    assert admin_return(admin, "35up", "1001", "shop-a")["status"] == "created"
    assert admin.get("/__admin/returns/35up/nope").status_code == 404
    assert admin.get("/__admin/returns/acme/1").status_code == 404
    assert [r["id"] for r in admin.get("/__admin/returns?provider=3plship&account=zl_live_other")
            .get_json()["returns"]] == ["ret_seedcompleted"]


def test_journal_filters_and_clear(admin: FlaskClient) -> None:
    admin.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic("shop-a"))
    admin.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic("shop-a"))
    admin.get(f"{PL}/returns?limit=0", headers=bearer("zl_test_j"))
    admin.get(f"{PL}/returns", headers=bearer("zl_test_j"))
    entries = admin.get("/__admin/journal").get_json()["entries"]
    assert [(e["method"], e["status"]) for e in entries] == [("POST", 201), ("POST", 409), ("GET", 422),
                                                             ("GET", 200)]
    first = entries[0]
    assert first["account"] == "shop-a" and first["provider"] == "35up" and first["duration_ms"] >= 0
    assert json.loads(first["request_body"]) == fixture("35up/create-return.request.json")
    assert json.loads(first["response_body"])["status"] == "created"
    for query, statuses in [("provider=3plship", [422, 200]), ("account=shop-a", [201, 409]),
                            ("status=409", [409]), ("path=/3plship", [422, 200]), ("limit=1", [200])]:
        assert [e["status"] for e in admin.get(f"/__admin/journal?{query}").get_json()["entries"]] == statuses
    assert admin.get("/__admin/journal?status=abc").status_code == 422
    assert admin.delete("/__admin/journal").status_code == 204
    assert admin.get("/__admin/journal").get_json()["entries"] == []


def test_violations_carry_field_message_and_schema_location(admin: FlaskClient) -> None:
    admin.post(f"{PL}/returns", json={**fixture("3plship/create-return.minimal.request.json"),
                                      "items": [{"sku": "P", "quantity": 0}]}, headers=bearer("zl_test_v"))
    admin.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic())
    admin.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"), headers=basic())  # 409: state
    violations = admin.get("/__admin/violations").get_json()["violations"]
    assert len(violations) == 1
    v = violations[0]
    assert (v["method"], v["path"], v["status"], v["account"]) == ("POST", "/3plship/api/v1/returns", 422,
                                                                   "zl_test_v")
    assert (v["field"], v["location"], v["message"]) == ("items[0].quantity", "body",
                                                         "items[0].quantity must be at least 1")
    assert v["schema"] == "3plship/return-create-request.json#/properties/items/items/properties/quantity/minimum"


def test_journal_is_bounded(tmp_path: Path) -> None:
    for store in (MemoryStore(), None):
        config = Config(journal_size=5, store=f"sqlite:{tmp_path / 'j.db'}")
        app = create_app(config, store=store)
        client = app.test_client()
        for n in range(40):
            client.get(f"{PL}/returns?limit={0 if n % 2 else 1}", headers=bearer())
        entries = client.get("/__admin/journal").get_json()["entries"]
        assert [e["id"] for e in entries] == [36, 37, 38, 39, 40]
        assert len(client.get("/__admin/violations").get_json()["violations"]) == 3
        assert len(mock_of(app).journal.entries()) == 5


def test_admin_token(tmp_path: Path) -> None:
    app = create_app(Config(admin_token="s3cret"), store=MemoryStore())
    client = app.test_client()
    for path in ("/__admin/health", "/__admin/journal", "/__admin/returns"):
        response = client.get(path)
        assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/__admin/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/__admin/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.post("/__admin/reset", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    page = client.get("/__admin/")  # the dashboard page holds no data: it asks for the token, then calls the API
    assert page.status_code == 200 and b"token-form" in page.data
    assert client.get("/__admin/health?token=s3cret").status_code == 401  # a token is never taken from a URL
    assert client.get(f"{PL}/returns", headers=bearer()).status_code == 200  # providers are unaffected


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("serve", *args)


@pytest.mark.system
@pytest.mark.parametrize(("args", "message"), [
    (["--host", "0.0.0.0"], "refusing to bind 0.0.0.0 without --admin-token"),
    (["--host", "192.168.1.10"], "refusing to bind 192.168.1.10 without --admin-token"),
    (["--deterministic", "1", "--workers", "2"], "--deterministic needs one worker"),
    (["--deterministic", "1", "--clock", "real"], "drop --seed and --clock real"),
    (["--seed-file", "/nonexistent.json", "--store", "memory"], "No such file or directory"),
    (["--return-window-days", "99999999"], "at most 36,500 days"),
])
def test_serve_refusals_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = serve(*args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


@pytest.mark.system
def test_a_bad_seed_file_stops_the_server_and_stores_nothing(tmp_path: Path) -> None:
    bad = copy.deepcopy(SCENARIO)
    bad["returns"][6]["refund"] = {"amount": 1000}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    result = serve("--store", f"sqlite:{tmp_path / 's.db'}", "--seed-file", str(tmp_path / "bad.json"))
    assert result.returncode == 2 and "returns[6]" in result.stderr and "refundable" in result.stderr
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}").start()
    try:
        assert requests.get(server.url + "/__admin/returns", timeout=10).json()["returns"] == []
    finally:
        server.stop()


@pytest.mark.system
@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_seed_file_and_frozen_clock_at_start(tmp_path: Path, store: str) -> None:
    url = "memory" if store == "memory" else f"sqlite:{tmp_path / 's.db'}"
    server = Server("--store", url, "--seed-file", str(FIXTURES / "scenarios" / "example.json"),
                    "--clock", "frozen").start()
    try:
        returns = requests.get(server.url + "/__admin/returns", timeout=10).json()["returns"]
        assert len(returns) == 7
        first = requests.get(server.url + "/__admin/clock", timeout=10).json()
        second = requests.get(server.url + "/__admin/clock", timeout=10).json()
        assert first == second and first["mode"] == "frozen"
    finally:
        server.stop()


@pytest.mark.system
def test_workers_share_the_clock_and_the_journal(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--workers", "2", "--clock", "frozen").start()
    try:
        moved = requests.post(server.url + "/__admin/clock", json={"set": "2027-03-01T12:00:00Z"}, timeout=10)
        assert moved.json()["now"] == "2027-03-01T12:00:00.000Z"
        stamps, workers = set(), set()
        for _ in range(20):
            with requests.Session() as s:  # a new connection each time: both workers answer
                answer = s.get(server.url + PL + "/returns", headers=bearer(), timeout=10)
                stamps.add(answer.json()["meta"]["timestamp"])
                workers.add(answer.headers[WORKER])
        assert stamps == {"2027-03-01T12:00:00.000Z"}
        assert len(workers) == 2, workers
        assert len(requests.get(server.url + "/__admin/journal", timeout=10).json()["entries"]) == 20
    finally:
        server.stop()


def _session(url: str) -> list[bytes]:
    answers = []
    with requests.Session() as s:
        calls = [("POST", PL + "/returns", fixture("3plship/create-return.request.json"), bearer()),
                 ("POST", PL + "/returns", fixture("3plship/create-return.minimal.request.json"), bearer()),
                 ("GET", PL + "/returns", None, bearer()),
                 ("POST", PL + "/returns", {"order_id": 1}, bearer()),
                 ("POST", UP35 + "/returns", fixture("35up/create-return.request.json"), basic()),
                 ("PATCH", UP35 + "/returns/42346434", {"status": "awaiting_return"}, basic())]
        for method, path, body, headers in calls:
            answers.append(s.request(method, url + path, json=body, headers=headers, timeout=10).content)
        answers.append(s.get(url + "/__admin/journal", timeout=10).content)
    return answers


@pytest.mark.system
def test_deterministic_runs_are_byte_identical(tmp_path: Path) -> None:
    runs = []
    for n in range(2):
        server = Server("--store", f"sqlite:{tmp_path / f'run{n}.db'}", "--deterministic", "42").start()
        try:
            runs.append(_session(server.url))
        finally:
            server.stop()
    journal = [json.loads(run.pop()) for run in runs]
    assert runs[0] == runs[1]
    assert b"2026-01-01T00:00:00.000Z" in runs[0][0] and b"ret_" in runs[0][0]
    for entries in journal:  # durations differ between runs; everything else in the journal does not
        for e in entries["entries"]:
            e.pop("duration_ms")
    assert journal[0] == journal[1]
    other = Server("--store", "memory", "--deterministic", "7").start()
    try:
        assert _session(other.url)[0] != runs[0][0]  # another seed, other ids
    finally:
        other.stop()


def test_loopback_detection() -> None:
    from mockserver.web.guard import is_loopback_host

    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "app.localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "10.0.0.1", "::", "example.com", "localhost.example"))


def test_frozen_clock_advance_reaches_provider_timestamps(admin: FlaskClient) -> None:
    admin.post("/__admin/clock", json={"advance": "P2DT3H"})
    body = admin.get(f"{PL}/returns", headers=bearer()).get_json()
    assert body["meta"]["timestamp"] == "2026-01-07T13:00:00.000Z"


class NaiveClock:
    """A clock given in code that answers naive datetimes (local time, as datetime.now() does)."""

    def now(self) -> datetime:
        return datetime(2026, 1, 5, 10, 0)


def test_a_clock_given_in_code_may_answer_naive_local_times() -> None:
    client = create_app(Config(self_check=True), store=MemoryStore(), clock=NaiveClock()).test_client()
    created = client.post(f"{PL}/returns", json=fixture("3plship/create-return.minimal.request.json"),
                          headers=bearer())
    assert created.status_code == 201
    assert created.get_json()["data"]["created_at"] == isoformat(datetime(2026, 1, 5, 10, 0).astimezone(UTC))
    assert client.get(f"{PL}/returns", headers=bearer()).get_json()["meta"]["pagination"]["total"] == 1


def test_returns_are_listed_a_page_at_a_time_and_searchable(admin: FlaskClient) -> None:
    seed(admin)
    everything = admin.get("/__admin/returns").get_json()["returns"]
    page = admin.get("/__admin/returns?limit=3").get_json()
    assert page["total"] == len(everything) == 7 and page["offset"] == 0 and page["limit"] == 3
    assert [r["id"] for r in page["returns"]] == [r["id"] for r in reversed(everything)][:3]  # newest first
    second = admin.get("/__admin/returns?limit=3&offset=3").get_json()
    assert [r["id"] for r in second["returns"]] == [r["id"] for r in reversed(everything)][3:6]
    found = admin.get("/__admin/returns?q=seedin&provider=3plship").get_json()
    assert sorted(r["id"] for r in found["returns"]) == ["ret_seedinitiated", "ret_seedinspected"]
    assert found["total"] == 2
    assert admin.get("/__admin/returns?limit=0").status_code == 422


def test_a_return_moves_through_its_providers_own_rules(admin: FlaskClient) -> None:
    seed(admin)
    moved = admin.post("/__admin/returns/35up/1002/status?account=shop-a", json={"status": "customer_shipped"})
    assert moved.status_code == 200, moved.get_json()
    assert [h["status"] for h in moved.get_json()["history"]][-1] == "customer_shipped"
    refused = admin.post("/__admin/returns/35up/1002/status?account=shop-a", json={"status": "refunded"})
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "invalid_transition"
    step = admin.post("/__admin/returns/3plship/ret_seedinitiated/status", json={"status": "received"})
    assert step.status_code == 200 and step.get_json()["status"] == "received"
    skip = admin.post("/__admin/returns/3plship/ret_seedinitiated/status", json={"status": "completed"})
    assert skip.status_code == 409 and skip.get_json()["error"]["code"] == "INVALID_STATUS_TRANSITION"
    assert admin.post("/__admin/returns/3plship/ret_nope/status", json={"status": "received"}).status_code == 404
    assert admin.post("/__admin/returns/3plship/ret_seedinitiated/status", json={}).status_code == 422


def test_each_providers_lifecycle_graph_is_served(admin: FlaskClient) -> None:
    graphs = admin.get("/__admin/lifecycles").get_json()["lifecycles"]
    assert graphs["3plship"]["transitions"]["initiated"] == ["received"]
    assert graphs["35up"]["initial"] == "created" and "closed" in graphs["35up"]["final"]
    assert set(graphs["35up"]["transitions"]) == set(graphs["35up"]["statuses"])
