"""Store URLs as they may be shown: in logs, banners and errors, never with a password."""

from __future__ import annotations

POSTGRES = ("postgresql://", "postgres://")


def shown(url: str) -> str:
    """The store URL as it may be shown (logs, banners, errors): without a password."""
    if url.startswith(POSTGRES):
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        if parts.password is not None:
            netloc = f"{parts.username}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url
