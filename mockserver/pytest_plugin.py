"""pytest plugin (registered through the pytest11 entry point: installing the package is enough).

Fixtures:
- `returns_mock`: every registered provider in-process for one test (`mock_providers()`), for `requests`.
- `returns_mock_server`: a real server on a free loopback port for any other client; `.url`, `.base_urls`
  and `.url_<provider>` (e.g. `.url_3plship`).
Options: `--returns-mock-strict` or ini `returns_mock_strict = true`: a test fails when the code under
test sent a request that breaks the contract. `--returns-mock-fuzz=N`: each test that uses `returns_mock`
runs up to N times, with answers that vary within the contract, and a failure is shrunk to the smallest
varied answers that still break it (mockserver.fuzzing; `--returns-mock-fuzz-seed=S` replays a run).
`@pytest.mark.returns_mock(config=Config(...), passthrough=..., clock=..., fuzz=N, autopilot=...)` configures
either fixture for one test (`autopilot`: the provider's own moves, schedules or a preset such as "warehouse";
`.advance("P3D")` on either fixture moves the clock and makes what fell due).

Each fuzzed run starts from scratch, as a hypothesis `@given` test needs: the test's function-scoped
fixtures (`returns_mock` and every other one: a shop's database, a list, `tmp_path`) are torn down and set
up again for every run, and a test method gets a fresh instance of its class. A test the plugin cannot run
that way is refused with a message saying why.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

# The machinery (Flask, the contracts, the HTTP mocking libraries) is imported by the fixtures that need it,
# not when pytest loads this plugin: installing returns-mock must not slow down every pytest run.
if TYPE_CHECKING:
    from mockserver.consumer import Webhooks
    from mockserver.domain.variation import Variation
    from mockserver.inprocess import mock_providers
    from mockserver.live import LiveMock

FIXTURES = ("returns_mock", "returns_mock_server")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("returns-mock")
    group.addoption("--returns-mock-strict", action="store_true", default=None,
                    help="fail a test whose code sent a request that breaks a provider's contract")
    parser.addini("returns_mock_strict", type="bool", default=False,
                  help="fail a test whose code sent a request that breaks a provider's contract")
    group.addoption("--returns-mock-fuzz", type=_count, default=0, metavar="N",
                    help="run each test that uses returns_mock up to N times with answers varied within the "
                         "contract; a failure is shrunk to the smallest varied answers that break it")
    group.addoption("--returns-mock-fuzz-seed", type=_count, default=None, metavar="SEED",
                    help="the seed of a fuzzed run, to replay it (a failure names it)")
    group.addoption("--returns-mock-fuzz-shrink-seconds", type=_count, default=None, metavar="S",
                    help="shrink a fuzzed failure for at most S seconds (default 30; 0: report the first "
                         "failing run as it was)")


def _count(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected 0 to {2**32 - 1}, got {text!r}")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "returns_mock(config=None, passthrough=False, clock=None, fuzz=0, "
                                       "autopilot=None): configure the returns_mock / returns_mock_server fixtures")


def _strict(config: pytest.Config) -> bool:
    option = config.getoption("returns_mock_strict")
    return bool(option if option is not None else config.getini("returns_mock_strict"))


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("returns_mock")
    options = dict(marker.kwargs) if marker else {}
    options.pop("fuzz", None)
    return options


def _fuzz_examples(item: pytest.Item) -> int:
    marker = item.get_closest_marker("returns_mock")
    if marker is not None and "fuzz" in marker.kwargs:
        return int(marker.kwargs["fuzz"])
    return int(item.config.getoption("returns_mock_fuzz") or 0)


VARIATION = pytest.StashKey["Variation | None"]()
"""The variation the next `returns_mock` of a fuzzed test varies its answers by."""
FUZZED = pytest.StashKey[bool]()


def _refuse(item: pytest.Item, why: str) -> NoReturn:
    pytest.fail(f"returns-mock fuzz cannot run {item.nodeid} from scratch for every run: {why}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    examples = _fuzz_examples(pyfuncitem)
    if not examples or "returns_mock" not in pyfuncitem.fixturenames:
        return None
    pyfuncitem.stash[FUZZED] = True
    try:
        from mockserver.fuzzing import SHRINK_SECONDS, fuzz, new_seed, varied
    except ImportError as missing:
        pytest.fail(f"returns-mock fuzz needs hypothesis and hypothesis-jsonschema ({missing}): "
                    "pip install 'returns-mock[fuzz]'", pytrace=False)
    runs = _Runs(pyfuncitem, varied)
    seed = pyfuncitem.config.getoption("returns_mock_fuzz_seed")
    shrink = pyfuncitem.config.getoption("returns_mock_fuzz_shrink_seconds")
    replay = f"pytest '{pyfuncitem.nodeid}' --returns-mock-fuzz={examples}"
    fuzz(runs.run, runs.drawn, examples, new_seed() if seed is None else seed, replay,
         SHRINK_SECONDS if shrink is None else shrink)
    return True


class _Runs:
    """A fuzzed test run from scratch: its function-scoped fixtures torn down and set up again around each
    run, through pytest's own fixture machinery (what pytest does between two tests, done within one)."""

    def __init__(self, item: pytest.Function, varied: Callable[[list[Any]], list[str]]) -> None:
        request = getattr(item, "_request", None)
        if not all(hasattr(item, name) for name in ("_request", "funcargs", "_fixtureinfo")) or \
                not isinstance(getattr(request, "_fixture_defs", None), dict) or \
                not hasattr(request, "_fillfixtures"):
            _refuse(item, f"this pytest ({pytest.__version__}) does not expose how it sets up fixtures; run the "
                          "test without --returns-mock-fuzz, or with the pytest versions returns-mock supports (8, 9)")
        self.item = item
        self.request: Any = request
        self.varied = varied
        self.handle: Any = None
        self._stash = dict(getattr(item.stash, "_storage", {}))
        """What pytest's setup left in the item's stash: fixtures' teardowns read (and take) their part of it."""

    def run(self, variation: Variation | None) -> None:
        item = self.item
        self._teardown()
        item.stash[VARIATION] = variation
        if item.instance is not None:  # a test method: a fresh instance of its class, as pytest gives each test
            item._instance = item._getinstance()  # type: ignore[no-untyped-call]
            item._obj = item._getobj()  # type: ignore[no-untyped-call]
        try:
            self.request._fillfixtures()
            self.handle = item.funcargs["returns_mock"]
            result = item.obj(**{name: item.funcargs[name] for name in item._fixtureinfo.argnames})
            if inspect.isawaitable(result):
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                _refuse(item, "it is a coroutine, and no plugin ran it (pytest-asyncio or anyio run an async test "
                              "through returns-mock's fuzzing; without one, pytest cannot run it at all)")
            if _strict(item.config):
                _fail_on_violations(self.handle)
        finally:
            self._teardown()

    def drawn(self) -> list[str]:
        """What the last run's answers and webhook deliveries drew (a run that failed included)."""
        if self.handle is None:
            return []
        return [*self.varied(self.handle.journal), *getattr(self.handle, "notes", [])]

    def _teardown(self) -> None:
        """Tear down every function-scoped fixture (dependents first), as pytest does after a test, and
        forget a failed one's error, so that the next run sets it up again."""
        defs: dict[str, Any] = self.request._fixture_defs
        for key, value in self._stash.items():  # e.g. tmp_path's teardown takes the test's outcome from it
            self.item.stash.setdefault(key, value)
        failures: list[BaseException] = []
        for name in reversed(list(defs)):
            if defs[name].scope == "function":
                fixturedef = defs.pop(name)
                self.item.funcargs.pop(name, None)
                try:
                    fixturedef.finish(self.request)
                except BaseException as error:  # every fixture is torn down; the first error is raised after
                    failures.append(error)
        for fixturedefs in self.item._fixtureinfo.name2fixturedefs.values():
            for fixturedef in fixturedefs:
                if fixturedef.scope == "function" and fixturedef.cached_result is not None:
                    fixturedef.cached_result = None  # set up in vain: its error must not be cached for the next run
        if failures:
            raise failures[0]


@pytest.fixture
def returns_mock(request: pytest.FixtureRequest) -> Iterator[mock_providers]:
    from mockserver.inprocess import mock_providers

    with mock_providers(**_options(request)) as mock:
        variation = request.node.stash.get(VARIATION, None)
        if variation is not None:  # a fuzzed run: from its first request on, fixtures' own included
            mock.state.varying.use(variation)
        yield mock


@pytest.fixture
def returns_mock_webhooks(returns_mock: mock_providers) -> Webhooks:
    """The provider's webhooks for one test (mockserver.consumer): `.secret` for the shop's consumer, `.create`
    to make returns move (their events queued), `.deliver(handler=|wsgi=|asgi=|url=)` to deliver them;
    under --returns-mock-fuzz, varied, duplicated, delayed and retried."""
    from mockserver.consumer import Webhooks

    return Webhooks(returns_mock.state, returns_mock.notes)


@pytest.fixture
def returns_mock_server(request: pytest.FixtureRequest) -> Iterator[LiveMock]:
    from mockserver.live import LiveMock

    options = _options(request)
    options.pop("passthrough", None)
    with LiveMock(**options) as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    result = yield
    if isinstance(item, pytest.Function) and _fuzz_examples(item) and "returns_mock" in item.fixturenames:
        if not item.stash.get(FUZZED, False):
            _refuse(item, "another plugin ran the test function itself (an async test's plugin, such as anyio's), "
                          "so it ran once, unvaried; fuzz it with pytest-asyncio, or as a synchronous test")
        return result  # each run was checked (strict mode included) as it ran
    if _strict(item.config):
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for name in FIXTURES:
            handle = funcargs.get(name)
            if handle is not None:
                _fail_on_violations(handle)
    return result


def _fail_on_violations(handle: Any) -> None:
    if handle.violations:
        lines = "\n".join(f"  {v.describe()}" for v in handle.violations)
        pytest.fail(f"returns-mock strict: the code under test sent {len(handle.violations)} request(s) "
                    f"that break the contract:\n{lines}", pytrace=False)
