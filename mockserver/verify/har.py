"""`returns-mock validate-har`: check recorded traffic (HAR 1.2) against the contracts."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mockserver.contract import Violation
from mockserver.providers.registry import REGISTRY
from mockserver.verify.exchange import Exchange, check_exchange


class HarError(Exception):
    """The file is not a usable HAR document."""


@dataclass
class HarReport:
    entries: int = 0
    checked: int = 0
    skipped: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "checked": self.checked, "skipped": self.skipped, "ok": self.ok,
                "violations": [{"entry": v.entry, "method": v.method, "path": v.path, "provider": v.provider,
                                "operation": v.operation, "side": v.source, "field": v.field, "message": v.message}
                               for v in self.violations]}

    def summary(self) -> str:
        lines = [f"{self.entries} entries: {self.checked} checked against a contract, {self.skipped} skipped "
                 f"(other hosts or paths), {len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}."]
        for v in self.violations:
            where = f" {v.field}:" if v.field else ""
            lines.append(f"entry {v.entry}: {v.method} {v.path} [{v.provider} {v.operation or '?'}] "
                         f"{v.source}{where} {v.message}")
        return "\n".join(lines)


def locate(url: str) -> tuple[str, str] | None:
    """(provider, path relative to its base URL) for a URL of a registered provider's real host (its
    contract's absolute `servers` URL) or of the mock's prefix on any host, else None."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    real = {}
    for provider in REGISTRY:
        if provider.real_base_url:
            base = urlsplit(provider.real_base_url)
            real[(base.hostname or "").lower()] = (provider.name, base.path.rstrip("/"))
    if host in real:
        name, base_path = real[host]
        if path == base_path or path.startswith(base_path + "/"):
            return name, path[len(base_path):] or "/"
        return None
    for provider in REGISTRY:
        prefix = provider.mock_prefix
        if path == prefix or path.startswith(prefix + "/"):
            return provider.name, path[len(prefix):] or "/"
    return None


def _text(container: dict[str, Any], where: str) -> bytes | None:
    text = container.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise HarError(f"{where}.text must be a string")
    if container.get("encoding") == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise HarError(f"{where}.text is not valid base64") from None
    return text.encode("utf-8", errors="surrogateescape")


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _header(headers: Any, name: str) -> str | None:
    for h in headers if isinstance(headers, list) else []:
        if isinstance(h, dict) and str(h.get("name", "")).lower() == name:
            return str(h.get("value", ""))
    return None


def load(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise HarError(f"{path} is not UTF-8 text") from None
    except ValueError as exc:
        raise HarError(f"{path} is not JSON: {exc}") from None
    log = document.get("log") if isinstance(document, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise HarError(f"{path} is not a HAR file: it has no log.entries list")
    return entries


@dataclass(frozen=True)
class Recorded:
    """One recorded exchange with a registered provider."""

    provider: str
    method: str
    path: str
    """Relative to the provider's base URL, without the query."""
    query: str
    headers: list[tuple[str, str]]
    request_content_type: str | None
    request_body: bytes | None
    status: int
    response_content_type: str | None
    response_body: bytes | None


def recorded_exchange(entry: Any, where: str) -> Recorded | None:
    """The exchange a HAR entry records, or None if it is with another host or got no answer; raises
    HarError naming the entry if it is not an exchange."""
    request = entry.get("request") if isinstance(entry, dict) else None
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise HarError(f"{where} needs a request and a response object")
    url, method, status = request.get("url"), request.get("method"), response.get("status")
    if not isinstance(url, str) or not isinstance(method, str) or not isinstance(status, int):
        raise HarError(f"{where} needs request.url, request.method and an integer response.status")
    located = locate(url)
    if located is None or status == 0:  # another host, or no answer was recorded
        return None
    provider, relative = located
    post = _object(request.get("postData"))
    content = _object(response.get("content"))
    headers = [(str(h.get("name", "")), str(h.get("value", ""))) for h in request.get("headers") or []
               if isinstance(h, dict)]
    return Recorded(
        provider=provider, method=method.upper(), path=relative, query=urlsplit(url).query, headers=headers,
        request_content_type=post.get("mimeType") or _header(request.get("headers"), "content-type"),
        request_body=_text(post, f"{where}.request.postData"), status=status,
        response_content_type=content.get("mimeType") or _header(response.get("headers"), "content-type"),
        response_body=_text(content, f"{where}.response.content"))


def validate_har(path: Path) -> HarReport:
    report = HarReport()
    for index, entry in enumerate(load(path)):
        report.entries += 1
        recorded = recorded_exchange(entry, f"log.entries[{index}]")
        if recorded is None:
            report.skipped += 1
            continue
        exchange = Exchange(
            method=recorded.method, path=recorded.path, query=dict(parse_qsl(recorded.query, keep_blank_values=True)),
            request_content_type=recorded.request_content_type, request_body=recorded.request_body,
            status=recorded.status, response_content_type=recorded.response_content_type,
            response_body=recorded.response_body)
        operation, findings = check_exchange(recorded.provider, exchange)
        report.checked += 1
        for f in findings:
            report.violations.append(Violation(f, recorded.method, _path(entry), recorded.provider,
                                               recorded.status, operation=operation, entry=index))
    return report


def _path(entry: dict[str, Any]) -> str:
    return urlsplit(str(entry["request"]["url"])).path
