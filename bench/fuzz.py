"""The cost of fuzzing a client test: a create-and-read test run 50 times with varied answers (what
`pytest --returns-mock-fuzz=50` does), against the floor of the same test run 50 times on fresh,
unvaried mocks, in alternating rounds of one sitting. The varied runs include the latencies they drew
(5-60 ms on about a fifth of the requests) and hypothesis's own work.

    python bench/fuzz.py [--examples 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests

from mockserver import mock_providers
from mockserver.domain.variation import Variation
from mockserver.fuzzing import fuzz, varied

KEY = {"Authorization": "Bearer zl_test_bench"}
BASE = "https://app.3plship.com/api/v1"
RETURN = {"order_id": "ord_bench", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 49.99}


def send(method: str, url: str, **kwargs: object) -> requests.Response:
    for _ in range(20):
        answer = requests.request(method, url, headers=KEY, timeout=10, **kwargs)  # type: ignore[arg-type]
        if answer.status_code not in (429, 500, 503):
            return answer
    raise AssertionError("20 transient errors in a row")


def create_and_read() -> None:
    created = send("POST", f"{BASE}/returns", json=RETURN).json()["data"]
    page = send("GET", f"{BASE}/returns?order_id=ord_bench").json()["data"]
    assert [r["id"] for r in page] == [created["id"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    floors, fuzzed = [], []
    with mock_providers() as handle:
        create_and_read()  # warm: contracts compiled, routes built

        def run(variation: Variation | None) -> None:
            handle.restart(variation)
            create_and_read()

        for round_ in range(args.rounds):
            started = time.perf_counter()
            for _ in range(args.examples):
                run(None)
            floors.append(time.perf_counter() - started)
            started = time.perf_counter()
            fuzz(run, lambda: varied(handle.journal), args.examples, round_, "bench/fuzz.py")
            fuzzed.append(time.perf_counter() - started)
    floor, cost = statistics.median(floors), statistics.median(fuzzed)
    print(f"create-and-read test, {args.examples} runs, median of {args.rounds} alternating rounds:")
    print(f"  unvaried (floor): {floor:.2f} s ({min(floors):.2f}-{max(floors):.2f})")
    print(f"  fuzzed:           {cost:.2f} s ({min(fuzzed):.2f}-{max(fuzzed):.2f}), {cost / floor:.1f}x the floor")


if __name__ == "__main__":
    main()
