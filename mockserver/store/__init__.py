"""Stores: `memory` (one process) and `sqlite:PATH` (the server's embedded default)."""

from __future__ import annotations

from mockserver.contract.errors import StoreError
from mockserver.store.base import (
    Delivery,
    DeliveryQueue,
    Page,
    RateCounters,
    ReturnRecord,
    ReturnStore,
    Settings,
    Store,
    Transaction,
    Window,
)
from mockserver.store.memory import MemoryStore
from mockserver.store.sqlite import SqliteStore
from mockserver.store.urls import POSTGRES, masked, shown

__all__ = ["Delivery", "DeliveryQueue", "MemoryStore", "Page", "RateCounters", "ReturnRecord", "ReturnStore",
           "Settings", "SqliteStore", "Store", "StoreError", "Transaction", "Window", "open_store", "shown",
           "validate_store_url"]


def validate_store_url(url: str) -> None:
    if url == "memory":
        return
    if url.startswith(POSTGRES):
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError as exc:
            raise StoreError(f"unusable store URL {shown(url)!r}: {masked(str(exc), url)}") from None
        if not parts.hostname and "host=" not in parts.query:
            raise StoreError(f"unusable store URL {shown(url)!r}: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DB")
        return
    if not url.startswith("sqlite:") or not url[len("sqlite:"):]:
        hint = " (a libpq key=value string is written as a URL: its keys as ?key=value)" if "=" in url else ""
        raise StoreError(f"unknown store {shown(url)!r}: use 'memory', 'sqlite:PATH' or "
                         f"'postgresql://USER[:PASSWORD]@HOST[:PORT]/DB'{hint}")


def open_store(url: str) -> Store:
    """`memory`, `sqlite:PATH` or `postgresql://...`; raises StoreError with a one-line reason if it cannot
    be used (the PostgreSQL engine needs the `postgres` extra)."""
    validate_store_url(url)
    if url == "memory":
        return MemoryStore()
    if url.startswith(POSTGRES):
        from mockserver.store.postgres import PostgresStore

        return PostgresStore(url)
    return SqliteStore(url[len("sqlite:"):])
