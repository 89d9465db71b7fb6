"""`returns-mock validate-har`: check recorded traffic (HAR 1.2) against the contracts; and reading a HAR
file, for it and for `returns-mock drift`: a regular file of bounded size, each entry checked where it is
used, so that a file that cannot be used is one line naming the entry and the field."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from mockserver.contract import Violation
from mockserver.domain.clock import in_range, parse_instant
from mockserver.domain.files import FileRefused, read_regular
from mockserver.providers.registry import REGISTRY
from mockserver.verify.exchange import Exchange, check_exchange

HAR_LIMIT = 256 * 1024 * 1024
"""Bytes a HAR file may have by default (--max-file-bytes): read whole, then parsed whole."""


class HarError(Exception):
    """The file is not a usable HAR document."""


@dataclass
class HarReport:
    entries: int = 0
    checked: int = 0
    skipped: int = 0
    violations: list[Violation] = field(default_factory=list)
    operations: dict[tuple[str, str], int] = field(default_factory=dict)
    """(provider, operation or `METHOD path`) -> how many exchanges of it were checked."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "checked": self.checked, "skipped": self.skipped, "ok": self.ok,
                "violations": [{"entry": v.entry, "method": v.method, "path": v.path, "provider": v.provider,
                                "operation": v.operation, "side": v.source, "field": v.field, "message": v.message,
                                "schema": v.schema}
                               for v in self.violations]}

    def summary(self) -> str:
        lines = [f"{self.entries} entries: {self.checked} checked against a contract, {self.skipped} skipped "
                 f"(other hosts or paths), {len(self.violations)} violation{'s' if len(self.violations) != 1 else ''}."]
        for v in self.violations:
            where = f" {v.field}:" if v.field else ""
            lines.append(f"entry {v.entry}: {v.method} {v.path} [{v.provider} {v.operation or '?'}] "
                         f"{v.source}{where} {v.message}")
        return "\n".join(lines)


def locate(url: str, hosts: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(provider, path relative to its base URL) for a URL of a registered provider's real host (its
    contract's absolute `servers` URL), of a host `hosts` names (`sandbox.example.com` or with its port ->
    provider: the real base path or the mock's prefix is taken off, if the path starts with one), or of the
    mock's prefix on any host, else None. Raises ValueError for a URL that cannot be parsed."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    path = parts.path or "/"
    port = parts.port
    for named in (f"{host}:{port}" if port else None, host):
        given = (hosts or {}).get(named or "")
        if given is not None:
            entry = REGISTRY[given]
            for base in (urlsplit(entry.real_base_url or "").path.rstrip("/"), entry.mock_prefix):
                if base and (path == base or path.startswith(base + "/")):
                    return given, path[len(base):] or "/"
            return given, path
    real = {}
    for provider in REGISTRY:
        if provider.real_base_url:
            base_url = urlsplit(provider.real_base_url)
            real[(base_url.hostname or "").lower()] = (provider.name, base_url.path.rstrip("/"))
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


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HarError(f"{where} must be an object")
    return value


def _pairs(value: Any, where: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise HarError(f"{where} must be a list of {{name, value}} objects")
    found = []
    for i, pair in enumerate(value):
        if not isinstance(pair, dict) or not isinstance(pair.get("name"), str) \
                or not isinstance(pair.get("value", ""), str):
            raise HarError(f"{where}[{i}] must be an object with a string name and value")
        found.append((pair["name"], pair.get("value", "")))
    return found


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k.lower() == name), None)


def read(path: Path, limit: int = HAR_LIMIT) -> bytes:
    """A file read whole: a regular file of at most `limit` bytes (a FIFO or a device is refused rather than read
    for ever), else HarError."""
    try:
        return read_regular(path, limit)
    except FileRefused as exc:
        raise HarError(f"cannot read {path}: {exc}" + (" (--max-file-bytes)" if "larger than" in str(exc) else "")) \
            from None


def load(path: Path, limit: int = HAR_LIMIT) -> list[Any]:
    """The entries of a HAR file (each checked later, where it is used)."""
    data = read(path, limit)
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        reason = "it is nested too deeply" if "depth limit" in str(exc) or "recursion" in str(exc) else str(exc)
        raise HarError(f"{path} is not JSON: {reason}") from None
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
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    started: datetime | None = None
    answered_by_proxy: bool = False
    """Recorded by `returns-mock proxy`, and answered by it rather than by the upstream (a refusal, a 502)."""
    by_proxy: bool = False
    """Recorded by `returns-mock proxy` (it names the provider, the account and who answered)."""
    sequence: int | None = None
    """Its place in the order the upstream answered (`_sequence`: the shadow's)."""
    account: str | None = None
    """`_account`: the account (a username) the credentials named, as recorded."""
    account_id: str | None = None
    """`_account_id`: a stable identity of the account a credential (an API key) named, which is not recorded."""
    account_hint: str | None = None
    """`_account_hint`: that key as shown (its prefix and last four characters)."""


_METHOD = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _string(entry: dict[str, Any], name: str, where: str) -> str | None:
    value = entry.get(name)
    if value is not None and not isinstance(value, str):
        raise HarError(f"{where}.{name} must be a string, not {type(value).__name__}")
    return value


def recorded_exchange(entry: Any, where: str, hosts: Mapping[str, str] | None = None) -> Recorded | None:
    """The exchange a HAR entry records, or None if it is with another host or got no answer; raises
    HarError naming the entry and the field if it cannot be used."""
    request = entry.get("request") if isinstance(entry, dict) else None
    response = entry.get("response") if isinstance(entry, dict) else None
    if not isinstance(request, dict) or not isinstance(response, dict):
        raise HarError(f"{where} needs a request and a response object")
    url, method, status = request.get("url"), request.get("method"), response.get("status")
    if not isinstance(url, str) or not isinstance(method, str) or not isinstance(status, int) \
            or isinstance(status, bool):
        raise HarError(f"{where} needs request.url, request.method and an integer response.status")
    if not method or not set(method) <= _METHOD:
        raise HarError(f"{where}.request.method: {method[:40]!r} is not an HTTP method")
    if status != 0 and not 100 <= status <= 599:
        raise HarError(f"{where}.response.status: {status} is not an HTTP status")
    assert isinstance(entry, dict)
    provider = _string(entry, "_provider", where)
    if provider is not None and provider not in REGISTRY:
        raise HarError(f"{where}._provider: {provider[:40]!r} is not a provider ({', '.join(REGISTRY.names())})")
    try:
        parts = urlsplit(url)
        if provider is not None:
            base = _string(entry, "_base_path", where) or ""
            path = parts.path or "/"
            relative = (path[len(base):] or "/") if base and path.startswith(base) else path
            located: tuple[str, str] | None = (provider, relative)
        else:
            located = locate(url, hosts)
    except ValueError as exc:
        raise HarError(f"{where}.request.url: {url[:60]!r} is not a URL ({exc})") from None
    answered_by = _string(entry, "_answered_by", where)
    if located is None or status == 0:  # another host, or no answer was recorded
        return None
    started = _string(entry, "startedDateTime", where)
    moment = None
    if started is not None:
        try:
            moment = in_range(parse_instant(started))
        except (ValueError, OverflowError) as exc:
            raise HarError(f"{where}.startedDateTime: {started[:40]!r} is not a usable ISO-8601 instant ({exc})") \
                from None
    sequence = entry.get("_sequence")
    if sequence is not None and (not isinstance(sequence, int) or isinstance(sequence, bool)):
        raise HarError(f"{where}._sequence must be an integer")
    name, relative = located
    post = _object(request.get("postData"), f"{where}.request.postData")
    content = _object(response.get("content"), f"{where}.response.content")
    headers = _pairs(request.get("headers"), f"{where}.request.headers")
    answer_headers = _pairs(response.get("headers"), f"{where}.response.headers")
    return Recorded(
        provider=name, method=method.upper(), path=relative, query=parts.query, headers=headers,
        request_content_type=_string(post, "mimeType", f"{where}.request.postData") or _header(headers, "content-type"),
        request_body=_text(post, f"{where}.request.postData"), status=status,
        response_content_type=_string(content, "mimeType", f"{where}.response.content")
        or _header(answer_headers, "content-type"),
        response_body=_text(content, f"{where}.response.content"), response_headers=answer_headers,
        started=moment, answered_by_proxy=answered_by == "proxy", by_proxy=provider is not None, sequence=sequence,
        account=_string(entry, "_account", where), account_id=_string(entry, "_account_id", where),
        account_hint=_string(entry, "_account_hint", where))


def validate_har(path: Path, hosts: Mapping[str, str] | None = None, limit: int = HAR_LIMIT) -> HarReport:
    report = HarReport()
    for index, entry in enumerate(load(path, limit)):
        report.entries += 1
        recorded = recorded_exchange(entry, f"log.entries[{index}]", hosts)
        if recorded is None:
            report.skipped += 1
            continue
        exchange = Exchange(
            method=recorded.method, path=recorded.path, query=dict(parse_qsl(recorded.query, keep_blank_values=True)),
            request_content_type=recorded.request_content_type, request_body=recorded.request_body,
            status=recorded.status, response_content_type=recorded.response_content_type,
            response_body=recorded.response_body, response_headers=recorded.response_headers or None)
        operation, findings = check_exchange(recorded.provider, exchange)
        report.checked += 1
        label = (recorded.provider, operation or f"{recorded.method} {recorded.path}")
        report.operations[label] = report.operations.get(label, 0) + 1
        for f in findings:
            report.violations.append(Violation(f, recorded.method, urlsplit(entry["request"]["url"]).path,
                                               recorded.provider, recorded.status, operation=operation, entry=index))
    return report
