"""`returns-mock validate-har` on traffic recorded from the real server, clean and with seeded defects."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import ThreadedServer, cli, fixture

from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.verify.har import HarError, validate_har
from mockserver.web import create_app


def har_entry(response: requests.Response, url: str | None = None) -> dict[str, Any]:
    request = response.request
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    entry: dict[str, Any] = {
        "startedDateTime": "2026-01-05T10:00:00.000Z", "time": 1,
        "request": {"method": request.method, "url": url or request.url, "httpVersion": "HTTP/1.1",
                    "headers": [{"name": k, "value": v} for k, v in request.headers.items()],
                    "queryString": [], "cookies": [], "headersSize": -1, "bodySize": len(body or "")},
        "response": {"status": response.status_code, "statusText": response.reason, "httpVersion": "HTTP/1.1",
                     "headers": [{"name": k, "value": v} for k, v in response.headers.items()], "cookies": [],
                     "content": {"size": len(response.content), "mimeType": response.headers.get("Content-Type", ""),
                                 "text": response.text},
                     "redirectURL": "", "headersSize": -1, "bodySize": len(response.content)},
        "cache": {}, "timings": {"send": 0, "wait": 1, "receive": 0},
    }
    if body is not None:
        entry["request"]["postData"] = {"mimeType": request.headers.get("Content-Type", ""), "text": body}
    return entry


@pytest.fixture(scope="module")
def recorded() -> list[dict[str, Any]]:
    """A realistic session against the mock, with each entry also under the real provider host."""
    app = create_app(Config(self_check=True), store=MemoryStore())
    entries = []
    with ThreadedServer(app) as server, requests.Session() as s:
        up, pl = server.url + "/35up/v1", server.url + "/3plship/api/v1"
        key = {"Authorization": "Bearer zl_test_har"}
        calls = [
            s.post(up + "/returns", json=fixture("35up/create-return.request.json"), auth=("shop", "pw")),
            s.patch(up + "/returns/42346434", json={"status": "awaiting_return"}, auth=("shop", "pw")),
            s.patch(up + "/returns/42346434", json={"status": "closed"}, auth=("shop", "pw")),
            s.post(pl + "/returns", json=fixture("3plship/create-return.request.json"), headers=key),
            s.get(pl + "/returns", params={"status": "initiated", "limit": "10"}, headers=key),
        ]
        rid = calls[3].json()["data"]["id"]
        calls.append(s.patch(pl + f"/returns/{rid}/status", json={"status": "received"}, headers=key))
        calls.append(s.post(pl + f"/returns/{rid}/refund", headers=key))
        for call in calls:
            entries.append(har_entry(call))
        real = str(calls[3].request.url).replace(server.url + "/3plship", "https://app.3plship.com")
        entries.append(har_entry(calls[3], url=real))
        entries.append(har_entry(calls[0], url=str(calls[0].request.url).replace(server.url + "/35up",
                                                                              "https://api.35up.io")))
    # Traffic to other hosts is counted and skipped.
    other = copy.deepcopy(entries[0])
    other["request"]["url"] = "https://cdn.example.com/app.js"
    entries.append(other)
    return entries


def write(tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
    path = tmp_path / "traffic.har"
    path.write_text(json.dumps({"log": {"version": "1.2", "creator": {"name": "test", "version": "1"},
                                        "entries": entries}}))
    return path


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return cli("validate-har", *args)


@pytest.mark.system
def test_conforming_traffic_passes(recorded: list[dict[str, Any]], tmp_path: Path) -> None:
    report = validate_har(write(tmp_path, recorded))
    assert report.ok, report.summary()
    assert (report.entries, report.checked, report.skipped) == (10, 9, 1)
    result = validate(str(write(tmp_path, recorded)), "--format", "json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"entries": 10, "checked": 9, "skipped": 1, "ok": True, "violations": []}


def body_of(entry: dict[str, Any], side: str) -> Any:
    holder = entry["request"]["postData"] if side == "request" else entry["response"]["content"]
    return json.loads(holder["text"])


def set_body(entry: dict[str, Any], side: str, value: Any) -> None:
    holder = entry["request"]["postData"] if side == "request" else entry["response"]["content"]
    holder["text"] = json.dumps(value)


def seed_missing_request_field(entries: list[dict[str, Any]]) -> None:
    body = body_of(entries[3], "request")
    del body["reason"]
    set_body(entries[3], "request", body)


def seed_wrong_response_type(entries: list[dict[str, Any]]) -> None:
    body = body_of(entries[0], "response")
    body["items"][0]["quantity"] = "2"
    set_body(entries[0], "response", body)


def seed_undocumented_status(entries: list[dict[str, Any]]) -> None:
    entries[6]["response"]["status"] = 202


def seed_unknown_status_value(entries: list[dict[str, Any]]) -> None:
    set_body(entries[1], "request", {"status": "approved"})


def seed_html_error_page(entries: list[dict[str, Any]]) -> None:
    entries[4]["response"]["content"] = {"mimeType": "text/html", "text": "<h1>Bad Gateway</h1>", "size": 20}
    entries[4]["response"]["status"] = 422


def seed_unknown_operation(entries: list[dict[str, Any]]) -> None:
    entries[2]["request"]["method"] = "DELETE"


def seed_bad_query(entries: list[dict[str, Any]]) -> None:
    entries[4]["request"]["url"] = entries[4]["request"]["url"].replace("limit=10", "limit=500")


def seed_error_details_as_a_list(entries: list[dict[str, Any]]) -> None:
    body = body_of(entries[6], "response")  # the refund refused with 409: a 3plship error
    body["error"]["details"] = [{"field": "status", "message": "not inspected"}]
    set_body(entries[6], "response", body)


@pytest.mark.system
@pytest.mark.parametrize(("seed", "expected"), [
    (seed_missing_request_field, (3, "POST", "request", "reason", "reason is required")),
    (seed_wrong_response_type, (0, "POST", "response", "items[0].quantity", "must be an integer")),
    (seed_undocumented_status, (6, "POST", "response", "status", "status 202 is not documented for processRefund")),
    (seed_unknown_status_value, (1, "PATCH", "request", "status", "'approved' is not one of the valid values")),
    (seed_html_error_page, (4, "GET", "response", "Content-Type", "text/html, not application/json")),
    (seed_unknown_operation, (2, "DELETE", "request", "", "is not an operation of the 35up contract")),
    (seed_bad_query, (4, "GET", "request", "limit", "limit must be at most 100")),
    (seed_error_details_as_a_list, (6, "POST", "response", "error.details", "must be an object, not an array")),
])
def test_each_kind_of_defect_is_reported_with_entry_side_and_field(
        recorded: list[dict[str, Any]], tmp_path: Path, seed: Any, expected: tuple[Any, ...]) -> None:
    entries = copy.deepcopy(recorded)
    seed(entries)
    report = validate_har(write(tmp_path, entries))
    assert len(report.violations) == 1, report.summary()
    v = report.violations[0]
    entry, method, side, field, message = expected
    assert (v.entry, v.method, v.source, v.field) == (entry, method, side, field)
    assert message in v.message
    result = validate(str(write(tmp_path, entries)))
    assert result.returncode == 1
    assert f"entry {entry}: {method}" in result.stdout


@pytest.mark.system
def test_base64_bodies_are_decoded(recorded: list[dict[str, Any]], tmp_path: Path) -> None:
    entries = copy.deepcopy(recorded)
    content = entries[0]["response"]["content"]
    content["text"] = base64.b64encode(content["text"].encode()).decode()
    content["encoding"] = "base64"
    assert validate_har(write(tmp_path, entries)).ok


@pytest.mark.system
@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not JSON"),
    ('{"log": {}}', "no log.entries list"),
    ('{"log": {"entries": [{"request": {}}]}}', "needs a request and a response"),
    ('{"log": {"entries": [{"request": {"url": 1}, "response": {}}]}}', "needs request.url"),
])
def test_malformed_har_files_are_a_one_line_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.har"
    path.write_text(text)
    with pytest.raises(HarError, match=message):
        validate_har(path)
    result = validate(str(path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr


@pytest.mark.system
def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = validate(str(tmp_path / "nope.har"))
    assert result.returncode == 2 and "cannot read" in result.stderr
