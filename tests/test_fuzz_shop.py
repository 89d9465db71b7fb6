"""The client fuzzer measured on a shop written outside the project (tests/independent/shop, from the issue's
categories only): its correct client passes fuzzed runs; a client reading `int(amount)`, `data[0]` of a
page, or with a read timeout shorter than the documented latency is found in under 50 runs, named, both
in-process (pytest --returns-mock-fuzz) and against `serve --vary` (a seed a run). Budgets are CI's: fixed
seeds, shrinking bounded; `make fuzz` runs the 200-run figure of the correct client."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import Server

# pytest in subprocesses, and a server: the system tier.
pytestmark = pytest.mark.system

SHOP = Path(__file__).parent / "independent" / "shop"
sys.path.insert(0, str(SHOP))

import test_shop_clients as shop_tests  # noqa: E402 - the shop's own tests, from its folder
from clients import make_client  # noqa: E402

# Each bug, the shop's test that exposes it, and what the note must name.
BUGS = {
    "int_amount": ("test_refund_total_of_received_returns", r"state: a return made in the provider's portal"),
    "first_of_page": ("test_synced_returns_match_the_shops_orders", r"/meta/pagination/has_more: true"),
    "short_timeout": ("test_slow_answers_and_request_ids",
                      r"latency: \d+ ms, longer than the client's read timeout \(50 ms\): no answer in time"),
}
RUNS = 50


def shop_pytest(*args: str, bug: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHOP_BUG"} | ({"SHOP_BUG": bug} if bug else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "test_shop_clients.py", *args], cwd=SHOP, env=env, capture_output=True, text=True,
                          timeout=900)


def test_the_correct_shop_client_passes_fuzzed_runs() -> None:
    run = shop_pytest("--returns-mock-fuzz=20", "--returns-mock-fuzz-seed=11")
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\b8 passed\b", run.stdout), run.stdout[-500:]


def test_the_correct_client_matching_synced_returns_to_its_orders_passes_200_runs() -> None:
    """On e98ac54 it failed on a seeded return's `order_id: ""`, and on its own list fixture."""
    run = shop_pytest("-k", "test_synced_returns_match_the_shops_orders", "--returns-mock-fuzz=200",
                      "--returns-mock-fuzz-seed=12")
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 passed" in run.stdout


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_is_found_in_process_in_under_50_runs_and_named(bug: str) -> None:
    test, named = BUGS[bug]
    run = shop_pytest("-k", test, f"--returns-mock-fuzz={RUNS}", "--returns-mock-fuzz-seed=3",
                      "--returns-mock-fuzz-shrink-seconds=5", bug=bug)
    assert run.returncode == 1, run.stdout[-3000:]
    first = re.search(r"runs: the first failure was run (\d+) \(of up to 50\)", run.stdout)
    assert first and int(first[1]) < RUNS, run.stdout[-3000:]
    note = run.stdout.split("the smallest varied answers found that break this test:", 1)[1]
    assert re.search(named, note.split("replay:", 1)[0]), note


# --- against serve --vary: one seed a run --------------------------------------------------------------


@dataclass
class Violations:
    """What the shop's tests read of `returns_mock` (its violations), from a server's control plane."""

    url: str

    @property
    def violations(self) -> list[Any]:
        answer: list[Any] = requests.get(f"{self.url}/__admin/violations", timeout=10).json()["violations"]
        return answer


@pytest.fixture(scope="module")
def varied_server() -> Iterator[Server]:
    server = Server("--store", "memory", "--vary", "1").start()
    yield server
    server.stop()


def orders() -> dict[str, Any]:
    fresh: Callable[[], dict[str, Any]] = shop_tests.orders.__wrapped__  # type: ignore[attr-defined]
    return {key: replace(order) for key, order in fresh().items()}


@pytest.mark.parametrize("bug", BUGS)
def test_each_bug_is_found_against_serve_vary_in_under_50_runs(varied_server: Server, bug: str) -> None:
    test, _ = BUGS[bug]
    url = varied_server.url
    # Latencies up to the documented 5 s where the timeout is the bug; elsewhere short, to keep CI quick.
    latency = {} if bug == "short_timeout" else {"latency_max_ms": 100}
    for seed in range(RUNS):
        requests.post(f"{url}/__admin/reset", timeout=10).raise_for_status()
        requests.post(f"{url}/__admin/vary", json={"seed": seed, **latency}, timeout=10).raise_for_status()
        client = make_client(bug, base_url=f"{url}/3plship/api/v1", max_retry_wait=0.01)
        given = {"returns_mock": Violations(url), "client": client, "orders": orders(), "synced": []}
        function = getattr(shop_tests, test)
        try:
            function(**{name: given[name] for name in inspect.signature(function).parameters})
        except Exception:
            varied = [v for e in requests.get(f"{url}/__admin/journal", timeout=10).json()["entries"]
                      for v in e["varied"]]
            if bug != "short_timeout":
                assert any(re.search(BUGS[bug][1], v) for v in varied), varied
                return
            # Over real HTTP a busy machine may itself be slower than 50 ms: a run counts when the mock drew it.
            if any(int(v.split()[1]) > 50 for v in varied if v.startswith("latency: ")):
                return
    pytest.fail(f"{bug}: not found in {RUNS} runs")
