"""Fuzzing the client: a test that uses `returns_mock` run again and again, each time from scratch, with
varied answers and state.

Each run is a fresh in-process mock (and, under pytest, fresh function-scoped fixtures) whose answers vary
within the contract (mockserver.domain.variation), every draw taken from hypothesis, so that a failing run
shrinks to the fewest, simplest variations that still break the test. The failure then names them (`POST
/3plship/api/v1/returns -> 201: /data/return_shipping/tracking_url: null`) and the seed that replays the
run; if the smallest failing run varied nothing, the test is run once more unvaried, and the note says
whether it fails that way too.

Run by the pytest plugin (`pytest --returns-mock-fuzz=N`, `@pytest.mark.returns_mock(fuzz=N)`); needs
hypothesis and hypothesis-jsonschema (`pip install returns-mock[fuzz]`).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine
from hypothesis_jsonschema import from_schema

from mockserver.domain.variation import Chooser, Variation
from mockserver.store.journal import Entry

T = TypeVar("T")
Run = Callable[[Variation | None], None]
"""One run of the test from scratch: its answers varied by the variation (None: as the rules give them)."""


class HypothesisChooser(Chooser):
    """Draws from one hypothesis test case: the shrinker moves every draw towards 0, "as the rules gave it"."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        super().__init__()
        self.draw = draw

    def group(self, make: Callable[[Chooser], T]) -> T:
        # One composite draw: hypothesis shrinks (and deletes) the group as a unit, so that a smaller
        # first portal return does not shift, and so change, the draws of the next.
        @st.composite
        def unit(draw: st.DrawFn) -> T:
            return make(HypothesisChooser(draw))

        drawn: T = self.draw(unit())
        return drawn

    def _index(self, n: int, keep: float) -> int:
        # Two draws, each shrinking towards the simpler answer: kept as the rules gave it, else option 1.
        if self.draw(st.integers(0, 99)) < round(keep * 100):
            return 0
        drawn: int = self.draw(st.integers(1, n - 1))
        return drawn

    def _text(self, min_size: int, max_size: int) -> str:
        text: str = self.draw(_strings(min_size, max_size))
        return text

    def _integer(self, low: int, high: int) -> int:
        drawn: int = self.draw(st.integers(low, high))
        return drawn


@cache
def _strings(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # A string schema draws strings only; from_schema is typed for any JSON.
    return from_schema({"type": "string", "minLength": min_size, "maxLength": max_size})  # type: ignore[return-value]


def new_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def varied(journal: list[Entry]) -> list[str]:
    """What a run's answers drew, one line per variation, under the request it was drawn for."""
    return [f"  {e.method} {e.path} -> {e.status or 'no answer'}: {what}" for e in journal for what in e.varied]


SHRINK_SECONDS = 30
"""How long a failure is shrunk at most (hypothesis's own limit is five minutes): the smallest failing run
found by then is the one reported."""


def fuzz(run: Run, drawn: Callable[[], list[str]], examples: int, replay_seed: int, replay: str,
         shrink_seconds: float = SHRINK_SECONDS) -> None:
    """Run `run` up to `examples` times, each from scratch with its own variation; on a failure, raise it
    from the smallest varied run found within `shrink_seconds` (0: the first failing run, unshrunk),
    noting what that run drew (`drawn`, read after it) and how to replay it."""

    runs = [0, 0]  # runs made, and the one that failed first
    phases = (Phase.generate, Phase.shrink) if shrink_seconds > 0 else (Phase.generate,)

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, report_multiple_bugs=False,
              verbosity=Verbosity.quiet, phases=phases, suppress_health_check=list(HealthCheck))
    @seed(replay_seed)
    @given(st.data())
    def varied_run(data: st.DataObject) -> None:
        runs[0] += 1
        try:
            run(Variation(HypothesisChooser(data.draw)))
        except Exception:
            runs[1] = runs[1] or runs[0]
            raise

    started = time.monotonic()
    try:
        with _shrinking_at_most(shrink_seconds):
            varied_run()
    except Exception as failure:
        lines = drawn()
        if lines:
            note = "returns-mock fuzz: the smallest varied answers found that break this test:\n" + "\n".join(lines)
        else:
            note = _unvaried(run)
        shrunk = f"{runs[0] - runs[1]} more shrank it" if shrink_seconds > 0 else "not shrunk"
        if shrink_seconds > 0 and time.monotonic() - started >= shrink_seconds:
            shrunk += f", for the {shrink_seconds:g} s shrinking may take (--returns-mock-fuzz-shrink-seconds)"
        failure.add_note(f"{note}\nreplay: {replay} --returns-mock-fuzz-seed={replay_seed}\n"
                         f"runs: the first failure was run {runs[1]} (of up to {examples}); {shrunk}")
        raise


@contextlib.contextmanager
def _shrinking_at_most(seconds: float) -> Iterator[None]:
    """Hypothesis stops shrinking after five minutes (MAX_SHRINKING_SECONDS, a constant of its engine);
    a fuzzed client test, whose every run is a whole test, stops sooner. Where the constant is not found,
    hypothesis's own limit stands."""
    if not hasattr(engine, "MAX_SHRINKING_SECONDS") or seconds <= 0:
        yield
        return
    before = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = before


def _unvaried(run: Run) -> str:
    """The note for a failing run that drew nothing: whether the test fails unvaried as well."""
    try:
        run(None)
    except Exception as unvaried:
        return (f"returns-mock fuzz: nothing was varied: the test fails on the answers as the rules give them "
                f"(run unvaried, it fails too: {type(unvaried).__name__})")
    return ("returns-mock fuzz: the failing run varied nothing, yet the test passes when run again unvaried: it "
            "depends on something else that changes from run to run (the time, randomness, state kept outside "
            "its function-scoped fixtures)")
