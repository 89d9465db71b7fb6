"""The clients of naive.py, fixed: tests/test_fuzzing.py runs this file with --returns-mock-fuzz=200,
and every test passes."""

from naive import RETURN, send


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
