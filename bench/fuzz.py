"""The cost of fuzzing: a client test (create a return, read it back) and a webhook-consumer test (two
returns made and received, their events delivered to a consumer that books each refund once), each run 50
times with varied answers and deliveries (what `pytest --returns-mock-fuzz=50` does), against the floor of
the same test run 50 times on fresh, unvaried mocks, in alternating rounds of one sitting. The varied runs
include what they drew (latencies slept in-process up to 20 ms, the retried 503s, returns made in the
provider's portal, duplicated and delayed deliveries) and hypothesis's own work.

Targets (issue 41): 50 runs of the client test under 5 s, of the consumer test under 10 s (`PASS`/`MISS`
lines, read by bench/all.py; exit 1 when one is missed).

    python bench/fuzz.py [--examples 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import time
from collections.abc import Callable, Mapping

import orjson
import requests

from mockserver import mock_providers
from mockserver.consumer import Webhooks
from mockserver.domain.variation import Variation
from mockserver.fuzzing import fuzz, varied

KEY = {"Authorization": "Bearer zl_test_bench"}
BASE = "https://app.3plship.com/api/v1"
RETURN = {"order_id": "ord_bench", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 49.99}
TARGETS = {"client": 5.0, "consumer": 10.0}
"""Seconds for 50 runs."""


def send(method: str, url: str, **kwargs: object) -> requests.Response:
    for _ in range(20):
        answer = requests.request(method, url, headers=KEY, timeout=10, **kwargs)  # type: ignore[arg-type]
        if answer.status_code not in (429, 500, 503):
            return answer
    raise AssertionError("20 transient errors in a row")


def create_and_read(handle: mock_providers) -> None:
    created = send("POST", f"{BASE}/returns", json=RETURN).json()["data"]
    page = send("GET", f"{BASE}/returns?order_id=ord_bench").json()["data"]
    assert [r["id"] for r in page] == [created["id"]]


def consume(handle: mock_providers) -> None:
    """A shop's consumer that verifies the signature over the raw body and books each received return once."""
    hooks = Webhooks(handle.state, handle.notes)
    booked: dict[str, float] = {}

    def consumer(body: bytes, headers: Mapping[str, str]) -> int:
        signature = hmac.new(hooks.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, headers.get("X-3plship-Signature", "")):
            return 401
        event = orjson.loads(body)
        if event["type"] == "return.received":
            booked.setdefault(event["data"]["id"], float(event["data"]["refund_amount"]))
        return 200

    made = [hooks.create(order_id, "received") for order_id in ("ord_1", "ord_2")]
    hooks.deliver(consumer)
    assert set(booked) >= {r["id"] for r in made}


def measure(test: Callable[[mock_providers], None], examples: int, rounds: int) -> tuple[list[float], list[float]]:
    floors, fuzzed = [], []
    with mock_providers() as handle:
        test(handle)  # warm: contracts compiled, routes built

        def run(variation: Variation | None) -> None:
            handle.restart(variation)
            test(handle)

        for round_ in range(rounds):
            started = time.perf_counter()
            for _ in range(examples):
                run(None)
            floors.append(time.perf_counter() - started)
            started = time.perf_counter()
            fuzz(run, lambda: varied(handle.journal), examples, round_, "bench/fuzz.py")
            fuzzed.append(time.perf_counter() - started)
    return floors, fuzzed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    missed = 0
    for name, test, what in (("client", create_and_read, "a create-and-read client test"),
                             ("consumer", consume, "a webhook-consumer test")):
        floors, fuzzed = measure(test, args.examples, args.rounds)
        floor, cost = statistics.median(floors), statistics.median(fuzzed)
        print(f"{what}, {args.examples} runs, median of {args.rounds} alternating rounds:")
        print(f"  unvaried (floor): {floor:.2f} s ({min(floors):.2f}-{max(floors):.2f})")
        print(f"  fuzzed:           {cost:.2f} s ({min(fuzzed):.2f}-{max(fuzzed):.2f}), {cost / floor:.1f}x the floor")
        target = TARGETS[name] * args.examples / 50
        held = cost < target
        missed += not held
        print(f"{'PASS' if held else 'MISS'}  fuzzing {what}: {args.examples} runs in {cost:.2f} s, under "
              f"{target:g} s")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
