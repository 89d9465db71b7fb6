"""Both store engines honour the same contract: atomic transactions, isolation, stable order."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from mockserver.contract.errors import DuplicateReturn, StoreError, StoreUnavailable
from mockserver.store import (
    Delivery,
    MemoryStore,
    Page,
    ReturnRecord,
    SqliteStore,
    Store,
    Window,
    open_store,
    rate_counters,
)


def record(id: str, account: str = "acct", status: str = "initiated", order_id: str = "o1",
           due_at: int | None = None) -> ReturnRecord:
    return ReturnRecord(provider="3plship", account=account, id=id, order_id=order_id, status=status,
                        resource={"id": id, "status": status}, history=[{"status": status, "at": "t"}],
                        due_at=due_at)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Every engine, through one suite: they cannot drift apart."""
    if request.param == "postgresql":
        s: Store = open_store(request.getfixturevalue("postgres_url"))
    else:
        s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "s.db")
    yield s
    s.close()


def test_a_failed_transaction_writes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.insert(record("a"))
        tx.insert(record("b"))
        raise RuntimeError("boom")
    assert list(store.all()) == []


def test_duplicate_id_in_one_account_is_refused_but_allowed_in_another(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(record("a"))
    with pytest.raises(DuplicateReturn), store.transaction() as tx:
        tx.insert(record("a"))
    with store.transaction() as tx:
        tx.insert(record("a", account="other"))
    assert [r.account for r in store.all()] == ["acct", "other"]


def test_update_bumps_version_and_keeps_history(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(record("a"))
    with store.transaction() as tx:
        r = tx.get("3plship", "acct", "a")
        assert r is not None and r.version == 1
        r.status = "received"
        r.history.append({"status": "received", "at": "t2"})
        tx.update(r)
    got = store.get("3plship", "acct", "a")
    assert got is not None
    assert got.version == 2 and got.status == "received" and len(got.history) == 2


def ids(page: Page) -> list[str]:
    """A page holds the resources as answered (dicts, or stored JSON text as orjson fragments)."""
    return [r["id"] for r in orjson.loads(orjson.dumps(page.resources))]


def test_page_is_newest_first_filtered_and_counted(store: Store) -> None:
    with store.transaction() as tx:
        for n in range(5):
            tx.insert(record(f"r{n}", status="received" if n % 2 else "initiated", order_id=f"o{n % 2}"))
        tx.insert(record("x", account="other"))
    page = store.page("3plship", "acct", status=None, order_id=None, offset=1, limit=2)
    assert ids(page) == ["r3", "r2"] and page.total == 5
    page = store.page("3plship", "acct", status="received", order_id=None, offset=0, limit=10)
    assert ids(page) == ["r3", "r1"] and page.total == 2
    page = store.page("3plship", "acct", status=None, order_id="o0", offset=0, limit=10)
    assert ids(page) == ["r4", "r2", "r0"]


def test_page_filters_on_the_creation_instant_both_ends_inclusive(store: Store) -> None:
    with store.transaction() as tx:
        for n in range(5):
            rec = record(f"r{n}", status="received" if n % 2 else "initiated")
            rec.resource["created_at"] = f"2026-01-0{n + 1}T10:00:00.000Z"
            tx.insert(rec)

    def between(low: str | None, high: str | None, status: str | None = None) -> tuple[list[str], int]:
        page = store.page("3plship", "acct", status=status, order_id=None, offset=0, limit=2, created=(low, high))
        return ids(page), page.total

    assert between("2026-01-02T10:00:00.000Z", "2026-01-04T10:00:00.000Z") == (["r3", "r2"], 3)
    assert between("2026-01-02T10:00:00.001Z", None) == (["r4", "r3"], 3)
    assert between(None, "2026-01-02T09:59:59.999Z") == (["r0"], 1)
    assert between("2026-01-01T00:00:00.000Z", None, status="received") == (["r3", "r1"], 2)


def test_due_finds_only_this_accounts_due_records(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(record("early", due_at=100))
        tx.insert(record("late", due_at=200))
        tx.insert(record("none"))
        tx.insert(record("other", account="b", due_at=50))
    assert store.has_due("3plship", "acct", 100) and not store.has_due("3plship", "acct", 99)
    with store.transaction() as tx:
        assert [r.id for r in tx.due("3plship", "acct", 150)] == ["early"]
    # A list page says so too (PostgreSQL: in the page's own statement), whatever its filters.
    for due_by, due in ((None, False), (99, False), (100, True)):
        for status, order_id in ((None, None), ("initiated", None), (None, "o1"), ("gone", None)):
            page = store.page("3plship", "acct", status=status, order_id=order_id, offset=0, limit=2, due_by=due_by)
            assert page.due is due, (due_by, status, order_id)
            assert page.total == (0 if status == "gone" else 3)


def test_due_any_finds_every_accounts_due_records_earliest_first_and_reads_are_kept(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(record("late", due_at=200))
        tx.insert(record("early", account="b", due_at=100))
        tx.insert(record("none"))
        tx.insert(record("later", account="c", due_at=300))
    assert store.has_due_any(100) and not store.has_due_any(99)
    with store.transaction() as tx:
        found = tx.due_any(250, 10)
        assert [(r.account, r.id) for r in found] == [("b", "early"), ("acct", "late")]
        assert [r.id for r in tx.due_any(250, 1)] == ["early"]
        found[0].reads, found[0].due_at = 3, None
        tx.update(found[0])
    assert not store.has_due("3plship", "b", 10**12)
    stored = store.get("3plship", "b", "early")
    assert stored is not None and stored.reads == 3


def delivery(id: str, webhook: str = "wh_1", **fields: Any) -> Delivery:
    return Delivery(id=id, webhook_id=webhook, account="acct", event_id=f"evt_{id}", event_type="return.created",
                    url="http://127.0.0.1:9/x", secret="whsec_x", body=b"{}", next_at=fields.pop("next_at", 0),
                    **fields)


def test_a_subscription_has_one_attempt_in_flight_and_its_deliveries_go_in_queue_order(store: Store) -> None:
    with store.transaction() as tx:
        for id_, webhook in (("a1", "wh_a"), ("b1", "wh_b"), ("a2", "wh_a"), ("a3", "wh_a")):
            tx.add_delivery(delivery(id_, webhook))
    claimed = store.claim_delivery(1000, 500)
    assert claimed is not None and claimed.id == "a1"
    second = store.claim_delivery(1000, 500)
    assert second is not None and second.id == "b1"  # wh_a has one in flight: its next waits
    assert store.claim_delivery(1000, 500) is None
    second.status = "delivered"
    store.save_delivery(second)
    claimed.status, claimed.next_at = "pending", 5000  # a retry, due later: the next one goes first
    store.save_delivery(claimed)
    third = store.claim_delivery(1001, 500)
    assert third is not None and third.id == "a2"
    assert store.claim_delivery(1200, 500) is None  # a2 is in flight until its lease runs out (1501)
    again = store.claim_delivery(1502, 500)  # an attempt that never ended (its lease ran out) is made again
    assert again is not None and again.id == "a2"


def test_held_deliveries_are_grouped_released_by_the_clock_and_requeued_in_order(store: Store) -> None:
    with store.transaction() as tx:
        tx.add_delivery(delivery("first", status="held", next_at=100, group="wh_1|ret_1", rank=0.0))
        tx.add_delivery(delivery("plain"))
        tx.add_delivery(delivery("second", status="held", next_at=100, group="wh_1|ret_1", rank=-1.0))
        tx.add_delivery(delivery("later", "wh_2", status="held", next_at=900))
        assert [d.id for d in tx.held("wh_1|ret_1")] == ["first", "second"]
    assert store.has_held(100) and not store.has_held(99)
    released = store.release_held(100, 2000, lambda held: sorted(held, key=lambda d: d.rank))
    assert [d.id for d in released] == ["second", "first"] and {d.status for d in released} == {"pending"}
    assert [d.id for d in store.deliveries(status="pending")] == ["plain", "second", "first"]
    assert [d.id for d in store.deliveries(status="held")] == ["later"]
    order = []
    while (claimed := store.claim_delivery(3000, 10)) is not None:
        order.append(claimed.id)
        claimed.status = "delivered"
        store.save_delivery(claimed)
    assert order == ["plain", "second", "first"]
    found = store.delivery("later")
    assert found is not None and found.as_json()["held_until"] == "1970-01-01T00:00:00.900Z"
    assert store.delivery("nope") is None


def test_an_accounts_subscriptions_are_counted(store: Store) -> None:
    with store.transaction() as tx:
        for n in range(3):
            tx.add_webhook("acct", {"id": f"wh_{n}", "url": "http://x", "events": [], "active": True})
        tx.add_webhook("other", {"id": "wh_9", "url": "http://x", "events": [], "active": True})
    with store.transaction() as tx:
        assert tx.webhook_count("acct") == 3 and tx.webhook_count("other") == 1 and tx.webhook_count("none") == 0


def test_a_sqlite_file_from_before_the_scheduler_gets_its_columns(tmp_path: Path) -> None:
    """A file made by e98ac54's schema (no reads, no deliveries' subscription column) opens, and its pending
    delivery is claimed by subscription."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE returns (seq INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL,
                account TEXT NOT NULL, id TEXT NOT NULL, order_id TEXT NOT NULL, status TEXT NOT NULL, due_at INTEGER,
                version INTEGER NOT NULL, resource TEXT NOT NULL, history TEXT NOT NULL,
                UNIQUE (provider, account, id));
            CREATE TABLE deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                account TEXT NOT NULL, status TEXT NOT NULL, next_at INTEGER NOT NULL,
                lease_until INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);""")
        conn.execute("INSERT INTO returns (provider, account, id, order_id, status, due_at, version, resource, history)"
                     " VALUES ('3plship', 'acct', 'r1', 'o1', 'initiated', 5, 1, '{}', '[]')")
        old = delivery("d1", "wh_old")
        conn.execute("INSERT INTO deliveries (id, account, status, next_at, data) VALUES (?, ?, 'pending', 0, ?)",
                     (old.id, old.account, old.encode()))
    store = SqliteStore(path)
    try:
        assert store.has_due_any(5)
        stored = store.get("3plship", "acct", "r1")
        assert stored is not None and stored.reads == 0
        claimed = store.claim_delivery(10, 100)
        assert claimed is not None and claimed.webhook_id == "wh_old"
        with store.transaction() as tx:
            tx.add_delivery(delivery("d2", "wh_old"))
        assert store.claim_delivery(10, 100) is None  # the old row's subscription is known: one in flight
    finally:
        store.close()


def test_reset_narrows_by_provider_and_account(store: Store) -> None:
    with store.transaction() as tx:
        tx.insert(record("a"))
        tx.insert(record("b", account="other"))
    assert store.reset(account="other") == 1
    assert [r.id for r in store.all()] == ["a"]
    assert store.reset() == 1


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SqliteStore(path)
    with first.transaction() as tx:
        tx.insert(record("a"))
    first.close()
    second = SqliteStore(path)
    assert second.get("3plship", "acct", "a") is not None
    assert second.integrity_check() == "ok"


@pytest.mark.parametrize("url", ["postgres://x", "sqlite:", "sqlite:/nonexistent/dir/x.db", "bogus"])
def test_unusable_store_urls_raise_a_one_line_store_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "\n" not in str(info.value)


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        open_store(f"sqlite:{tmp_path}")


def test_a_file_that_is_not_sqlite_is_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        open_store(f"sqlite:{junk}")


def insert_six_and_one(store: Store) -> None:
    with store.transaction() as tx:
        for n in range(6):
            tx.insert(record(f"r{n}"))
        tx.insert(record("x", account="other"))


def totals_follow_moves_and_resets(store: Store) -> None:
    """Six returns in `acct` and one in `other` (insert_six_and_one): two moved, `other` reset."""
    with store.transaction() as tx:
        for rid in ("r0", "r1"):
            moved = tx.get("3plship", "acct", rid)
            assert moved is not None
            moved.status = "received"
            tx.update(moved)
            tx.update(moved)  # the same status again: counted once

    def total(status: str | None = None, account: str = "acct") -> int:
        return store.page("3plship", account, status=status, order_id=None, offset=0, limit=1).total

    assert (total(), total("initiated"), total("received"), total(account="other")) == (6, 4, 2, 1)
    page = store.page("3plship", "acct", status="received", order_id=None, offset=0, limit=5)
    assert [orjson.loads(orjson.dumps(r))["id"] for r in page.resources] == ["r1", "r0"] and page.total == 2
    store.reset(account="other")
    assert (total(), total(account="other")) == (6, 0)
    assert store.page("3plship", "nobody", status=None, order_id=None, offset=0, limit=5).total == 0


def test_sqlite_list_totals_follow_inserts_moves_resets_and_old_files(tmp_path: Path) -> None:
    path = tmp_path / "counts.db"
    store = SqliteStore(path)
    insert_six_and_one(store)
    totals_follow_moves_and_resets(store)
    # A file written before return_counts existed gets its counts rebuilt when opened.
    store.connection().execute("DELETE FROM return_counts")
    store.close()
    reopened = SqliteStore(path)
    assert reopened.page("3plship", "acct", status="received", order_id=None, offset=0, limit=1).total == 2


def test_sqlite_settings_another_worker_changes_are_seen_at_once(tmp_path: Path) -> None:
    """Each worker caches the settings (clock, rate policy, fault rules) until the change counter in shared
    memory moves; two stores on one file stand for two workers."""
    one, other = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    try:
        one.set_setting("clock", "a")
        assert other.get_setting("clock") == "a"  # now cached by the other
        one.set_setting("clock", "b")
        assert other.get_setting("clock") == "b"
        one.update_setting("clock", lambda value: f"{value}c")
        assert other.get_setting("clock") == "bc"
        other.pin_settings(True)  # inside a request: the snapshot taken at its start
        one.set_setting("clock", "d")
        assert other.get_setting("clock") == "bc"
        other.pin_settings(False)
        assert other.get_setting("clock") == "d"
    finally:
        one.close()
        other.close()


@pytest.mark.system
def test_sqlite_wal_is_checkpointed_in_the_background(tmp_path: Path) -> None:
    """Requests never checkpoint (wal_autocheckpoint=0): without the background checkpointer the WAL file
    would grow for as long as the server runs."""
    store = SqliteStore(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"

    def burst(start: int) -> None:
        for n in range(start, start + 200):
            with store.transaction() as tx:
                tx.insert(record(f"r{n}", order_id=f"o{n}"))

    try:
        burst(0)
        after_first = wal.stat().st_size
        time.sleep(1.5)  # three checkpointer periods: the WAL is copied in, and the next writer starts it over
        burst(200)
        assert wal.stat().st_size < 1.5 * after_first
        assert store.integrity_check() == "ok" and len(list(store.all())) == 400
    finally:
        store.close()


@pytest.mark.system
def test_sqlite_wal_stays_bounded_under_writes_that_never_pause(tmp_path: Path) -> None:
    """Under a load test the writers never pause: a checkpoint that only copies what it can without
    blocking never catches up, and the WAL grew by ~100 MB a second. It must be started over regularly."""
    store = SqliteStore(tmp_path / "s.db")
    wal = tmp_path / "s.db-wal"
    sizes: list[int] = []
    n = 0
    try:
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            with store.transaction() as tx:
                tx.insert(record(f"r{n}", order_id=f"o{n}"))
            n += 1
            if n % 200 == 0:
                sizes.append(wal.stat().st_size)
        early = sizes[len(sizes) // 6]  # ~0.5 s in
        assert max(sizes) < 4 * early, (early, max(sizes), n)
        assert store.integrity_check() == "ok"
    finally:
        store.close()


def test_rate_counts_slide_per_key_refuse_without_counting_and_clear_on_reset(store: Store) -> None:
    assert [store.count_request("k", 10, 0.5, None) for _ in range(3)] == [(0, 1, True), (0, 2, True), (0, 3, True)]
    assert store.count_request("other", 10, 0.5, None) == (0, 1, True)
    # The next bucket sees this one as its previous; one further on, both have faded.
    assert store.count_request("k", 11, 0.5, None) == (3, 1, True)
    assert store.count_request("k", 11, 0.5, 3) == (3, 2, True)  # 3 * 0.5 + 1 < 3
    assert store.count_request("k", 11, 0.5, 3) == (3, 2, False)  # 3 * 0.5 + 2 >= 3: refused, not counted
    assert store.count_request("k", 11, 0.5, 3) == (3, 2, False)
    assert store.count_request("k", 13, 0.5, None) == (0, 1, True)
    store.reset(account="someone")  # a narrowed reset leaves the counts alone
    assert store.count_request("other", 10, 0.5, None) == (0, 2, True)
    store.reset()
    assert store.count_request("other", 10, 0.5, None) == (0, 1, True)


COUNT_IN_A_PROCESS = """
import sys, time
from mockserver.store import SqliteStore
store = SqliteStore(sys.argv[1])
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start together, so that they race
for _ in range(int(sys.argv[2])):
    store.count_request("shared", 7, 1.0, None)
    store.count_request("capped", 7, 1.0, 150)
"""


@pytest.mark.system
def test_a_request_is_counted_in_every_window_or_in_none(store: Store) -> None:
    """Several windows (per minute, per hour...): one full window refuses the request, and then the
    request counts in no window at all."""
    minute, hour = Window("k|60", 100, 0.0, 2), Window("k|3600", 1, 0.0, 3)
    assert store.count_requests([minute, hour]) == ([(0, 1), (0, 1)], True)
    assert store.count_requests([minute, hour]) == ([(0, 2), (0, 2)], True)
    assert store.count_requests([minute, hour]) == ([(0, 2), (0, 2)], False)  # the minute is full
    next_minute = Window("k|60", 101, 0.0, 2)
    assert store.count_requests([next_minute, hour]) == ([(2, 1), (0, 3)], True)
    assert store.count_requests([next_minute, hour]) == ([(2, 1), (0, 3)], False)  # now the hour is


def test_sqlite_rate_counts_are_exact_across_processes_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    start = str(time.time() + 3)
    workers = [subprocess.Popen([sys.executable, "-c", COUNT_IN_A_PROCESS, str(path), "1000", start])
               for _ in range(4)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0, 0]
    store = SqliteStore(path)
    try:
        assert store.count_request("shared", 7, 1.0, None) == (0, 4001, True)  # no count lost to a race
        assert store.count_request("capped", 7, 1.0, 150) == (0, 150, False)  # and none past the limit
    finally:
        store.close()


@pytest.mark.parametrize("foreign", [b"not counters" * 10, b"\xff" * rate_counters.SIZE])  # short; full size
def test_a_rate_counter_file_this_version_cannot_read_is_started_afresh(foreign: bytes, tmp_path: Path) -> None:
    rate_file = tmp_path / "s.db-rate"
    rate_file.write_bytes(foreign)
    store = SqliteStore(tmp_path / "s.db")
    try:
        data = rate_file.read_bytes()
        assert data.startswith(rate_counters.MAGIC) and len(data) == rate_counters.SIZE
        assert data[rate_counters.HEADER:] == bytes(rate_counters.SIZE - rate_counters.HEADER)
        assert store.count_request("k", 1, 0.0, None) == (0, 1, True)
        assert store.count_request("k", 1, 0.0, None) == (0, 2, True)
    finally:
        store.close()


MINUTE = 60_000


def _minute(key: str, limit: int | None = None, bucket: int = 29_000_000) -> Window:
    """One request of `key` in the per-minute window of bucket `bucket` (a minute of 2025), as the rate
    limiter counts it."""
    return Window(f"{key}|60", bucket, 0.5, limit, MINUTE)


def _unkeyed_home(key: str) -> int:
    """The slot a key's count lived in before the hash was keyed (blake2b of the key, mod 8192 slots)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(f"{key}|60".encode(), digest_size=16).digest()[:8], "little") % 8192


@pytest.mark.parametrize("crowd", ["12,000 ordinary keys", "33 keys crafted to share its slot"])
def test_sqlite_rate_counts_never_forget_a_key_inside_its_window(tmp_path: Path, crowd: str) -> None:
    """A victim's five requests of its 5/minute, then a crowd of other keys in the same minute: its sixth is
    still refused. Before, more keys than slots, or keys whose hash shared its home slot (blake2b of the key,
    unkeyed: anyone could find 33), gave its slot away and its count with it."""
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert [store.count_requests([_minute("victim", 5)])[1] for _ in range(6)] == [True] * 5 + [False]
        if crowd.startswith("12,000"):
            # Past 8,192 keys each new one took its home slot from whoever held it: any 12,000 keys took the
            # victim's with a chance of 1 - (1 - 1/8192) ** 3808, 37 %; these ones did, on e98ac54.
            others = [f"zl_test_shop{n}" for n in range(12_000)]
        else:
            home, others, n = _unkeyed_home("victim"), [], 0
            while len(others) < 33:
                n += 1
                if _unkeyed_home(f"zl_test_{n}") == home:
                    others.append(f"zl_test_{n}")
        for key in others:
            assert store.count_requests([_minute(key, 5)]) == ([(0, 1)], True)
        assert store.count_requests([_minute("victim", 5)]) == ([(0, 5)], False)  # still full: refused
        assert store.count_requests([_minute(others[0], 5)]) == ([(0, 2)], True)  # and the crowd counted too
    finally:
        store.close()


def test_rate_counters_grow_rather_than_forget_and_reuse_slots_whose_window_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four slots: a fifth key inside the window doubles the table (every count kept); keys
    whose windows ended give their slots to new keys without growing it; past MOST_SLOTS a new key is
    refused (503) rather than another forgotten."""
    monkeypatch.setattr(rate_counters, "SLOTS", 4)
    monkeypatch.setattr(rate_counters, "PROBES", 8)  # every slot, whatever the homes the file's hash key gives
    monkeypatch.setattr(rate_counters, "MOST_SLOTS", 8)
    monkeypatch.setattr(rate_counters, "SIZE", rate_counters.HEADER + 4 * rate_counters.SLOT.size)
    counters = rate_counters.SharedRateCounters(tmp_path / "small-rate")

    def count(key: str, bucket: int = 10) -> tuple[int, int]:
        (counts,), _ = counters.count([Window(key, bucket, 0.0, None, MINUTE)])
        return counts

    def slots() -> int:
        return int.from_bytes((tmp_path / "small-rate").read_bytes()[40:48], "little")

    try:
        assert [count(key) for key in "abcd"] == [(0, 1)] * 4 and slots() == 4
        assert count("e") == (0, 1) and slots() == 8  # grown: nothing given up
        assert [count(key) for key in "abcde"] == [(0, 2)] * 5
        assert [count(key, 20) for key in "vwxyz"] == [(0, 1)] * 5 and slots() == 8  # a..e ended: reused
        assert [count(key, 20) for key in "fgh"] == [(0, 1)] * 3
        with pytest.raises(StoreUnavailable, match="as many as they can"):
            count("i", 20)
        assert [count(key, 20) for key in "vwxyzfgh"] == [(0, 2)] * 8  # the full table forgot nobody
    finally:
        counters.close()


GROW_IN_A_PROCESS = """
import sys
from mockserver.store import SqliteStore, Window
store = SqliteStore(sys.argv[1])
for n in range(20_000):
    store.count_requests([Window(f"k{n}|60", 29_000_000, 0.5, None, 60_000)])
store.close()
"""


@pytest.mark.system
def test_a_table_grown_by_one_process_is_the_table_of_every_other(tmp_path: Path) -> None:
    """Workers share the counters: one that grows the table (20,000 keys in one minute) leaves the others'
    counts where they find them, on the new table."""
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert store.count_requests([_minute("victim")]) == ([(0, 1)], True)
        subprocess.run([sys.executable, "-c", GROW_IN_A_PROCESS, str(tmp_path / "s.db")], check=True, timeout=120)
        assert (tmp_path / "s.db-rate").stat().st_size > rate_counters.SIZE
        assert store.count_requests([_minute("victim")]) == ([(0, 2)], True)
        assert store.count_requests([_minute("k19999")]) == ([(0, 2)], True)
    finally:
        store.close()


@pytest.mark.parametrize("beside", ["s.db-rate", "s.db-lock"])
def test_a_file_beside_the_database_that_cannot_be_used_is_a_one_line_store_error(
        beside: str, tmp_path: Path) -> None:
    (tmp_path / beside).mkdir()
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:{tmp_path / 's.db'}")
    assert "\n" not in str(info.value) and "Is a directory" in str(info.value)


def test_find_pages_newest_first_and_searches_ids_and_order_ids(store: Store) -> None:
    with store.transaction() as tx:
        for n in range(5):
            tx.insert(record(f"ret_{n}", order_id=f"ord_{n % 2}x"))
        tx.insert(record("ret_9", account="other", order_id="ord_9"))
    page, total = store.find("3plship", "acct", None, 1, 2)
    assert [r.id for r in page] == ["ret_3", "ret_2"] and total == 5
    found, total = store.find("3plship", None, "ord_1", 0, 10)
    assert [r.id for r in found] == ["ret_3", "ret_1"] and total == 2
    found, total = store.find(None, None, "9", 0, 10)
    assert [(r.id, r.account) for r in found] == [("ret_9", "other")] and total == 1


def test_a_return_inserted_alone_is_stored_once(store: Store) -> None:
    stored = store.insert(record("alone"))
    assert stored.version == 1 and store.get("3plship", "acct", "alone") is not None
    with pytest.raises(DuplicateReturn):
        store.insert(record("alone"))
    assert [r.id for r in store.all()] == ["alone"]


@pytest.mark.system
def test_keys_with_any_characters_count_apart(store: Store) -> None:
    """A rate key is the client's credential (or its address): quotes, backslashes, commas, braces and
    NULL-looking text are counted under exactly that key (PostgreSQL receives them in an array literal)."""
    keys = ['a"b', "a\\b", "a,b", "{a}", "NULL", "a b", "ключ", "a\\", '"', ""]
    windows = [Window(key, 5, 0.25, None) for key in keys]
    assert store.count_requests(windows) == ([(0, 1)] * len(keys), True)
    assert store.count_requests(windows[:3]) == ([(0, 2)] * 3, True)
    assert store.count_request("a", 5, 0.25, None) == (0, 1, True)  # none of them was counted as plain "a"
    assert store.count_request("{a}", 6, 0.25, 2) == (1, 1, True)  # its own previous bucket carried over
