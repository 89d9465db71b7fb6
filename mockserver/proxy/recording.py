"""The proxy's recording: a HAR 1.2 file, written as exchanges happen, with credentials redacted.

After each exchange the file is a complete HAR document: the entry is written over the closing
brackets, which are written again after it, and flushed. A proxy killed between two exchanges leaves a
file `validate-har` reads whole.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..version import __version__

REDACTED = "[REDACTED]"
_TAIL = b"\n]}}\n"
_SECRET_WORDS = ("authorization", "cookie", "key", "secret", "token", "signature", "password")


def _secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact_headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": REDACTED if _secret(name) else value} for name, value in headers]


def _masked(value: str) -> str:
    """A secret replaced, keeping its prefix (whsec_...), so the recording still matches its contract."""
    prefix, underscore, _ = value.partition("_")
    return f"{prefix}_REDACTED" if underscore and prefix.isalnum() else "REDACTED"


def redact_body(text: str) -> str:
    """JSON bodies with every secret-looking field (a webhook's `secret`, keys, tokens) replaced."""
    try:
        data = json.loads(text)
    except ValueError:
        return text

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _masked(v) if _secret(k) and isinstance(v, str) else clean(v) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return json.dumps(clean(data))


class HarRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries = 0
        head = {"log": {"version": "1.2", "creator": {"name": "returns-mock proxy", "version": __version__}}}
        opening = json.dumps(head)[:-2] + ', "entries": [\n'
        with path.open("wb") as fh:
            fh.write(opening.encode() + _TAIL)

    def add(self, *, started: datetime, duration_ms: float, method: str, url: str,
            request_headers: list[tuple[str, str]], request_body: bytes, query: list[tuple[str, str]],
            status: int, reason: str, response_headers: list[tuple[str, str]], response_body: bytes,
            account: str | None = None) -> None:
        request_type = next((v for k, v in request_headers if k.lower() == "content-type"), "")
        response_type = next((v for k, v in response_headers if k.lower() == "content-type"), "")
        request: dict[str, Any] = {
            "method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": redact_headers(request_headers),
            "queryString": [{"name": k, "value": v} for k, v in query], "cookies": [], "headersSize": -1,
            "bodySize": len(request_body)}
        if request_body:
            request["postData"] = {"mimeType": request_type,
                                   "text": redact_body(request_body.decode("utf-8", "replace"))}
        entry = {
            "startedDateTime": started.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "time": round(duration_ms, 3), "request": request,
            "response": {"status": status, "statusText": reason, "httpVersion": "HTTP/1.1",
                         "headers": redact_headers(response_headers), "cookies": [],
                         "content": {"size": len(response_body), "mimeType": response_type,
                                     "text": redact_body(response_body.decode("utf-8", "replace"))},
                         "redirectURL": "", "headersSize": -1, "bodySize": len(response_body)},
            "cache": {}, "timings": {"send": 0, "wait": round(duration_ms, 3), "receive": 0}}
        if account is not None:  # only accounts that are not credentials (serve --seed-file uses it)
            entry["_account"] = account
        data = (b",\n" if self._entries else b"") + json.dumps(entry).encode()
        with self._lock, self.path.open("r+b") as fh:
            fh.seek(-len(_TAIL), os.SEEK_END)
            fh.write(data + _TAIL)
            fh.flush()
            self._entries += 1
