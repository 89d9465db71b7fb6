"""pytest plugin (registered through the pytest11 entry point: installing the package is enough).

Fixtures:
- `returns_mock`: every registered provider in-process for one test (`mock_providers()`), for `requests`.
- `returns_mock_server`: a real server on a free loopback port for any other client; `.url`, `.base_urls`
  and `.url_<provider>` (e.g. `.url_3plship`).
Options: `--returns-mock-strict` or ini `returns_mock_strict = true`: a test fails when the code under
test sent a request that breaks the contract. `--returns-mock-fuzz=N`: each test that uses `returns_mock`
runs up to N times, with answers that vary within the contract, and a failure is shrunk to the smallest
varied answers that still break it (mockserver.fuzzing; `--returns-mock-fuzz-seed=S` replays a run).
`@pytest.mark.returns_mock(config=Config(...), passthrough=..., clock=..., fuzz=N)` configures either
fixture for one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# The machinery (Flask, the contracts, the HTTP mocking libraries) is imported by the fixtures that need it,
# not when pytest loads this plugin: installing returns-mock must not slow down every pytest run.
if TYPE_CHECKING:
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
    config.addinivalue_line("markers", "returns_mock(config=None, passthrough=False, clock=None, fuzz=0): "
                                       "configure the returns_mock / returns_mock_server fixtures")


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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    examples = _fuzz_examples(pyfuncitem)
    handle: mock_providers | None = pyfuncitem.funcargs.get("returns_mock")  # type: ignore[assignment]
    if not examples or handle is None:
        return None
    try:
        from mockserver.fuzzing import fuzz, new_seed
    except ImportError as missing:
        pytest.fail(f"returns-mock fuzz needs hypothesis and hypothesis-jsonschema ({missing}): "
                    "pip install 'returns-mock[fuzz]'", pytrace=False)
    seed = pyfuncitem.config.getoption("returns_mock_fuzz_seed")
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    replay = f"pytest '{pyfuncitem.nodeid}' --returns-mock-fuzz={examples}"
    fuzz(lambda: pyfuncitem.obj(**arguments), handle, examples, new_seed() if seed is None else seed, replay)
    return True


@pytest.fixture
def returns_mock(request: pytest.FixtureRequest) -> Iterator[mock_providers]:
    from mockserver.inprocess import mock_providers

    with mock_providers(**_options(request)) as mock:
        yield mock


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
    if _strict(item.config):
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        for name in FIXTURES:
            handle = funcargs.get(name)
            if handle is not None and handle.violations:
                lines = "\n".join(f"  {v.describe()}" for v in handle.violations)
                pytest.fail(f"returns-mock strict: the code under test sent {len(handle.violations)} request(s) "
                            f"that break the contract:\n{lines}", pytrace=False)
    return result
