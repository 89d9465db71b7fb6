"""What the two SQL engines share: the returns table's columns and the statements of a transaction that
read and write the same way on SQLite and PostgreSQL. Statements are written with `?`; an engine whose
driver wants `%s` says so once, and its statements are rewritten when its class is made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from mockserver.store.base import Delivery, ReturnRecord, Transaction

COLUMNS = "seq, provider, account, id, order_id, status, due_at, version, resource, history"

_STATEMENTS = ("UPDATE", "DUE", "ADD_WEBHOOK", "WEBHOOKS", "ADD_DELIVERY")


def to_record(row: Sequence[Any]) -> ReturnRecord:
    seq, provider, account, id_, order_id, status, due_at, version, resource, history = row
    return ReturnRecord(provider=provider, account=account, id=id_, order_id=order_id, status=status,
                        resource=orjson.loads(resource), history=orjson.loads(history), due_at=due_at,
                        version=version, seq=seq)


class SqlTransaction(Transaction):
    PLACEHOLDER: ClassVar[str] = "?"
    UPDATE: ClassVar[str] = ("UPDATE returns SET status=?, order_id=?, due_at=?, version=version+1, resource=?,"
                             " history=? WHERE provider=? AND account=? AND id=?")
    DUE: ClassVar[str] = (f"SELECT {COLUMNS} FROM returns WHERE provider=? AND account=? AND due_at IS NOT NULL"
                          " AND due_at <= ? ORDER BY seq")
    ADD_WEBHOOK: ClassVar[str] = "INSERT INTO webhooks (id, account, data) VALUES (?, ?, ?)"
    WEBHOOKS: ClassVar[str] = "SELECT data FROM webhooks WHERE account=? ORDER BY rowid"
    ADD_DELIVERY: ClassVar[str] = ("INSERT INTO deliveries (id, account, status, next_at, data)"
                                   " VALUES (?, ?, ?, ?, ?)")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.PLACEHOLDER != "?":
            for name in _STATEMENTS:
                setattr(cls, name, getattr(cls, name).replace("?", cls.PLACEHOLDER))

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def _moving(self, record: ReturnRecord) -> None:
        """Before `record` is written over its stored row (an engine keeping counts by status adjusts them)."""

    def update(self, record: ReturnRecord) -> ReturnRecord:
        self._moving(record)
        self._conn.execute(self.UPDATE, (record.status, record.order_id, record.due_at,
                                         orjson.dumps(record.resource).decode(), orjson.dumps(record.history).decode(),
                                         record.provider, record.account, record.id))
        stored = record.copy()
        stored.version += 1
        return stored

    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        return [to_record(r) for r in self._conn.execute(self.DUE, (provider, account, now_ms)).fetchall()]

    def add_webhook(self, account: str, webhook: dict[str, Any]) -> None:
        self._conn.execute(self.ADD_WEBHOOK, (webhook["id"], account, orjson.dumps(webhook).decode()))

    def webhooks(self, account: str) -> list[dict[str, Any]]:
        return [orjson.loads(r[0]) for r in self._conn.execute(self.WEBHOOKS, (account,)).fetchall()]

    def add_delivery(self, delivery: Delivery) -> None:
        self._conn.execute(self.ADD_DELIVERY, (delivery.id, delivery.account, delivery.status, delivery.next_at,
                                               delivery.encode()))
