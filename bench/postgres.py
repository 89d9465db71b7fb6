"""The PostgreSQL store against the SQLite store, operation by operation, in one sitting.

`python bench/postgres.py` starts a throwaway PostgreSQL cluster with PostgreSQL's defaults (fsync and
synchronous_commit on: every acknowledged write is on disk), one `returns-mock serve` on it and one on a
SQLite file (each with its default workers: one per CPU, two for PostgreSQL), seeds both alike, and
drives each operation with wrk on both, alternating, for --rounds rounds. Each figure is PostgreSQL's
requests/s as a ratio to SQLite's in the same round (median of the rounds). The targets of the
PostgreSQL issue are checked at the end (exit 1 on a miss).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from run import (
    LUA,
    PATHS,
    common_arguments,
    cpu_seconds,
    free_port,
    round_script,
    seed_all,
    start_mock,
    stop,
    wrk,
)

HERE = Path(__file__).resolve().parent
ROUND_TRIP_REQUESTS = {
    "3plship create": ("POST", "/3plship/api/v1/returns", [("Authorization", "Bearer zl_test_trips"),
                                                          ("Content-Type", "application/json")],
                       b'{"order_id":"o","reason":"defective","items":[{"sku":"P","quantity":1}],"refund_amount":1}'),
    "35up create": ("POST", "/35up/v1/returns", [("Authorization", "Basic dHJpcHM6dHJpcHM="),
                                                 ("Content-Type", "application/json")],
                    lambda n: b'{"orderId":"o%d","items":[{"itemId":"1","sku":"v/S","quantity":1}]}' % n),
}
TARGETS = {"3plship create": 0.4, "3plship status update": 0.4, "35up create": 0.55, "35up update": 0.45,
           "3plship list": 0.35}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, "bench-postgres.json", rounds=3, per_thread=60_000)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    from pg import Cluster, round_trips

    cluster = Cluster(durable=True).start()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in LUA}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ports = {"sqlite": free_port(), "postgresql": free_port()}
            servers = {"sqlite": start_mock(ports["sqlite"], f"sqlite:{Path(tmp) / 'bench.db'}"),
                       "postgresql": start_mock(ports["postgresql"], cluster.new_database())}
            database = int((cluster.data / "postmaster.pid").read_text().split()[0])
            try:
                urls = {engine: f"http://127.0.0.1:{port}" for engine, port in ports.items()}
                print(f"seeding both stores, then {args.rounds} rounds of {len(LUA)} operations...", flush=True)
                for url in urls.values():
                    seed_all(url, args.per_thread, {"zl_test_list1k": 1_000, "zl_test_list10k": 10_000,
                                                    "zl_test_list100k": 100_000})
                for round_ in range(args.rounds):
                    for name in LUA:
                        script = round_script(name, round_, args.per_thread // args.rounds)
                        sqlite = wrk(urls["sqlite"] + PATHS[name], script, args.duration, args.connections)
                        before = cpu_seconds(servers["postgresql"].pid), cpu_seconds(database)
                        postgres = wrk(urls["postgresql"] + PATHS[name], script, args.duration, args.connections)
                        mock_cpu = cpu_seconds(servers["postgresql"].pid) - before[0]
                        database_cpu = cpu_seconds(database) - before[1]
                        served = postgres["requests"] or 1
                        runs[name].append({"sqlite_rps": sqlite["rps"], "postgres_rps": postgres["rps"],
                                           "postgres_p99_ms": postgres["p99_ms"],
                                           "mock_cpu_us": mock_cpu / served * 1e6,
                                           "database_cpu_us": database_cpu / served * 1e6,
                                           "non_2xx": sqlite["non_2xx"] + postgres["non_2xx"],
                                           "ratio": postgres["rps"] / sqlite["rps"] if sqlite["rps"] else 0.0})
                    print(f"  round {round_ + 1}: " + ", ".join(f"{n} {runs[n][-1]['ratio']:.2f}" for n in LUA),
                          flush=True)
                trips = round_trips(cluster.new_database(), ROUND_TRIP_REQUESTS)
                scaling = {size: wrk(urls["postgresql"] + PATHS["3plship list"],
                                     LUA["3plship list"].format(list_key=f"zl_test_list{size}"), args.duration,
                                     args.connections) for size in ("1k", "100k")}
            finally:
                for server in servers.values():
                    stop(server)
    finally:
        cluster.destroy()
    rows = {name: {key: statistics.median(run[key] for run in rs) for key in rs[0]} for name, rs in runs.items()}
    print(f"\n{'operation':<24}{'SQLite req/s':>14}{'PostgreSQL req/s':>18}{'ratio':>8}{'PG p99 ms':>11}"
          f"{'mock CPU us':>13}{'database CPU us':>17}")
    for name, r in rows.items():
        print(f"{name:<24}{r['sqlite_rps']:>14.0f}{r['postgres_rps']:>18.0f}{r['ratio']:>8.2f}"
              f"{r['postgres_p99_ms']:>11.2f}{r['mock_cpu_us']:>13.0f}{r['database_cpu_us']:>17.0f}")
    print("\nscale model (CPU per request as measured; a core of either kind does 1e6 / us requests a second):")
    for name, r in rows.items():
        per_mock, per_db = 1e6 / r["mock_cpu_us"], 1e6 / r["database_cpu_us"]
        print(f"  {name:<22} {per_mock:>6.0f}/s per mock core, {per_db:>6.0f}/s per database core; "
              f"a database of 8 cores: {8 * per_db:>6.0f}/s, reached by {8 * per_db / per_mock:.1f} mock cores")
    time_ratio = scaling["1k"]["rps"] / scaling["100k"]["rps"] if scaling["100k"]["rps"] else float("inf")
    print(f"PostgreSQL list over 100,000 vs 1,000 stored returns: time ratio {time_ratio:.2f}")
    print("(PostgreSQL with fsync and synchronous_commit on; median of the rounds)")
    print("round trips to the database per request (libpq-traced; journal batches included): "
          + ", ".join(f"{name} {n:.2f}" for name, n in trips.items()))
    targets = {**{f"{name} >= {floor} of SQLite": rows[name]["ratio"] >= floor for name, floor in TARGETS.items()},
               "list over 100k <= 1.5x its time over 1k": time_ratio <= 1.5,
               "3plship create <= 6 round trips": trips["3plship create"] <= 6,
               "35up create <= 3 round trips": trips["35up create"] <= 3,
               "no non-2xx answers": all(r["non_2xx"] == 0 for rs in runs.values() for r in rs)}
    print()
    for target, held in targets.items():
        print(f"{'PASS' if held else 'MISS'}  {target}")
    Path(args.json).write_text(json.dumps({"operations": rows, "runs": runs, "list_time_ratio": time_ratio,
                                           "round_trips": trips,
                                           "targets": targets}, indent=2))
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
