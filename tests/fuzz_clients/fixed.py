"""The clients of naive.py, fixed: tests/test_fuzzing.py runs this file with --returns-mock-fuzz=200,
and every test passes."""

import requests

BASE = "https://app.3plship.com/api/v1"
KEY = {"Authorization": "Bearer zl_test_fuzz"}
RETURN = {"order_id": "ord_fuzz", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 49.99, "return_shipping": {"carrier": "usps", "tracking_number": "9400111899562712345678"}}
TRANSIENT = (429, 500, 503)


def send(method: str, path: str, **kwargs: object) -> requests.Response:
    for _ in range(10):
        answer = requests.request(method, BASE + path, headers=KEY, timeout=10, **kwargs)  # type: ignore[arg-type]
        if answer.status_code not in TRANSIENT:
            return answer
    answer.raise_for_status()
    return answer


def test_tracking_link(returns_mock: object) -> None:
    created = send("POST", "/returns", json=RETURN).json()["data"]
    link = created["return_shipping"]["tracking_url"]
    assert link is None or link.startswith(("https://", "http://"))


def test_refund_pending(returns_mock: object) -> None:
    created = send("POST", "/returns", json=RETURN).json()["data"]
    assert created.get("refund") is None and created["refund_status"] == "pending"


def test_list_returns(returns_mock: object) -> None:
    send("POST", "/returns", json=RETURN)
    answer = send("GET", "/returns?order_id=ord_fuzz")
    answer.raise_for_status()
    assert [r["order_id"] for r in answer.json()["data"]] == ["ord_fuzz"]
