"""An independent fake of the two real providers (35up and 3plship returns APIs).

Written from the contracts (``contracts/``), ``PROVIDERS.md`` and the README's documented behaviour only,
to measure a drift detector: by default it behaves as the documents say (with its own ids, request ids,
English messages and a clock 1.3 s ahead of real time); a named *deviation* makes it differ in one way a
detector must report, a named *noise* variation in one way a detector must not report
(``variations.py`` lists them).

Serves 3plship under ``/api/v1`` and 35up under ``/v1`` on one port::

    python fake_provider.py --port 8765 [--deviation NAME | --noise NAME]

or in-process: ``app = make_app(deviation="...")`` (a WSGI callable) and ``serve_in_thread(app)``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import json
import math
import os
import random
import re
import secrets
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server, run_simple
from werkzeug.wrappers import Request, Response

from variations import DEVIATION_NAMES, NOISE_NAMES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SCHEMA_BASE = "https://returns-mock.local/contracts/"
Provider = Literal["3plship", "35up", "none"]

# ---------------------------------------------------------------------------------------------------
# Contracts
# ---------------------------------------------------------------------------------------------------


def find_contracts_dir() -> Path:
    """``$FAKE_PROVIDER_CONTRACTS``, else the first ``contracts/`` (or ``main/contracts``) above this file."""
    env = os.environ.get("FAKE_PROVIDER_CONTRACTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (parent / "contracts", parent / "main" / "contracts"):
            if (candidate / "3plship" / "openapi.json").is_file() and (candidate / "35up" / "openapi.json").is_file():
                return candidate
    return Path("/work/main/contracts")


class Contracts:
    """The contract files this fake reads: request schemas, lifecycles, carriers, enums."""

    def __init__(self, root: Path) -> None:
        self.root = root
        resources: list[tuple[str, Resource[Any]]] = []
        self.docs: dict[str, Any] = {}
        for provider in ("35up", "3plship"):
            for path in sorted((root / provider).glob("*.json")):
                doc = json.loads(path.read_text(encoding="utf-8"))
                self.docs[f"{provider}/{path.name}"] = doc
                if isinstance(doc, dict) and "$id" in doc:
                    resources.append((doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012)))
        self.registry: Registry[Any] = Registry().with_resources(resources)
        self._validators: dict[str, Draft202012Validator] = {}
        self.lifecycle_35up: dict[str, Any] = self.docs["35up/lifecycle.json"]
        self.lifecycle_3pl: dict[str, Any] = self.docs["3plship/lifecycle.json"]
        self.carriers: dict[str, str] = self.docs["3plship/carriers.json"]["tracking_url"]
        self.statuses_35up: list[str] = list(self.docs["35up/status.json"]["enum"])
        self.statuses_3pl: list[str] = list(self.docs["3plship/status.json"]["enum"])
        self.return_window = timedelta(days=30)
        for auto in self.lifecycle_35up.get("automatic", []):
            match = re.fullmatch(r"P(\d+)D", str(auto.get("after", "")))
            if auto.get("from") == "awaiting_return" and match:
                self.return_window = timedelta(days=int(match.group(1)))
        self.refund_business_days = int(self.lifecycle_3pl["refund"]["business_days"])

    def validator(self, name: str) -> Draft202012Validator:
        """A validator for one schema file, e.g. ``3plship/return-create-request.json``."""
        if name not in self._validators:
            self._validators[name] = Draft202012Validator({"$ref": SCHEMA_BASE + name}, registry=self.registry)
        return self._validators[name]


_CONTRACTS: dict[Path, Contracts] = {}
_CONTRACTS_LOCK = threading.Lock()


def load_contracts(root: Path | None = None) -> Contracts:
    path = (root or find_contracts_dir()).resolve()
    with _CONTRACTS_LOCK:
        if path not in _CONTRACTS:
            _CONTRACTS[path] = Contracts(path)
        return _CONTRACTS[path]


# ---------------------------------------------------------------------------------------------------
# Messages: our own English wording, and German for the noise variation
# ---------------------------------------------------------------------------------------------------

MESSAGES: dict[str, tuple[str, str]] = {
    "m.bad_request": (
        "The request body could not be read as a JSON document.",
        "Der Anfragetext konnte nicht als JSON-Dokument gelesen werden.",
    ),
    "m.unauthorized_3pl": (
        "No usable API key was sent; keys start with zl_live_ or zl_test_.",
        "Es wurde kein verwendbarer API-Schlüssel gesendet; Schlüssel beginnen mit zl_live_ oder zl_test_.",
    ),
    "m.unauthorized_35up": (
        "Send HTTP Basic credentials (username and password) to use this API.",
        "Für diese API sind HTTP-Basic-Zugangsdaten (Benutzername und Passwort) nötig.",
    ),
    "m.no_return": (
        "There is no such return for these credentials.",
        "Für diese Zugangsdaten gibt es keine solche Rücksendung.",
    ),
    "m.no_path": ("Nothing is served at this address.", "Unter dieser Adresse wird nichts bereitgestellt."),
    "m.method": (
        "This address does not take that HTTP method.",
        "Diese Adresse unterstützt diese HTTP-Methode nicht.",
    ),
    "m.validation": (
        "The request does not satisfy the API contract.",
        "Die Anfrage erfüllt den API-Vertrag nicht.",
    ),
    "m.transition": (
        "The return cannot move to that status from where it is now.",
        "Die Rücksendung kann von ihrem aktuellen Status nicht in diesen Status wechseln.",
    ),
    "m.refund_not_allowed": (
        "Only an inspected return can be refunded.",
        "Nur eine geprüfte Rücksendung kann erstattet werden.",
    ),
    "m.refund_already": (
        "This return has been refunded already.",
        "Diese Rücksendung wurde bereits erstattet.",
    ),
    "m.refund_exceeds": (
        "The requested amount is more than this return can refund.",
        "Der angeforderte Betrag übersteigt den erstattungsfähigen Betrag dieser Rücksendung.",
    ),
    "m.duplicate": ("This order already has a return.", "Für diese Bestellung gibt es bereits eine Rücksendung."),
    "m.internal": ("Something broke on our side.", "Auf unserer Seite ist ein Fehler aufgetreten."),
    "i.required": ("{field} has to be present", "{field} muss vorhanden sein"),
    "i.unknown": ("{field} is not a field this operation knows", "{field} ist kein Feld, das dieser Vorgang kennt"),
    "i.enum": ("{field} has to be one of the allowed values", "{field} muss einer der erlaubten Werte sein"),
    "i.type": (
        "{field} has the wrong type (expected {expected})",
        "{field} hat den falschen Typ (erwartet: {expected})",
    ),
    "i.rule": ("{field} breaks the rule {rule}", "{field} verletzt die Regel {rule}"),
    "i.integer": ("{field} has to be a whole number", "{field} muss eine ganze Zahl sein"),
    "i.date": (
        "{field} has to be an ISO-8601 date or date-time",
        "{field} muss ein ISO-8601-Datum oder ein ISO-8601-Zeitpunkt sein",
    ),
    "i.empty": ("the body is empty", "der Anfragetext ist leer"),
    "i.not_utf8": ("the body is not UTF-8 text", "der Anfragetext ist kein UTF-8-Text"),
    "i.not_json": ("the body is not well-formed JSON", "der Anfragetext ist kein wohlgeformtes JSON"),
    "i.media": (
        "the body has to be sent as application/json",
        "der Anfragetext muss als application/json gesendet werden",
    ),
    "i.bearer": (
        "the Authorization header has to be Bearer zl_live_... or zl_test_...",
        "der Authorization-Header muss Bearer zl_live_... oder zl_test_... lauten",
    ),
    "i.basic": (
        "the Authorization header has to carry Basic credentials",
        "der Authorization-Header muss Basic-Zugangsdaten enthalten",
    ),
    "i.no_return": ("no return {id} for these credentials", "keine Rücksendung {id} für diese Zugangsdaten"),
    "i.no_path": ("no resource at {path}", "keine Ressource unter {path}"),
    "i.method": ("{method} is not supported here", "{method} wird hier nicht unterstützt"),
    "i.transition": (
        "a return in {current} cannot move to {target}",
        "eine Rücksendung im Status {current} kann nicht zu {target} wechseln",
    ),
    "i.refund_state": (
        "the return is {status}; it has to be inspected first",
        "die Rücksendung ist {status}; sie muss zuerst geprüft werden",
    ),
    "i.refund_done": ("a refund is already {state}", "eine Erstattung ist bereits {state}"),
    "i.refund_max": (
        "{amount} is more than the refundable {refundable}",
        "{amount} ist mehr als der erstattungsfähige Betrag {refundable}",
    ),
    "i.duplicate": ("order {order} already has a return", "Bestellung {order} hat bereits eine Rücksendung"),
    "i.internal": ("an unexpected error occurred", "ein unerwarteter Fehler ist aufgetreten"),
}


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    """2026-01-15T14:30:00.000Z"""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def add_business_days(start: datetime, days: int) -> datetime:
    """Step forward one calendar day at a time, counting Monday to Friday only; the time of day stays."""
    moment = start
    counted = 0
    while counted < days:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            counted += 1
    return moment


def json_path(parts: Iterable[str | int]) -> str:
    """['items', 0, 'quantity'] -> 'items[0].quantity'"""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def money_text(value: Any) -> str:
    return format(Decimal(str(value)).normalize(), "f")


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Problem:
    path: str
    key: str
    params: dict[str, str] = field(default_factory=dict)
    allowed: list[str] | None = None
    location: str = "body"


@dataclass
class Answer:
    status: int
    body: Any
    provider: Provider
    headers: list[tuple[str, str]] = field(default_factory=list)


class BodyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


# ---------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------


@dataclass
class Return3pl:
    account: str
    id: str
    seq: int
    order_id: str
    status: str
    reason: str
    items: list[dict[str, Any]]
    shipping: dict[str, Any] | None
    refund_amount: Any
    refund_shipping: bool | None
    restocking_fee: Any
    customer_email: str | None
    created_at: datetime
    updated_at: datetime
    refund_status: str = "pending"
    refund: dict[str, Any] | None = None


@dataclass
class Return35:
    account: str
    order_id: str
    items: list[dict[str, Any]]
    status: str
    created_at: datetime
    updated_at: datetime
    history: list[tuple[str, datetime]]


@dataclass
class Webhook:
    account: str
    id: str
    url: str
    events: list[str]
    description: str | None
    secret: str
    active: bool
    created_at: datetime


ALNUM_LOWER = "0123456789abcdefghijklmnopqrstuvwxyz"
ALNUM_MIXED = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KEY_RE = re.compile(r"^zl_(live|test)_[A-Za-z0-9_]+$")
ORDER_ID_35UP_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MONEY_KEYS = frozenset({"refund_amount", "restocking_fee", "amount"})
RATE_LIMIT = 1000
RATE_WINDOW = 3600.0


# ---------------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------------


class FakeProvider:
    """A WSGI application serving both providers from in-memory state."""

    def __init__(
        self,
        deviation: str | None = None,
        noise: str | None = None,
        contracts_dir: Path | None = None,
    ) -> None:
        if deviation and noise:
            raise ValueError("choose one variation: a deviation or a noise, not both")
        if deviation and deviation not in DEVIATION_NAMES:
            raise ValueError(f"unknown deviation {deviation!r}; known: {', '.join(DEVIATION_NAMES)}")
        if noise and noise not in NOISE_NAMES:
            raise ValueError(f"unknown noise {noise!r}; known: {', '.join(NOISE_NAMES)}")
        self.deviation = deviation or ""
        self.noise = noise or ""
        self.contracts = load_contracts(contracts_dir)
        self.offset = timedelta(seconds=4.0 if self.noise == "noise_clock_4s" else 1.3)
        self.lock = threading.RLock()
        self.seq = 0
        self.returns_3pl: dict[str, Return3pl] = {}
        self.returns_35up: dict[tuple[str, str], Return35] = {}
        self.webhooks: list[Webhook] = []
        self.rate: dict[str, deque[float]] = {}
        self.shuffle_random = random.Random(35_3)

    # --- variation switches ---------------------------------------------------------------------------

    def dev(self, name: str) -> bool:
        return self.deviation == name

    def noisy(self, name: str) -> bool:
        return self.noise == name

    # --- clock, ids, messages -------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def _token(self, alphabet: str, length: int) -> str:
        return "".join(secrets.choice(alphabet) for _ in range(length))

    def new_return_id(self) -> str:
        if self.noisy("noise_ids_alt"):
            return "ret_" + self._token(ALNUM_MIXED, 26)
        return "ret_" + self._token(ALNUM_LOWER, 14)

    def new_request_id(self) -> str:
        if self.noisy("noise_request_ids_alt"):
            return "req_" + secrets.token_hex(16).upper()
        return "req_" + self._token(ALNUM_MIXED, 18)

    def new_webhook_id(self) -> str:
        if self.noisy("noise_ids_alt"):
            return "wh_" + self._token(ALNUM_MIXED, 24)
        return "wh_" + self._token(ALNUM_LOWER, 12)

    def new_secret(self) -> str:
        if self.noisy("noise_ids_alt"):
            return "whsec_" + self._token(ALNUM_MIXED, 48)
        return "whsec_" + self._token(ALNUM_MIXED, 32)

    def text(self, key: str, **params: str) -> str:
        english, german = MESSAGES[key]
        template = german if self.noisy("noise_messages_german") else english
        return template.format(**params)

    # --- WSGI -------------------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        path = request.path
        provider: Provider = "none"
        try:
            if path == "/api/v1" or path.startswith("/api/v1/"):
                provider = "3plship"
                answer = self.handle_3pl(request, path[len("/api/v1") :])
            elif path == "/v1" or path.startswith("/v1/"):
                provider = "35up"
                answer = self.handle_35up(request, path[len("/v1") :])
            else:
                answer = Answer(404, {"error": "not found", "providers": {"3plship": "/api/v1", "35up": "/v1"}}, "none")
        except Exception:
            traceback.print_exc(file=sys.stderr)
            answer = self.internal_error(provider)
        return self.finish(answer)(environ, start_response)

    def internal_error(self, provider: Provider) -> Answer:
        if provider == "3plship":
            return self.error_3pl(500, "INTERNAL_ERROR", "m.internal", {"issue": self.text("i.internal")})
        if provider == "35up":
            return self.error_35up(500, "internal_error", "m.internal", [])
        return Answer(500, {"error": "internal"}, "none")

    # --- rendering ------------------------------------------------------------------------------------

    def finish(self, answer: Answer) -> Response:
        body = answer.body
        if self.noisy("noise_money_float"):
            body = _money_as_float(body)
        if self.noisy("noise_key_order"):
            body = self._shuffle_keys(body)
        if self.noisy("noise_json_layout"):
            payload = json.dumps(body, indent=2, ensure_ascii=False)
        else:
            payload = json.dumps(body)
        content_type = "application/json"
        if answer.provider == "35up" and answer.status >= 400 and self.dev("header_35up_errors_text_plain"):
            content_type = "text/plain; charset=utf-8"
        headers: list[tuple[str, str]] = [("Content-Type", content_type), *answer.headers]
        if self.noisy("noise_infra_headers"):
            headers += [
                ("Server", "envoy"),
                ("Via", "1.1 edge-fra-3"),
                ("X-Request-Id", secrets.token_hex(8)),
                ("CF-Ray", secrets.token_hex(8) + "-FRA"),
                ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
                ("Cache-Control", "no-store"),
            ]
        if self.noisy("noise_header_casing"):
            headers = [(name.lower(), value) for name, value in headers]
        response = Response(payload.encode("utf-8"), status=answer.status)
        response.headers.clear()
        for name, value in headers:
            response.headers.add(name, value)
        return response

    def _shuffle_keys(self, value: Any) -> Any:
        if isinstance(value, dict):
            keys = list(value)
            with self.lock:
                self.shuffle_random.shuffle(keys)
            if len(keys) > 1 and keys == list(value):
                keys.reverse()
            return {key: self._shuffle_keys(value[key]) for key in keys}
        if isinstance(value, list):
            return [self._shuffle_keys(item) for item in value]
        return value

    # --- request bodies -------------------------------------------------------------------------------

    def read_json(self, request: Request, optional: bool = False) -> Any:
        """The JSON body; None when optional and absent. Raises BodyError for a 400."""
        raw = request.get_data(cache=True)
        if not raw:
            if optional:
                return None
            raise BodyError("i.empty")
        if request.mimetype != "application/json":
            raise BodyError("i.media")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BodyError("i.not_utf8") from exc
        try:
            return json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            raise BodyError("i.not_json") from exc

    def schema_problems(self, schema: str, instance: Any) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[tuple[str, str]] = set()
        for error in self.contracts.validator(schema).iter_errors(instance):
            base = list(error.absolute_path)
            keyword = error.validator
            found: list[Problem] = []
            if keyword == "required" and isinstance(error.instance, dict):
                for name in error.validator_value:
                    if name not in error.instance:
                        where = json_path([*base, name])
                        found.append(Problem(where, "i.required", {"field": where}))
            elif keyword == "additionalProperties" and isinstance(error.instance, dict):
                known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
                for name in error.instance:
                    if name not in known:
                        where = json_path([*base, name])
                        found.append(Problem(where, "i.unknown", {"field": where}))
            elif keyword in ("enum", "const"):
                values = error.validator_value if keyword == "enum" else [error.validator_value]
                where = json_path(base)
                found.append(Problem(where, "i.enum", {"field": where or "body"}, [str(v) for v in values]))
            elif keyword == "type":
                where = json_path(base)
                expected = error.validator_value
                expected_text = " or ".join(expected) if isinstance(expected, list) else str(expected)
                found.append(Problem(where, "i.type", {"field": where or "body", "expected": expected_text}))
            else:
                where = json_path(base)
                rule = f"{keyword} {json.dumps(error.validator_value)}"
                found.append(Problem(where, "i.rule", {"field": where or "body", "rule": rule}))
            for problem in found:
                if (problem.path, problem.key) not in seen:
                    seen.add((problem.path, problem.key))
                    problems.append(problem)
        return problems

    # =================================================================================================
    # 3plship
    # =================================================================================================

    def rate_headers(self, account: str) -> list[tuple[str, str]]:
        moment = time.time() + self.offset.total_seconds()
        with self.lock:
            window = self.rate.setdefault(account, deque())
            while window and window[0] <= moment - RATE_WINDOW:
                window.popleft()
            window.append(moment)
            used = len(window)
            reset = math.ceil(window[0] + RATE_WINDOW)
        remaining = max(0, RATE_LIMIT - used)
        if self.noisy("noise_ratelimit_remaining"):
            remaining = max(0, remaining - 137)
        return [
            ("X-RateLimit-Limit", str(RATE_LIMIT)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(reset)),
        ]

    def error_3pl(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any],
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        body = {
            "success": False,
            "error": {"code": code, "message": self.text(message), "details": details},
            "meta": {"timestamp": iso(self.now()), "requestId": self.new_request_id(), "version": "v1"},
        }
        return Answer(status, body, "3plship", list(headers))

    def validation_3pl(self, problems: list[Problem]) -> Answer:
        def one(problem: Problem) -> dict[str, Any]:
            entry: dict[str, Any] = {}
            if problem.path:
                entry["field"] = problem.path
            entry["issue"] = self.text(problem.key, **problem.params)
            entry["location"] = problem.location
            if problem.allowed is not None:
                entry["allowed"] = list(problem.allowed)
            return entry

        details = one(problems[0])
        details["problems"] = [one(problem) for problem in problems]
        if self.dev("body_3pl_details_field_camel") and details.get("field") == "order_id":
            details["field"] = "orderId"
        return self.error_3pl(422, "VALIDATION_ERROR", "m.validation", details)

    def ok_3pl(self, status: int, data: Any, pagination: dict[str, Any] | None = None) -> Answer:
        meta: dict[str, Any] = {"request_id": self.new_request_id(), "timestamp": iso(self.now())}
        if pagination is not None:
            meta["pagination"] = pagination
        return Answer(status, {"success": True, "data": data, "meta": meta}, "3plship")

    def handle_3pl(self, request: Request, subpath: str) -> Answer:
        try:
            answer = self._route_3pl(request, subpath)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            answer = self.internal_error("3plship")
        key = _bearer_key(request.headers.get("Authorization", "")) or "-"
        if not (answer.status >= 400 and self.dev("header_3pl_ratelimit_missing_on_errors")):
            answer.headers.extend(self.rate_headers(key))
        return answer

    def _route_3pl(self, request: Request, subpath: str) -> Answer:
        parts = subpath.strip("/").split("/") if subpath.strip("/") else []
        method = request.method.upper()
        allow: tuple[str, ...]
        if parts == ["returns"] and not subpath.endswith("/"):
            allow = ("GET", "POST")
        elif len(parts) == 3 and parts[0] == "returns" and parts[1] and parts[2] == "status":
            allow = ("PATCH",)
        elif (len(parts) == 3 and parts[0] == "returns" and parts[1] and parts[2] == "refund") or (
            parts == ["webhooks"] and not subpath.endswith("/")
        ):
            allow = ("POST",)
        else:
            where = "/api/v1" + subpath
            return self.error_3pl(
                404, "NOT_FOUND", "m.no_path", {"issue": self.text("i.no_path", path=where), "location": "path"}
            )
        if method not in allow:
            headers = [] if self.dev("header_3pl_405_no_allow") else [("Allow", ", ".join(allow))]
            return self.error_3pl(
                405,
                "METHOD_NOT_ALLOWED",
                "m.method",
                {"issue": self.text("i.method", method=method), "location": "request"},
                headers,
            )
        account = _bearer_key(request.headers.get("Authorization", ""))
        if account is None or (self.dev("refuse_3pl_live_keys") and account.startswith("zl_live_")):
            code = "FORBIDDEN" if self.dev("code_3pl_401_forbidden") else "UNAUTHORIZED"
            return self.error_3pl(
                401,
                code,
                "m.unauthorized_3pl",
                {"field": "Authorization", "issue": self.text("i.bearer"), "location": "header"},
                [("WWW-Authenticate", 'Bearer realm="3plship"')],
            )
        try:
            if parts == ["webhooks"]:
                return self.subscribe_3pl(request, account)
            if parts == ["returns"] and method == "POST":
                return self.create_3pl(request, account)
            if parts == ["returns"]:
                return self.list_3pl(request, account)
            if parts[2] == "status":
                return self.move_3pl(request, account, parts[1])
            return self.refund_3pl(request, account, parts[1])
        except BodyError as error:
            return self.error_3pl(
                400, "BAD_REQUEST", "m.bad_request", {"issue": self.text(error.key), "location": "body"}
            )

    # --- 3plship: returns -----------------------------------------------------------------------------

    def _settle_3pl(self, ret: Return3pl, now: datetime) -> None:
        refund = ret.refund
        if ret.refund_status == "processing" and refund is not None:
            expected: datetime = refund["_expected"]
            if now >= expected:
                ret.refund_status = "completed"
                ret.status = "completed"
                refund["completed_at"] = expected
                ret.updated_at = expected

    def render_3pl(self, ret: Return3pl) -> dict[str, Any]:
        shipping: dict[str, Any] | None = None
        if ret.shipping is not None:
            carrier = ret.shipping.get("carrier")
            number = ret.shipping.get("tracking_number")
            url: str | None = None
            if isinstance(carrier, str) and isinstance(number, str):
                template = self.contracts.carriers.get(carrier.lower())
                if carrier.lower() == "ups" and self.dev("body_3pl_ups_tracking_url"):
                    template = "https://wwwapps.ups.com/WebTracking/track?trackNums={tracking_number}"
                if template is not None:
                    url = template.replace("{tracking_number}", quote(number, safe=""))
            received = ret.status in ("received", "inspected", "completed")
            if received and not self.dev("body_3pl_shipping_status_not_delivered"):
                state = "delivered"
            elif number:
                state = "in_transit"
            else:
                state = "pending"
            shipping = {"carrier": carrier, "tracking_number": number, "tracking_url": url}
            if "label_url" in ret.shipping:
                shipping["label_url"] = ret.shipping["label_url"]
            shipping["status"] = state
        refund: dict[str, Any] | None = None
        if ret.refund is not None:
            amount = ret.refund["amount"]
            if self.dev("type_3pl_refund_amount_string"):
                amount = f"{Decimal(str(amount)):.2f}"
            completed = ret.refund["completed_at"]
            refund = {
                "amount": amount,
                "requested_at": iso(ret.refund["_requested"]),
                "expected_at": iso(ret.refund["_expected"]),
                "completed_at": iso(completed) if completed is not None else None,
            }
        data: dict[str, Any] = {
            "id": ret.id,
            "order_id": ret.order_id,
            "status": ret.status,
            "reason": ret.reason,
            "items": [dict(item) for item in ret.items],
            "return_shipping": shipping,
            "refund_amount": ret.refund_amount,
        }
        if ret.refund_shipping is not None or not self.dev("body_3pl_refund_shipping_omitted"):
            data["refund_shipping"] = bool(ret.refund_shipping)
        if ret.restocking_fee is None:
            data["restocking_fee"] = None if self.dev("type_3pl_restocking_fee_null") else 0
        else:
            data["restocking_fee"] = ret.restocking_fee
        data["refund_status"] = ret.refund_status
        data["refund"] = refund
        data["customer_email"] = ret.customer_email
        data["created_at"] = iso(ret.created_at)
        data["updated_at"] = iso(ret.updated_at)
        return data

    def create_3pl(self, request: Request, account: str) -> Answer:
        body = self.read_json(request)
        problems = self.schema_problems("3plship/return-create-request.json", body)
        if not problems and self.dev("refuse_3pl_restocking_fee") and Decimal(str(body.get("restocking_fee", 0))) != 0:
            problems = [
                Problem("restocking_fee", "i.rule", {"field": "restocking_fee", "rule": "const 0"}, None, "body")
            ]
        if problems:
            return self.validation_3pl(problems)
        now = self.now()
        email = body.get("customer_email")
        if isinstance(email, str) and self.dev("body_3pl_email_lowercased"):
            email = email.lower()
        with self.lock:
            self.seq += 1
            ret = Return3pl(
                account=account,
                id=self._unused_return_id(),
                seq=self.seq,
                order_id=body["order_id"],
                status="initiated",
                reason=body["reason"],
                items=[dict(item) for item in body["items"]],
                shipping=dict(body["return_shipping"]) if "return_shipping" in body else None,
                refund_amount=body["refund_amount"],
                refund_shipping=body.get("refund_shipping"),
                restocking_fee=body.get("restocking_fee"),
                customer_email=email,
                created_at=now,
                updated_at=now,
            )
            self.returns_3pl[ret.id] = ret
            data = self.render_3pl(ret)
        status = 200 if self.dev("status_3pl_create_200_live") and account.startswith("zl_live_") else 201
        return self.ok_3pl(status, data)

    def _unused_return_id(self) -> str:
        while True:
            candidate = self.new_return_id()
            if candidate not in self.returns_3pl:
                return candidate

    def _find_3pl(self, account: str, return_id: str) -> Return3pl | None:
        ret = self.returns_3pl.get(return_id)
        if ret is None or ret.account != account:
            return None
        return ret

    def not_found_3pl(self, return_id: str) -> Answer:
        return self.error_3pl(
            404,
            "NOT_FOUND",
            "m.no_return",
            {"field": "id", "issue": self.text("i.no_return", id=return_id), "location": "path"},
        )

    def list_3pl(self, request: Request, account: str) -> Answer:
        args = request.args
        problems: list[Problem] = []
        status = args.get("status")
        if status is not None and status not in self.contracts.statuses_3pl:
            problems.append(
                Problem("status", "i.enum", {"field": "status"}, list(self.contracts.statuses_3pl), "query")
            )
        order_id = args.get("order_id")
        if order_id is not None and not 1 <= len(order_id) <= 128:
            problems.append(
                Problem("order_id", "i.rule", {"field": "order_id", "rule": "length 1..128"}, None, "query")
            )
        page = self._int_param(args.get("page"), "page", 1, 1, 1_000_000, problems)
        limit = self._int_param(args.get("limit"), "limit", 50, 1, 100, problems)
        start = self._date_param(args.get("start_date"), "start_date", False, problems)
        end = self._date_param(args.get("end_date"), "end_date", True, problems)
        if problems:
            return self.validation_3pl(problems)
        now = self.now()
        with self.lock:
            chosen: list[Return3pl] = []
            for ret in self.returns_3pl.values():
                if ret.account != account:
                    continue
                self._settle_3pl(ret, now)
                if status is not None and ret.status != status:
                    continue
                if order_id is not None and ret.order_id != order_id:
                    continue
                if start is not None and ret.created_at < start:
                    continue
                if end is not None and ret.created_at > end:
                    continue
                if ret.shipping is None and self.dev("list_3pl_skips_unshipped"):
                    continue
                chosen.append(ret)
            oldest_first = self.dev("list_3pl_oldest_first")
            chosen.sort(key=lambda r: (r.created_at, r.seq), reverse=not oldest_first)
            total = len(chosen)
            window = chosen[(page - 1) * limit : page * limit]
            data = [self.render_3pl(ret) for ret in window]
        total_pages = math.ceil(total / limit)
        pagination: dict[str, Any] = {
            "page": float(page) if page > 1 and self.dev("type_3pl_page_float") else page,
            "limit": limit,
            "total": total + 1 if self.dev("list_3pl_total_off_by_one") else total,
            "total_pages": total_pages,
            "has_more": page < total_pages,
        }
        return self.ok_3pl(200, data, pagination)

    def _int_param(self, raw: str | None, name: str, default: int, low: int, high: int, problems: list[Problem]) -> int:
        if raw is None:
            return default
        if not re.fullmatch(r"[+-]?[0-9]+", raw.strip()):
            problems.append(Problem(name, "i.integer", {"field": name}, None, "query"))
            return default
        value = int(raw)
        if not low <= value <= high:
            problems.append(Problem(name, "i.rule", {"field": name, "rule": f"range {low}..{high}"}, None, "query"))
            return default
        return value

    def _date_param(self, raw: str | None, name: str, end: bool, problems: list[Problem]) -> datetime | None:
        if raw is None:
            return None
        try:
            if DATE_RE.fullmatch(raw):
                day = date.fromisoformat(raw)
                return datetime.combine(day, dtime.max if end else dtime.min, UTC)
            if "T" in raw or "t" in raw:
                moment = datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
                if moment.tzinfo is not None:
                    return moment.astimezone(UTC)
        except ValueError:
            pass
        problems.append(Problem(name, "i.date", {"field": name}, None, "query"))
        return None

    def move_3pl(self, request: Request, account: str, return_id: str) -> Answer:
        body = self.read_json(request)
        problems = self.schema_problems("3plship/return-status-update-request.json", body)
        if problems:
            return self.validation_3pl(problems)
        target: str = body["status"]
        now = self.now()
        with self.lock:
            ret = self._find_3pl(account, return_id)
            if ret is None:
                return self.not_found_3pl(return_id)
            self._settle_3pl(ret, now)
            transitions: dict[str, Any] = self.contracts.lifecycle_3pl["transitions"]
            allowed: list[str] = list(transitions.get(ret.status, {}).get("to", []))
            permitted = target in allowed
            if self.dev("accept_3pl_skipped_step"):
                steps = ["initiated", "received", "inspected"]
                if ret.status in steps and target in steps:
                    permitted = steps.index(target) > steps.index(ret.status)
            if not permitted:
                details: dict[str, Any] = {
                    "field": "status",
                    "issue": self.text("i.transition", current=ret.status, target=target),
                    "location": "body",
                    "allowed": allowed,
                }
                return self.error_3pl(409, "INVALID_STATUS_TRANSITION", "m.transition", details)
            ret.status = target
            ret.updated_at = now - timedelta(minutes=2) if self.dev("time_3pl_status_updated_at_2min") else now
            data = self.render_3pl(ret)
        return self.ok_3pl(200, data)

    def refund_3pl(self, request: Request, account: str, return_id: str) -> Answer:
        body = self.read_json(request, optional=True)
        if body is None:
            body = {}
        problems = self.schema_problems("3plship/refund-request.json", body)
        if problems:
            return self.validation_3pl(problems)
        now = self.now()
        with self.lock:
            ret = self._find_3pl(account, return_id)
            if ret is None:
                return self.not_found_3pl(return_id)
            self._settle_3pl(ret, now)
            fee = Decimal(str(ret.restocking_fee if ret.restocking_fee is not None else 0))
            refundable = Decimal(str(ret.refund_amount))
            if not self.dev("body_3pl_refund_ignores_restocking_fee"):
                refundable -= fee
            second = ret.refund is not None and self.dev("accept_3pl_second_refund") and ret.status == "inspected"
            if ret.refund is not None and not second:
                issue = self.text("i.refund_done", state=ret.refund_status)
                done: dict[str, Any] = {"field": "refund_status", "issue": issue}
                status = 422 if self.dev("status_3pl_second_refund_422") else 409
                return self.error_3pl(status, "REFUND_ALREADY_PROCESSED", "m.refund_already", done)
            if ret.status != "inspected":
                details: dict[str, Any] = {
                    "field": "status",
                    "issue": self.text("i.refund_state", status=ret.status),
                    "allowed": ["inspected"],
                }
                return self.error_3pl(409, "REFUND_NOT_ALLOWED", "m.refund_not_allowed", details)
            asked = body.get("amount")
            amount: Any = asked if asked is not None else _plain_number(refundable)
            already = Decimal(str(ret.refund["amount"])) if ret.refund is not None else Decimal(0)
            if Decimal(str(amount)) + already > refundable:
                over: dict[str, Any] = {
                    "field": "amount",
                    "issue": self.text("i.refund_max", amount=money_text(amount), refundable=money_text(refundable)),
                    "location": "body",
                }
                code = "REFUND_EXCEEDS_REFUNDABLE"
                if self.dev("code_3pl_exceeds_as_not_allowed"):
                    code = "REFUND_NOT_ALLOWED"
                return self.error_3pl(409, code, "m.refund_exceeds", over)
            if ret.refund is not None:
                ret.refund["amount"] = _plain_number(already + Decimal(str(amount)))
            else:
                days = 7 if self.dev("body_3pl_refund_7_business_days") else self.contracts.refund_business_days
                ret.refund = {
                    "amount": amount,
                    "_requested": now,
                    "_expected": add_business_days(now, days),
                    "completed_at": None,
                }
            ret.refund_status = "pending" if self.dev("body_3pl_refund_status_pending") else "processing"
            ret.updated_at = now
            data = self.render_3pl(ret)
        return self.ok_3pl(200, data)

    # --- 3plship: webhooks ----------------------------------------------------------------------------

    def subscribe_3pl(self, request: Request, account: str) -> Answer:
        body = self.read_json(request)
        problems = self.schema_problems("3plship/webhook-create-request.json", body)
        if problems:
            return self.validation_3pl(problems)
        hook = Webhook(
            account=account,
            id=self.new_webhook_id(),
            url=body["url"],
            events=list(body["events"]),
            description=body.get("description"),
            secret=self.new_secret(),
            active=bool(body.get("active", True)),
            created_at=self.now(),
        )
        with self.lock:
            self.webhooks.append(hook)
        data: dict[str, Any] = {
            "id": hook.id,
            "url": hook.url,
            "events": list(hook.events),
            "description": hook.description,
            "secret": hook.secret,
            "active": hook.active,
            "created_at": iso(hook.created_at),
        }
        if self.dev("body_3pl_webhook_extra_field"):
            data["signing_algorithm"] = "hmac-sha256"
        meta: dict[str, Any]
        if self.dev("body_3pl_webhook_meta_snake"):
            meta = {"request_id": self.new_request_id(), "timestamp": iso(self.now())}
        else:
            meta = {"timestamp": iso(self.now()), "requestId": self.new_request_id(), "version": "v1"}
        status = 200 if self.dev("status_3pl_webhook_200") else 201
        return Answer(status, {"success": True, "data": data, "meta": meta}, "3plship")

    # =================================================================================================
    # 35up
    # =================================================================================================

    def error_35up(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]],
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        body = {"error": {"code": code, "message": self.text(message), "details": details}}
        return Answer(status, body, "35up", list(headers))

    def validation_35up(self, problems: list[Problem]) -> Answer:
        details: list[dict[str, Any]] = []
        for problem in problems:
            entry: dict[str, Any] = {}
            if problem.path:
                entry["field"] = problem.path
            entry["location"] = problem.location
            entry["message"] = self.text(problem.key, **problem.params)
            if problem.allowed is not None:
                entry["allowed"] = list(problem.allowed)
            details.append(entry)
        code = "validation_error"
        if self.dev("code_35up_approved_invalid_transition") and any(p.path == "status" for p in problems):
            code = "invalid_transition"
        return self.error_35up(422, code, "m.validation", details)

    def handle_35up(self, request: Request, subpath: str) -> Answer:
        parts = subpath.strip("/").split("/") if subpath.strip("/") else []
        method = request.method.upper()
        allow: tuple[str, ...]
        if parts == ["returns"] and not subpath.endswith("/"):
            allow = ("POST",)
        elif len(parts) == 2 and parts[0] == "returns" and parts[1] and not subpath.endswith("/"):
            allow = ("PATCH",)
        else:
            return self.error_35up(404, "not_found", "m.no_path", [])
        if method not in allow:
            return self.error_35up(405, "method_not_allowed", "m.method", [], [("Allow", ", ".join(allow))])
        account = _basic_user(request.headers.get("Authorization", ""))
        if account is None:
            headers: list[tuple[str, str]] = []
            if self.dev("header_35up_401_bearer_challenge"):
                headers.append(("WWW-Authenticate", 'Bearer realm="35up"'))
            elif not self.dev("header_35up_401_no_www_authenticate"):
                headers.append(("WWW-Authenticate", 'Basic realm="35up"'))
            details = [{"field": "Authorization", "location": "header", "message": self.text("i.basic")}]
            return self.error_35up(401, "unauthorized", "m.unauthorized_35up", details, headers)
        try:
            if len(parts) == 1:
                return self.create_35up(request, account)
            return self.update_35up(request, account, parts[1])
        except BodyError as error:
            details = [{"location": "body", "message": self.text(error.key)}]
            return self.error_35up(400, "bad_request", "m.bad_request", details)

    def render_35up(self, ret: Return35) -> dict[str, Any]:
        def at(moment: datetime) -> Any:
            return int(moment.timestamp() * 1000) if self.dev("type_35up_history_at_epoch") else iso(moment)

        return {
            "id": ret.order_id,
            "orderId": ret.order_id,
            "items": [dict(item) for item in ret.items],
            "status": ret.status,
            "createdAt": iso(ret.created_at),
            "updatedAt": iso(ret.updated_at),
            "history": [{"status": status, "at": at(moment)} for status, moment in ret.history],
        }

    def _expire_35up(self, ret: Return35, now: datetime) -> None:
        if ret.status != "awaiting_return":
            return
        entered = ret.history[-1][1]
        deadline = entered + self.contracts.return_window
        if now >= deadline:
            ret.status = "expired"
            ret.history.append(("expired", deadline))
            ret.updated_at = deadline

    def create_35up(self, request: Request, account: str) -> Answer:
        body = self.read_json(request)
        problems = self.schema_problems("35up/return-create-request.json", body)
        if problems:
            return self.validation_35up(problems)
        order_id: str = body["orderId"]
        now = self.now()
        with self.lock:
            if (account, order_id) in self.returns_35up:
                details = [
                    {"field": "orderId", "location": "body", "message": self.text("i.duplicate", order=order_id)}
                ]
                status = 422 if self.dev("status_35up_duplicate_422") else 409
                return self.error_35up(status, "duplicate_return", "m.duplicate", details)
            items = [dict(item) for item in body["items"]]
            if self.dev("body_35up_create_drops_second_item"):
                items = items[:1]
            updated = now + timedelta(seconds=30) if self.dev("time_35up_create_updated_at_skew") else now
            ret = Return35(account, order_id, items, "created", now, updated, [("created", now)])
            self.returns_35up[(account, order_id)] = ret
            data = self.render_35up(ret)
        return Answer(201, data, "35up")

    def update_35up(self, request: Request, account: str, order_id: str) -> Answer:
        body = self.read_json(request)
        problems = self.schema_problems("35up/return-update-request.json", body)
        if problems:
            return self.validation_35up(problems)
        target: str = body["status"]
        now = self.now()
        with self.lock:
            ret = self.returns_35up.get((account, order_id)) if ORDER_ID_35UP_RE.fullmatch(order_id) else None
            if ret is None:
                details = [{"field": "orderId", "location": "path", "message": self.text("i.no_return", id=order_id)}]
                return self.error_35up(404, "not_found", "m.no_return", details)
            self._expire_35up(ret, now)
            transitions: dict[str, Any] = self.contracts.lifecycle_35up["transitions"]
            allowed: list[str] = list(transitions[ret.status]["to"])
            permitted = target in allowed
            refused_move = (ret.status, target) == ("awaiting_return", "customer_shipped")
            if self.dev("refuse_35up_customer_shipped") and refused_move:
                permitted = False
            if self.dev("accept_35up_skip"):
                permitted = ret.status not in self.contracts.lifecycle_35up["final"] and target != ret.status
            if not permitted:
                refusal: list[dict[str, Any]] = [
                    {
                        "field": "status",
                        "location": "body",
                        "message": self.text("i.transition", current=ret.status, target=target),
                        "allowed": allowed,
                    }
                ]
                return self.error_35up(409, "invalid_transition", "m.transition", refusal)
            ret.status = target
            ret.updated_at = now
            if not (target == "customer_shipped" and self.dev("body_35up_history_skips_customer_shipped")):
                ret.history.append((target, now))
            data = self.render_35up(ret)
        return Answer(200, data, "35up")


# ---------------------------------------------------------------------------------------------------
# Module-level helpers
# ---------------------------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _plain_number(value: Decimal) -> int | float:
    """A Decimal as the JSON number a client would have written: 17.5, 20 (no 20.0)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _money_as_float(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _money_as_float(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_money_as_float(item) for item in value]
    if key in MONEY_KEYS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _bearer_key(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not KEY_RE.fullmatch(token):
        return None
    return token


def _basic_user(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    user, colon, _password = text.partition(":")
    if not colon or not user:
        return None
    return user


def make_app(deviation: str | None = None, noise: str | None = None, contracts_dir: Path | None = None) -> FakeProvider:
    """The WSGI application; at most one variation (a deviation or a noise) by name."""
    return FakeProvider(deviation=deviation, noise=noise, contracts_dir=contracts_dir)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class RunningServer:
    """A fake served on a loopback port from a background thread (for tests)."""

    def __init__(self, server: BaseWSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.port: int = server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_3plship = self.url + "/api/v1"
        self.base_35up = self.url + "/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def serve_in_thread(app: FakeProvider, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
    if not is_loopback(host):
        raise ValueError("the fake provider binds loopback addresses only")
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="fake-provider", daemon=True)
    thread.start()
    return RunningServer(server, thread)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--deviation", choices=DEVIATION_NAMES, metavar="NAME")
    group.add_argument("--noise", choices=NOISE_NAMES, metavar="NAME")
    parser.add_argument("--list", action="store_true", help="list the variations and exit")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if args.list:
        print("deviations:\n  " + "\n  ".join(DEVIATION_NAMES))
        print("noise:\n  " + "\n  ".join(NOISE_NAMES))
        return 0
    if not is_loopback(args.host):
        parser.error("--host must be a loopback address")
    app = make_app(deviation=args.deviation, noise=args.noise)
    variation = args.deviation or args.noise or "default"
    print(
        f"fake provider ({variation}): 3plship http://{args.host}:{args.port}/api/v1, "
        f"35up http://{args.host}:{args.port}/v1",
        flush=True,
    )
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        request_handler=_QuietHandler if args.quiet else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
