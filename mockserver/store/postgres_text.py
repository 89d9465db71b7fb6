"""Text that PostgreSQL cannot hold, held all the same: a NUL (U+0000) in an id, an account or a path.

PostgreSQL's text types refuse U+0000, while SQLite and memory keep it and the contracts allow it. So
on every connection of the PostgreSQL store, a NUL in a text parameter is stored as U+F0000 (the first
code point of a private-use plane, which no client sends in practice) and read back as U+0000.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.string import StrBinaryDumper, StrDumperUnknown, TextBinaryLoader, TextLoader

from mockserver.store.postgres_wire import NUL, STAND_IN


class _Dumper(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace(NUL, STAND_IN) if NUL in obj else obj)


class _BinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(obj.replace(NUL, STAND_IN) if NUL in obj else obj)


class _Loader(TextLoader):
    def load(self, data: Any) -> Any:
        text: Any = super().load(data)
        return text.replace(STAND_IN, NUL) if STAND_IN in text else text


class _BinaryLoader(TextBinaryLoader):
    def load(self, data: Any) -> Any:
        text: Any = super().load(data)
        return text.replace(STAND_IN, NUL) if STAND_IN in text else text


def nul_safe(conn: Any) -> None:
    """Register the NUL-safe text adapters on one connection (the pool's `configure` hook)."""
    adapters = conn.adapters
    adapters.register_dumper(str, _Dumper)
    adapters.register_dumper(str, _BinaryDumper)
    for name in ("text", "varchar"):
        adapters.register_loader(name, _Loader)
        adapters.register_loader(name, _BinaryLoader)
