"""Stores: `memory` (one process) and `sqlite:PATH` (the server's embedded default)."""

from __future__ import annotations

from ..errors import StoreError
from .base import (
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
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["Delivery", "DeliveryQueue", "MemoryStore", "Page", "RateCounters", "ReturnRecord", "ReturnStore",
           "Settings", "SqliteStore", "Store", "StoreError", "Transaction", "Window", "open_store",
           "validate_store_url"]


def validate_store_url(url: str) -> None:
    if url == "memory":
        return
    if not url.startswith("sqlite:") or not url[len("sqlite:"):]:
        raise StoreError(f"unknown store {url!r}: use 'memory' or 'sqlite:PATH'")


def open_store(url: str) -> Store:
    """`memory` or `sqlite:PATH`; raises StoreError with a one-line reason if it cannot be used."""
    validate_store_url(url)
    if url == "memory":
        return MemoryStore()
    return SqliteStore(url[len("sqlite:"):])
