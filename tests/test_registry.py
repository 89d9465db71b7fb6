"""A provider is its contracts, its package and one registry entry: a throw-away third one proves it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from acme.provider import AcmeProvider
from flask.testing import FlaskClient

from mockserver.contract import contract
from mockserver.domain.config import Config
from mockserver.inprocess import mock_providers
from mockserver.providers.registry import REGISTRY
from mockserver.store import MemoryStore
from mockserver.verify.har import locate
from mockserver.web import create_app, mock_of, served

ACME = "/acme/v2"
TOKEN = {"Authorization": "Bearer acme-shop1"}


@pytest.fixture
def acme() -> Iterator[FlaskClient]:
    with REGISTRY.registered(AcmeProvider()):
        app = create_app(Config(self_check=True), store=MemoryStore())
        app.testing = True
        yield app.test_client()
        assert served(app).self_check_failures == []


def test_a_registered_provider_is_served_validated_and_journaled(acme: FlaskClient) -> None:
    created = acme.post(ACME + "/returns", json={"order": "A-42", "reason": "broken"}, headers=TOKEN)
    assert created.status_code == 201, created.json
    assert created.json is not None and created.json["id"].startswith("acr_") and created.json["state"] == "open"
    got = acme.get(f"{ACME}/returns/{created.json['id']}", headers=TOKEN)
    assert got.status_code == 200 and got.json == created.json
    other_account = acme.get(f"{ACME}/returns/{created.json['id']}", headers={"Authorization": "Bearer acme-shop2"})
    assert other_account.status_code == 404
    assert other_account.json == {"fault": {"code": "NOT-FOUND", "text": f"No return {created.json['id']}.",
                                            "fields": []}}

    # Validation against its own contract, answered in its own error format, naming the field.
    invalid = acme.post(ACME + "/returns", json={"order": "42", "reason": "broken"}, headers=TOKEN)
    assert invalid.status_code == 422 and invalid.json is not None
    assert invalid.json["fault"]["code"] == "VALIDATION-ERROR"
    assert [f["field"] for f in invalid.json["fault"]["fields"]] == ["order"]
    unauthorized = acme.post(ACME + "/returns", json={"order": "A-1", "reason": "broken"})
    assert unauthorized.status_code == 401 and unauthorized.json is not None
    assert unauthorized.json["fault"]["code"] == "UNAUTHORIZED"
    unknown = acme.get(ACME + "/nothing-here", headers=TOKEN)
    assert unknown.status_code == 404 and unknown.json is not None and unknown.json["fault"]["code"] == "NOT-FOUND"

    # Journaled, with the client's contract violations.
    mock = mock_of(acme.application)
    entries = mock.journal.entries(provider="acme")
    assert [(e.method, e.status) for e in entries] == [("POST", 201), ("GET", 200), ("GET", 404), ("POST", 422),
                                                       ("POST", 401), ("GET", 404)]
    assert entries[0].account == "acme-shop1"
    assert [(v.field, v.provider) for v in mock.journal.violations() if v.status == 422] == [("order", "acme")]

    # Its OpenAPI document, the index and the control plane know it.
    document = acme.get("/acme/openapi.json").json
    assert document is not None and document["servers"][1]["url"] == "https://api.acme.test/v2"
    assert "AcmeReturn" in document["components"]["schemas"]
    index = acme.get("/").json
    assert index is not None and index["providers"]["acme"] == {"base_url": ACME, "openapi": "/acme/openapi.json"}
    listed = acme.get("/__admin/returns", query_string={"provider": "acme"}).json
    assert listed is not None and [r["id"] for r in listed["returns"]] == [created.json["id"]]


def test_a_registered_provider_is_mocked_in_process_at_its_real_base_url() -> None:
    with REGISTRY.registered(AcmeProvider()), mock_providers() as mock:
        answer = requests.post("https://api.acme.test/v2/returns", json={"order": "A-7", "reason": "unwanted"},
                               headers=TOKEN, timeout=5)
        assert answer.status_code == 201 and answer.json()["order"] == "A-7"
        bad = requests.post("https://api.acme.test/v2/returns", json={"order": "A-7"}, headers=TOKEN, timeout=5)
        assert bad.status_code == 422
        assert [v.field for v in mock.violations] == ["reason"]
        assert mock.base_urls["acme"] == "https://api.acme.test/v2"


def test_recorded_traffic_to_a_registered_provider_is_located() -> None:
    with REGISTRY.registered(AcmeProvider()):
        assert locate("https://api.acme.test/v2/returns/acr_1") == ("acme", "/returns/acr_1")
        assert locate("http://127.0.0.1:8080/acme/v2/returns") == ("acme", "/returns")
    assert locate("https://api.acme.test/v2/returns/acr_1") is None


def test_an_unregistered_provider_leaves_nothing_behind() -> None:
    with REGISTRY.registered(AcmeProvider()):
        assert "acme" in REGISTRY
    assert "acme" not in REGISTRY
    with pytest.raises(KeyError):
        contract("acme")
    client = create_app(Config(), store=MemoryStore()).test_client()
    assert client.get("/acme/openapi.json").status_code == 404
    assert set(mock_of(client.application).backends) == {"35up", "3plship"}
