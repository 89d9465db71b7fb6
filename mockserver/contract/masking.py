"""One rule for what looks like a credential, used wherever a request or an upstream is shown masked: the
proxy's HAR recording, journal, violations, errors, banner, `GET /` and `/__admin/health`, and the drift
reports.

A header, query parameter, form field or JSON field is masked when its name has a word of SECRET_WORDS
(`X-Api-Key`, `access_token`, `sessionId`, `sig`, `pwd`, `Bearer`), and a URL's userinfo is masked.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_plus, urlencode

from mockserver.contract import nested_too_deep

SECRET_WORDS = frozenset({"authorization", "cookie", "token", "secret", "key", "password", "passwd", "pass", "pwd",
                          "passphrase", "auth", "bearer", "session", "signature", "sig", "credential",
                          "credentials", "jwt", "otp", "pin"})
"""The one word list: every place that masks reads it."""
MASK = "[REDACTED]"

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_JOINED = ("authorization", "password", "secret", "token", "session", "signature", "cookie", "apikey")


def secret_name(name: str) -> bool:
    """Whether a field's name says it holds a credential: one of its words is a secret word (camelCase
    and any separator split words), or it has a long secret word inside (`apikey`, `xsessionid`)."""
    words = re.split(r"[^a-z0-9]+", _CAMEL.sub("_", name).lower())
    lowered = name.lower()
    return any(word in SECRET_WORDS for word in words) or any(word in lowered for word in _JOINED)


def masked_value(value: str) -> str:
    """A secret replaced, keeping a type prefix (`whsec_`, `zl_test_`: the form a contract checks)."""
    prefix, underscore, _ = value.rpartition("_")
    if underscore and re.fullmatch(r"[A-Za-z0-9_]{1,16}", prefix):
        return f"{prefix}_REDACTED"
    return MASK


def account_hint(account: str) -> str:
    """An account that is a credential (a 3plship API key), shown so that two keys can be told apart and
    neither can be used: its type prefix and its last four characters (`zl_live_***a1b2`)."""
    prefix = account.rpartition("_")[0]
    if len(account) < 12:
        return MASK
    return f"{prefix}_***{account[-4:]}" if prefix else f"***{account[-4:]}"


def headers(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, MASK if secret_name(name) else value) for name, value in pairs]


def query_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, MASK if secret_name(name) else value) for name, value in pairs]


def query_string(query: str) -> str:
    """A query string with secret-named parameters' values masked (the rest kept as sent)."""
    if not query:
        return query
    kept = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        kept.append(f"{name}={quote(MASK)}" if equals and secret_name(unquote_plus(name)) else part)
    return "&".join(kept)


USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^@/?#]*)@", re.I)
USERINFO_MASK = "***"


def userinfo(text: str) -> str:
    """A URL with the password of its userinfo masked (`user:***@host`), parsing nothing else: a URL with a
    bad port or escape is still shown, and still masked."""
    return USERINFO.sub(lambda m: m.group(1) + m.group(2).split(":", 1)[0] +
                         (":" + USERINFO_MASK if ":" in m.group(2) else "") + "@", text, count=1)


def url(text: str) -> str:
    """A URL with its userinfo's password masked and secret-named query parameters masked."""
    base, question, rest = userinfo(text).partition("?")
    if not question:
        return base
    query, hash_, fragment = rest.partition("#")
    return f"{base}?{query_string(query)}{hash_}{fragment}"


TOO_DEEP = b'"[not shown: JSON nested too deeply to be masked]"'


def body(data: bytes, content_type: str | None) -> bytes:
    """A JSON or form body with every secret-named field masked (nested too); any other body as it is. JSON
    nested deeper than MAX_JSON_DEPTH is not shown at all (it could not be masked safely)."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return data
        return urlencode(query_pairs(pairs)).encode()
    if data.lstrip()[:1] not in (b"{", b"["):
        return data
    if nested_too_deep(data):
        return TOO_DEEP
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return data
    cleaned = _clean(parsed)
    try:
        return json.dumps(cleaned, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON, not text): kept as its escape
        return json.dumps(cleaned).encode()


def at_pointer(pointer: str, value: Any) -> Any:
    """A value shown at a JSON pointer (a drift report's): masked if any name on its way looks like a
    credential, as it would be in the body it came from."""
    if any(secret_name(part) for part in pointer.split("/")[1:] if not part.isdigit()):
        return masked_value(value) if isinstance(value, str) else MASK
    return _clean(value)


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (masked_value(v) if isinstance(v, str) else MASK) if secret_name(k) else _clean(v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node
