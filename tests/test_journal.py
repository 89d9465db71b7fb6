"""The journal kept in a database: every body comes back exactly as it was sent or answered."""

from __future__ import annotations

import base64
import dataclasses
import os
from pathlib import Path

import orjson
import pytest

from mockserver.contract import Problem, Violation
from mockserver.store.journal import Entry
from mockserver.store.sqlite import SqliteStore
from mockserver.store.sqlite_journal import decode, encode


def entry(request_body: bytes | None, response_body: bytes) -> Entry:
    return Entry(id=0, at="2026-01-01T00:00:00.000Z", provider="3plship", account="zl_test_a", method="POST",
                 path="/3plship/api/v1/returns", query="", status=422, duration_ms=1.5,
                 request_body=request_body, response_body=response_body,
                 violations=(Violation(Problem("items", "items is required", "body"), "POST", "/3plship/api/v1/returns",
                                       "3plship", 422, "zl_test_a"),))


PAGE = b'{"data":[' + b",".join(b'{"id":"ret_%d","status":"pending","items":[]}' % n for n in range(400)) + b"]}"
BODIES = [
    (None, b""),
    (b"", b"{}"),
    (b'{"order_id":"o\\n1"}\n', b'{"success":true}'),
    (os.urandom(3000), bytes(range(256)) * 20),  # not UTF-8, not compressible
    (b"\n\n\xff", PAGE[:16384]),
]


@pytest.mark.parametrize(("request_body", "response_body"), BODIES)
def test_an_entry_comes_back_byte_for_byte(tmp_path: Path, request_body: bytes | None, response_body: bytes) -> None:
    store = SqliteStore(tmp_path / "j.db")
    journal = store.journal(100, workers=1)
    try:
        journal.record(entry(request_body, response_body))
        (kept,) = journal.entries()
        assert (kept.request_body, kept.response_body) == (request_body, response_body)
        assert kept.violations[0].message == "items is required" and kept.duration_ms == 1.5
    finally:
        store.close()


def test_a_page_of_returns_is_stored_compressed() -> None:
    """A list's journal entry was 22 KB (its body in base64): written to the database, its WAL and
    checkpoints on every request. Stored compressed it is a small fraction of that."""
    stored = encode(entry(None, PAGE[:16384]))
    assert len(stored) < 16384 / 5
    assert decode(stored).response_body == PAGE[:16384]


def test_entries_written_before_compression_are_still_read() -> None:
    old = entry(b"\x00\x01", b'{"a":1}')
    legacy = orjson.dumps(old, default=lambda b: base64.b64encode(b).decode())
    assert decode(legacy) == old


def test_an_entry_the_database_refuses_is_dropped_and_the_journal_goes_on(tmp_path: Path) -> None:
    """One entry a database cannot store (here text SQLite cannot encode) must not hold up the batch it
    came in, every later batch and every read of the journal."""
    store = SqliteStore(tmp_path / "state.db")
    journal = store.journal(100)
    good = entry(b"{}", b"{}")
    poison = dataclasses.replace(good, account="zl_test_\ud800")
    for item in (good, poison, good):
        journal.record(item)
    assert [e.account for e in journal.entries()] == ["zl_test_a", "zl_test_a"]
    journal.record(good)
    assert len(journal.entries()) == 3 and len(journal.violations()) == 3
    assert journal.dropped == 1  # type: ignore[attr-defined]
