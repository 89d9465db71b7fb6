"""The way in: the command wherever a user is (python -m mockserver), a mistyped flag or subcommand
answered with the closest one, and a path under no provider answered with the providers' prefixes and the
closest served path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers import PL, ROOT, UP35, Server, bearer

from mockserver.contract.hints import closest_path
from mockserver.domain.config import Config
from mockserver.store import MemoryStore
from mockserver.web import create_app


@pytest.fixture
def client():  # type: ignore[no-untyped-def]
    return create_app(Config(), store=MemoryStore()).test_client()


@pytest.mark.parametrize(("path", "meant"), [
    ("/api/v1/returns", f"{PL}/returns"),  # the real 3plship base path kept
    ("/v1/returns/42346434", f"{UP35}/returns/42346434"),  # the real 35up base path kept
    ("/returns", None),  # either provider's: no guess
    ("/__admin/journa", "/__admin/journal"),
    ("/__admin/returns/35up/42/statu", "/__admin/returns/35up/42/status"),
    ("/favicon.ico", None),
])
def test_a_path_under_no_provider_names_the_prefixes_and_the_closest_path(client, path: str,  # type: ignore[no-untyped-def]
                                                                          meant: str | None) -> None:
    answer = client.get(path)
    assert answer.status_code == 404 and answer.is_json  # no provider's format applies: the control plane's JSON
    error = answer.get_json()["error"]
    assert error["code"] == "not_found"
    (detail,) = error["details"]
    assert detail["prefixes"] == {"35up": UP35, "3plship": PL}
    assert f"35up under {UP35}, 3plship under {PL} and the control plane under /__admin" in error["message"]
    assert detail.get("closest") == meant
    assert (f"did you mean {meant}?" in error["message"]) == (meant is not None)


@pytest.mark.parametrize(("path", "meant"), [
    ("/3plship/v1/returns", f"{PL}/returns"),  # a segment of the prefix missing
    ("/3plship/api/v1/return", f"{PL}/returns"),
    ("/3plship/api/v1/nothing", None),  # a shared prefix alone is no likeness
])
def test_a_path_under_a_provider_name_gets_the_hint_in_the_providers_format(client, path: str,  # type: ignore[no-untyped-def]
                                                                            meant: str | None) -> None:
    error = client.get(path, headers=bearer()).get_json()["error"]
    assert error["code"] == "NOT_FOUND" and error["details"]["issue"] == error["message"]
    assert f"This mock serves 3plship under {PL}" in error["message"]
    assert (f"did you mean {meant}?" in error["message"]) == (meant is not None)
    up = client.get("/35up/returns", headers={"Authorization": "Basic c2hvcDpwdw=="}).get_json()["error"]
    assert up["code"] == "not_found" and up["message"].endswith(f"did you mean {UP35}/returns?")


def test_the_closest_path_fills_parameters_from_the_request() -> None:
    templates = ["/35up/v1/returns", "/35up/v1/returns/<order_id>", "/3plship/api/v1/returns/{id}/refund"]
    assert closest_path("/api/v1/returns/ret_1/refund", templates) == "/3plship/api/v1/returns/ret_1/refund"
    assert closest_path("/35up/v1/returns/1/x", templates) is None


def test_python_dash_m_mockserver_is_the_command() -> None:
    shown = subprocess.run([sys.executable, "-m", "mockserver", "--version"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and shown.stdout.startswith("returns-mock "), shown.stderr
    helped = subprocess.run([sys.executable, "-m", "mockserver", "serve", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0 and "usage: returns-mock serve" in helped.stdout


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["serve", "--prot", "9999"], "did you mean --port?"),
    (["serv"], "did you mean serve?"),
    (["verify", "--provider", "3plshp", "--base-url", "http://127.0.0.1:9/x"], "did you mean 3plship?"),
    (["proxy", "--3plship-upstrem", "http://127.0.0.1:9/x"], "did you mean --3plship-upstream?"),
    (["drift", "x.har", "--formt", "json"], "did you mean --format?"),
])
def test_a_mistyped_flag_or_subcommand_suggests_the_closest(argv: list[str], suggestion: str) -> None:
    ran = subprocess.run([sys.executable, "-c", "import sys; from mockserver.cli import main; sys.exit(main())",
                          *argv], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2, ran.stderr
    (line,) = ran.stderr.splitlines()  # one line
    assert line.startswith("returns-mock: error: ") and line.endswith(f"({suggestion})"), line


def test_a_flag_nothing_resembles_gets_no_guess() -> None:
    ran = subprocess.run([sys.executable, "-m", "mockserver", "serve", "--xyzzy"], capture_output=True, text=True,
                         timeout=60)
    assert ran.returncode == 2 and ran.stderr.strip() == "returns-mock: error: unrecognized arguments: --xyzzy"


@pytest.mark.system
def test_make_run_says_where_the_command_is_and_the_banner_names_the_dashboard() -> None:
    dry = subprocess.run(["make", "--no-print-directory", "-n", "run", "PORT=9123"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    (said,) = [line for line in dry.stdout.splitlines() if line.startswith("echo ")]
    assert "the returns-mock command is .venv/bin/returns-mock" in said and ". .venv/bin/activate" in said
    server = Server("--store", "memory").start()
    try:
        dashboard = requests.get(f"{server.url}/__admin/", timeout=10)
    finally:
        server.stop()
    assert f"dashboard: {server.url}/__admin/" in server.output.splitlines()
    assert dashboard.status_code == 200 and "text/html" in dashboard.headers["Content-Type"]


@pytest.mark.parametrize("made", [
    "node_modules/dredd/package.json", "package.json", "package-lock.json",  # npm install dredd@14.1.0
    "site/index.html",  # make docs
    "3plship.json", "client.yaml", "threeplship-client/pyproject.toml",  # the typed client's steps
    "verify-3plship.xml", "verify-35up.xml", "traffic.har",  # the CI examples
    "returns-mock.db", "returns-mock.db-requests",  # make run
    ".hypothesis/examples/x",  # pytest --returns-mock-fuzz
])
def test_what_the_docs_steps_create_is_ignored_by_git(made: str) -> None:
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", made], cwd=ROOT, timeout=60)
    assert ignored.returncode == 0, f"{made} would show as untracked after following the docs"


def _bench_all(tmp_path: Path, *scripts: str, gate: bool = False) -> subprocess.CompletedProcess[str]:
    args = [f"--script={name}={sys.executable} {tmp_path / name}.py" for name in scripts]
    return subprocess.run([sys.executable, str(ROOT / "bench" / "all.py"), *args, *(["--gate"] if gate else [])],
                          capture_output=True, text=True, timeout=60)


def test_make_bench_runs_every_benchmark_and_says_each_target_met_or_missed(tmp_path: Path) -> None:
    (tmp_path / "floor.py").write_text("print('PASS  3plship create >= 0.4 of the floor')\n"
                                       "print('MISS  35up update >= 0.4 of the floor')\nraise SystemExit(1)\n")
    (tmp_path / "shadow.py").write_text("print('proxy --shadow against the plain proxy, 8 connections, median')\n"
                                        "print('  drift over 120 shadowed exchanges: 0 diverged')\n")
    ran = _bench_all(tmp_path, "floor", "shadow")
    assert ran.returncode == 0, ran.stdout  # a missed target is news, not a failure, unless GATE=1
    summary = ran.stdout.split("== make bench: targets\n", 1)[1].splitlines()
    assert summary[:3] == ["met     3plship create >= 0.4 of the floor", "MISSED  35up update >= 0.4 of the floor",
                           "met     shadow: no drift over 120 shadowed exchanges at 8 connections (0 diverged)"]
    assert "== shadow" in ran.stdout  # the second ran after the first missed
    assert _bench_all(tmp_path, "floor", "shadow", gate=True).returncode == 1
    (tmp_path / "broken.py").write_text("raise RuntimeError('no wrk')\n")
    broken = _bench_all(tmp_path, "broken", "shadow")
    assert broken.returncode == 2 and "FAILED TO RUN  broken: exit 1" in broken.stdout
    dry = subprocess.run(["make", "--no-print-directory", "-n", "bench", "GATE=1"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert "bench/all.py --gate" in dry.stdout
    assert "--gate" not in subprocess.run(["make", "--no-print-directory", "-n", "bench"], capture_output=True,
                                          text=True, timeout=60, cwd=ROOT).stdout


def test_the_proxy_answers_a_path_under_no_provider_in_json_with_the_same_hint() -> None:
    """The proxy's own routes are its providers' prefixes and /__admin: anything else was Flask's HTML page."""
    from mockserver.proxy import ProxyConfig, create_proxy_app

    proxy = create_proxy_app(ProxyConfig(upstreams={"3plship": "http://127.0.0.1:9/api/v1"})).test_client()
    lost = proxy.get("/api/v1/returns")
    assert lost.status_code == 404 and lost.is_json
    (detail,) = lost.get_json()["error"]["details"]
    assert detail["prefixes"] == {"3plship": PL} and detail["closest"] == f"{PL}/returns"
    wrong = proxy.put("/__admin/health")
    assert wrong.status_code == 405 and wrong.is_json and "GET" in wrong.headers["Allow"]
    assert proxy.get("/__admin/journa").get_json()["error"]["details"][0]["closest"] == "/__admin/journal"
