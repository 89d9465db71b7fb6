"""`returns-mock verify`: the provider's contract suite against any implementation at a URL."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

import requests

from ..contracts import contract
from .report import Report, Violation
from .scenarios import run_scenarios

__all__ = ["Report", "Target", "TargetError", "Violation", "verify"]


class TargetError(Exception):
    """The target cannot be checked at all: unreachable, or it refuses the credentials."""


@dataclass(frozen=True)
class Target:
    provider: str
    base_url: str
    api_key: str | None = None
    username: str | None = None
    password: str | None = None

    @property
    def auth_headers(self) -> dict[str, str]:
        if self.provider == "35up":
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {"Authorization": f"Bearer {self.api_key}"}


def probe(target: Target, timeout: float = 10.0) -> None:
    """Fail fast, with one line, when the URL does not answer or the credentials are refused."""
    base = target.base_url.rstrip("/")
    try:
        if target.provider == "35up":
            # An order that cannot exist: 404 with good credentials, 401 with bad ones.
            response = requests.patch(f"{base}/returns/verify-{uuid.uuid4().hex[:12]}", json={"status": "closed"},
                                      headers=target.auth_headers, timeout=timeout)
        else:
            response = requests.get(f"{base}/returns", params={"limit": 1}, headers=target.auth_headers,
                                    timeout=timeout)
    except requests.RequestException as exc:
        raise TargetError(f"cannot reach {target.base_url}: {type(exc).__name__}") from None
    if response.status_code in (401, 403):
        raise TargetError(f"{target.base_url} refused the credentials ({response.status_code})")


def verify(target: Target, *, max_examples: int = 20, seed: int | None = None,
           scenarios: bool = True, fuzz: bool = True) -> Report:
    probe(target)
    report = Report(f"returns-mock verify: {target.provider} at {target.base_url}")
    if fuzz:
        from .fuzz import run_contract_suite

        run_contract_suite(contract(target.provider).bundled_openapi(), target.base_url, target.auth_headers,
                           report, max_examples=max_examples, seed=seed)
    if scenarios:
        run_scenarios(target.provider, target.base_url, target.auth_headers, report)
    return report
