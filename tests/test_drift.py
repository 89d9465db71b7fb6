"""The comparison of two answers (mockserver.contract.drift) and the mirror that makes them
(mockserver.web.mirror), in-process: what is noise is decided from the contracts, lists are matched by
identity, a refused change is a root cause, absent is not null, and the mirror's memory is bounded."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from mockserver.contract import contract
from mockserver.contract.drift import CUT, MISSING, Answered, DriftEntry, DriftLog, Expected, compare, text_report
from mockserver.web.mirror import Mirror

PL = "/3plship/api/v1"
KEY = [("Authorization", "Bearer zl_test_mirror_one"), ("Content-Type", "application/json")]
RETURN = {"order_id": "ord_1", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 20, "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"}}


def expected(provider: str, operation: str | None, status: int) -> Expected:
    c = contract(provider)
    if operation is None:
        return Expected(c, c.common_response(status), f"{c.base_uri}openapi.json#/paths")
    op = c.operation(operation)
    return Expected(c, op.declared[status], op.where + "/responses")


def error_3pl(code: str, message: str, details: dict[str, Any], request_id: str = "req_a1",
              at: str = "2026-01-05T10:00:00.000Z") -> dict[str, Any]:
    return {"success": False, "error": {"code": code, "message": message, "details": details},
            "meta": {"timestamp": at, "requestId": request_id, "version": "v1"}}


def test_messages_are_compared_by_presence_at_any_depth() -> None:
    """A provider wording its messages otherwise (nested problems included) is no drift; another field is."""
    ours = error_3pl("VALIDATION_ERROR", "Request does not match the contract.", {
        "field": "order_id", "issue": "order_id is required", "location": "body",
        "problems": [{"field": "order_id", "issue": "order_id is required", "location": "body"},
                     {"field": "reason", "issue": "reason must be one of ...", "location": "body"}]})
    theirs = error_3pl("VALIDATION_ERROR", "Die Anfrage ist ungültig.", {
        "field": "order_id", "issue": "order_id fehlt", "location": "body",
        "problems": [{"field": "order_id", "issue": "order_id fehlt", "location": "body"},
                     {"field": "reason", "issue": "reason ist unbekannt", "location": "body"}]},
        request_id="req_zz9", at="2026-01-05T10:00:01.300Z")
    where = expected("3plship", "createReturn", 422)
    assert compare(Answered(422, [], theirs), Answered(422, [], ours), where) == []
    theirs["error"]["details"]["problems"][1]["field"] = "reasons"
    (found,) = compare(Answered(422, [], theirs), Answered(422, [], ours), where)
    assert (found.pointer, found.kind, found.upstream, found.mock) == ("/error/details/problems/1/field", "value",
                                                                     "reasons", "reason")
    assert found.schema == "3plship/error-detail.json#/properties/problems/items/properties/field"


@pytest.mark.parametrize(("status", "code"), [(404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED")])
def test_errors_of_paths_and_methods_the_contract_lacks_compare_request_ids_by_presence(status: int,
                                                                                        code: str) -> None:
    mirror = Mirror()
    method = "GET" if status == 404 else "DELETE"
    path = f"{PL}/refunds" if status == 404 else f"{PL}/returns"
    body = orjson.dumps(error_3pl(code, "Not here.", {"issue": "nothing at this path"}, "req_other9",
                                  "2026-01-05T10:00:00.000Z"))
    headers = [("Content-Type", "application/json"), ("X-RateLimit-Limit", "1"), ("X-RateLimit-Remaining", "0"),
               ("X-RateLimit-Reset", "1"), ("Allow", "POST, GET")]
    entry = mirror.apply("3plship", method, path, "", KEY, b"", status, headers, body, None,
                         datetime(2026, 1, 5, 10, 0, 2, tzinfo=UTC))
    assert entry.operation is None
    assert [d.pointer for d in entry.differences] == []


def test_a_list_with_one_return_more_is_one_extra_item_and_its_count() -> None:
    c = contract("3plship")
    page = json.loads(json.dumps({"success": True, "meta": {"request_id": "req_1", "timestamp": "2026-01-05T10:00:00Z",
                                                            "pagination": {"page": 1, "limit": 50, "total": 2,
                                                                           "total_pages": 1, "has_more": False}},
                                  "data": []}))
    item = {"id": "ret_a", "order_id": "o1", "status": "initiated", "reason": "defective",
            "items": [{"sku": "S", "quantity": 1}], "return_shipping": None, "refund_amount": 1,
            "refund_shipping": False, "restocking_fee": 0, "refund_status": "pending", "refund": None,
            "customer_email": None,
            "created_at": "2026-01-05T10:00:00.000Z", "updated_at": "2026-01-05T10:00:00.000Z"}
    theirs = copy.deepcopy(page)
    theirs["data"] = [{**item, "id": "ret_new"}, {**item, "id": "ret_b"}, item]
    theirs["meta"]["pagination"]["total"] = 3
    ours = copy.deepcopy(page)
    ours["data"] = [{**item, "id": "ret_b"}, item]
    found = compare(Answered(200, [], theirs), Answered(200, [], ours), expected("3plship", "listReturns", 200))
    assert sorted((d.pointer, d.kind) for d in found) == [("/data/0", "missing"), ("/meta/pagination/total", "value")]
    assert c  # the same items in another order: one difference, naming each side's order
    ours["data"].reverse()
    theirs["data"] = theirs["data"][1:]
    theirs["meta"]["pagination"]["total"] = 2
    (order,) = compare(Answered(200, [], theirs), Answered(200, [], ours), expected("3plship", "listReturns", 200))
    assert (order.pointer, order.kind, order.upstream, order.mock) == ("/data", "order", ["ret_b", "ret_a"],
                                                                       ["ret_a", "ret_b"])


def test_an_absent_field_is_not_null() -> None:
    (found,) = compare(Answered(200, [], {"data": {"note": None}}), Answered(200, [], {"data": {}}), None)
    assert found.as_json() == {"pointer": "/data/note", "upstream": None, "kind": "missing"}  # no "mock": absent
    assert found.describe() == "missing at /data/note: upstream None, mock absent"
    assert found.mock is MISSING


def test_declared_headers_are_compared_by_the_contracts_rule() -> None:
    where = expected("3plship", "createReturn", 401)
    body = error_3pl("UNAUTHORIZED", "No.", {"issue": "no key"})
    ours = [("Content-Type", "application/json"), ("WWW-Authenticate", 'Bearer realm="3plship"'),
            ("X-RateLimit-Limit", "1000"), ("X-RateLimit-Remaining", "999"), ("X-RateLimit-Reset", "1767607200")]
    theirs = [("content-type", "application/json; charset=utf-8"), ("www-authenticate", "Bearer"),
              ("x-ratelimit-limit", "5000"), ("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", "1767600000"),
              ("Server", "gateway")]
    assert compare(Answered(401, theirs, body), Answered(401, ours, body), where) == []
    theirs = [("Content-Type", "text/plain"), ("WWW-Authenticate", "Basic realm=x"), ("X-RateLimit-Limit", "5000")]
    found = compare(Answered(401, theirs, body), Answered(401, ours, body), where)
    assert [(d.pointer, d.kind, d.upstream) for d in found] == [
        ("Content-Type", "header", "text/plain"), ("WWW-Authenticate", "header", "Basic realm=x"),
        ("X-RateLimit-Remaining", "header", MISSING), ("X-RateLimit-Reset", "header", MISSING)]
    assert found[2].schema == "3plship/openapi.json#/components/headers/RateLimitRemaining"


def test_a_change_the_mock_refused_is_the_root_cause_of_what_follows_on_that_return() -> None:
    mirror = Mirror()
    data = {**RETURN, "id": "ret_upstream1", "items": [{"sku": "PROD-001", "quantity": 0}], "status": "initiated"}
    created: dict[str, Any] = {"success": True, "data": data,
                               "meta": {"request_id": "req_1", "timestamp": "2026-01-05T10:00:00.000Z"}}
    body = orjson.dumps({**RETURN, "items": [{"sku": "PROD-001", "quantity": 0}]})  # the mock refuses quantity 0
    root = mirror.apply("3plship", "POST", f"{PL}/returns", "", KEY, body, 201, [], orjson.dumps(created), "k")
    assert [d.kind for d in root.differences] == ["mock_refuses"]
    moved = {**created, "data": {**created["data"], "status": "received"}}
    later = mirror.apply("3plship", "PATCH", f"{PL}/returns/ret_upstream1/status", "", KEY,
                         b'{"status": "received"}', 200, [], orjson.dumps(moved), "k")
    assert later.cause == root.id and [d.kind for d in later.differences] == ["mock_refuses"]
    listed = mirror.apply("3plship", "GET", f"{PL}/returns", "", KEY, b"", 200, [], orjson.dumps(
        {"success": True, "data": [moved["data"]], "meta": {"request_id": "req_2", "timestamp": "2026-01-05T10:00:00Z",
                                                            "pagination": {"page": 1, "limit": 50, "total": 1,
                                                                           "total_pages": 1, "has_more": False}}}), "k")
    assert listed.cause == root.id
    report = mirror.log.as_json()
    assert report["summary"] == {"exchanges": 3, "diverged": 3, "root_causes": 1, "consequences": 2, "uncompared": 0}
    text = text_report("shadow", report).splitlines()
    assert text[0] == "shadow: 3 exchange(s) compared, 3 with drift (1 root cause(s), 2 consequence(s))."
    assert text[1].startswith(f"#{root.id} POST {PL}/returns (3plship, k): upstream 201, mock 422")
    assert any(line.startswith(f"  #{later.id} PATCH {PL}/returns/ret_upstream1/status (3plship, k, follows from "
                               f"#{root.id})") for line in text)


def test_the_mirror_keeps_as_many_returns_as_its_bound_and_forgets_their_drift_with_them() -> None:
    mirror = Mirror(size=5)
    for n in range(12):
        answer = {"success": True, "data": {"id": f"ret_n{n}", "order_id": f"o{n}", "status": "initiated",
                                            "warehouse": "WH-1"},
                  "meta": {"request_id": "req_1", "timestamp": "2026-01-05T10:00:00.000Z"}}
        mirror.apply("3plship", "POST", f"{PL}/returns", "", KEY, orjson.dumps({**RETURN, "order_id": f"o{n}"}), 201,
                     [], orjson.dumps(answer), "k")
    assert len(list(mirror.store.all())) == 5
    assert [e.path for e in mirror.log.entries()] == [f"{PL}/returns"] * 5  # the 7 oldest went with their returns
    kept = {e.id for e in mirror.log.entries()}
    assert kept == set(range(8, 13))
    # A forgotten return's later exchanges are not compared (the mock no longer has it): counted, not reported.
    entry = mirror.apply("3plship", "PATCH", f"{PL}/returns/ret_n0/status", "", KEY, b'{"status": "received"}', 200,
                         [], b"{}", "k")
    assert not entry.compared and not entry.differences
    assert mirror.log.summary()["uncompared"] == 1


def test_the_drift_log_is_bounded_in_bytes_and_long_values_are_cut() -> None:
    log = DriftLog(size=1000, max_bytes=200_000)
    big = [{"id": f"ret_{n}", "note": "x" * 100} for n in range(10_000)]  # ~1.3 MB of JSON
    for n in range(50):
        (found,) = compare(Answered(200, [], {"data": big}), Answered(200, [], {"data": "other"}), None)
        log.record(DriftEntry(n + 1, "3plship", "GET", f"{PL}/returns", "k", 200, 200, (found,)))
    shown = log.entries()[-1].differences[0].upstream
    assert isinstance(shown, str) and shown.endswith(CUT.format(size=len(orjson.dumps(big))))
    assert log.held_bytes <= 200_000 and len(log.entries()) >= 10
    assert log.summary()["diverged"] == 50
    log.clear()
    assert log.held_bytes == 0 and log.entries() == []
