"""The proxy's recording: a HAR 1.2 file, written as exchanges happen, with credentials masked
(mockserver.contract.masking).

After each exchange the file is a complete HAR document: the entry, its separator and the closing
brackets are one write over the old closing brackets, made under a lock (the separator too: two first
entries at once must not both go without one). A proxy stopped at any moment, or killed between two
writes, leaves a file any HAR reader reads whole; an entry is at most one `pwrite` of its own size.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mockserver.contract import masking
from mockserver.providers.face import Face
from mockserver.version import __version__

_TAIL = b"\n]}}\n"


class HarRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries = 0
        head = {"log": {"version": "1.2", "creator": {"name": "returns-mock proxy", "version": __version__}}}
        opening = json.dumps(head)[:-2] + ', "entries": [\n'
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds live traffic
        os.write(self._fd, opening.encode() + _TAIL)
        self._end = len(opening.encode())
        """Where the closing brackets start: the next entry is written there."""

    def add(self, *, started: datetime, duration_ms: float, method: str, url: str,
            request_headers: list[tuple[str, str]], request_body: bytes, request_size: int,
            query: list[tuple[str, str]], status: int, reason: str, response_headers: list[tuple[str, str]],
            response_body: bytes, response_size: int, provider: str | None = None, base_path: str = "",
            forwarded: bool = True,
            sequence: int | None = None, accounts: dict[str, str] | None = None,
            drift: list[dict[str, Any]] | None = None) -> None:
        """One exchange; the bodies come masked already (masking.body), the sizes are as sent. `provider`:
        whose exchange it is; `forwarded`: whether the upstream answered it (else the proxy did: a refusal,
        a 502); `sequence`: its place in the order the upstream answered (the shadow's); `accounts`: what
        account_fields says of its credentials; `base_path`: the upstream base URL's path (what `url` starts
        with before the provider's own paths)."""
        request_type = next((v for k, v in request_headers if k.lower() == "content-type"), "")
        response_type = next((v for k, v in response_headers if k.lower() == "content-type"), "")
        request: dict[str, Any] = {
            "method": method, "url": masking.url(url), "httpVersion": "HTTP/1.1",
            "headers": _pairs(masking.headers(request_headers)),
            "queryString": _pairs(masking.query_pairs(query)), "cookies": [], "headersSize": -1,
            "bodySize": request_size}
        if request_body:
            request["postData"] = {"mimeType": request_type, "text": _text(request_body)}
        entry = {
            "startedDateTime": started.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "time": round(duration_ms, 3), "request": request,
            "response": {"status": status, "statusText": reason, "httpVersion": "HTTP/1.1",
                         "headers": _pairs(masking.headers(response_headers)), "cookies": [],
                         "content": {"size": response_size, "mimeType": response_type,
                                     "text": _text(response_body)},
                         "redirectURL": "", "headersSize": -1, "bodySize": response_size},
            "cache": {}, "timings": {"send": 0, "wait": round(duration_ms, 3), "receive": 0}}
        if provider is not None:
            entry["_provider"] = provider
            entry["_base_path"] = base_path
            entry["_answered_by"] = "upstream" if forwarded else "proxy"
        if sequence is not None:
            entry["_sequence"] = sequence
        entry.update(accounts or {})
        if drift is not None:  # proxy --shadow: where the mock's answer to this request differed
            entry["_drift"] = drift
        data = json.dumps(entry).encode()
        with self._lock:
            chunk = (b",\n" if self._entries else b"") + data + _TAIL
            os.pwrite(self._fd, chunk, self._end)  # one system call: over the old tail, the new one after
            self._end += len(chunk) - len(_TAIL)
            self._entries += 1


_IDENTITY_KEY = secrets.token_bytes(32)
"""Keys this process's account identities: the same key has the same identity in every recording this proxy
writes, and no recording lets anyone find the key back from it."""


def account_identity(provider: str, account: str) -> str:
    """A stable name for an account that is itself a credential (a 3plship API key), for a recording."""
    return hmac.new(_IDENTITY_KEY, f"{provider}\0{account}".encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()[:16]


def shown_account(face: Face[Any], account: str | None) -> str | None:
    """The account as the journal, the drift report and the recording show it (a key: its hint)."""
    return masking.account_hint(account) if account and face.secret_accounts else account


def account_fields(face: Face[Any], account: str | None) -> dict[str, str]:
    """What a recorded entry says of the account its credentials name (nothing: credentials the provider's
    rules refuse, or none): a username as it is (`_account`: serve --seed-file seeds under it); a key by its
    hint and a stable identity (`_account_hint`, `_account_id`), never the key itself."""
    if account is None:
        return {}
    if face.secret_accounts:
        return {"_account_hint": shown_account(face, account) or "",
                "_account_id": account_identity(face.name, account)}
    return {"_account": account}


def _pairs(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in pairs]


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace")
