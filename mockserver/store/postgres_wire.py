"""The request path's statements, sent through libpq itself: prepared once per connection, parameters
and rows as text, and a transaction's BEGIN, reads and writes sent together where no answer is awaited.

psycopg's cursors cost the mock 35-45 us of CPU per statement (adapting each parameter in Python, its
prepared-statement cache, loading each value); straight through libpq the same statements cost ~25 us, most
of it the kernel's. Every request makes one to four of them, and the journal one batch of inserts every
20 ms, so these are the PostgreSQL store's hot path; the rest of the store (the control plane, webhook
deliveries, migrations) keeps psycopg's cursors.

Text that PostgreSQL cannot hold is held all the same (`stored`, `loaded`; JSON columns never carry a raw
NUL: orjson escapes it).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
from collections.abc import Sequence
from typing import Any

with contextlib.suppress(ImportError):  # the `postgres` extra: without it the store refuses to open
    from psycopg import OperationalError, errors, pq

NUL = "\x00"
STAND_IN = "\U000f0000"
"""What a NUL is stored as (the first code point of a private-use plane, as releases before this one did)."""
_LEADS, _TAILS = "\U000f0001\U000f0002\U000f0003", "\U000f0004\U000f0005"
_PAIRS = [lead + tail for lead in _LEADS for tail in _TAILS]
_ESCAPED = STAND_IN + _LEADS + _TAILS
"""The stand-in and the escapes' own characters, each stored as a pair: a lead, then a tail."""
_STORE = str.maketrans({NUL: STAND_IN, **dict(zip(_ESCAPED, _PAIRS, strict=True))})
_LOAD = {STAND_IN: NUL, **dict(zip(_PAIRS, _ESCAPED, strict=True))}
_CODED = re.compile(f"[{_LEADS}][{_TAILS}]|{STAND_IN}")


def stored(value: str) -> str:
    """Text as a PostgreSQL text column holds it: a NUL as U+F0000, and U+F0000 to U+F0005 each as a pair of
    U+F0001-3 then U+F0004-5. No pair's tail can begin a pair nor its lead end one, so a match of one stored
    text inside another (strpos, a prefix) is a match of the texts themselves: a stored U+F0000 reads back as
    itself, not as a NUL, and searching for a NUL does not find it."""
    if value.isascii():
        return value.replace(NUL, STAND_IN) if NUL in value else value
    return value.translate(_STORE)


def loaded(value: str) -> str:
    """Text read from a PostgreSQL text column (`stored` undone)."""
    return _CODED.sub(lambda m: _LOAD[m.group(0)], value) if not value.isascii() else value

Row = tuple[bytes | None, ...]
Params = Sequence[Any]

_PREPARED = "_returns_mock_prepared"
"""The attribute of a psycopg connection naming the statements prepared on it (a new connection has none)."""


class Statement:
    """One SQL statement, written with psycopg's `%s` and prepared under a name its text decides."""

    __slots__ = ("name", "sql")

    def __init__(self, sql: str) -> None:
        numbered = iter(range(1, sql.count("%s") + 1))
        self.sql = re.sub(r"%s", lambda _: f"${next(numbered)}", sql).encode()
        self.name = b"rm_" + hashlib.sha1(self.sql).hexdigest()[:20].encode()


BEGIN = b"BEGIN"
COMMIT = b"COMMIT"
ROLLBACK = b"ROLLBACK"
Step = tuple[Statement | bytes, Params]
"""A prepared statement and its parameters, or a bare command (BEGIN, COMMIT) with none."""


def encoded(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return stored(value).encode()
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"t" if value else b"f"
    return str(value).encode()


def text(value: bytes | None) -> str:
    """A text column's value (the columns read this way are NOT NULL)."""
    if value is None:
        return ""
    return loaded(value.decode())


def run(conn: Any, statement: Statement, params: Params = ()) -> list[Row]:
    """One statement, one round trip (its first use on a connection prepares it: one more, once)."""
    pgconn = conn.pgconn
    _prepare(conn, pgconn, statement)
    return _rows(pgconn, pgconn.exec_prepared(statement.name, [encoded(p) for p in params]))


def run_all(conn: Any, steps: Sequence[Step]) -> list[list[Row]]:
    """Several statements in one round trip (libpq's pipeline mode); each one's rows. The first failure is
    raised once all have been answered (those after it were skipped by the server)."""
    pgconn = conn.pgconn
    for statement, _ in steps:
        if isinstance(statement, Statement):
            _prepare(conn, pgconn, statement)
    pgconn.enter_pipeline_mode()
    try:
        for statement, params in steps:
            if isinstance(statement, Statement):
                pgconn.send_query_prepared(statement.name, [encoded(p) for p in params])
            else:
                pgconn.send_query_params(statement, None)
        pgconn.pipeline_sync()
        while pgconn.flush():  # a non-blocking connection may not have sent it all
            _wait(pgconn, select.POLLOUT)
        failure: Exception | None = None
        rows: list[list[Row]] = []
        for _ in steps:
            result = _next_result(pgconn)
            while _next_result(pgconn) is not None:  # each query's results end with a null
                pass
            if failure is None:
                try:
                    rows.append(_rows(pgconn, result))
                except Exception as exc:  # raised below, after the sync is read
                    failure = exc
        synced = _next_result(pgconn)
        if synced is None or synced.status != pq.ExecStatus.PIPELINE_SYNC:
            raise OperationalError("the database's answer to a pipeline ended early")
    finally:
        if pgconn.pipeline_status != pq.PipelineStatus.OFF and pgconn.status == pq.ConnStatus.OK:
            try:
                pgconn.exit_pipeline_mode()
            except Exception:  # a connection left mid-pipeline is broken: the pool drops it
                pgconn.finish()
    if failure is not None:
        raise failure
    return rows


def _prepare(conn: Any, pgconn: Any, statement: Statement) -> None:
    prepared: set[bytes] | None = getattr(conn, _PREPARED, None)
    if prepared is None:
        prepared = set()
        setattr(conn, _PREPARED, prepared)
    if statement.name not in prepared:
        _rows(pgconn, pgconn.prepare(statement.name, statement.sql, None))
        prepared.add(statement.name)


def _next_result(pgconn: Any) -> Any:
    """The next result of a pipeline, waiting for the socket without holding the GIL (libpq's
    PQgetResult would block holding it)."""
    while pgconn.is_busy():
        _wait(pgconn, select.POLLIN)
        pgconn.consume_input()
    return pgconn.get_result()


def _wait(pgconn: Any, event: int) -> None:
    poller = select.poll()
    poller.register(pgconn.socket, event)
    poller.poll()


def _rows(pgconn: Any, result: Any) -> list[Row]:
    if result is None or result.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
        raise _failure(pgconn, result)
    return [tuple(result.get_value(r, c) for c in range(result.nfields)) for r in range(result.ntuples)]


def _failure(pgconn: Any, result: Any) -> Exception:
    if pgconn.status != pq.ConnStatus.OK or result is None:
        message = pgconn.get_error_message() if hasattr(pgconn, "get_error_message") else pgconn.error_message
        return OperationalError(message.decode(errors="replace") if isinstance(message, bytes) else str(message))
    if result.status == pq.ExecStatus.PIPELINE_ABORTED:
        return errors.InFailedSqlTransaction("skipped after an earlier statement of its pipeline failed")
    return errors.error_from_result(result, encoding="utf-8")
