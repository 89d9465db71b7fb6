"""make bench: the real server under wrk, against a floor measured in the same run on the same stack.

Each operation runs against `returns-mock serve` (defaults: SQLite store, granian, one worker per CPU)
and against a bare Flask app answering a constant body on the same server stack: the same granian
settings, workers and threads per worker (bench/floor.py). Floor and mock alternate, operation by
operation, for --rounds paired rounds; each figure is the median of its rounds, quoted as a ratio to
the floor of its own round: machines are shared and noisy, ratios travel better than absolute numbers.
The targets of issue 14 are checked at the end; the exit code is 1 when one misses. Loopback only;
every run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

HERE = Path(__file__).resolve().parent
KEY = "zl_test_bench"
AUTH_35UP = "Basic YmVuY2g6YmVuY2g="  # bench:bench

LUA = {
    "3plship create": """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.body = '{{"order_id":"ord_bench","reason":"defective",' ..
  '"items":[{{"sku":"PROD-001","quantity":1,"condition":"damaged"}}],"refund_amount":49.99}}'
""",
    "3plship list": """
wrk.headers["Authorization"] = "Bearer {list_key}"
""",
    "3plship status update": """
local counter = 0
local id = 0
setup = function(thread) thread:set("tid", id); id = id + 1 end
request = function()
  counter = counter + 1
  return wrk.format("PATCH", "{prefix}/returns/ret_b" .. tid .. "x" .. counter .. "/status",
    {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {key}"}}, '{{"status":"received"}}')
end
""",
    "35up create": """
local counter = 0
local id = 0
setup = function(thread) thread:set("tid", id); id = id + 1 end
request = function()
  counter = counter + 1
  return wrk.format("POST", "{prefix}/returns",
    {{["Content-Type"] = "application/json", ["Authorization"] = "{auth}"}},
    '{{"orderId":"c' .. tid .. "x" .. counter .. '","items":[{{"itemId":"1","sku":"vendor_id/SKU1","quantity":1}}]}}')
end
""",
    "35up update": """
local counter = 0
local id = 0
setup = function(thread) thread:set("tid", id); id = id + 1 end
request = function()
  counter = counter + 1
  return wrk.format("PATCH", "{prefix}/returns/u" .. tid .. "x" .. counter,
    {{["Content-Type"] = "application/json", ["Authorization"] = "{auth}"}}, '{{"status":"awaiting_return"}}')
end
""",
}

PATHS = {"3plship create": "/3plship/api/v1/returns", "3plship list": "/3plship/api/v1/returns?limit=50",
         "3plship status update": "/3plship/api/v1", "35up create": "/35up/v1", "35up update": "/35up/v1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def start_mock(port: int, store: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "mockserver.cli", "serve", "--port", str(port),
                             "--store", store, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/", proc)
    return proc


def start_floor(port: int, workers: int) -> subprocess.Popen[bytes]:
    # Started as `serve` starts the mock (mockserver.web.launch), with its default limits: the same stack.
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); from mockserver.domain.config import Limits; "
            "from mockserver.web.launch import connections_per_worker, run; "
            f"run('floor:create_rsgi', asgi=False, workers={workers}, address='127.0.0.1', port={port}, "
            f"limits=Limits(max_connections=connections_per_worker(None, {workers}), port={port}))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/x", proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def round_script(name: str, round_: int, per_round: int) -> str:
    """The wrk script of one operation in one round (lists: the 10,000 returns account)."""
    prefix = PATHS[name].split("?")[0] if "update" in name or "35up create" in name else ""
    script = LUA[name].format(key=KEY, list_key="zl_test_list10k", prefix=prefix, auth=AUTH_35UP)
    # Each round updates (and creates) returns of its own: a status moves once.
    return script.replace("local counter = 0", f"local counter = {round_ * per_round}")


def seed(url: str, returns: list[dict[str, Any]]) -> None:
    for start in range(0, len(returns), 10_000):
        answer = requests.post(url + "/__admin/seed", json={"returns": returns[start:start + 10_000]}, timeout=600)
        answer.raise_for_status()


def seed_all(url: str, per_thread: int, list_sizes: dict[str, int]) -> None:
    pl = {"order_id": "ord_seed", "reason": "defective", "items": [{"sku": "P", "quantity": 1}], "refund_amount": 1}
    up = {"items": [{"itemId": "1", "sku": "vendor_id/SKU1", "quantity": 1}]}
    for account, size in list_sizes.items():
        seed(url, [{"provider": "3plship", "account": account, "return": pl} for _ in range(size)])
    seed(url, [{"provider": "3plship", "account": KEY, "id": f"ret_b{t}x{n}", "return": pl}
               for t in range(2) for n in range(1, per_thread + 1)])
    seed(url, [{"provider": "35up", "account": "bench", "return": {**up, "orderId": f"u{t}x{n}"}}
               for t in range(2) for n in range(1, per_thread + 1)])


def wrk(url: str, script: str, duration: int, connections: int, threads: int = 2) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", fh.name,
                          url],
                         capture_output=True, text=True, timeout=duration + 60).stdout
    os.unlink(fh.name)

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([0-9.]+)(us|ms|s)\s*$", out, flags=re.M)
        if not found:
            return float("nan")
        value, unit = float(found.group(1)), found.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50_ms": ms("50"), "p99_ms": ms("99"),
            "requests": int(total.group(1)) if total else 0, "non_2xx": int(errors.group(1)) if errors else 0}


def postgres_rows(duration: int, connections: int) -> dict[str, dict[str, float]]:
    """3plship creates on the PostgreSQL store: one replica (its default workers), then two replicas (a worker
    each) on one database, each driven by its own wrk at once. A throwaway cluster with PostgreSQL's
    defaults: fsync and synchronous commits on (every acknowledged create is on disk)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pg import Cluster

    script = LUA["3plship create"].format(key=KEY)
    cluster = Cluster(durable=True).start()
    rows: dict[str, dict[str, float]] = {}
    try:
        url = cluster.new_database()
        port = free_port()
        one = start_mock(port, url)
        try:
            rows["postgres: one replica"] = wrk(f"http://127.0.0.1:{port}{PATHS['3plship create']}", script, duration,
                                                connections)
        finally:
            stop(one)
        ports = [free_port(), free_port()]
        pair = [start_mock(p, url, "--workers", "1") for p in ports]
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                both = list(pool.map(lambda p: wrk(f"http://127.0.0.1:{p}{PATHS['3plship create']}", script,
                                                   duration, connections // 2, threads=1), ports))
        finally:
            for proc in pair:
                stop(proc)
        rows["postgres: two replicas"] = {"rps": sum(r["rps"] for r in both),
                                          "p50_ms": max(r["p50_ms"] for r in both),
                                          "p99_ms": max(r["p99_ms"] for r in both),
                                          "requests": sum(r["requests"] for r in both),
                                          "non_2xx": sum(r["non_2xx"] for r in both)}
    finally:
        cluster.destroy()
    return rows


def in_process(count: int) -> dict[str, dict[str, float]]:
    import responses

    from mockserver import mock_providers

    body = {"order_id": "ord_bench", "reason": "defective", "items": [{"sku": "P", "quantity": 1}],
            "refund_amount": 1}
    url = "https://app.3plship.com/api/v1/returns"
    headers = {"Authorization": f"Bearer {KEY}"}
    results: dict[str, dict[str, float]] = {}

    def rate(call: Any) -> float:
        started = time.perf_counter()
        for _ in range(count):
            call()
        return count / (time.perf_counter() - started)

    with responses.RequestsMock() as floor:
        floor.add_callback("POST", url, callback=lambda r: (201, {}, b"{}"))
        floor.add_callback("GET", url, callback=lambda r: (200, {}, b"{}"))
        floor_post = rate(lambda: requests.post(url, json=body, headers=headers))
        floor_get = rate(lambda: requests.get(url, params={"limit": 50}, headers=headers))
    with mock_providers():
        create = rate(lambda: requests.post(url, json=body, headers=headers))
        listing = rate(lambda: requests.get(url, params={"limit": 50}, headers=headers))
    results["in-process create"] = {"calls_per_s": create, "floor": floor_post, "ratio": create / floor_post}
    results["in-process list"] = {"calls_per_s": listing, "floor": floor_get, "ratio": listing / floor_get}
    return results


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (the server and its workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        found.append(current)
        todo += [int(c) for c in children]
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its descendants (a server's workers, a database's backends),
    with what its finished children used."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if member == pid else 0)
    return total / os.sysconf("SC_CLK_TCK")


def common_arguments(parser: argparse.ArgumentParser, json_default: str, rounds: int, per_thread: int) -> None:
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"paired rounds (default {rounds})")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--per-thread", type=int, default=per_thread,
                        help=f"returns seeded per wrk thread for updates (default {per_thread})")
    parser.add_argument("--json", default=json_default, help="where to write the figures")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB."""
    total = 0
    for member in process_tree(pid):
        try:
            found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{member}/status").read_text(), flags=re.M)
        except OSError:
            continue
        total += int(found.group(1)) if found else 0
    return total / 1024


def median_row(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, "bench-results.json", rounds=3, per_thread=60_000)
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL rows (informative, no target)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("make bench needs wrk: apt-get install wrk (Debian package)", file=sys.stderr)
        return 2
    workers = os.cpu_count() or 1
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LUA}
    with tempfile.TemporaryDirectory() as tmp:
        mock_port, floor_port = free_port(), free_port()
        mock = start_mock(mock_port, f"sqlite:{Path(tmp) / 'bench.db'}")
        floor = start_floor(floor_port, workers)
        try:
            mock_url, floor_url = f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{floor_port}"
            print(f"seeding (1,000 + 10,000 + 100,000 returns to list, {2 * args.per_thread:,} per update "
                  f"operation), then {args.rounds} paired rounds of {len(LUA)} operations...", flush=True)
            seed_all(mock_url, args.per_thread, {"zl_test_list1k": 1_000, "zl_test_list10k": 10_000,
                                                 "zl_test_list100k": 100_000})
            memory = [rss_mb(mock.pid)]
            for round_ in range(args.rounds):
                for name in LUA:
                    script = round_script(name, round_, args.per_thread // args.rounds)
                    floor_row = wrk(floor_url + PATHS[name], script, args.duration, args.connections)
                    mock_row = wrk(mock_url + PATHS[name], script, args.duration, args.connections)
                    runs[name].append({**mock_row, "floor_rps": floor_row["rps"], "floor_p99_ms": floor_row["p99_ms"],
                                       "ratio": mock_row["rps"] / floor_row["rps"] if floor_row["rps"] else 0.0,
                                       "p99_ratio": mock_row["p99_ms"] / floor_row["p99_ms"]
                                       if floor_row["p99_ms"] else float("inf")})
                memory.append(rss_mb(mock.pid))
                print(f"  round {round_ + 1}: " + ", ".join(f"{n} {runs[n][-1]['ratio']:.2f}" for n in LUA), flush=True)
            served = sum(r["requests"] for rs in runs.values() for r in rs)
            scaling = {}
            for size in ("1k", "100k"):
                script = LUA["3plship list"].format(list_key=f"zl_test_list{size}")
                scaling[size] = wrk(mock_url + PATHS["3plship list"], script, args.duration, args.connections)
        finally:
            stop(mock)
            stop(floor)
    rows: dict[str, dict[str, Any]] = {name: median_row(rs) for name, rs in runs.items()}
    create_floor = rows["3plship create"]["floor_rps"]
    extra: dict[str, dict[str, Any]] = {}
    if not args.no_postgres:
        for name, row in postgres_rows(args.duration, args.connections).items():
            extra[name] = {**row, "floor_rps": create_floor, "floor_p99_ms": rows["3plship create"]["floor_p99_ms"],
                           "ratio": row["rps"] / create_floor if create_floor else 0.0}
    inproc_runs = [in_process(3000) for _ in range(args.rounds)]
    inproc = {name: median_row([r[name] for r in inproc_runs]) for name in inproc_runs[0]}

    print(f"\n{'operation':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'floor req/s':>13}{'floor p99':>11}"
          f"{'ratio':>8}{'non-2xx':>9}")
    for name, r in {**rows, **extra}.items():
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['floor_rps']:>13.0f}"
              f"{r['floor_p99_ms']:>11.2f}{r['ratio']:>8.2f}{r['non_2xx']:>9.0f}")
    print(f"(median of {args.rounds} paired rounds; PostgreSQL rows: one run, fsync on, informative; "
          "bench/postgres.py compares every operation with SQLite)" if extra else
          f"(median of {args.rounds} paired rounds)")
    list_ratio = scaling["1k"]["rps"] / scaling["100k"]["rps"] if scaling["100k"]["rps"] else float("inf")
    print(f"\nlist page over 100,000 vs 1,000 stored returns: {scaling['100k']['rps']:.0f} vs "
          f"{scaling['1k']['rps']:.0f} req/s -> time ratio {list_ratio:.2f}")
    for name, r in inproc.items():
        print(f"{name:<24}{r['calls_per_s']:>10.0f} calls/s   floor {r['floor']:.0f}   ratio {r['ratio']:.2f}")
    growth = memory[-1] - memory[1]
    print(f"server memory over {served:,} requests: {memory[1]:.0f} MB after the first round, "
          f"{memory[-1]:.0f} MB after the last")

    targets = {
        **{f"{name} >= 0.4 of the floor": rows[name]["ratio"] >= 0.4 for name in rows},
        **{f"{name} p99 <= 2x the floor's": rows[name]["p99_ratio"] <= 2 for name in rows},
        "list over 100k <= 1.5x its time over 1k": list_ratio <= 1.5,
        **{f"{name} >= 0.7 of a responses callback": inproc[name]["ratio"] >= 0.7 for name in inproc},
        "memory flat (<= 5% growth after the first round)": growth <= 0.05 * memory[1],
        "no non-2xx answers": all(r["non_2xx"] == 0 for rs in runs.values() for r in rs),
    }
    print()
    for target, held in targets.items():
        print(f"{'PASS' if held else 'MISS'}  {target}")
    Path(args.json).write_text(json.dumps({"workers": workers, "connections": args.connections,
                                           "duration_s": args.duration, "rounds": args.rounds,
                                           "operations": rows, "runs": runs, "postgres": extra,
                                           "list_scaling": {**scaling, "time_ratio": list_ratio},
                                           "in_process": inproc, "memory_mb": memory, "targets": targets},
                                          indent=2))
    print(f"\nJSON: {args.json}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
