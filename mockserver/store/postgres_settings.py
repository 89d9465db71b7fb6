"""A request's settings on the PostgreSQL store: held by each process, confirmed by each request.

Every request reads the settings (the clock, fault rules, the rate policy, the accounts with webhook
subscriptions). Reading them is a round trip of its own; confirming that the process's copy is still
current costs none, because the settings' version (moved by every change: migration 5's trigger) rides
with the request's first statement. A request that starts after a change was acknowledged, on any
replica, is answered with the change, as when every request read them all.

When the version has moved, that first statement did nothing (a read is dropped, a write counts only at
the version it was given, a transaction rolls back) and SettingsChanged is raised: the pipeline answers
the request again, on settings read afresh.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

from mockserver.contract.errors import SettingsChanged
from mockserver.store.postgres_wire import Statement, run, text

SETTINGS = Statement("SELECT key, value FROM settings UNION ALL SELECT NULL, v::text FROM settings_version")
"""Every setting and the version they are at, in one snapshot (the version's row has no key)."""
VERSION = Statement("SELECT v FROM settings_version")

WEBHOOK_ACCOUNTS = "webhook-accounts"
"""The setting migration 3's triggers keep: a JSON list of the accounts with a webhook subscription."""


class HeldSettings:
    """This process's copy of the settings (one for its threads) and each thread's request's own."""

    def __init__(self) -> None:
        self._held: tuple[int, dict[str, str]] | None = None
        self._local = threading.local()
        self._webhook_accounts: tuple[str, frozenset[str]] = ("", frozenset())

    @property
    def pinned(self) -> dict[str, str] | None:
        """This thread's request's settings (None outside a request): the process's copy itself, never
        written to (a request's own write replaces it, `remember`)."""
        pinned: dict[str, str] | None = getattr(self._local, "pinned", None)
        return pinned

    @property
    def unconfirmed(self) -> int | None:
        """The version this thread's request's settings were held at, until a statement confirms it."""
        version: int | None = getattr(self._local, "unconfirmed", None)
        return version

    def pin(self, conn: Any, *, confirm_later: bool) -> None:
        """Settings for this thread's request: the process's copy, to be confirmed by its first statement
        (confirm_later), or read now. After a change was found, the next pin reads them."""
        held = self._held
        if confirm_later and held is not None and not getattr(self._local, "stale", False):
            self._local.pinned, self._local.unconfirmed = held[1], held[0]
            return
        values: dict[str, str] = {}
        version = 0
        for key, value in run(conn, SETTINGS):
            if key is None:
                version = int(value or 0)
            else:
                values[text(key)] = text(value)
        held = self._held
        if held is None or version >= held[0]:  # a slower read of an older version does not replace a newer one
            self._held = (version, values)
        self._local.pinned, self._local.unconfirmed, self._local.stale = values, None, False

    def unpin(self) -> None:
        self._local.pinned = self._local.unconfirmed = None

    def confirm(self, current: bytes | None) -> None:
        """The version a statement read along with its own work: this request's settings are current, or
        SettingsChanged (the statement must have kept nothing)."""
        expected = self.unconfirmed
        self._local.unconfirmed = None
        if expected is not None and (current is None or int(current) != expected):
            self._held = None
            self._local.stale = True
            raise SettingsChanged(f"the settings moved from version {expected} to {text(current)}")

    def remember(self, key: str, value: str) -> None:
        """This process wrote a setting: its request sees it, and the next request reads them again."""
        self._held = None
        pinned = self.pinned
        if pinned is not None:  # a copy: other threads' requests share the one they pinned
            self._local.pinned = {**pinned, key: value}

    def subscribed(self, account: str) -> bool | None:
        """Whether the account has a webhook subscription, as this request's settings say; None if unknown."""
        pinned = self.pinned
        known = pinned.get(WEBHOOK_ACCOUNTS) if pinned is not None else None
        if known is None:
            return None
        parsed = self._webhook_accounts
        if parsed[0] != known:  # parsed once per change, not per create
            parsed = self._webhook_accounts = (known, frozenset(orjson.loads(known)))
        return account in parsed[1]
