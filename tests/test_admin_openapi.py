"""The control plane as an OpenAPI document (/__admin/openapi.json), written from contracts/admin: every
route the server has is in it and nothing else, it is valid OpenAPI 3.1, and every answer the control plane
gives (errors included) is the one the document promises for that route and status."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from helpers import PL, UP35, basic, bearer, fixture
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app

TOKEN = {"Authorization": "Bearer t0ken"}
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def client() -> FlaskClient:
    return create_app(Config(admin_token="t0ken"), store=MemoryStore()).test_client()


def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/__admin/openapi.json")  # no token: it holds no data
    assert answer.status_code == 200
    return answer.get_json()  # type: ignore[no-any-return]


def test_every_admin_route_is_in_the_document_and_nothing_else(client: FlaskClient) -> None:
    doc = document(client)
    validate(doc)
    base = doc["servers"][0]["url"]
    served = {(method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
              for rule in client.application.url_map.iter_rules() if rule.rule.startswith(base)
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    documented = {(method, base + path.rstrip("/") + ("/" if path == "/" else ""))
                  for path, item in doc["paths"].items() for method in item if method in METHODS}
    assert not served - documented, f"routes to add to contracts/admin/openapi.json: {sorted(served - documented)}"
    assert not documented - served, f"documented routes the server lacks: {sorted(documented - served)}"
    for path, item in doc["paths"].items():
        for method in (m for m in item if m in METHODS):
            op = item[method]
            assert op["summary"] and op["description"] and op["tags"], (method, path)
            assert any(code.startswith("4") for code in op["responses"]), (method, path)


class Answers:
    """Each answer checked against what the document says for its route, method and status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc, self.seen = doc, set[tuple[str, str, str]]()
        self.registry: Registry[Any] = Registry().with_resource(
            "urn:admin", Resource.from_contents(doc, default_specification=DRAFT202012))

    def check(self, answer: Any, method: str, template: str) -> Any:
        op = self.doc["paths"][template][method]
        status = str(answer.status_code)
        assert status in op["responses"], (method, template, status, answer.get_data(as_text=True)[:300])
        pointer = f"/paths/{template.replace('~', '~0').replace('/', '~1')}/{method}/responses/{status}"
        response = op["responses"][status]
        if "$ref" in response:
            pointer = response["$ref"][1:]
            response = self.doc["components"]["responses"][pointer.rsplit("/", 1)[1]]
        content = response.get("content", {})
        if "application/json" in content:
            schema = {"$ref": f"urn:admin#{pointer}/content/application~1json/schema"}
            errors = [e.message for e in Draft202012Validator(schema, registry=self.registry).iter_errors(
                answer.get_json())]
            assert not errors, (method, template, status, errors[:3])
        else:
            assert answer.mimetype in content or not content, (method, template, answer.mimetype)
        self.seen.add((method, template, status))
        return answer


def test_every_answer_is_the_documented_one(client: FlaskClient) -> None:
    doc = document(client)
    a = Answers(doc)
    get, post, put, delete = client.get, client.post, client.put, client.delete
    # Provider traffic first, so that the journal, the violations and the deliveries hold something.
    client.post(PL + "/returns", json=fixture("3plship/create-return.request.json"), headers=bearer())
    client.patch(UP35 + "/returns/nope", json={"status": "approved"}, headers=basic())
    client.post(PL + "/webhooks", headers=bearer(), json={"url": "http://127.0.0.1:9/hook",
                                                         "events": ["return.created"]})
    client.post(PL + "/returns", json=fixture("3plship/create-return.request.json"), headers=bearer())
    a.check(get("/__admin/"), "get", "/")
    a.check(get("/__admin/openapi.json"), "get", "/openapi.json")
    a.check(get("/__admin/health", headers=TOKEN), "get", "/health")
    a.check(get("/__admin/health", headers={"Authorization": "Bearer wrong"}), "get", "/health")  # 401
    a.check(get("/__admin/clock", headers=TOKEN), "get", "/clock")
    a.check(post("/__admin/clock", json={"advance": "P1D"}, headers=TOKEN), "post", "/clock")
    a.check(post("/__admin/clock", json={"advance": "P1Y"}, headers=TOKEN), "post", "/clock")  # 422
    a.check(post("/__admin/clock", data="{", content_type="application/json", headers=TOKEN), "post", "/clock")
    a.check(post("/__admin/clock", data="x", content_type="text/plain", headers=TOKEN), "post", "/clock")  # 415
    a.check(post("/__admin/seed", json=fixture("scenarios/example.json"), headers=TOKEN), "post", "/seed")
    a.check(post("/__admin/seed", json={"returns": [{"provider": "35up"}]}, headers=TOKEN), "post", "/seed")
    a.check(get("/__admin/returns", headers=TOKEN), "get", "/returns")
    a.check(get("/__admin/returns?limit=2&q=1", headers=TOKEN), "get", "/returns")
    a.check(get("/__admin/returns?provider=nope", headers=TOKEN), "get", "/returns")  # 422
    one = "/returns/{provider}/{return_id}"
    a.check(get("/__admin/returns/35up/1002?account=shop-a", headers=TOKEN), "get", one)
    a.check(get("/__admin/returns/35up/none", headers=TOKEN), "get", one)  # 404
    moved = "/returns/{provider}/{return_id}/status"
    a.check(post("/__admin/returns/35up/1002/status?account=shop-a", json={"status": "customer_shipped"},
                 headers=TOKEN), "post", moved)
    a.check(post("/__admin/returns/35up/1002/status?account=shop-a", json={"status": "created"}, headers=TOKEN),
            "post", moved)  # 409: the provider's refusal
    a.check(get("/__admin/lifecycles", headers=TOKEN), "get", "/lifecycles")
    a.check(get("/__admin/rate-limits", headers=TOKEN), "get", "/rate-limits")
    a.check(put("/__admin/rate-limits", json={"limit": 5, "period": "minute", "enforce": False}, headers=TOKEN),
            "put", "/rate-limits")
    a.check(post("/__admin/rate-limits", json={"windows": [{"limit": 5, "period": "week"}]}, headers=TOKEN),
            "post", "/rate-limits")  # 422
    a.check(post("/__admin/rate-limits", json={"windows": [{"limit": 9, "period": "day"}]}, headers=TOKEN),
            "post", "/rate-limits")
    a.check(get("/__admin/webhooks/deliveries", headers=TOKEN), "get", "/webhooks/deliveries")
    a.check(post("/__admin/faults", json={"provider": "3plship", "status": 503, "times": 2}, headers=TOKEN),
            "post", "/faults")
    a.check(get("/__admin/faults", headers=TOKEN), "get", "/faults")
    a.check(get("/__admin/faults/chaos", headers=TOKEN), "get", "/faults/chaos")
    a.check(delete("/__admin/faults/f1", headers=TOKEN), "delete", "/faults/{rule_id}")
    a.check(delete("/__admin/faults/f1", headers=TOKEN), "delete", "/faults/{rule_id}")  # 404
    a.check(delete("/__admin/faults", headers=TOKEN), "delete", "/faults")
    a.check(put("/__admin/autopilot", json={"provider": "3plship", "preset": "warehouse"}, headers=TOKEN), "put",
            "/autopilot")
    a.check(put("/__admin/autopilot", json={"provider": "3plship", "moves": [{"to": "completed", "after": "P1D"}]},
                headers=TOKEN), "put", "/autopilot")  # 422: the lifecycle has no such move
    a.check(get("/__admin/autopilot", headers=TOKEN), "get", "/autopilot")
    a.check(delete("/__admin/autopilot?provider=3plship", headers=TOKEN), "delete", "/autopilot")
    faults = "/webhooks/faults"
    a.check(post("/__admin" + faults, json={"event": "return.received", "delay": "PT1H"}, headers=TOKEN),
            "post", faults)
    a.check(get("/__admin" + faults, headers=TOKEN), "get", faults)
    a.check(get("/__admin/webhooks/faults/chaos", headers=TOKEN), "get", "/webhooks/faults/chaos")
    (mine,) = [r["id"] for r in get("/__admin/returns?provider=3plship&account=zl_test_keyA", headers=TOKEN)
               .get_json()["returns"]][-1:]
    triggered = {"event": "return.created", "return": mine}
    a.check(post("/__admin/webhooks/trigger", json=triggered, headers=TOKEN), "post", "/webhooks/trigger")  # 202
    a.check(post("/__admin/webhooks/trigger", json={**triggered, "override": {"data": {"status": "x"}}},
                 headers=TOKEN), "post", "/webhooks/trigger")  # 422
    a.check(delete("/__admin/webhooks/faults/w1", headers=TOKEN), "delete", "/webhooks/faults/{rule_id}")
    a.check(delete("/__admin" + faults, headers=TOKEN), "delete", faults)
    redeliver = "/webhooks/deliveries/{delivery_id}/redeliver"
    first = get("/__admin/webhooks/deliveries?event=return.created", headers=TOKEN).get_json()["deliveries"][0]
    a.check(post(f"/__admin/webhooks/deliveries/{first['id']}/redeliver", headers=TOKEN), "post", redeliver)
    a.check(post("/__admin/webhooks/deliveries/dlv_nope/redeliver", headers=TOKEN), "post", redeliver)  # 404
    a.check(get("/__admin/webhooks/deliveries?status=held", headers=TOKEN), "get", "/webhooks/deliveries")
    a.check(post("/__admin/vary", json={"seed": 7}, headers=TOKEN), "post", "/vary")
    a.check(get("/__admin/vary", headers=TOKEN), "get", "/vary")
    a.check(delete("/__admin/vary", headers=TOKEN), "delete", "/vary")
    a.check(get("/__admin/journal?limit=50", headers=TOKEN), "get", "/journal")
    a.check(get("/__admin/journal?status=abc", headers=TOKEN), "get", "/journal")  # 422
    a.check(get("/__admin/violations", headers=TOKEN), "get", "/violations")
    a.check(delete("/__admin/journal", headers=TOKEN), "delete", "/journal")
    a.check(post("/__admin/reset?provider=35up", headers=TOKEN), "post", "/reset")
    a.check(post("/__admin/reset", headers={**TOKEN, "Origin": "https://evil.example"}), "post", "/reset")  # 403
    every = {(m, p) for p, item in doc["paths"].items() for m in item if m in METHODS}
    succeeded = {(m, p) for m, p, status in a.seen if status.startswith("2")}
    assert succeeded == every, every - succeeded  # each route's success answered, and checked
    assert {status for _, _, status in a.seen} >= {"400", "401", "403", "404", "409", "415", "422"}
