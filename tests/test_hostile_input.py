"""Anything a client can send is answered in the provider's format, never with a 500, on every engine."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from helpers import PL, UP35, Server, bearer, cli, fixture, free_port

from mockserver.domain.config import Config
from mockserver.web import create_app


def _json(answer: Any) -> Any:
    return answer.get_json()


BAD_DATES = ["", "abc", "2026-02-30", "2026-13-01", "2026-01-05T25:00:00Z", "9999-99-99", "99999-01-01",
             "2026-1-5", "\u0661\u0662\u0663\u0664-\u0660\u0661-\u0660\u0661"]  # Arabic-Indic digits


@pytest.mark.parametrize("name", ["start_date", "end_date"])
@pytest.mark.parametrize("value", BAD_DATES)
def test_a_bad_date_is_a_422_naming_it(client: FlaskClient, name: str, value: str) -> None:
    answer = client.get(f"{PL}/returns", query_string={name: value}, headers=bearer())
    assert answer.status_code == 422
    assert _json(answer)["error"]["code"] == "VALIDATION_ERROR"
    assert _json(answer)["error"]["details"]["field"] == name


@pytest.mark.parametrize(("name", "value"), [("start_date", "0000-01-01"), ("end_date", "9999-12-31"),
                                             ("start_date", "0000-01-01T00:00:00Z"),
                                             ("end_date", "9999-12-31T23:59:59.999Z")])
def test_dates_at_the_ends_of_rfc3339_select_everything_on_their_side(client: FlaskClient, name: str,
                                                                      value: str) -> None:
    created = client.post(f"{PL}/returns", json=fixture("3plship/create-return.request.json"), headers=bearer())
    assert created.status_code == 201
    answer = client.get(f"{PL}/returns", query_string={name: value}, headers=bearer())
    assert answer.status_code == 200
    assert [r["id"] for r in _json(answer)["data"]] == [_json(created)["data"]["id"]]


@pytest.mark.parametrize("where", ["order_id", "customer_email", "items/0/notes", "key"])
def test_a_lone_surrogate_in_the_body_is_a_400_naming_the_field(client: FlaskClient, where: str) -> None:
    body: Any = fixture("3plship/create-return.request.json")
    marker = "@@PLACE@@"
    if where == "key":
        body["return_shipping"][marker] = 1
        expected = "return_shipping.\\ud800"
    elif where == "items/0/notes":
        body["items"][0]["notes"] = marker
        expected = "items[0].notes"
    else:
        body[where] = marker
        expected = where
    raw = json.dumps(body).replace(marker, "\\ud800")
    answer = client.post(f"{PL}/returns", data=raw, headers={**bearer(), "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert _json(answer)["error"]["code"] == "BAD_REQUEST"
    assert "lone surrogate" in _json(answer)["error"]["message"]
    assert _json(answer)["error"]["details"]["field"] == expected


def test_utf8_basic_credentials_and_admin_token_work() -> None:
    app = create_app(Config(providers={"35up": {"users": {"ci": "pässwörd"}}}, admin_token="tök"))
    client = app.test_client()
    wire = "Basic " + base64.b64encode("ci:pässwörd".encode()).decode()  # as a client sends it: UTF-8 bytes
    created = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"),
                          headers={"Authorization": wire})
    assert created.status_code == 201
    wrong = "Basic " + base64.b64encode(b"ci:passwort").decode()
    refused = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"),
                          headers={"Authorization": wrong})
    assert refused.status_code == 401
    assert 'charset="UTF-8"' in refused.headers["WWW-Authenticate"]
    token = "Bearer " + "tök".encode().decode("latin-1")  # WSGI hands header bytes over as latin-1
    assert client.get("/__admin/journal", headers={"Authorization": token}).status_code == 200
    assert client.get("/__admin/journal", headers={"Authorization": "Bearer tok"}).status_code == 401


def test_control_characters_in_basic_credentials_are_a_401() -> None:
    client = create_app(Config()).test_client()
    answer = client.post(f"{UP35}/returns", json=fixture("35up/create-return.request.json"),
                         headers={"Authorization": "Basic " + base64.b64encode(b"a\x00b:c").decode()})
    assert answer.status_code == 401
    assert "control characters" in _json(answer)["error"]["message"]


@pytest.mark.parametrize("query", ["limit=²", "limit=\u0663", "status=⁵", "limit=99999999999999999999999"])
def test_unicode_digits_in_admin_queries_are_a_422(client: FlaskClient, query: str) -> None:
    answer = client.get(f"/__admin/journal?{query}")
    assert answer.status_code == 422
    assert _json(answer)["error"]["details"][0]["field"] == query.split("=")[0]
    assert client.get("/__admin/returns?offset=⁵").status_code == 422


def test_an_oversized_journal_is_refused_at_start() -> None:
    ran = cli("serve", "--journal-size", "99999999999999999999")
    assert ran.returncode == 2
    assert ran.stderr.strip().count("\n") == 0 and "--journal-size" in ran.stderr


@pytest.mark.system
def test_nul_bytes_are_held_by_postgresql_as_by_sqlite(postgres_url: str) -> None:
    """PostgreSQL text refuses U+0000; the contracts allow it, SQLite keeps it. Ids, accounts, query and
    path values and the journal all hold it on PostgreSQL too, and the journal keeps working after."""
    server = Server("--store", postgres_url, "--workers", "1").start()
    try:
        url = server.url
        body = fixture("3plship/create-return.request.json") | {"order_id": "a\x00b"}
        created = requests.post(f"{url}{PL}/returns", json=body, headers=bearer(), timeout=10)
        assert created.status_code == 201, created.text
        assert created.json()["data"]["order_id"] == "a\x00b"
        listed = requests.get(f"{url}{PL}/returns", params={"order_id": "a\x00b"}, headers=bearer(), timeout=10)
        assert [r["order_id"] for r in listed.json()["data"]] == ["a\x00b"]
        dated = requests.get(f"{url}{PL}/returns", params={"start_date": "2000-01-01"}, headers=bearer(), timeout=10)
        assert dated.status_code == 200 and len(dated.json()["data"]) == 1
        missing = requests.patch(f"{url}{PL}/returns/ret_%00x/status", json={"status": "received"},
                                 headers=bearer(), timeout=10)
        assert missing.status_code == 404
        user = base64.b64encode(b"shop\x00:pw").decode()
        assert requests.post(f"{url}{UP35}/returns", json=fixture("35up/create-return.request.json"),
                             headers={"Authorization": f"Basic {user}"}, timeout=10).status_code == 401
        assert requests.get(f"{url}/nowhere%00", timeout=10).status_code == 404
        journal = requests.get(f"{url}/__admin/journal", timeout=10)
        assert journal.status_code == 200
        assert any(e["path"] == f"{PL}/returns/ret_\x00x/status" for e in journal.json()["entries"])
        assert requests.get(f"{url}/__admin/violations", timeout=10).status_code == 200
        assert requests.get(f"{url}/__admin/journal", params={"account": "a\x00b"}, timeout=10).status_code == 200
        assert requests.get(f"{url}/__admin/returns", params={"q": "a\x00b"}, timeout=10).json()["total"] == 1
    finally:
        server.stop()


@pytest.mark.system
def test_a_store_file_deleted_while_serving_is_a_503_not_vanishing_writes(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    server = Server("--store", f"sqlite:{db}", "--workers", "1").start()
    try:
        url = server.url
        assert requests.post(f"{url}{PL}/returns", json=fixture("3plship/create-return.request.json"),
                             headers=bearer(), timeout=10).status_code == 201
        os.unlink(db)
        answer = requests.post(f"{url}{PL}/returns", json=fixture("3plship/create-return.request.json"),
                               headers=bearer(), timeout=10)
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "SERVICE_UNAVAILABLE" or answer.json()["success"] is False
        assert "Retry-After" in answer.headers
        assert requests.get(f"{url}{PL}/returns", headers=bearer(), timeout=10).status_code == 503
        assert requests.get(f"{url}/__admin/health", timeout=10).status_code == 503
        assert requests.get(f"{url}/__admin/journal", timeout=10).status_code == 503
        assert not db.exists()  # no thread's new connection brought it back empty
    finally:
        server.stop()


def test_a_full_disk_is_a_503_and_nothing_is_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's 'database or disk is full' (any failed write) is the store being away, answered 503 with
    Retry-After, and the request changes nothing."""
    from mockserver.store import SqliteStore

    store = SqliteStore(tmp_path / "state.db")
    app = create_app(Config(store=f"sqlite:{tmp_path / 'state.db'}"), store=store)
    client = app.test_client()
    real_connection = store.connection

    class Full:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith(("INSERT", "UPDATE")):
                raise sqlite3.OperationalError("database or disk is full")
            return self.conn.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

    monkeypatch.setattr(store, "connection", lambda: Full(real_connection()))
    answer = client.post(f"{PL}/returns", json=fixture("3plship/create-return.request.json"), headers=bearer())
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert _json(answer)["success"] is False
    monkeypatch.undo()
    assert _json(client.get(f"{PL}/returns", headers=bearer()))["meta"]["pagination"]["total"] == 0


NAN_SCENARIO = ('{"returns": [{"provider": "3plship", "account": "zl_test_nan", "status": "initiated", "return": '
                '{"order_id": "o1", "reason": "defective", "items": [{"sku": "S", "quantity": 1}], '
                '"refund_amount": NaN}}]}')


@pytest.mark.system
@pytest.mark.parametrize("number", ["NaN", "-Infinity", "1e400"])
def test_nan_and_infinite_numbers_are_refused_wherever_json_is_read(tmp_path: Path, number: str) -> None:
    """A schema's bounds let NaN through (every comparison with it is false): a fault rule with
    "probability": NaN was stored and never fired, a seeded refund_amount NaN was answered as null. Every
    reader of JSON refuses them, naming the number: the control plane, files given at start, recordings."""
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}").start()
    try:
        admin = {"Content-Type": "application/json"}
        for path, body in (("/__admin/faults", '{"status": 500, "probability": NaN}'.replace("NaN", number)),
                           ("/__admin/seed", NAN_SCENARIO.replace("NaN", number))):
            answer = requests.post(server.url + path, data=body, headers=admin, timeout=10)
            assert answer.status_code == 400, (path, answer.text)
            assert number in answer.json()["error"]["message"]
        assert requests.get(server.url + "/__admin/faults", timeout=10).json()["rules"] == []
        assert requests.get(server.url + "/__admin/returns", timeout=10).json()["returns"] == []
        created = requests.post(server.url + PL + "/returns", headers={**bearer(), **admin}, timeout=10,
                                data=json.dumps(fixture("3plship/create-return.request.json"))[:-1]
                                + f', "refund_shipping": {number}}}')
        assert created.status_code == 400 and number in created.json()["error"]["message"]
    finally:
        server.stop()
    (tmp_path / "faults.json").write_text('[{"status": 503, "probability": NaN}]'.replace("NaN", number))
    (tmp_path / "scenario.json").write_text(NAN_SCENARIO.replace("NaN", number))
    har = {"log": {"version": "1.2", "entries": []}}
    (tmp_path / "rec.har").write_text(json.dumps(har)[:-2] + ', "x": ' + number + "}}")
    for args in (["serve", "--faults", str(tmp_path / "faults.json")],
                 ["serve", "--seed-file", str(tmp_path / "scenario.json")],
                 ["validate-har", str(tmp_path / "rec.har")], ["drift", str(tmp_path / "rec.har")]):
        ran = cli(*args, "--port", str(free_port())) if args[0] == "serve" else cli(*args)
        said = number if args[0] == "serve" else "is not JSON"  # a recording is read by orjson, which names the place
        assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and said in ran.stderr, (args, ran.stderr)
