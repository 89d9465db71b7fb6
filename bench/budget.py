"""The per-request cost budget: microseconds of CPU per stage, for each benchmarked operation.

The app runs in this process over a real SQLite file, driven straight through its WSGI callable, one
request after another, so CPU time can be charged to stages exactly: each stage's functions are wrapped,
and a stack per thread charges every stretch of CPU time to the innermost stage running (what no stage
claims is Flask and werkzeug dispatch). Work done off the request path (journal batches, WAL
checkpoints) is charged per request too, from its own threads. The HTTP server's share is measured
separately: CPU per request of the bare-Flask floor under wrk, minus the same Flask app run in-process.

    python bench/budget.py [--requests N] [--rounds R] [--markdown]
"""

from __future__ import annotations

import argparse
import functools
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from floor import create as create_floor  # noqa: E402

from mockserver.domain.config import Config  # noqa: E402
from mockserver.web import create_app  # noqa: E402

STAGES = ("HTTP server", "Flask and pipeline", "auth", "validation", "faults", "rate count", "settings and clock",
          "ids", "core", "store (SQL)", "WAL checkpoint", "journal", "response")

_charges: dict[str, int] = defaultdict(int)
_local = threading.local()


def _clock() -> int:
    """The request thread runs alone, so its wall time is its CPU time (and perf_counter is cheap to read);
    background threads share the CPU with it, so they are charged their own thread's CPU time."""
    return time.perf_counter_ns() if threading.current_thread() is threading.main_thread() else time.thread_time_ns()


def _stack() -> list[list[Any]]:
    stack: list[list[Any]] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = [["Flask and pipeline", _clock()]]
    return stack


class _stage:
    """Charge the CPU since the last mark to the stage below, then time `name` until it ends."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        stack = _stack()
        now = _clock()
        top = stack[-1]
        _charges[top[0]] += now - top[1]
        stack.append([self.name, now])

    def __exit__(self, *exc: object) -> None:
        stack = _stack()
        now = _clock()
        _charges[self.name] += now - stack[-1][1]
        stack.pop()
        stack[-1][1] = now


def _wrap(owner: Any, attribute: str, name: str) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with _stage(name):
            return original(*args, **kwargs)

    setattr(owner, attribute, wrapped)


class _TimedConnection:
    """A sqlite3 connection whose statements are charged to the store (or the journal, in its thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, *args: Any) -> Any:
        with _stage(getattr(_local, "sql_stage", "store (SQL)")):
            return self._conn.execute(*args)

    def executemany(self, *args: Any) -> Any:
        with _stage(getattr(_local, "sql_stage", "store (SQL)")):
            return self._conn.executemany(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def instrument() -> None:
    """Wrap each stage's functions (before any app is built: views capture their handlers)."""
    from mockserver.domain import ids
    from mockserver.domain.clock import StoreClock
    from mockserver.pipeline import serve, steps
    from mockserver.providers.thirtyfiveup.api import Api35up
    from mockserver.providers.thirtyfiveup.core import Returns35up
    from mockserver.providers.threeplship.api import Api3plship
    from mockserver.providers.threeplship.core import Returns3plship
    from mockserver.store import journal, sqlite_file, sqlite_journal
    from mockserver.store import sqlite as sqlite_store

    for api in (Api3plship, Api35up):
        _wrap(api, "authenticate", "auth")
        _wrap(api, "success_body", "response")
    for backend, handlers in ((Returns3plship, ("create_return", "list_returns", "update_status")),
                              (Returns35up, ("create_return", "update_return"))):
        for handler in handlers:
            _wrap(backend, handler, "core")
    _wrap(steps, "check_request", "validation")
    _wrap(serve, "json_answer", "response")
    _wrap(steps.InjectFaults, "before", "faults")
    _wrap(steps.LimitRate, "before", "rate count")
    _wrap(steps.RecordInJournal, "after", "journal")
    _wrap(sqlite_store.SqliteStore, "pin_settings", "settings and clock")
    _wrap(StoreClock, "now", "settings and clock")
    _wrap(ids.IdGenerator, "new", "ids")
    _wrap(journal.Journal, "record", "journal")

    original_connection = sqlite_file.SqliteFile.connection

    def timed_connection(self: Any) -> Any:
        return _TimedConnection(original_connection(self))

    sqlite_file.SqliteFile.connection = timed_connection  # type: ignore[method-assign]

    # Off the request path: the journal's writer and the WAL checkpointer, one thread each per process.
    for every, name in ((sqlite_journal._WRITER, "journal"), (sqlite_file._CHECKPOINTER, "WAL checkpoint")):
        def background(member: Any, *, _job: Callable[[Any], None] = every.job, _name: str = name) -> None:
            _local.sql_stage = _name
            with _stage(_name):
                _job(member)

        every.job = background


KEY = "zl_test_bench"
AUTH_35UP = "Basic YmVuY2g6YmVuY2g="
PL_BODY = (b'{"order_id":"ord_bench","reason":"defective","items":[{"sku":"PROD-001","quantity":1,'
           b'"condition":"damaged"}],"refund_amount":49.99}')


def _h(headers: dict[str, str]) -> Headers:
    return Headers(headers)


def operations(n: int) -> dict[str, Callable[[int], dict[str, Any]]]:
    json_headers = {"Content-Type": "application/json"}
    return {
        "3plship create": lambda i: EnvironBuilder(
            path="/3plship/api/v1/returns", method="POST", data=PL_BODY,
            headers=_h({**json_headers, "Authorization": f"Bearer {KEY}"})).get_environ(),
        "3plship list": lambda i: EnvironBuilder(
            path="/3plship/api/v1/returns", query_string="limit=50",
            headers=_h({"Authorization": "Bearer zl_test_list10k"})).get_environ(),
        "3plship status update": lambda i: EnvironBuilder(
            path=f"/3plship/api/v1/returns/ret_b0x{i}/status", method="PATCH", data=b'{"status":"received"}',
            headers=_h({**json_headers, "Authorization": f"Bearer {KEY}"})).get_environ(),
        "35up create": lambda i: EnvironBuilder(
            path="/35up/v1/returns", method="POST",
            data=b'{"orderId":"c%d","items":[{"itemId":"1","sku":"vendor_id/SKU1","quantity":1}]}' % i,
            headers=_h({**json_headers, "Authorization": AUTH_35UP})).get_environ(),
        "35up update": lambda i: EnvironBuilder(
            path=f"/35up/v1/returns/u0x{i}", method="PATCH", data=b'{"status":"awaiting_return"}',
            headers=_h({**json_headers, "Authorization": AUTH_35UP})).get_environ(),
    }


def seed(app: Any, n: int) -> None:
    from mockserver.web import mock_of

    pl = {"order_id": "ord_seed", "reason": "defective", "items": [{"sku": "P", "quantity": 1}], "refund_amount": 1}
    up = {"items": [{"itemId": "1", "sku": "vendor_id/SKU1", "quantity": 1}]}
    mock = mock_of(app)
    mock.seed({"returns": [{"provider": "3plship", "account": "zl_test_list10k", "return": pl}] * 10_000})
    mock.seed({"returns": [{"provider": "3plship", "account": KEY, "id": f"ret_b0x{i}", "return": pl}
                           for i in range(2 * n)]})
    mock.seed({"returns": [{"provider": "35up", "account": "bench", "return": {**up, "orderId": f"u0x{i}"}}
                           for i in range(2 * n)]})


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
    if not status.startswith("2"):
        raise SystemExit(f"budget: a request was answered {status}")
    return lambda _: None


def flask_floor_us(n: int) -> float:
    app = create_floor()
    environs = [EnvironBuilder(path="/3plship/api/v1/returns", method="POST", data=PL_BODY,
                               headers=_h({"Authorization": f"Bearer {KEY}"})).get_environ() for _ in range(n)]
    started = time.thread_time_ns()
    for environ in environs:
        b"".join(app(environ, _start_response))
    return (time.thread_time_ns() - started) / n / 1000


def http_server_us(seconds: int) -> float | None:
    """CPU per request of the floor's processes under wrk, minus its Flask part: granian's own cost."""
    import shutil

    import run

    if shutil.which("wrk") is None:
        return None
    port = run.free_port()
    floor = run.start_floor(port, os.cpu_count() or 1)
    try:
        before = _cpu_seconds(floor.pid)
        row = run.wrk(f"http://127.0.0.1:{port}/x", "", seconds, 16)
        used = _cpu_seconds(floor.pid) - before
    finally:
        run.stop(floor)
    return used / row["requests"] * 1e6 if row["requests"] else None


def _cpu_seconds(pid: int) -> float:
    import run

    return run.cpu_seconds(pid)


_charges_by_operation: dict[str, dict[str, int]] = {}


def run_operations(n: int, *, instrumented: bool) -> dict[str, float]:
    """Each operation n times through a fresh app over a fresh SQLite file: µs of CPU per request, all
    threads counted (the journal's batches and the checkpoints of these requests included)."""
    totals: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Config(store=f"sqlite:{Path(tmp) / 'budget.db'}", workers=2))
        seed(app, n)
        for name, build in operations(n).items():
            for environ in [build(n + i) for i in range(min(n // 4, 500))]:  # warm-up
                b"".join(app(environ, _start_response))
            environs = [build(i) for i in range(n)]
            time.sleep(0.6)  # the warm-up's journal batch and checkpoint go by
            _charges.clear()
            _stack()[-1][1] = _clock()
            started = time.process_time()
            for environ in environs:
                b"".join(app(environ, _start_response))
            time.sleep(0.6)  # the journal's batches and a checkpoint round for these requests
            totals[name] = (time.process_time() - started) / n * 1e6
            _charges_by_operation[name] = dict(_charges)
    return totals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="requests per operation (default 4000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each pass; each cell is their median")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    args = parser.parse_args()
    n = args.requests
    totals = [run_operations(n, instrumented=False) for _ in range(args.rounds)]
    instrument()
    charges = []
    for _ in range(args.rounds):
        run_operations(n, instrumented=True)
        charges.append({name: dict(c) for name, c in _charges_by_operation.items()})
    table: dict[str, dict[str, float]] = {}
    for name in totals[0]:
        row = {stage: statistics.median(c[name].get(stage, 0) for c in charges) / n / 1000 for stage in STAGES}
        # What the stages do not claim is dispatch; measured against the uninstrumented runs, so the
        # instrumentation's own cost (charged mostly to the stage below each wrapped call) drops out.
        total = statistics.median(t[name] for t in totals)
        row["Flask and pipeline"] = max(0.0, total - sum(v for k, v in row.items() if k != "Flask and pipeline"))
        table[name] = row
    floor_flask = flask_floor_us(n)
    server = http_server_us(3)
    server_us = max(0.0, server - floor_flask) if server is not None else float("nan")
    for row in table.values():
        row["HTTP server"] = server_us
    floor_total = floor_flask + server_us
    _print(table, floor_flask, floor_total, args.markdown)
    return 0


def _print(table: dict[str, dict[str, float]], floor_flask: float, floor_total: float, markdown: bool) -> None:
    names = list(table)
    short = {"3plship create": "3pl create", "3plship list": "3pl list", "3plship status update": "3pl status",
             "35up create": "35up create", "35up update": "35up update"}
    header = ["stage (µs CPU/request)", *[short[n] for n in names], "floor"]
    rows = [[stage, *[f"{table[n][stage]:.0f}" for n in names],
             f"{floor_flask:.0f}" if stage == "Flask and pipeline" else
             f"{floor_total - floor_flask:.0f}" if stage == "HTTP server" else "-"]
            for stage in STAGES]
    rows.append(["total", *[f"{sum(table[n].values()):.0f}" for n in names], f"{floor_total:.0f}"])
    rows.append(["floor / total", *[f"{floor_total / sum(table[n].values()):.2f}" for n in names], "1.00"])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    print(f"{header[0]:<24}" + "".join(f"{h:>13}" for h in header[1:]))
    for row in rows:
        print(f"{row[0]:<24}" + "".join(f"{c:>13}" for c in row[1:]))


if __name__ == "__main__":
    sys.exit(main())
