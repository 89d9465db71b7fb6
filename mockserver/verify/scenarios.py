"""Scripted lifecycle scenarios: the documented rules, not only the shapes.

Each scenario drives a real target (this mock, a sandbox, a provider account) through a lifecycle with
`requests`; every response is also checked against the contract. The first broken expectation ends the
scenario (later steps depend on it) and becomes a violation with a curl reproducer. Against a real
account these scenarios create real returns: point verify at a sandbox or a test key.
"""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit

import requests

from mockserver.providers.provider import Scenario
from mockserver.verify.exchange import Exchange, check_exchange
from mockserver.verify.report import Failure, Report, drift_line
from mockserver.web.mirror import Mirror


class ScenarioFailed(Exception):
    def __init__(self, check: str, message: str, reproducer: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.reproducer = reproducer


def curl(prepared: requests.PreparedRequest) -> str:
    parts = ["curl", "-X", str(prepared.method), shlex.quote(str(prepared.url))]
    for name, value in prepared.headers.items():
        if name.lower() in ("user-agent", "accept-encoding", "accept", "connection", "content-length"):
            continue
        shown = "[Filtered]" if name.lower() == "authorization" else value
        parts += ["-H", shlex.quote(f"{name}: {shown}")]
    if prepared.body:
        body = prepared.body.decode() if isinstance(prepared.body, bytes) else str(prepared.body)
        parts += ["-d", shlex.quote(body)]
    return " ".join(parts)


class Client:
    """requests, pointed at one provider's base URL, checking every answer against the contract."""

    def __init__(self, provider: str, base_url: str, auth_headers: dict[str, str], timeout: float,
                 mirror: Mirror | None = None, report: Report | None = None, scenario: str = "") -> None:
        self.provider = provider
        self.mirror = mirror
        """With --compare-mock: a local mock each request is applied to after the target answered it."""
        self.report = report
        self.scenario = scenario
        self.base_url = base_url.rstrip("/")
        self.base_path = urlsplit(self.base_url).path
        self.auth_headers = auth_headers
        self.timeout = timeout
        self.session = requests.Session()
        self.checks = 0

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
             authenticated: bool = True) -> requests.Response:
        headers = dict(self.auth_headers) if authenticated else {}
        response = self.session.request(method, self.base_url + path, json=json, params=params, headers=headers,
                                        timeout=self.timeout)
        request = response.request
        body = request.body.encode() if isinstance(request.body, str) else request.body
        exchange = Exchange(
            method=method, path=urlsplit(response.url).path[len(self.base_path):] or "/",
            query={k: str(v) for k, v in (params or {}).items()},
            request_content_type=request.headers.get("Content-Type"), request_body=body,
            status=response.status_code, response_content_type=response.headers.get("Content-Type"),
            response_body=response.content, response_headers=list(response.headers.items()))
        self.checks += 1
        if self.mirror is not None:
            self._compare(exchange, request, list(request.headers.items()), urlsplit(response.url).query,
                          list(response.headers.items()))
        _, findings = check_exchange(self.provider, exchange)
        response_findings = [f for f in findings if f.side == "response"]
        if response_findings:
            detail = "; ".join(f"{f.field + ': ' if f.field else ''}{f.message}" for f in response_findings)
            raise ScenarioFailed("response_conformance", f"{method} {path} -> {response.status_code}: {detail}",
                                 curl(request))
        return response

    def _compare(self, exchange: Exchange, request: requests.PreparedRequest, headers: list[tuple[str, str]],
                 query: str, answer_headers: list[tuple[str, str]]) -> None:
        """The same request applied to the local mock; each difference of its answer is a violation."""
        assert self.mirror is not None and self.report is not None
        c = self.mirror.mock.providers[self.provider].contract
        entry = self.mirror.apply(self.provider, exchange.method, c.mock_prefix + exchange.path, query, headers,
                                  exchange.request_body or b"", exchange.status, answer_headers,
                                  exchange.response_body or b"", None)
        follows = f" (follows from exchange #{entry.cause})" if entry.cause is not None else ""
        for difference in entry.differences:
            where = difference.pointer or "status"
            self.report.add(Failure("compare-mock", self.scenario, difference.kind,
                                    f"{where} in {exchange.method} {exchange.path}: {difference.values('target')}"
                                    f"{follows}", curl(request), difference.schema))

    def expect(self, response: requests.Response, status: int, why: str) -> Any:
        self.checks += 1
        if response.status_code != status:
            raise ScenarioFailed("status_code", f"{why}: expected {status}, got {response.status_code}: "
                                                f"{response.text[:300]}", curl(response.request))
        return response.json() if response.content else None

    def require(self, condition: bool, check: str, message: str, response: requests.Response) -> None:
        self.checks += 1
        if not condition:
            raise ScenarioFailed(check, message, curl(response.request))


def run_scenarios(provider: str, scenarios: list[Scenario], base_url: str, auth_headers: dict[str, str],
                  report: Report, timeout: float = 10.0, compare_mock: bool = False,
                  drift_ignore: tuple[str, ...] = ()) -> None:
    """Each scenario against the target; with `compare_mock`, each request also applied, in the same order,
    to one fresh local mock, and every difference of its answers reported (suite `compare-mock`), with a line
    saying what was compared."""
    mirror = Mirror(drift_ignore) if compare_mock else None
    for scenario in scenarios:
        name = scenario.__name__
        client = Client(provider, base_url, auth_headers, timeout, mirror, report, name)
        try:
            scenario(client)
        except ScenarioFailed as failed:
            report.add(Failure("scenario", name, failed.check, failed.message, failed.reproducer))
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            report.add(Failure("scenario", name, "unusable_response", f"{type(exc).__name__}: {exc}"))
        report.ran("scenario", name, client.checks)
    if mirror is not None:
        report.notes.append(drift_line(mirror.log.summary(), "target"))
