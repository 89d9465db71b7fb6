"""The acceptance test of the shadow's report: an independent fake of both real providers
(tests/independent/fake_provider, written from the contracts and the providers' pages by someone who never
read mockserver/) with planted deviations and noise variations, and its fixed client flow of 56 exchanges,
run through `returns-mock proxy --shadow --record` once per variation.

Recall: every planted deviation is found, at the exchange, pointer and kind its manifest names. Precision:
nothing on the faithful fake, nothing on any noise variation, and for a deviation nothing outside its root
exchanges and the consequences its manifest lists (those are reported as following from the root). And
offline equals live: `returns-mock drift` on the proxy's own recording gives the same entries and summary.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from helpers import ROOT, Server, cli

FAKE = ROOT / "tests" / "independent" / "fake_provider"
sys.path.insert(0, str(FAKE))

import fake_provider  # noqa: E402
from client_flow import STEPS, run_flow  # noqa: E402

MANIFEST = json.loads((FAKE / "manifest.json").read_text())
VARIATIONS: dict[str, dict[str, Any]] = {v["name"]: v for v in MANIFEST["variations"]}
DEVIATIONS = [name for name, v in VARIATIONS.items() if v["role"] == "deviation"]
NOISES = [name for name, v in VARIATIONS.items() if v["role"] == "noise"]
FAITHFUL = "faithful"


class Switch:
    """One upstream for the proxy, answering as the fake with the variation the test is running now."""

    def __init__(self) -> None:
        self.apps: dict[str, Callable[..., Any]] = {}
        self.current = FAITHFUL
        self._lock = threading.Lock()

    def use(self, name: str) -> None:
        with self._lock:
            if name not in self.apps:
                role = VARIATIONS.get(name, {}).get("role")
                self.apps[name] = fake_provider.make_app(deviation=name if role == "deviation" else None,
                                                         noise=name if role == "noise" else None)
            self.current = name

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.apps[self.current](environ, start_response)


Runs = dict[str, range]
"""Variation -> the ids (the shadow's exchange numbers) of its flow's exchanges."""


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runs, dict[str, Any], dict[str, Any]]]:
    switch = Switch()
    switch.use(FAITHFUL)
    upstream = fake_provider.serve_in_thread(switch)  # type: ignore[arg-type]
    har = tmp_path_factory.mktemp("precision") / "shadow.har"
    proxy = Server("--3plship-upstream", upstream.base_3plship, "--35up-upstream", upstream.base_35up, "--shadow",
                   "--record", str(har), "--journal-size", "100000", command="proxy").start()
    runs: Runs = {}
    try:
        done = 0
        for name in [FAITHFUL, *DEVIATIONS, *NOISES]:
            switch.use(name)
            run_flow(f"{proxy.url}/35up/v1", f"{proxy.url}/3plship/api/v1")
            runs[name] = range(done + 1, done + len(STEPS) + 1)
            done += len(STEPS)
        live = requests.get(f"{proxy.url}/__admin/drift", timeout=60).json()
    finally:
        proxy.stop()
        upstream.stop()
    replayed = cli("drift", str(har), "--format", "json", timeout=600)
    assert replayed.returncode in (0, 1), replayed.stderr
    yield runs, live, json.loads(replayed.stdout)


def findings(report: dict[str, Any], run: range) -> dict[int, list[tuple[str, str]]]:
    """Flow index -> (pointer, kind) of each difference the report has for that exchange of the run."""
    found: dict[int, list[tuple[str, str]]] = {}
    for entry in report["entries"]:
        if entry["id"] in run:
            found.setdefault(entry["id"] - run.start, []).extend(
                (d["pointer"], d["kind"]) for d in entry["differences"])
    return found


def matches(expected: dict[str, Any], pointer: str, kind: str) -> bool:
    if expected.get("match") == "prefix":
        return pointer == expected["pointer"] or pointer.startswith(expected["pointer"] + "/")
    return (pointer, kind) == (expected["pointer"], expected["kind"])


def test_the_faithful_fake_gives_no_drift(measured: tuple[Runs, dict[str, Any], dict[str, Any]]) -> None:
    runs, live, _ = measured
    assert findings(live, runs[FAITHFUL]) == {}


@pytest.mark.parametrize("name", NOISES)
def test_noise_gives_no_drift(measured: tuple[Runs, dict[str, Any], dict[str, Any]], name: str) -> None:
    runs, live, _ = measured
    assert findings(live, runs[name]) == {}


@pytest.mark.parametrize("name", DEVIATIONS)
def test_a_deviation_is_found_where_it_is_and_nowhere_else(measured: tuple[Runs, dict[str, Any], dict[str, Any]],
                                                           name: str) -> None:
    runs, live, _ = measured
    variation = VARIATIONS[name]
    found = findings(live, runs[name])
    roots: dict[int, list[dict[str, Any]]] = {}
    for expected in variation["expected_findings"]:
        roots.setdefault(expected["index"], []).append(expected)
    for index, expected_here in roots.items():
        for expected in expected_here:
            assert any(matches(expected, *d) for d in found.get(index, [])), (
                f"not found: #{index} {expected['label']} {expected['pointer']!r} {expected['kind']}; "
                f"found there: {found.get(index)}")
    consequences = set(variation["consequence_indices"])
    for index, differences in found.items():
        if index in consequences:
            continue
        assert index in roots, f"false alarm at #{index} {STEPS[index].label}: {differences}"
        unlisted = [d for d in differences if not any(matches(e, *d) for e in roots[index])]
        assert not unlisted, f"false alarm at root #{index} {STEPS[index].label}: {unlisted}"


FOLLOWING = [name for name in DEVIATIONS if VARIATIONS[name]["consequence_indices"]
             and all(f["kind"] in ("mock_refuses", "mock_accepts") for f in VARIATIONS[name]["expected_findings"])]
"""Deviations where one side made a change the other refused: the mirror cannot follow from there."""


@pytest.mark.parametrize("name", FOLLOWING)
def test_what_follows_from_a_refusal_says_so(measured: tuple[Runs, dict[str, Any], dict[str, Any]],
                                             name: str) -> None:
    """Each later difference on what the refused change was about names the root entry as its cause, and the
    summary counts it as a consequence, not as a root cause of its own."""
    runs, live, _ = measured
    run = runs[name]
    (root,) = {f["index"] for f in VARIATIONS[name]["expected_findings"]}
    entries = {e["id"] - run.start: e for e in live["entries"] if e["id"] in run}
    assert entries[root]["cause"] is None
    later = {i: e["cause"] for i, e in entries.items() if i != root}
    assert later, "nothing followed from the refusal"
    assert set(later) <= set(VARIATIONS[name]["consequence_indices"])
    assert set(later.values()) == {entries[root]["id"]}


def test_offline_replay_of_the_recording_equals_the_live_report(
        measured: tuple[Runs, dict[str, Any], dict[str, Any]]) -> None:
    _, live, offline = measured
    assert offline["summary"] == live["summary"]
    assert offline["entries"] == live["entries"]
