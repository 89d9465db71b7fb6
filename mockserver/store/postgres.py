"""PostgreSQL store: many `serve` replicas, on one host or many, sharing one database are one mock.

Everything shared lives in the database: returns, settings (clock, fault rules, rate policy), rate
counts, webhook subscriptions and deliveries, and the journal. Read-modify-write goes through row locks
(`SELECT ... FOR UPDATE`), so a race on one return across replicas has exactly one winner; deliveries
are claimed with `FOR UPDATE SKIP LOCKED`, so every replica can run a deliverer and each attempt is made
once. Connections come from a psycopg pool made per process (the server forks its workers). When the
database cannot be reached, operations raise StoreUnavailable within the pool's timeout, which the web
layer answers with 503 in the provider's format; the pool reconnects by itself.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson

from mockserver import process
from mockserver.contract.errors import DuplicateReturn, StoreError, StoreUnavailable
from mockserver.store.base import Delivery, Page, ReturnRecord, Store, Transaction, Window
from mockserver.store.journal import Journal
from mockserver.store.postgres_journal import PostgresJournal
from mockserver.store.postgres_settings import VERSION, HeldSettings
from mockserver.store.postgres_wire import BEGIN, COMMIT, ROLLBACK, Row, Statement, Step, run, run_all, text
from mockserver.store.sql import COLUMNS, SqlTransaction, delivery_params, update_params
from mockserver.store.urls import masked, shown

try:  # the `postgres` extra
    import psycopg
    import psycopg_pool

    from mockserver.store.postgres_text import nul_safe
except ImportError:  # pragma: no cover - exercised by the missing-extra test in a bare environment
    psycopg = None  # type: ignore[assignment]

ANALYZE_AFTER = 1000
"""Returns inserted by one transaction (a seed) after which the table's statistics are refreshed."""

COUNT_SHARDS = 16
"""Rows each (provider, account, status) count is spread over (a return's seq picks its row)."""

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE returns (
        seq      BIGSERIAL PRIMARY KEY,
        provider TEXT NOT NULL,
        account  TEXT NOT NULL,
        id       TEXT NOT NULL,
        order_id TEXT NOT NULL,
        status   TEXT NOT NULL,
        due_at   BIGINT,
        version  INTEGER NOT NULL,
        resource TEXT NOT NULL,
        history  TEXT NOT NULL,
        UNIQUE (provider, account, id)
    );
    CREATE INDEX returns_by_status ON returns (provider, account, status, seq);
    CREATE INDEX returns_by_order ON returns (provider, account, order_id, seq);
    CREATE INDEX returns_due ON returns (provider, account, due_at) WHERE due_at IS NOT NULL;
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE rate_counts (key TEXT NOT NULL, bucket BIGINT NOT NULL, n INTEGER NOT NULL,
                              PRIMARY KEY (key, bucket));
    CREATE TABLE webhooks (seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, account TEXT NOT NULL,
                           data TEXT NOT NULL);
    CREATE INDEX webhooks_by_account ON webhooks (account, seq);
    CREATE TABLE deliveries (
        seq         BIGSERIAL PRIMARY KEY,
        id          TEXT NOT NULL UNIQUE,
        account     TEXT NOT NULL,
        status      TEXT NOT NULL,
        next_at     BIGINT NOT NULL,
        lease_until BIGINT NOT NULL DEFAULT 0,
        data        TEXT NOT NULL
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_at);
    CREATE TABLE journal (
        id             BIGSERIAL PRIMARY KEY,
        provider       TEXT,
        account        TEXT,
        path           TEXT NOT NULL,
        status         INTEGER NOT NULL,
        has_violations BOOLEAN NOT NULL,
        entry          BYTEA NOT NULL
    );
    CREATE INDEX journal_violations ON journal (has_violations, id);
    """,
    # 2: a list page walks its account's index; totals come from counts kept by a trigger, spread over
    # COUNT_SHARDS rows per status so that concurrent creates in one account do not queue on one row lock;
    # the rate count is one call whose commit does not wait for the disk.
    f"""
    CREATE INDEX returns_by_account ON returns (provider, account, seq);
    CREATE TABLE return_counts (provider TEXT NOT NULL, account TEXT NOT NULL, status TEXT NOT NULL,
                                shard INTEGER NOT NULL, n BIGINT NOT NULL,
                                PRIMARY KEY (provider, account, status, shard));
    INSERT INTO return_counts SELECT provider, account, status, (seq % {COUNT_SHARDS})::int, count(*)
        FROM returns GROUP BY 1, 2, 3, 4;
    CREATE FUNCTION count_returns() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE return_counts SET n = n - 1 WHERE provider = OLD.provider AND account = OLD.account
                AND status = OLD.status AND shard = OLD.seq % {COUNT_SHARDS};
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO return_counts VALUES (NEW.provider, NEW.account, NEW.status, NEW.seq % {COUNT_SHARDS}, 1)
                ON CONFLICT (provider, account, status, shard) DO UPDATE SET n = return_counts.n + 1;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER returns_counted AFTER INSERT OR DELETE ON returns
        FOR EACH ROW EXECUTE FUNCTION count_returns();
    CREATE TRIGGER returns_recounted AFTER UPDATE OF status ON returns
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION count_returns();
    CREATE FUNCTION rate_hit(hit_keys TEXT[], hit_buckets BIGINT[], hit_overlaps FLOAT8[], hit_limits INTEGER[])
        RETURNS TABLE (prev_n BIGINT, cur_n BIGINT, all_ok BOOLEAN) LANGUAGE plpgsql AS $$
    DECLARE
        prev BIGINT[] := '{{}}';
        cur BIGINT[] := '{{}}';
        ok BOOLEAN := TRUE;
        p BIGINT;
        c BIGINT;
    BEGIN
        -- Counts live as SQLite's do in shared memory: never waited to disk (a crash forgets a few).
        PERFORM set_config('synchronous_commit', 'off', true);
        FOR i IN 1 .. coalesce(array_length(hit_keys, 1), 0) LOOP  -- keys come sorted: one lock order
            INSERT INTO rate_counts (key, bucket, n) VALUES (hit_keys[i], hit_buckets[i], 0) ON CONFLICT DO NOTHING;
            SELECT coalesce(sum(n) FILTER (WHERE bucket = hit_buckets[i] - 1), 0),
                   coalesce(sum(n) FILTER (WHERE bucket = hit_buckets[i]), 0) INTO p, c
                FROM (SELECT bucket, n FROM rate_counts WHERE key = hit_keys[i]
                      AND bucket IN (hit_buckets[i] - 1, hit_buckets[i]) FOR UPDATE) locked;
            prev := prev || p;
            cur := cur || c;
            IF hit_limits[i] IS NOT NULL AND p * hit_overlaps[i] + c >= hit_limits[i] THEN
                ok := FALSE;
            END IF;
        END LOOP;
        IF ok THEN
            FOR i IN 1 .. coalesce(array_length(hit_keys, 1), 0) LOOP
                UPDATE rate_counts SET n = n + 1 WHERE key = hit_keys[i] AND bucket = hit_buckets[i];
                DELETE FROM rate_counts WHERE key = hit_keys[i] AND bucket < hit_buckets[i] - 1;
                cur[i] := cur[i] + 1;
            END LOOP;
        END IF;
        RETURN QUERY SELECT prev[g.j], cur[g.j], ok FROM generate_subscripts(hit_keys, 1) AS g(j) ORDER BY g.j;
    END $$;
    """,
    # 3: the accounts with a webhook subscription, kept by triggers as a setting, which every request reads
    # with the others (pinned): a 3plship create in an account without one asks for no subscribers.
    """
    INSERT INTO settings (key, value)
        SELECT 'webhook-accounts', coalesce(json_agg(DISTINCT account)::text, '[]') FROM webhooks
        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    CREATE FUNCTION note_webhook_account() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'TRUNCATE' THEN
            UPDATE settings SET value = '[]' WHERE key = 'webhook-accounts';
            RETURN NULL;
        END IF;
        INSERT INTO settings (key, value) VALUES ('webhook-accounts', json_build_array(NEW.account)::text)
            ON CONFLICT (key) DO UPDATE SET value = (
                SELECT json_agg(DISTINCT a)::text
                FROM (SELECT json_array_elements_text(settings.value::json) AS a UNION SELECT NEW.account) known);
        RETURN NULL;
    END $$;
    CREATE TRIGGER webhook_account_noted AFTER INSERT ON webhooks
        FOR EACH ROW EXECUTE FUNCTION note_webhook_account();
    CREATE TRIGGER webhook_accounts_cleared AFTER TRUNCATE ON webhooks
        FOR EACH STATEMENT EXECUTE FUNCTION note_webhook_account();
    """,
    # 4: a count that refuses nothing (no window limited: the default policy, counted not enforced) is one
    # upsert per window; a key's old buckets are dropped when its new bucket is made, not on every request.
    """
    CREATE FUNCTION rate_count(hit_keys TEXT[], hit_buckets BIGINT[])
        RETURNS TABLE (prev_n BIGINT, cur_n BIGINT) LANGUAGE plpgsql AS $$
    DECLARE
        p BIGINT;
        c BIGINT;
        made BOOLEAN;
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);  -- as rate_hit's: never waited to disk
        FOR i IN 1 .. coalesce(array_length(hit_keys, 1), 0) LOOP  -- keys come sorted: one lock order
            INSERT INTO rate_counts AS r (key, bucket, n) VALUES (hit_keys[i], hit_buckets[i], 1)
                ON CONFLICT (key, bucket) DO UPDATE SET n = r.n + 1 RETURNING r.n, (r.xmax = 0) INTO c, made;
            IF made THEN
                DELETE FROM rate_counts WHERE key = hit_keys[i] AND bucket < hit_buckets[i] - 1;
            END IF;
            SELECT coalesce(max(n), 0) INTO p FROM rate_counts WHERE key = hit_keys[i] AND bucket = hit_buckets[i] - 1;
            prev_n := p;
            cur_n := c;
            RETURN NEXT;
        END LOOP;
    END $$;
    """,
    # 5: the settings' version, moved by every change to them (the webhook accounts' triggers' included): a
    # request confirms the settings its process holds along its first statement instead of reading them
    # all. On 3plship's paths that statement is the rate count, so it counts only at the version it is
    # given (NULL: at any): the count that refuses nothing is one statement (RATE_COUNT), one that may
    # refuse calls rate_hit.
    """
    CREATE TABLE settings_version (v BIGINT NOT NULL);
    INSERT INTO settings_version (v) VALUES (1);
    CREATE FUNCTION settings_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE settings_version SET v = v + 1;
        RETURN NULL;
    END $$;
    CREATE TRIGGER settings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON settings
        FOR EACH STATEMENT EXECUTE FUNCTION settings_changed();
    CREATE FUNCTION rate_hit_at(at_version BIGINT, hit_keys TEXT[], hit_buckets BIGINT[], hit_overlaps FLOAT8[],
                                hit_limits INTEGER[])
        RETURNS TABLE (prev_n BIGINT, cur_n BIGINT, all_ok BOOLEAN, version BIGINT) LANGUAGE plpgsql AS $$
    DECLARE
        latest BIGINT;
    BEGIN
        SELECT v INTO latest FROM settings_version;
        IF at_version IS NOT NULL AND latest IS DISTINCT FROM at_version THEN  -- counted by no one
            RETURN QUERY SELECT NULL::BIGINT, NULL::BIGINT, NULL::BOOLEAN, latest;
            RETURN;
        END IF;
        RETURN QUERY SELECT r.prev_n, r.cur_n, r.all_ok, latest
            FROM rate_hit(hit_keys, hit_buckets, hit_overlaps, hit_limits) AS r;
    END $$;
    """,
    # 6: the provider's own moves found across accounts when the clock passes them (the scheduler); reads
    # counted for autopilot moves that wait for them; deliveries by subscription (one attempt in flight
    # each) and by out-of-order group.
    """
    ALTER TABLE returns ADD COLUMN IF NOT EXISTS reads INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS returns_due_any ON returns (due_at, seq) WHERE due_at IS NOT NULL;
    ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS webhook_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS grp TEXT;
    UPDATE deliveries SET webhook_id = coalesce(data::json->>'webhook_id', '') WHERE webhook_id = '';
    CREATE INDEX IF NOT EXISTS deliveries_in_flight ON deliveries (webhook_id, status, lease_until);
    CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (grp) WHERE grp IS NOT NULL;
    """,
]
"""Each release appends; a database is brought from its version to the last, one step at a time."""

MIGRATION_LOCK = 7262_0001
"""The advisory lock replicas starting at once take, so that one of them migrates and the others wait."""
DELIVERY_LOCK = 7262_0002
"""The advisory lock a claim or a release of deliveries takes: one at a time across replicas, so that a
subscription never has two attempts in flight and a released group is claimed in its order."""
WEBHOOK_LOCK = 7262_0003
"""The advisory lock (with the account's hash) a transaction counting an account's subscriptions takes."""


class _PostgresTransaction(SqlTransaction):
    """A transaction whose BEGIN goes with its first statement, and whose writes that answer nothing (an
    update, a queued delivery) go with the next statement or with its COMMIT: a read-then-write is two
    round trips, not four. A statement through psycopg (the rarer ones) first sends what is queued.
    The first statement also confirms the request's settings (a change found: it rolls back)."""

    PLACEHOLDER = "%s"
    # Locked: a transaction reads returns to change them, and a concurrent one must wait its turn.
    DUE = SqlTransaction.DUE + " FOR UPDATE"
    # Several replicas settle at once: each takes the due returns no other is settling.
    DUE_ANY = SqlTransaction.DUE_ANY + " FOR UPDATE SKIP LOCKED"
    HELD = SqlTransaction.HELD + " FOR UPDATE"
    WEBHOOKS = SqlTransaction.WEBHOOKS.replace("rowid", "seq")

    def __init__(self, conn: Any, settings: HeldSettings) -> None:
        self._begun = False
        self._queued: list[Step] = []
        super().__init__(conn)
        self.inserted = 0
        self._settings = settings

    @property
    def _conn(self) -> Any:
        self.flush()
        return self._connection

    @_conn.setter
    def _conn(self, conn: Any) -> None:
        self._connection = conn

    def _send(self, statement: Statement | None, params: Sequence[Any] = ()) -> list[Row]:
        confirming = not self._begun and self._settings.unconfirmed is not None
        steps: list[Step] = [] if self._begun else [(BEGIN, ()), *([(VERSION, ())] if confirming else [])]
        steps += self._queued
        if statement is not None:
            steps.append((statement, params))
        self._begun, self._queued = True, []
        answers = run_all(self._connection, steps)
        if confirming:  # a change found raises, and the transaction rolls back
            self._settings.confirm(answers[1][0][0])
        return answers[-1] if statement is not None else []

    def flush(self) -> None:
        """Send BEGIN and the queued writes now (before a statement that is not the transaction's own)."""
        if not self._begun or self._queued:
            self._send(None)

    def end(self, commit: bool) -> None:
        """COMMIT (with what is queued) or ROLLBACK. A COMMIT that fails leaves the transaction begun, for
        the ROLLBACK that follows it to end."""
        if commit and not self._begun and self._queued and self._settings.unconfirmed is not None:
            self.flush()  # the settings confirmed before anything is committed
        if commit and (self._begun or self._queued):
            steps: list[Step] = [*([] if self._begun else [(BEGIN, ())]), *self._queued, (COMMIT, ())]
            self._begun, self._queued = True, []
            run_all(self._connection, steps)
        elif not commit and self._begun:
            run_all(self._connection, [(ROLLBACK, ())])
        self._begun, self._queued = False, []

    def webhooks(self, account: str) -> list[dict[str, Any]]:
        # The request's settings say which accounts have subscriptions (a subscription another replica
        # commits after this request began is seen by the next one); outside a request, ask.
        if self._settings.subscribed(account) is False:
            return []
        return super().webhooks(account)

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        rows = self._send(GET_LOCKED, (provider, account, id))
        return _record(rows[0]) if rows else None

    def due(self, provider: str, account: str, now_ms: int) -> list[ReturnRecord]:
        return [_record(r) for r in self._send(DUE, (provider, account, now_ms))]

    def due_any(self, now_ms: int, limit: int) -> list[ReturnRecord]:
        return [_record(r) for r in self._send(DUE_ANY, (now_ms, limit))]

    def webhook_count(self, account: str) -> int:
        self._send(WEBHOOK_LOCKED, (WEBHOOK_LOCK, account))
        return int(self._send(WEBHOOK_COUNT, (account,))[0][0] or 0)

    def held(self, group: str) -> list[Delivery]:
        return [Delivery.decode(text(r[0])) for r in self._send(HELD, (group,))]

    def update_delivery(self, delivery: Delivery) -> None:
        self._queued.append((UPDATE_DELIVERY, update_params(delivery)))

    def requeue(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._queued += [(DROP_DELIVERY, (delivery.id,)), (ADD_DELIVERY, delivery_params(delivery))]

    def insert(self, record: ReturnRecord) -> ReturnRecord:
        inserted = _inserted(record, self._send(INSERT, _insert_params(record)))
        self.inserted += 1
        return inserted

    def update(self, record: ReturnRecord) -> ReturnRecord:
        self._queued.append((UPDATE, (record.status, record.order_id, record.due_at, orjson.dumps(record.resource),
                                      orjson.dumps(record.history), record.reads, record.provider, record.account,
                                      record.id)))
        stored = record.copy()
        stored.version += 1
        return stored

    def add_delivery(self, delivery: Delivery) -> None:
        self._queued.append((ADD_DELIVERY, delivery_params(delivery)))


GET = Statement(f"SELECT {COLUMNS} FROM returns WHERE provider=%s AND account=%s AND id=%s")
GET_LOCKED = Statement(f"SELECT {COLUMNS} FROM returns WHERE provider=%s AND account=%s AND id=%s FOR UPDATE")
INSERT = Statement("INSERT INTO returns (provider, account, id, order_id, status, due_at, version, resource, history)"
                   " VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s) ON CONFLICT (provider, account, id) DO NOTHING"
                   " RETURNING seq")
UPDATE = Statement(_PostgresTransaction.UPDATE)
DUE = Statement(_PostgresTransaction.DUE)
DUE_ANY = Statement(_PostgresTransaction.DUE_ANY)
ADD_DELIVERY = Statement(_PostgresTransaction.ADD_DELIVERY)
HELD = Statement(_PostgresTransaction.HELD)
DROP_DELIVERY = Statement(_PostgresTransaction.DROP_DELIVERY)
UPDATE_DELIVERY = Statement(_PostgresTransaction.UPDATE_DELIVERY)
WEBHOOK_COUNT = Statement(_PostgresTransaction.WEBHOOK_COUNT)
WEBHOOK_LOCKED = Statement("SELECT 1 FROM (SELECT pg_advisory_xact_lock(%s, hashtext(%s))) AS locked")
HAS_DUE_ANY = Statement("SELECT 1 FROM returns WHERE due_at IS NOT NULL AND due_at <= %s LIMIT 1")
CLAIM = Statement(
    "UPDATE deliveries SET lease_until=%s WHERE seq = (SELECT d.seq FROM deliveries AS d WHERE d.status='pending'"
    " AND d.next_at <= %s AND d.lease_until < %s AND NOT EXISTS (SELECT 1 FROM deliveries AS o WHERE"
    " o.webhook_id = d.webhook_id AND o.status='pending' AND o.lease_until >= %s) ORDER BY d.seq LIMIT 1)"
    " RETURNING data")
ANY_DUE_DELIVERY = Statement("SELECT 1 FROM deliveries WHERE status='pending' AND next_at <= %s AND lease_until < %s"
                             " LIMIT 1")
DELIVERY_LOCKED = Statement("SELECT 1 FROM (SELECT pg_advisory_xact_lock(%s)) AS locked")
HELD_DUE = Statement("SELECT data FROM deliveries WHERE status='held' AND next_at <= %s ORDER BY seq FOR UPDATE")
INSERT_AT = Statement(  # the same insert, made only while the settings are at the version given last
    "WITH latest AS (SELECT v FROM settings_version), added AS (INSERT INTO returns (provider, account, id,"
    " order_id, status, due_at, version, resource, history) SELECT %s::text, %s::text, %s::text, %s::text,"
    " %s::text, %s::bigint, 1, %s::text, %s::text FROM latest WHERE v = %s::bigint"
    " ON CONFLICT (provider, account, id) DO NOTHING RETURNING seq)"
    " SELECT (SELECT seq FROM added), (SELECT v FROM latest)")
HAS_DUE = Statement("SELECT 1 FROM returns WHERE provider=%s AND account=%s AND due_at IS NOT NULL AND due_at <= %s"
                    " LIMIT 1")
RATE_COUNT = Statement(  # migration 4's rate_count as one statement (a function call cost ~20-40 us more)
    "WITH latest AS (SELECT v FROM settings_version),"
    " asked AS (SELECT k, b, o FROM unnest(%s::text[], %s::bigint[]) WITH ORDINALITY AS u(k, b, o)),"
    " counted AS (INSERT INTO rate_counts AS r (key, bucket, n) SELECT k, b, 1 FROM asked, latest"
    "  WHERE %s::bigint IS NULL OR latest.v = %s::bigint ORDER BY o"  # keys come sorted: one lock order
    "  ON CONFLICT (key, bucket) DO UPDATE SET n = r.n + 1 RETURNING r.key, r.bucket, r.n, (r.xmax = 0) AS made),"
    " dropped AS (DELETE FROM rate_counts AS d USING counted AS c"  # a key's old buckets, when its new one is made
    "  WHERE c.made AND d.key = c.key AND d.bucket < c.bucket - 1),"
    " quiet AS (SELECT set_config('synchronous_commit', 'off', true))"  # as rate_hit's: never waited to disk
    " SELECT (SELECT coalesce(max(p.n), 0) FROM rate_counts AS p WHERE p.key = a.k AND p.bucket = a.b - 1), c.n,"
    " (SELECT v FROM latest), (SELECT 1 FROM quiet) FROM asked AS a LEFT JOIN counted AS c ON c.key = a.k"
    " AND c.bucket = a.b ORDER BY a.o")
RATE_HIT = Statement("SELECT prev_n, cur_n, all_ok, version FROM rate_hit_at(%s::bigint, %s::text[],"
                     " %s::bigint[], %s::float8[], %s::integer[])")


@functools.lru_cache(maxsize=64)
def _statement(sql: str) -> Statement:
    """A statement its filters shape (a list page's, the control plane's lists: a handful of shapes)."""
    return Statement(sql)


def _record(row: Row) -> ReturnRecord:
    seq, provider, account, id_, order_id, status, due_at, version, resource, history, reads = row
    return ReturnRecord(provider=text(provider), account=text(account), id=text(id_),
                        order_id=text(order_id), status=text(status),
                        resource=orjson.loads(resource or b"null"), history=orjson.loads(history or b"null"),
                        due_at=None if due_at is None else int(due_at), version=int(version or 0),
                        seq=int(seq or 0), reads=int(reads or 0))


def _insert_params(record: ReturnRecord) -> tuple[Any, ...]:
    return (record.provider, record.account, record.id, record.order_id, record.status, record.due_at,
            orjson.dumps(record.resource), orjson.dumps(record.history))


def _inserted(record: ReturnRecord, rows: list[Row]) -> ReturnRecord:
    if not rows:
        raise DuplicateReturn(record.id)
    return ReturnRecord(record.provider, record.account, record.id, record.order_id, record.status,
                        record.resource, record.history, record.due_at, 1, int(rows[0][0] or 0))


def _array(values: list[Any]) -> str:
    """A PostgreSQL array literal, sent as text: psycopg's dumping of a list costs more of the mock's CPU
    than the rest of the statement (a rate count is in every 3plship request)."""
    items = []
    for value in values:
        if value is None:
            items.append("NULL")
        elif isinstance(value, str):
            items.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            items.append(repr(value))
    return "{" + ",".join(items) + "}"


class PostgresStore(Store):
    engine = "postgresql"
    shared = True
    replicated = True
    workers_per_cpu = 2  # 35up creates: ~22% of the CPUs idle with one, ~5% with two (+13-20% creates/s)
    POOL_TIMEOUT = 3.0
    """Seconds a request waits for a connection before it is answered 503."""
    RETRY_AFTER = 1.0
    """Once the database failed to answer, for this long every operation fails at once, without waiting:
    a request touches the store several times, and should wait for it once."""

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        if psycopg is None:
            raise StoreError("the PostgreSQL store needs the postgres extra (psycopg): pip install "
                             "'/path/to/returns-mock[postgres]' from a checkout, "
                             "or 'returns-mock[postgres] @ <wheel or git URL>'")
        self.url = url
        self.shown = shown(url)
        self._pool_size = pool_size
        self._pool: Any = None
        self._pid = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._away_until = 0.0
        self._settings = HeldSettings()
        try:
            with psycopg.connect(self._conninfo(), connect_timeout=5, autocommit=True) as conn:
                nul_safe(conn)
                self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot use {self.shown}: {masked(_reason(exc), url)}") from None

    def _conninfo(self) -> str:
        return self.url.replace("postgres://", "postgresql://", 1) if self.url.startswith("postgres://") else self.url

    @staticmethod
    def _migrate(conn: Any) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row[0] if row else 0
            if current > len(MIGRATIONS):
                raise StoreError(f"the database's schema is version {current}, newer than this release knows "
                                 f"({len(MIGRATIONS)}): upgrade returns-mock")
            for step in MIGRATIONS[current:]:
                conn.execute(step)
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS),))
            else:
                conn.execute("UPDATE schema_version SET version=%s", (len(MIGRATIONS),))

    def schema_version(self) -> int:
        with self._connection() as conn:
            return int(conn.execute("SELECT version FROM schema_version").fetchone()[0])

    # --- connections -------------------------------------------------------------------------------

    def _the_pool(self) -> Any:
        with self._lock:
            if self._pool is None or self._pid != process.pid():  # a forked worker makes its own
                self._pool = psycopg_pool.ConnectionPool(
                    self._conninfo(), min_size=1, max_size=self._pool_size, timeout=self.POOL_TIMEOUT,
                    kwargs={"autocommit": True, "connect_timeout": 3}, configure=_configure,
                    check=_check_idle, open=True, name="returns-mock")
                self._pid = process.pid()
            return self._pool

    @contextmanager
    def _connection(self, *, confirmed: bool = True) -> Iterator[Any]:
        """A pooled connection (autocommit; `conn.transaction()` for more than one statement): this
        thread's transaction's, the one its request holds, or one from the pool. A database that cannot
        be reached is StoreUnavailable, within the pool's timeout.

        In a request whose settings are not confirmed yet, they are confirmed first (a round trip), unless
        the caller's statement confirms them itself (`confirmed=False`)."""
        own = getattr(self._local, "conn", None)
        if own is not None:  # inside this thread's transaction: the same connection, after what it queued
            self._local.tx.flush()
            yield own
            return
        held = getattr(self._local, "held", None)
        try:
            if held is not None:
                if confirmed and self._settings.unconfirmed is not None:
                    self._settings.confirm(run(held, VERSION)[0][0])
                yield held
                return
            if time.monotonic() < self._away_until:
                raise StoreUnavailable(f"the database {self.shown} cannot be reached")
            with self._the_pool().connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.InterfaceError) as exc:
            raise self._away(exc) from None

    def _away(self, exc: BaseException) -> StoreUnavailable:
        self._away_until = time.monotonic() + self.RETRY_AFTER
        reason = masked(_reason(exc), self.url)
        return StoreUnavailable(f"the database {self.shown} cannot be reached: {reason}")

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        outer: _PostgresTransaction | None = getattr(self._local, "tx", None)
        if outer is not None:  # nested: part of the outer transaction
            yield outer
            return
        with self._connection(confirmed=False) as conn:
            tx = _PostgresTransaction(conn, self._settings)
            self._local.conn, self._local.tx = conn, tx
            try:
                yield tx
                tx.end(commit=True)
            except BaseException:
                # The first failure is the one to tell (a broken connection rolls back by itself; the pool drops it).
                with contextlib.suppress(Exception):
                    tx.end(commit=False)
                raise
            finally:
                self._local.conn = self._local.tx = None
            if tx.inserted >= ANALYZE_AFTER:  # a seed: the planner learns of the new accounts now, not in minutes
                conn.execute("ANALYZE returns")

    # --- returns -----------------------------------------------------------------------------------

    def insert(self, record: ReturnRecord) -> ReturnRecord:
        # One statement is its own transaction (the count trigger's update included): no BEGIN, no COMMIT.
        # Inside a transaction of this thread, it is part of that one.
        outer: _PostgresTransaction | None = getattr(self._local, "tx", None)
        if outer is not None:
            return outer.insert(record)
        version = self._settings.unconfirmed
        with self._connection(confirmed=False) as conn:
            if version is None:
                return _inserted(record, run(conn, INSERT, _insert_params(record)))
            (seq, current), = run(conn, INSERT_AT, (*_insert_params(record), version))
        self._settings.confirm(current)  # a change found: nothing was inserted
        return _inserted(record, [(seq,)] if seq is not None else [])

    def _read(self, statement: Statement, params: Sequence[Any]) -> list[Row]:
        """A read; in a request whose settings are not confirmed yet, the version goes with it."""
        with self._connection(confirmed=False) as conn:
            if self._settings.unconfirmed is None:
                return run(conn, statement, params)
            (version,), rows = run_all(conn, [(VERSION, ()), (statement, params)])
        self._settings.confirm(version[0])
        return rows

    def get(self, provider: str, account: str, id: str) -> ReturnRecord | None:
        rows = self._read(GET, (provider, account, id))
        return _record(rows[0]) if rows else None

    def has_due(self, provider: str, account: str, now_ms: int) -> bool:
        return bool(self._read(HAS_DUE, (provider, account, now_ms)))

    def has_due_any(self, now_ms: int) -> bool:
        with self._connection() as conn:
            return bool(run(conn, HAS_DUE_ANY, (now_ms,)))

    def page(self, provider: str, account: str, *, status: str | None, order_id: str | None,
             offset: int, limit: int, created: tuple[str | None, str | None] | None = None,
             due_by: int | None = None) -> Page:
        where, args = "provider=%s AND account=%s", [provider, account]
        for column, value in (("status", status), ("order_id", order_id)):
            if value is not None:
                where += f" AND {column}=%s"
                args.append(value)
        for bound, operator in zip(created or (None, None), (">=", "<="), strict=True):
            if bound is not None:
                # jsonb refuses the escape \\u0000 that a NUL in the resource's text is written as; swapping
                # it for another escape keeps the JSON valid (an escaped backslash stays one) and created_at as is
                where += f" AND (replace(resource, '\\u0000', '\\ufffd')::jsonb->>'created_at') {operator} %s"
                args.append(bound)
        if order_id is None and created is None:  # the kept counts know this total
            counted, count_args = "provider=%s AND account=%s", [provider, account]
            if status is not None:
                counted += " AND status=%s"
                count_args.append(status)
            total_sql = f"SELECT coalesce(sum(n), 0) FROM return_counts WHERE {counted}"
        else:
            total_sql, count_args = f"SELECT count(*) FROM returns WHERE {where}", list(args)
        due_sql, due_args = "FALSE", []
        if due_by is not None:
            due_sql = ("EXISTS (SELECT 1 FROM returns WHERE provider=%s AND account=%s AND due_at IS NOT NULL"
                       " AND due_at <= %s)")
            due_args = [provider, account, due_by]
        # The page's order is seq's, written as the index that holds it (the columns before seq are fixed by
        # the filter): the plan reads that index whatever the account's size, and can be planned once.
        index = ("order_id DESC, " if order_id is not None else "status DESC, " if status is not None else "")
        # One statement, so one snapshot for the page, its total, what is due and the settings' version,
        # and one round trip.
        statement = _statement(
            f"SELECT ({total_sql}), ({due_sql}), page.resource, (SELECT v FROM settings_version) FROM (SELECT 1)"
            f" AS one LEFT JOIN LATERAL (SELECT resource, seq FROM returns WHERE {where} ORDER BY provider DESC,"
            f" account DESC, {index}seq DESC LIMIT %s OFFSET %s) AS page ON TRUE ORDER BY page.seq DESC")
        with self._connection(confirmed=False) as conn:
            rows = run(conn, statement, [*count_args, *due_args, *args, limit, offset])
        self._settings.confirm(rows[0][3])
        total = int(rows[0][0] or 0) if rows else 0
        due = bool(rows) and rows[0][1] == b"t"
        return Page([orjson.Fragment(r[2]) for r in rows if r[2] is not None], total, due)

    def all(self, provider: str | None = None, account: str | None = None) -> Iterator[ReturnRecord]:
        where, args = self._narrowed(provider, account)
        with self._connection() as conn:
            rows = run(conn, _statement(f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq"), args)
        return iter([_record(r) for r in rows])

    def find(self, provider: str | None, account: str | None, search: str | None, offset: int,
             limit: int) -> tuple[list[ReturnRecord], int]:
        where, args = self._narrowed(provider, account)
        if search is not None:
            where += " AND (strpos(id, %s) > 0 OR strpos(order_id, %s) > 0)"
            args += [search, search]
        with self._connection() as conn:
            total = run(conn, _statement(f"SELECT COUNT(*) FROM returns WHERE {where}"), args)[0][0]
            rows = run(conn, _statement(f"SELECT {COLUMNS} FROM returns WHERE {where} ORDER BY seq DESC"
                                        " LIMIT %s OFFSET %s"), [*args, limit, offset])
        return [_record(r) for r in rows], int(total or 0)

    def reset(self, provider: str | None = None, account: str | None = None) -> int:
        where, args = self._narrowed(provider, account)
        with self._connection() as conn, conn.transaction():
            removed = conn.execute(f"DELETE FROM returns WHERE {where}", args).rowcount
            if provider is None and account is None:
                conn.execute("TRUNCATE webhooks, deliveries, rate_counts")
        return int(removed)

    @staticmethod
    def _narrowed(provider: str | None, account: str | None) -> tuple[str, list[Any]]:
        where, args = "TRUE", []
        for column, value in (("provider", provider), ("account", account)):
            if value is not None:
                where += f" AND {column}=%s"
                args.append(value)
        return where, args

    # --- rate counters -----------------------------------------------------------------------------

    def count_requests(self, windows: Sequence[Window]) -> tuple[list[tuple[int, int]], bool]:
        ordered = sorted(windows, key=lambda w: w.key)  # one lock order: no deadlock between requests
        windowed = (_array([w.key for w in ordered]), _array([w.bucket for w in ordered]))
        version = self._settings.unconfirmed  # then counted only at that version (the count confirms it)
        if all(w.limit is None for w in ordered):  # counted, never refused: the cheaper statement
            with self._connection(confirmed=False) as conn:
                counted = run(conn, RATE_COUNT, (*windowed, version, version))
            if version is not None and counted:
                self._settings.confirm(counted[0][2])
            by_key = {w.key: (int(c[0] or 0), int(c[1] or 0)) for w, c in zip(ordered, counted, strict=True)}
            return [by_key[w.key] for w in windows], True
        limited = (_array([w.overlap for w in ordered]), _array([w.limit for w in ordered]))
        with self._connection(confirmed=False) as conn:
            rows = run(conn, RATE_HIT, (version, *windowed, *limited))
        if version is not None and rows:
            self._settings.confirm(rows[0][3])
        by_key = {w.key: (int(r[0] or 0), int(r[1] or 0)) for w, r in zip(ordered, rows, strict=True)}
        admitted = rows[0][2] == b"t" if rows else True
        return [by_key[w.key] for w in windows], admitted

    # --- webhook deliveries ------------------------------------------------------------------------

    def claim_delivery(self, now_ms: int, lease_ms: int) -> Delivery | None:
        with self._connection() as conn:
            if not run(conn, ANY_DUE_DELIVERY, (now_ms, now_ms)):  # the idle poll: one round trip
                return None
            _, _, rows, _ = run_all(conn, [(BEGIN, ()), (DELIVERY_LOCKED, (DELIVERY_LOCK,)),
                                           (CLAIM, (now_ms + lease_ms, now_ms, now_ms, now_ms)), (COMMIT, ())])
        return Delivery.decode(text(rows[0][0])) if rows else None

    def release_held(self, clock_ms: int, now_ms: int,
                     order: Callable[[list[Delivery]], list[Delivery]]) -> list[Delivery]:
        with self.transaction() as tx:
            assert isinstance(tx, _PostgresTransaction)
            tx._send(DELIVERY_LOCKED, (DELIVERY_LOCK,))
            released = order([Delivery.decode(text(r[0])) for r in tx._send(HELD_DUE, (clock_ms,))])
            for delivery in released:
                delivery.status, delivery.next_at = "pending", now_ms
            tx.requeue(released)
        return released

    def has_held(self, clock_ms: int) -> bool:
        with self._connection() as conn:
            return conn.execute("SELECT 1 FROM deliveries WHERE status='held' AND next_at <= %s LIMIT 1",
                                (clock_ms,)).fetchone() is not None

    def delivery(self, delivery_id: str) -> Delivery | None:
        with self._connection() as conn:
            row = conn.execute("SELECT data FROM deliveries WHERE id=%s", (delivery_id,)).fetchone()
        return Delivery.decode(row[0]) if row is not None else None

    def save_delivery(self, delivery: Delivery) -> None:
        with self._connection() as conn:
            run(conn, UPDATE_DELIVERY, update_params(delivery))

    def deliveries(self, account: str | None = None, status: str | None = None) -> list[Delivery]:
        where, args = "TRUE", []
        for column, value in (("account", account), ("status", status)):
            if value is not None:
                where += f" AND {column}=%s"
                args.append(value)
        with self._connection() as conn:
            rows = conn.execute(f"SELECT data FROM deliveries WHERE {where} ORDER BY seq", args).fetchall()
        return [Delivery.decode(r[0]) for r in rows]

    def has_pending_deliveries(self) -> bool:
        with self._connection() as conn:
            return conn.execute("SELECT 1 FROM deliveries WHERE status='pending' LIMIT 1").fetchone() is not None

    # --- settings ----------------------------------------------------------------------------------

    def get_setting(self, key: str) -> str | None:
        pinned = self._settings.pinned
        if pinned is not None:
            return pinned.get(key)
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key=%s", (key,)).fetchone()
        return row[0] if row else None

    def pin_settings(self, pinned: bool, *, confirm_later: bool = False) -> None:
        # Every setting a request reads (clock, faults, rate policy) from one copy, not one query per read;
        # and one connection for the whole request: one checkout (and its liveness check), not one per use.
        # confirm_later: the process's copy, confirmed by the request's first statement (postgres_settings).
        if pinned:
            if time.monotonic() < self._away_until:
                raise StoreUnavailable(f"the database {self.shown} cannot be reached")
            try:
                self._local.held = self._the_pool().getconn()
            except (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.InterfaceError) as exc:
                raise self._away(exc) from None
            with self._connection(confirmed=False) as conn:
                self._settings.pin(conn, confirm_later=confirm_later)
        else:
            self._settings.unpin()
            held = getattr(self._local, "held", None)
            if held is not None:
                self._local.held = None
                self._the_pool().putconn(held)

    def confirm_settings(self) -> None:
        if self._settings.unconfirmed is not None:
            with self._connection():  # confirms them
                pass

    def has_webhooks(self, account: str) -> bool | None:
        return self._settings.subscribed(account)

    def set_setting(self, key: str, value: str) -> None:
        with self._connection() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))
        self._remember(key, value)

    def update_setting(self, key: str, change: Callable[[str | None], str]) -> str:
        with self._connection() as conn, conn.transaction():
            conn.execute("INSERT INTO settings (key, value) VALUES (%s, '') ON CONFLICT (key) DO NOTHING", (key,))
            current = conn.execute("SELECT value FROM settings WHERE key=%s FOR UPDATE", (key,)).fetchone()[0]
            value = change(current or None)
            conn.execute("UPDATE settings SET value=%s WHERE key=%s", (value, key))
        self._remember(key, value)
        return value

    def _remember(self, key: str, value: str) -> None:
        self._settings.remember(key, value)  # this request's own writes stay visible to it

    # --- journal -----------------------------------------------------------------------------------

    def journal(self, size: int, *, workers: int = 1) -> Journal:
        return PostgresJournal(self, size)

    @contextmanager
    def connected(self) -> Iterator[Any]:
        """A pooled connection, in autocommit (the journal's: its batches send their own BEGIN and COMMIT)."""
        with self._connection() as conn:
            yield conn

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == process.pid():
                self._pool.close()
            self._pool, self._pid = None, 0


IDLE_CHECK_SECONDS = 1.0
"""A pooled connection idle longer than this is checked (a round trip) before use; a busier one is not."""


def _check_idle(conn: Any) -> None:
    """The pool's liveness check, only for connections idle a while: under load every checkout skips a
    round trip, while a connection left over from before a database restart is still found dead (and
    replaced) before a request uses it. A connection that dies within the second fails its request (503)."""
    last = getattr(conn, "_returns_mock_used", None)
    now = time.monotonic()
    if last is None or now - last > IDLE_CHECK_SECONDS:
        psycopg_pool.ConnectionPool.check_connection(conn)
    conn._returns_mock_used = now


def _configure(conn: Any) -> None:
    """Each pooled connection: NUL-safe text, and the planner costs of storage that seeks as fast as it
    reads (SSD, or a database in memory): otherwise a list page walks the whole table backwards in `seq`
    order past other accounts' returns instead of its account's index (5 ms instead of 0.07 ms at 100,000).

    Prepared statements keep their first plan: each one the store sends filters on the columns of an index
    made for it, so no parameter value calls for another plan, while PostgreSQL would otherwise plan a list
    page again at every request (its LIMIT and OFFSET make the one-size plan look costlier): 0.14-0.18 ms
    a page against 0.08 (1,000 to 100,000 returns an account)."""
    nul_safe(conn)
    conn.execute("SET random_page_cost = 1.1")
    conn.execute("SET plan_cache_mode = force_generic_plan")


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, which names the problem (refused login, unknown host, ...)."""
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__
