"""Fuzzing the client: a test that uses `returns_mock` run again and again with varied answers.

Each run is a fresh in-process mock whose answers vary within the contract (mockserver.domain.variation), every
draw taken from hypothesis, so that a failing run shrinks to the fewest, simplest variations that still
break the test. The failure then names them (`POST /3plship/api/v1/returns -> 201:
/data/return_shipping/tracking_url: null`) and the seed that replays the run.

Run by the pytest plugin (`pytest --returns-mock-fuzz=N`, `@pytest.mark.returns_mock(fuzz=N)`); needs
hypothesis and hypothesis-jsonschema (`pip install returns-mock[fuzz]`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from mockserver.domain.variation import Chooser, Variation

if TYPE_CHECKING:
    from mockserver.inprocess import mock_providers



class HypothesisChooser(Chooser):
    """Draws from one hypothesis test case: the shrinker moves every draw towards 0, "as the rules gave it"."""

    def __init__(self, data: st.DataObject) -> None:
        super().__init__()
        self.data = data

    def _index(self, n: int, keep: float) -> int:
        drawn = self.data.draw(st.integers(0, 99))
        kept = round(keep * 100)
        return 0 if drawn < kept else 1 + (drawn - kept) % (n - 1)

    def _text(self, min_size: int, max_size: int) -> str:
        text: str = self.data.draw(_strings(min_size, max_size))
        return text


@cache
def _strings(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    # A string schema draws strings only; from_schema is typed for any JSON.
    return from_schema({"type": "string", "minLength": min_size, "maxLength": max_size})  # type: ignore[return-value]


def new_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def fuzz(test: Callable[[], object], handle: mock_providers, examples: int, replay_seed: int,
         replay: str) -> None:
    """Run `test` up to `examples` times, each on a fresh `handle` varying its answers; on a failure,
    raise it from the smallest varied run found, noting what was varied and how to replay it."""

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, report_multiple_bugs=False,
              verbosity=Verbosity.quiet,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck))
    @seed(replay_seed)
    @given(st.data())
    def varied_run(data: st.DataObject) -> None:
        handle.restart(Variation(HypothesisChooser(data)))
        test()

    try:
        varied_run()
    except Exception as failure:
        varied = [f"  {e.method} {e.path} -> {e.status or 'dropped'}: {what}"
                  for e in handle.journal for what in e.varied]
        lines = "\n".join(varied) if varied else "  (nothing: the test fails on the answers as the rules give them)"
        failure.add_note(f"returns-mock fuzz: the smallest varied answers found that break this test:\n{lines}\n"
                         f"replay: {replay} --returns-mock-fuzz-seed={replay_seed}")
        raise
