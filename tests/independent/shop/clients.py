"""A shop's integration with the 3plship Returns API: a correct client and planted-bug variants.

`make_client(bug=None)` gives the correct `CorrectClient`; `make_client(bug="int_amount")` one of the
variants in `BUGS`, each a subclass that overrides one method (or one setting) of the correct client with
a naive version. Every bug is latent against the mock's ordinary answers and exposed by an answer the
3plship contract allows (README.md in this folder says which).
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import requests

DEFAULT_BASE_URL = "https://app.3plship.com/api/v1"
DEFAULT_API_KEY = "zl_test_shop"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})  # 429/500/503 documented; 502/504 the gateway's
PAGE_SIZE = 20
MAX_PAGES = 1000
STATUS_RANK = {"initiated": 0, "received": 1, "inspected": 2, "completed": 3}
RECEIVED_OR_LATER = frozenset({"received", "inspected", "completed"})
SHOP_LABELS = {"initiated": "awaiting parcel", "received": "parcel arrived", "inspected": "being checked",
               "completed": "refunded"}

Return = dict[str, Any]
Params = dict[str, str | int]
Transport = (requests.Timeout, requests.ConnectionError)


class ApiError(Exception):
    """A final non-2xx answer, after the retries."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"3plship answered {status} {code}: {message}")
        self.status, self.code = status, code


def money(value: object) -> Decimal:
    """A JSON number (integer or decimal form) as an exact Decimal."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not an amount: {value!r}")
    return Decimal(str(value))


def instant(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    return datetime.fromisoformat(value)


def _envelope(answer: requests.Response) -> dict[str, Any] | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class CorrectClient:
    name: ClassVar[str | None] = None
    bug: ClassVar[str] = ""
    timeout: ClassVar[tuple[float, float]] = (3.05, 10.0)  # (connect, read) seconds
    timeout_retries: ClassVar[int] = 2
    max_attempts: ClassVar[int] = 6  # answers with a retryable status, per request

    def __init__(self, base_url: str = DEFAULT_BASE_URL, api_key: str = DEFAULT_API_KEY, *,
                 max_retry_wait: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self.request_ids: list[str] = []  # kept for support tickets

    # -- transport -------------------------------------------------------------------------------
    def _send(self, method: str, path: str, params: Params | None,
              body: object | None) -> requests.Response:
        return requests.request(method, f"{self.base_url}{path}", params=params, json=body, timeout=self.timeout,
                                headers={"Authorization": f"Bearer {self.api_key}"})

    def _note_request_id(self, envelope: dict[str, Any] | None) -> None:
        meta = envelope.get("meta") if envelope is not None else None
        if isinstance(meta, dict):  # request_id on success, requestId on errors (documented)
            rid = meta.get("request_id", meta.get("requestId"))
            if isinstance(rid, str):
                self.request_ids.append(rid)

    def _retryable(self, status: int) -> bool:
        return status in RETRY_STATUSES

    def _wait(self, answer: requests.Response, attempt: int) -> None:
        header = answer.headers.get("Retry-After", "")
        delay = float(header) if re.fullmatch(r"[0-9]+", header.strip()) else 0.1 * 2 ** attempt
        self.sleep(min(delay, self.max_retry_wait))

    def _request(self, method: str, path: str, *, params: Params | None = None,
                 body: object | None = None, retry_transport: bool = True) -> dict[str, Any]:
        """The success envelope; retries 429/5xx (after Retry-After) and, if allowed, timeouts."""
        transport_left = self.timeout_retries if retry_transport else 0
        attempt = 0
        while True:
            try:
                answer = self._send(method, path, params, body)
            except Transport:
                if transport_left <= 0:
                    raise
                transport_left -= 1
                continue
            envelope = _envelope(answer)
            self._note_request_id(envelope)
            if 200 <= answer.status_code < 300 and envelope is not None:
                return envelope
            attempt += 1
            if self._retryable(answer.status_code) and attempt < self.max_attempts:
                self._wait(answer, attempt)
                continue
            error = envelope.get("error") if envelope is not None else None
            error = error if isinstance(error, dict) else {}
            raise ApiError(answer.status_code, str(error.get("code", "?")), str(error.get("message", answer.text)))

    def _write(self, method: str, path: str, body: object | None, order_id: str,
               done: Callable[[Return], bool], return_id: str | None = None) -> Return:
        """A write that is not idempotent: after a timeout, look whether it took effect before retrying."""
        for attempt in range(self.timeout_retries + 1):
            if attempt:
                found = self.find_return(order_id, return_id)
                if found is not None and done(found):
                    return found
            try:
                return dict(self._request(method, path, body=body, retry_transport=False)["data"])
            except Transport:
                if attempt == self.timeout_retries:
                    raise
            except ApiError as error:
                if error.status != 409 or attempt == 0:
                    raise
                found = self.find_return(order_id, return_id)  # 409 after a timed-out attempt that took effect?
                if found is not None and done(found):
                    return found
                raise
        raise AssertionError("unreachable")

    # -- operations --------------------------------------------------------------------------------
    def create_return(self, order_id: str, items: list[dict[str, Any]], refund_amount: float, *,
                      reason: str = "defective", carrier: str | None = None,
                      tracking_number: str | None = None) -> Return:
        body: dict[str, Any] = {"order_id": order_id, "reason": reason, "items": items, "refund_amount": refund_amount}
        if carrier is not None and tracking_number is not None:
            body["return_shipping"] = {"carrier": carrier, "tracking_number": tracking_number}
        return self._write("POST", "/returns", body, order_id, lambda found: True)

    def update_status(self, ret: Return, status: str) -> Return:
        def done(found: Return) -> bool:
            return STATUS_RANK.get(str(found.get("status")), -1) >= STATUS_RANK[status]
        return self._write("PATCH", f"/returns/{ret['id']}/status", {"status": status}, ret["order_id"], done,
                           ret["id"])

    def request_refund(self, ret: Return) -> Return:
        def done(found: Return) -> bool:
            return found.get("refund_status") in ("processing", "completed")
        return self._write("POST", f"/returns/{ret['id']}/refund", None, ret["order_id"], done, ret["id"])

    def list_page(self, page: int, *, status: str | None = None,
                  order_id: str | None = None) -> tuple[list[Return], dict[str, Any]]:
        params: Params = {"page": page, "limit": PAGE_SIZE}
        params.update({k: v for k, v in (("status", status), ("order_id", order_id)) if v is not None})
        envelope = self._request("GET", "/returns", params=params)
        return list(envelope["data"]), dict(envelope["meta"]["pagination"])

    def find_return(self, order_id: str, return_id: str | None = None) -> Return | None:
        """The shop's newest return for an order (or that return of it), if the provider has one."""
        data, _ = self.list_page(1, order_id=order_id)
        mine = [r for r in data if r.get("order_id") == order_id and return_id in (None, r.get("id"))]
        return max(mine, key=lambda r: instant(r["created_at"])) if mine else None

    def _repeated_page(self, data: list[Return], seen: set[str]) -> bool:
        return not data or data[0]["id"] in seen  # empty, or the provider served a page again: stop

    def _has_more(self, page: int, pagination: Mapping[str, Any]) -> bool:
        total_pages = pagination.get("total_pages")
        return bool(pagination.get("has_more")) or (isinstance(total_pages, int) and page < total_pages)

    def sync_returns(self, status: str | None = None) -> list[Return]:
        """Every return of the account, each once, paging through meta.pagination."""
        synced: list[Return] = []
        seen: set[str] = set()
        for page in range(1, MAX_PAGES + 1):
            data, pagination = self.list_page(page, status=status)
            if self._repeated_page(data, seen):
                break
            for ret in data:
                if ret["id"] not in seen:
                    seen.add(ret["id"])
                    synced.append(ret)
            if not self._has_more(page, pagination):
                break
        return synced

    # -- the shop's bookkeeping ----------------------------------------------------------------------
    def match_orders(self, returns: Iterable[Return], orders: Mapping[str, object]) -> dict[str, list[Return]]:
        """The synced returns of the shop's own orders, by order id; returns of other orders are ignored."""
        matched: dict[str, list[Return]] = {}
        for ret in returns:
            if ret.get("order_id") in orders:
                matched.setdefault(ret["order_id"], []).append(ret)
        return matched

    def _refundable(self, ret: Return) -> Decimal:
        return max(Decimal(0), money(ret["refund_amount"]) - money(ret["restocking_fee"]))

    def refund_total(self, returns: Iterable[Return]) -> Decimal:
        """What the shop owes for the returns that reached the warehouse."""
        return sum((self._refundable(r) for r in returns if r.get("status") in RECEIVED_OR_LATER), Decimal(0))

    def tracking_link(self, ret: Return) -> str | None:
        shipping = ret.get("return_shipping")
        url = shipping.get("tracking_url") if isinstance(shipping, dict) else None
        return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None

    def carrier_of(self, ret: Return) -> str | None:
        shipping = ret.get("return_shipping")
        carrier = shipping.get("carrier") if isinstance(shipping, dict) else None
        return carrier if isinstance(carrier, str) else None

    def refund_state(self, ret: Return) -> str:
        refund = ret.get("refund")  # optional and nullable: not in the documented response
        if not isinstance(refund, dict):
            return str(ret["refund_status"])
        if refund.get("completed_at") is not None:
            return f"refunded {money(refund['amount'])} on {refund['completed_at']}"
        return f"{ret['refund_status']}: {money(refund['amount'])} expected by {refund.get('expected_at')}"

    def shop_status(self, ret: Return) -> str:
        return SHOP_LABELS.get(str(ret.get("status")), "unknown")

    def last_updated(self, returns: list[Return]) -> Return | None:
        """The return that changed last (the list itself is newest-created first)."""
        return max(returns, key=lambda r: instant(r["updated_at"])) if returns else None

    def _format_fee(self, fee: object) -> str:
        return f"{money(fee):.2f}"

    def _encode_export(self, text: str) -> bytes:
        return text.encode("utf-8")

    def export_csv(self, returns: Iterable[Return]) -> bytes:
        """The shop's daily returns report for its accounting tool."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "order_id", "status", "email", "carrier", "tracking", "refundable", "fee"])
        for r in returns:
            writer.writerow([r["id"], r["order_id"], self.shop_status(r), r.get("customer_email") or "",
                             self.carrier_of(r) or "", self.tracking_link(r) or "",
                             f"{self._refundable(r):.2f}", self._format_fee(r["restocking_fee"])])
        return self._encode_export(out.getvalue())


# -- planted bugs: each overrides one thing ------------------------------------------------------------
class IntAmount(CorrectClient):
    bug = "cross-checks the refund total against whole currency units (int()), failing on any fraction"

    def refund_total(self, returns: Iterable[Return]) -> Decimal:
        received = [r for r in returns if r.get("status") in RECEIVED_OR_LATER]
        total = sum((self._refundable(r) for r in received), Decimal(0))
        whole = sum(max(0, int(r["refund_amount"]) - int(r["restocking_fee"])) for r in received)
        if total != whole:
            raise ValueError(f"ledger mismatch: {total} != {whole}")
        return total


class FirstOfPage(CorrectClient):
    bug = "reads data[0] of every page without checking the page is empty"

    def _repeated_page(self, data: list[Return], seen: set[str]) -> bool:
        return bool(data[0]["id"] in seen)


class ShortTimeout(CorrectClient):
    bug = "50 ms read timeout and no handling of a timeout"
    timeout = (3.05, 0.05)
    timeout_retries = 0


class NullableTracking(CorrectClient):
    bug = "return_shipping.tracking_url (nullable) used without a None check"

    def tracking_link(self, ret: Return) -> str | None:
        shipping = ret.get("return_shipping")
        if shipping is None:
            return None
        url: str = shipping["tracking_url"]
        return url if url.startswith(("https://", "http://")) else None


class NullableShipping(CorrectClient):
    bug = "return_shipping (nullable) indexed without a None check"

    def carrier_of(self, ret: Return) -> str | None:
        carrier: str | None = ret["return_shipping"]["carrier"]
        return carrier


class OptionalRefund(CorrectClient):
    bug = "reads ret['refund'], a field the contract makes optional"

    def refund_state(self, ret: Return) -> str:
        refund = ret["refund"]
        if refund is None:
            return str(ret["refund_status"])
        return super().refund_state(ret)


class ErrorEnvelope(CorrectClient):
    bug = "list page read as .json()['data'] whatever the status (429/500/503 error envelopes included)"

    def list_page(self, page: int, *, status: str | None = None,
                  order_id: str | None = None) -> tuple[list[Return], dict[str, Any]]:
        params: Params = {"page": page, "limit": PAGE_SIZE}
        params.update({k: v for k, v in (("status", status), ("order_id", order_id)) if v is not None})
        envelope = self._send("GET", "/returns", params, None).json()
        self._note_request_id(envelope)
        return list(envelope["data"]), dict(envelope["meta"]["pagination"])


class NoRetry429(CorrectClient):
    bug = "429 RATE_LIMIT_EXCEEDED is final: Retry-After ignored, no retry"

    def _retryable(self, status: int) -> bool:
        return status in RETRY_STATUSES and status != 429


class OnePage(CorrectClient):
    bug = "sync reads page 1 only, ignoring meta.pagination.has_more"

    def _has_more(self, page: int, pagination: Mapping[str, Any]) -> bool:
        return False


class KnownStatuses(CorrectClient):
    bug = "maps only the statuses the shop itself sets (initiated, received)"

    def shop_status(self, ret: Return) -> str:
        return {"initiated": "awaiting parcel", "received": "parcel arrived"}[ret["status"]]


class UnknownOrder(CorrectClient):
    bug = "matching assumes every synced return belongs to one of the shop's orders"

    def match_orders(self, returns: Iterable[Return], orders: Mapping[str, object]) -> dict[str, list[Return]]:
        matched: dict[str, list[Return]] = {order_id: [] for order_id in orders}
        for ret in returns:
            matched[ret["order_id"]].append(ret)
        return {order_id: rets for order_id, rets in matched.items() if rets}


class AsciiExport(CorrectClient):
    bug = "the report is encoded as ASCII"

    def _encode_export(self, text: str) -> bytes:
        return text.encode("ascii")


class IntegerFee(CorrectClient):
    bug = "restocking_fee formatted with {:d}: assumes the number is an integer"

    def _format_fee(self, fee: object) -> str:
        return f"{fee:d}.00"


class FloatAmount(CorrectClient):
    bug = "refund_amount must be a JSON decimal (float): the integer form of the same number is refused"

    def _refundable(self, ret: Return) -> Decimal:
        if not isinstance(ret["refund_amount"], float):
            raise TypeError(f"refund_amount is not a decimal: {ret['refund_amount']!r}")
        return super()._refundable(ret)


class ListOrder(CorrectClient):
    bug = "the last-updated return is taken as the list's first: assumes the list is ordered by updated_at"

    def last_updated(self, returns: list[Return]) -> Return | None:
        return returns[0] if returns else None


class LongRequestId(CorrectClient):
    bug = "request ids assumed to fit the support table's CHAR(32) column"

    def _note_request_id(self, envelope: dict[str, Any] | None) -> None:
        before = len(self.request_ids)
        super()._note_request_id(envelope)
        if len(self.request_ids) > before and len(self.request_ids[-1]) > 32:
            raise ValueError(f"request id too long for CHAR(32): {self.request_ids[-1]!r}")


class ErrorRequestId(CorrectClient):
    bug = "reads meta.request_id on error envelopes too (they carry meta.requestId)"

    def _note_request_id(self, envelope: dict[str, Any] | None) -> None:
        if envelope is not None:
            self.request_ids.append(envelope["meta"]["request_id"])


BUGS: dict[str, type[CorrectClient]] = {
    "int_amount": IntAmount, "first_of_page": FirstOfPage, "short_timeout": ShortTimeout,
    "nullable_tracking": NullableTracking, "nullable_shipping": NullableShipping, "optional_refund": OptionalRefund,
    "error_envelope": ErrorEnvelope, "no_retry_429": NoRetry429, "one_page": OnePage,
    "known_statuses": KnownStatuses, "unknown_order": UnknownOrder, "ascii_export": AsciiExport,
    "integer_fee": IntegerFee, "float_amount": FloatAmount, "list_order": ListOrder,
    "long_request_id": LongRequestId, "error_request_id": ErrorRequestId,
}
for _name, _cls in BUGS.items():
    _cls.name = _name


def make_client(bug: str | None = None, base_url: str = DEFAULT_BASE_URL, api_key: str = DEFAULT_API_KEY,
                **options: Any) -> CorrectClient:
    """The correct client (bug=None) or the variant named bug."""
    if bug is None:
        return CorrectClient(base_url, api_key, **options)
    if bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; known: {', '.join(BUGS)}")
    return BUGS[bug](base_url, api_key, **options)
