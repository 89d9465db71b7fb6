"""What the two SQL engines share: the returns table's columns and the statements of a transaction that
read and write the same way on SQLite and PostgreSQL. Statements are written with `?`; an engine whose
driver wants `%s` says so once, and its statements are rewritten when its class is made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson

from mockserver.store.base import Delivery, ReturnRecord, Transaction

COLUMNS = "seq, provider, account, id, order_id, status, due_at, version, resource, history, reads"

_STATEMENTS = ("UPDATE", "DUE", "DUE_ANY", "ADD_WEBHOOK", "WEBHOOKS", "WEBHOOK_COUNT", "ADD_DELIVERY", "HELD",
               "DROP_DELIVERY", "UPDATE_DELIVERY")


def to_record(row: Sequence[Any]) -> ReturnRecord:
    seq, provider, account, id_, order_id, status, due_at, version, resource, history, reads = row
    return ReturnRecord(provider=provider, account=account, id=id_, order_id=order_id, status=status,
                        resource=orjson.loads(resource), history=orjson.loads(history), due_at=due_at,
                        version=version, seq=seq, reads=reads)


def update_params(delivery: Delivery) -> tuple[Any, ...]:
    """UPDATE_DELIVERY's parameters."""
    return delivery.status, delivery.next_at, delivery.group or None, delivery.encode(), delivery.id


def delivery_params(delivery: Delivery) -> tuple[Any, ...]:
    """A delivery's row (ADD_DELIVERY's parameters): its columns, then the whole of it as JSON."""
    return (delivery.id, delivery.account, delivery.webhook_id, delivery.group or None, delivery.status,
            delivery.next_at, delivery.encode())


class SqlTransaction(Transaction):
    PLACEHOLDER: ClassVar[str] = "?"
    UPDATE: ClassVar[str] = ("UPDATE returns SET status=?, order_id=?, due_at=?, version=version+1, resource=?,"
                             " history=?, reads=? WHERE provider=? AND account=? AND id=?")
    DUE: ClassVar[str] = (f"SELECT {COLUMNS} FROM returns WHERE provider=? AND account=? AND due_at IS NOT NULL"
                          " AND due_at <= ? ORDER BY seq")
    DUE_ANY: ClassVar[str] = (f"SELECT {COLUMNS} FROM returns WHERE due_at IS NOT NULL AND due_at <= ?"
                              " ORDER BY due_at, seq LIMIT ?")
    ADD_WEBHOOK: ClassVar[str] = "INSERT INTO webhooks (id, account, data) VALUES (?, ?, ?)"
    WEBHOOKS: ClassVar[str] = "SELECT data FROM webhooks WHERE account=? ORDER BY rowid"
    WEBHOOK_COUNT: ClassVar[str] = "SELECT COUNT(*) FROM webhooks WHERE account=?"
    ADD_DELIVERY: ClassVar[str] = ("INSERT INTO deliveries (id, account, webhook_id, grp, status, next_at, data)"
                                   " VALUES (?, ?, ?, ?, ?, ?, ?)")
    HELD: ClassVar[str] = "SELECT data FROM deliveries WHERE grp=? AND status='held' ORDER BY seq"
    DROP_DELIVERY: ClassVar[str] = "DELETE FROM deliveries WHERE id=?"
    UPDATE_DELIVERY: ClassVar[str] = ("UPDATE deliveries SET status=?, next_at=?, lease_until=0, grp=?, data=?"
                                      " WHERE id=?")

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
                                         record.reads, record.provider, record.account, record.id))
        stored = record.copy()
        stored.version += 1
        return stored

    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        return [to_record(r) for r in self._conn.execute(self.DUE, (provider, account, now_ms)).fetchall()]

    def due_any(self, now_ms: int, limit: int) -> list[ReturnRecord]:
        return [to_record(r) for r in self._conn.execute(self.DUE_ANY, (now_ms, limit)).fetchall()]

    def webhook_count(self, account: str) -> int:
        return int(self._conn.execute(self.WEBHOOK_COUNT, (account,)).fetchone()[0])

    def held(self, group: str) -> list[Delivery]:
        return [Delivery.decode(r[0]) for r in self._conn.execute(self.HELD, (group,)).fetchall()]

    def update_delivery(self, delivery: Delivery) -> None:
        self._conn.execute(self.UPDATE_DELIVERY, update_params(delivery))

    def requeue(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._conn.execute(self.DROP_DELIVERY, (delivery.id,))
            self._conn.execute(self.ADD_DELIVERY, delivery_params(delivery))

    def add_webhook(self, account: str, webhook: dict[str, Any]) -> None:
        self._conn.execute(self.ADD_WEBHOOK, (webhook["id"], account, orjson.dumps(webhook).decode()))

    def webhooks(self, account: str) -> list[dict[str, Any]]:
        return [orjson.loads(r[0]) for r in self._conn.execute(self.WEBHOOKS, (account,)).fetchall()]

    def add_delivery(self, delivery: Delivery) -> None:
        self._conn.execute(self.ADD_DELIVERY, delivery_params(delivery))
