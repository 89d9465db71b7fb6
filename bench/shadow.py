"""The shadow proxy's own cost: the same requests through `returns-mock proxy` and `returns-mock proxy
--shadow`, each in front of its own upstream (`returns-mock serve`, in-memory store, one worker: the
mirror must see every request its upstream does), alternating in paired
rounds under wrk. Quoted as the shadow's requests/s as a ratio to the plain proxy's of the same round,
and as the time it adds to an exchange at that load. Its drift must stay zero (an upstream identical to
the mock). Loopback only; every run is bounded by --duration.

    python bench/shadow.py [--duration 5] [--rounds 3] [--connections 1,8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import KEY, LUA, free_port, start_mock, stop, wait_up, wrk


def start_proxy(port: int, upstream: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "mockserver.cli", "proxy", "--port", str(port),
                             "--3plship-upstream", f"{upstream}/3plship/api/v1", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(f"http://127.0.0.1:{port}/", proc)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,8", help="wrk connections: one run per count (default 1,8)")
    args = parser.parse_args()
    for connections in (int(c) for c in args.connections.split(",")):
        measure(args.duration, args.rounds, connections)


def measure(duration: int, rounds: int, connections: int) -> None:
    plain_port, shadow_port = free_port(), free_port()
    upstreams = [(port, start_mock(port, "memory", "--workers", "1")) for port in (free_port(), free_port())]
    plain = start_proxy(plain_port, f"http://127.0.0.1:{upstreams[0][0]}")
    # The mirror keeps every return of the run (it keeps --journal-size of them): every exchange is compared.
    shadow = start_proxy(shadow_port, f"http://127.0.0.1:{upstreams[1][0]}", "--shadow", "--journal-size", "1000000")
    operations = {"3plship create": ("POST", "/3plship/api/v1/returns", LUA["3plship create"].format(key=KEY)),
                  "3plship list": ("GET", "/3plship/api/v1/returns?limit=20",
                                   f'wrk.headers["Authorization"] = "Bearer {KEY}"\n')}
    try:
        rows: dict[str, list[tuple[float, float]]] = {name: [] for name in operations}
        threads = min(2, connections)  # wrk needs a connection per thread
        for _ in range(rounds):
            for name, (_, path, script) in operations.items():
                first = wrk(f"http://127.0.0.1:{plain_port}{path}", script, duration, connections, threads)
                second = wrk(f"http://127.0.0.1:{shadow_port}{path}", script, duration, connections, threads)
                rows[name].append((first["rps"], second["rps"]))
        report = requests.get(f"http://127.0.0.1:{shadow_port}/__admin/drift", timeout=30).json()
        drift = report["summary"]
        for entry in report["entries"][:3]:  # what diverged, if anything did
            print(entry["method"], entry["path"], entry["upstream_status"], entry["mock_status"],
                  entry["differences"][:3])
    finally:
        for proc in (shadow, plain, *(proc for _, proc in upstreams)):
            stop(proc)
    print(f"proxy --shadow against the plain proxy, {connections} connections, "
          f"median of {rounds} paired rounds:")
    for name, pairs in rows.items():
        ratio = statistics.median(s / p for p, s in pairs)
        plain_rps, shadow_rps = statistics.median(p for p, _ in pairs), statistics.median(s for _, s in pairs)
        added_ms = connections * (1 / shadow_rps - 1 / plain_rps) * 1000
        print(f"  {name}: {ratio:.2f} of the plain proxy's requests/s ({shadow_rps:.0f} vs {plain_rps:.0f}), "
              f"{added_ms:+.2f} ms per exchange")
    print(f"  drift over {drift['exchanges']} shadowed exchanges: {drift['diverged']} diverged, "
          f"{drift['uncompared']} not compared")


if __name__ == "__main__":
    main()
