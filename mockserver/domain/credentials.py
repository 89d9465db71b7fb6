"""Secrets compared safely: constant-time comparison of UTF-8 secrets as the client sent them (their masking
for display is mockserver.store.urls)."""

from __future__ import annotations

import hmac


def wire_bytes(header_value: str) -> bytes:
    """A header value as the bytes the client sent: WSGI hands headers over decoded as latin-1."""
    try:
        return header_value.encode("latin-1")
    except UnicodeEncodeError:  # already text (an in-process request): its UTF-8 form
        return header_value.encode("utf-8", "surrogateescape")


def same_secret(given: bytes, expected: str) -> bool:
    """Whether `given` (raw bytes off the wire) is the secret `expected`, in constant time; secrets are
    UTF-8 (RFC 7617 charset="UTF-8"), so non-ASCII ones work too."""
    return hmac.compare_digest(given, expected.encode("utf-8", "surrogateescape"))
