"""Deliberately naive 3plship clients, each with one assumption the contract does not make; each passes
against the mock's habits. tests/test_fuzzing.py runs this file with --returns-mock-fuzz=50: every test
here must fail, naming the varied field."""

import requests

BASE = "https://app.3plship.com/api/v1"
KEY = {"Authorization": "Bearer zl_test_fuzz"}
RETURN = {"order_id": "ord_fuzz", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 49.99, "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"}}
TRANSIENT = (429, 500, 503)


def send(method: str, path: str, **kwargs: object) -> requests.Response:
    """Retries what the provider documents as transient (the mock answers Retry-After: 1; tests don't wait)."""
    for _ in range(10):
        answer = requests.request(method, BASE + path, headers=KEY, timeout=10, **kwargs)  # type: ignore[arg-type]
        if answer.status_code not in TRANSIENT:
            return answer
    answer.raise_for_status()
    return answer


def test_tracking_link(returns_mock: object) -> None:
    created = send("POST", "/returns", json=RETURN).json()["data"]
    link = created["return_shipping"]["tracking_url"]  # assumes a URL whenever a tracking number was sent
    assert link.startswith("https://")


def test_refund_pending(returns_mock: object) -> None:
    created = send("POST", "/returns", json=RETURN).json()["data"]
    assert created["refund"] is None  # assumes the field is always there


def test_list_returns(returns_mock: object) -> None:
    send("POST", "/returns", json=RETURN)
    page = requests.get(BASE + "/returns?order_id=ord_fuzz", headers=KEY, timeout=10).json()["data"]  # no status check
    assert [r["order_id"] for r in page] == ["ord_fuzz"]
