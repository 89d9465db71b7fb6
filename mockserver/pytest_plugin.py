"""pytest plugin (registered through the pytest11 entry point: installing the package is enough).

Fixtures:
- `returns_mock`: every registered provider in-process for one test (`mock_providers()`), for `requests`.
- `returns_mock_server`: a real server on a free loopback port for any other client; `.url`, `.base_urls`
  and `.url_<provider>` (e.g. `.url_3plship`).
Options: `--returns-mock-strict` or ini `returns_mock_strict = true`: a test fails when the code under
test sent a request that breaks the contract. `@pytest.mark.returns_mock(config=Config(...),
passthrough=..., clock=...)` configures either fixture for one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

# The machinery (Flask, the contracts, the HTTP mocking libraries) is imported by the fixtures that need it,
# not when pytest loads this plugin: installing returns-mock must not slow down every pytest run.
if TYPE_CHECKING:
    from .inprocess import mock_providers
    from .live import LiveMock

FIXTURES = ("returns_mock", "returns_mock_server")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("returns-mock")
    group.addoption("--returns-mock-strict", action="store_true", default=None,
                    help="fail a test whose code sent a request that breaks a provider's contract")
    parser.addini("returns_mock_strict", type="bool", default=False,
                  help="fail a test whose code sent a request that breaks a provider's contract")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "returns_mock(config=None, passthrough=False, clock=None): "
                                       "configure the returns_mock / returns_mock_server fixtures")


def _strict(config: pytest.Config) -> bool:
    option = config.getoption("returns_mock_strict")
    return bool(option if option is not None else config.getini("returns_mock_strict"))


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("returns_mock")
    return dict(marker.kwargs) if marker else {}


@pytest.fixture
def returns_mock(request: pytest.FixtureRequest) -> Iterator[mock_providers]:
    from .inprocess import mock_providers

    with mock_providers(**_options(request)) as mock:
        yield mock


@pytest.fixture
def returns_mock_server(request: pytest.FixtureRequest) -> Iterator[LiveMock]:
    from .live import LiveMock

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
