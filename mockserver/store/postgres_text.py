"""Text that PostgreSQL cannot hold, held all the same: a NUL (U+0000) in an id, an account or a path.

PostgreSQL's text types refuse U+0000, while SQLite and memory keep it and the contracts allow it. So
on every connection of the PostgreSQL store, text parameters are written as `postgres_wire.stored` writes
them (a NUL as U+F0000, which itself and its escapes are written as pairs) and read back as they were.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.string import StrBinaryDumper, StrDumperUnknown, TextBinaryLoader, TextLoader

from mockserver.store.postgres_wire import loaded, stored


class _Dumper(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(stored(obj))


class _BinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(stored(obj))


class _Loader(TextLoader):
    def load(self, data: Any) -> Any:
        text: Any = super().load(data)
        return loaded(text)


class _BinaryLoader(TextBinaryLoader):
    def load(self, data: Any) -> Any:
        text: Any = super().load(data)
        return loaded(text)


def nul_safe(conn: Any) -> None:
    """Register the NUL-safe text adapters on one connection (the pool's `configure` hook)."""
    adapters = conn.adapters
    adapters.register_dumper(str, _Dumper)
    adapters.register_dumper(str, _BinaryDumper)
    for name in ("text", "varchar"):
        adapters.register_loader(name, _Loader)
        adapters.register_loader(name, _BinaryLoader)
