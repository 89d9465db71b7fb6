"""The shadow in front of the mock itself: every difference it reports would be a false alarm.

The documentation's curl flows and schemathesis (every check, both providers, two accounts each, so its negative
and auth checks send refused credentials too) go through `returns-mock proxy --shadow --record` in front
of `returns-mock serve`: the live report is empty, and `returns-mock drift` on the proxy's own recording
gives the same report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from helpers import PL, UP35, Server, cli, doc_blocks

RUNS = [
    ("3plship", PL, ["-H", "Authorization: Bearer zl_test_twin_first"]),
    ("3plship", PL, ["-H", "Authorization: Bearer zl_live_twin_second"]),
    ("35up", UP35, ["--auth", "shop-a:secret"]),
    ("35up", UP35, ["--auth", "shop-b:other"]),
]


def curl_flow(section: str, base: str, tmp_path: Path) -> None:
    (script,) = doc_blocks(section)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8080", base)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_readme_flows_and_schemathesis_in_front_of_the_mock_give_no_drift_live_or_offline(tmp_path: Path) -> None:
    upstream = Server("--store", "memory").start()
    har = tmp_path / "twin.har"
    proxy = Server("--3plship-upstream", f"{upstream.url}{PL}", "--35up-upstream", f"{upstream.url}{UP35}", "--shadow",
                   "--record", str(har), "--journal-size", "100000", command="proxy").start()
    try:
        for section in ("35up with curl", "3plship with curl"):
            curl_flow(section, proxy.url, tmp_path)
        for provider, prefix, auth in RUNS:
            # Webhook subscriptions are left out: the upstream would deliver to the URLs schemathesis makes up.
            subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run",
                            f"{upstream.url}/{provider}/openapi.json", "--url", f"{proxy.url}{prefix}", *auth,
                            "--checks", "all", "--max-examples", "10", "--seed", "1", "--no-color",
                            "--exclude-operation-id", "createWebhook"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
        live: dict[str, Any] = requests.get(f"{proxy.url}/__admin/drift", timeout=30).json()
    finally:
        proxy.stop()
        upstream.stop()
    assert live["entries"] == [], live["entries"][:3]
    assert live["summary"]["diverged"] == 0 and live["summary"]["uncompared"] == 0
    entries = json.loads(har.read_text())["log"]["entries"]
    # What the proxy refuses itself is recorded, not shadowed: schemathesis' TRACE (405) and its path probe with
    # a backslash (400), neither forwarded.
    refused = [e for e in entries if e.get("_answered_by") == "proxy"]
    assert {(e["request"]["method"], e["response"]["status"]) for e in refused} <= {("TRACE", 405), ("GET", 400)}
    assert live["summary"]["exchanges"] == len(entries) - len(refused) > 300
    # What the traffic held: refused credentials and several accounts of each provider.
    assert sum(e["response"]["status"] == 401 for e in entries) > 10
    assert len({e["_account_id"] for e in entries if "_account_id" in e}) >= 3  # the curl flow's key, and two
    assert len({e["_account"] for e in entries if "_account" in e}) >= 3
    replayed = cli("drift", str(har), "--format", "json", timeout=300)
    assert replayed.returncode == 0, replayed.stdout[-2000:] + replayed.stderr
    assert json.loads(replayed.stdout) == live
