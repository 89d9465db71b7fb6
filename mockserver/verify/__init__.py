"""`returns-mock verify`: the provider's contract suite against any implementation at a URL."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from mockserver.contract import contract
from mockserver.providers.provider import Credentials, Provider
from mockserver.providers.registry import REGISTRY
from mockserver.verify.report import Failure, Report
from mockserver.verify.scenarios import run_scenarios

__all__ = ["Failure", "Report", "Target", "TargetError", "verify"]


class TargetError(Exception):
    """The target cannot be checked at all: unreachable, or it refuses the credentials."""


@dataclass(frozen=True)
class Target:
    provider: str
    base_url: str
    credentials: Credentials = field(default_factory=Credentials)

    @property
    def entry(self) -> Provider:
        return REGISTRY[self.provider]

    @property
    def auth_headers(self) -> dict[str, str]:
        return self.entry.auth_headers(self.credentials)


def probe(target: Target, timeout: float = 10.0) -> None:
    """Fail fast, with one line, when the URL does not answer or the credentials are refused."""
    base = target.base_url.rstrip("/")
    method, path, body, params = target.entry.probe()
    try:
        response = requests.request(method, base + path, json=body, params=params, headers=target.auth_headers,
                                    timeout=timeout)
    except requests.RequestException as exc:
        raise TargetError(f"cannot reach {target.base_url}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise TargetError(f"{target.base_url} refused the credentials ({response.status_code})")


def verify(target: Target, *, max_examples: int = 20, seed: int | None = None,
           scenarios: bool = True, fuzz: bool = True, compare_mock: bool = False,
           drift_ignore: tuple[str, ...] = ()) -> Report:
    probe(target)
    report = Report(f"returns-mock verify: {target.provider} at {target.base_url}")
    if fuzz:
        from mockserver.verify.fuzz import run_contract_suite

        run_contract_suite(contract(target.provider).bundled_openapi(), target.base_url, target.auth_headers,
                           report, max_examples=max_examples, seed=seed)
    if scenarios:
        run_scenarios(target.provider, target.entry.scenarios(), target.base_url, target.auth_headers, report,
                      compare_mock=compare_mock, drift_ignore=drift_ignore)
    return report
