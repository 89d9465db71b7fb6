"""The examples of README.md and of the documentation site (docs/) are run, so they stay true: each shell
and Python block is run by a test, or says in its own text why not."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pg
import pytest
import requests
from helpers import PL, ROOT, UP35, Server, cli, doc_blocks, doc_files, doc_section, fixture, shell_commands
from pg import Cluster

pytestmark = pytest.mark.system

section = doc_section
readme_blocks = doc_blocks


def test_the_fixture_examples_pass(pytester: pytest.Pytester) -> None:
    (source,) = re.findall(r"```python\n(.*?)```", section("In your pytest suite: no server needed"), flags=re.S)
    pytester.makepyfile(test_readme_example=source)
    pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-strict").assert_outcomes(passed=3)


def test_the_python_example_runs() -> None:
    (source,) = re.findall(r"```python\n(.*?)```", section("The app in-process, with your own clock"), flags=re.S)
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert tests
    for test in tests:
        test()


def test_the_client_fuzzing_example_fails_as_shown_and_passes_once_fixed(tmp_path: Path) -> None:
    text = section("A first fuzzed test")
    (source,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (command,) = blocks_in(text, "sh")
    (shown,) = re.findall(r"```\n(E .*?)```", text, flags=re.S)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_tracking.py").write_text(source)
    argv = shlex.split(command.strip())
    assert argv[0] == "pytest"
    plain = subprocess.run([sys.executable, "-m", "pytest", "tests/test_tracking.py", "-p", "no:cacheprovider"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stdout  # as the README says: it passes against the mock's habits
    run = subprocess.run([sys.executable, "-m", *argv, "--returns-mock-fuzz-seed=1", "-p", "no:cacheprovider"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout + run.stderr
    for line in shown.splitlines():
        assert line in run.stdout, (line, run.stdout)
    naive = '    assert tracking["tracking_url"].startswith("https://")  # the naive line\n'
    assert naive in source
    (tmp_path / "tests" / "test_tracking.py").write_text(source.replace(naive, (
        '    link = tracking["tracking_url"]\n    assert link is None or link.startswith("https://")\n')))
    fixed = subprocess.run([sys.executable, "-m", "pytest", "--returns-mock-fuzz=200", "tests/test_tracking.py",
                            "-p", "no:cacheprovider"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def blocks_in(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("section", ["35up with curl", "3plship with curl"])
def test_the_curl_examples_work_against_the_server(section: str, tmp_path: Path) -> None:
    (script,) = doc_blocks(section)
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        script = script.replace("http://127.0.0.1:8080", server.url)
        # Print each shown answer's HTTP status after its body, to check them in order.
        script = re.sub(r"^curl -s ", "curl -s -w ' %{http_code}\\n' ", script, flags=re.M)
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=60)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    codes = [line.rsplit(" ", 1)[-1] for line in result.stdout.strip().splitlines() if line.strip()]
    expected = {"35up with curl": ["201", "200", "422", "409"],
                "3plship with curl": ["201", "200", "200", "200", "200"]}[section]
    assert codes == expected, (shlex.quote(script), result.stdout)


def test_the_verify_example_against_the_mock_passes(tmp_path: Path) -> None:
    section = doc_section("Contract checks in CI")
    (line,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock verify --provider 35up --base-url http://")]
    (serve,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock serve") and "--35up-user" in ln]
    server = Server(*shlex.split(serve)[2:-1]).start()  # the README's flags, on a free port
    try:
        args = shlex.split(line.replace("http://127.0.0.1:8080", server.url))[1:]
        result = cli(*args, "--max-examples", "5", timeout=300)
    finally:
        server.stop()
    assert result.returncode == 0, result.stdout


def test_the_plain_schemathesis_examples_pass_with_every_check(tmp_path: Path) -> None:
    """schemathesis run --checks all against the server: 3plship with any zl_test_ key, 35up with the
    credentials the server was started with (the README's two commands, on a free port, fewer examples)."""
    section = doc_section("Contract checks in CI")
    runs = [ln for ln in section.splitlines() if ln.startswith("schemathesis run ")]
    (serve,) = [ln for ln in section.splitlines() if ln.startswith("returns-mock serve") and "--35up-user" in ln]
    assert len(runs) == 2
    server = Server(*shlex.split(serve)[2:-1]).start()
    try:
        for line in runs:
            args = shlex.split(line.replace("http://127.0.0.1:8080", server.url))[2:]
            result = subprocess.run([str(Path(sys.executable).parent / "schemathesis"), "run", *args,
                                     "--max-examples", "5", "--seed", "1", "--no-color"],
                                    capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert result.returncode == 0, result.stdout[-3000:]
            cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
            assert cases is not None and cases.group(1) == cases.group(2), result.stdout[-3000:]
    finally:
        server.stop()


def test_the_control_plane_curl_examples_work(tmp_path: Path) -> None:
    (script,) = [b for b in doc_blocks("Control plane (`/__admin`)") if "/__admin/seed" in b]
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        script = re.sub(r"^curl -s ", "curl -s -w ' %{http_code}\\n' ", script.replace("http://127.0.0.1:8080",
                                                                                        server.url), flags=re.M)
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=60, cwd=ROOT)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.rsplit(" ", 1)[-1] for line in lines] == ["201", "200", "200", "200"]
    assert '"status":"expired"' in lines[2]


def test_the_signature_example_verifies_a_real_delivery_signature() -> None:
    text = section("Realism: rate limits, faults, webhooks")
    (source,) = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "verify_3plship_signature(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    from mockserver.providers.threeplship.webhooks import sign

    body = b'{"id": "evt_1", "type": "return.created"}'
    assert namespace["verify_3plship_signature"](body, sign(body, "whsec_abc"), "whsec_abc")
    assert not namespace["verify_3plship_signature"](body + b" ", sign(body, "whsec_abc"), "whsec_abc")


def _path_env(**extra: str) -> dict[str, str]:
    """The environment a README command runs in: this venv's commands (returns-mock, pytest) on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def _bash(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def test_the_sandbox_verify_commands_pass_against_the_mock_standing_in_for_the_sandbox(tmp_path: Path) -> None:
    """The CI job's two `verify` lines as written (budget, JUnit files, credentials from the environment),
    with the mock in the sandbox's place."""
    (block,) = [b for b in readme_blocks("Contract checks in CI") if "returns-mock verify" in b]
    commands = shell_commands(block)
    serve = next(c for c in commands if c.startswith("returns-mock serve"))
    server = Server(*shlex.split(serve)[2:-1]).start()
    try:
        sandbox = [c for c in commands if c.startswith("returns-mock verify") and "https://" in c]
        assert len(sandbox) == 2
        env = _path_env(THREEPLSHIP_TEST_KEY="zl_test_ci", UP35_USER="ci", UP35_PASSWORD="secret")
        for command in sandbox:
            command = command.replace("https://app.3plship.com/api/v1", server.url + PL).replace(
                "https://api.35up.io/v1", server.url + UP35)
            result = _bash(command, tmp_path, env)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    finally:
        server.stop()
    for report in ("verify-3plship.xml", "verify-35up.xml"):
        assert 'failures="0"' in (tmp_path / report).read_text()


def _proxy_from(command: str, upstream: Server, cwd: Path) -> Server:
    """The README's `returns-mock proxy ... &` line, with the local upstream in the provider's place."""
    command = command.replace("https://app.3plship.com/api/v1", upstream.url + PL).replace(
        "https://api.35up.io/v1", upstream.url + UP35).replace('"$SANDBOX_URL"', upstream.url + PL)
    args = shlex.split(command)[2:-1]
    at = args.index("--port")
    del args[at:at + 2]  # on a free port instead of 8090
    return Server(*args, command="proxy", cwd=cwd).start()


def test_the_proxy_recording_and_validate_har_examples(tmp_path: Path) -> None:
    (proxy_block,) = readme_blocks("The proxy: check live traffic against the contracts")[:1]
    (har_block,) = [b for b in readme_blocks("Contract checks in CI") if "validate-har" in b]
    upstream = Server("--store", "memory").start()
    try:
        (start,) = shell_commands(proxy_block)
        front = _proxy_from(start, upstream, tmp_path)
        try:  # the client, pointed at the proxy as the block's comment says
            through = f"{front.url}{PL}"
            assert "http://127.0.0.1:8090/3plship/api/v1" in proxy_block
            created = requests.post(f"{through}/returns", headers={"Authorization": "Bearer zl_test_demo"},
                                    json=fixture("3plship/create-return.minimal.request.json"), timeout=10)
            assert created.status_code == 201
            refused = requests.post(f"{through}/returns", headers={"Authorization": "Bearer zl_test_demo"},
                                    json={"order_id": "ord_1"}, timeout=10)  # the client's mistake
            assert refused.status_code == 422
        finally:
            front.stop()
    finally:
        upstream.stop()
    (tmp_path / "traffic.har").rename(tmp_path / "recorded.har")
    text, as_json = shell_commands(har_block)
    result = _bash(text, tmp_path, _path_env())
    assert result.returncode == 1 and "items" in result.stdout, result.stdout + result.stderr  # one violation
    result = _bash(as_json, tmp_path, _path_env())
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["checked"] == 2 and not report["ok"]
    assert {v["side"] for v in report["violations"]} == {"request"}


def _drift_shape(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """A drift report without what changes from run to run (ids, instants)."""
    return [(e["provider"], e["method"], re.sub(r"ret_\w+", "ret_ID", e["path"]), e["account"], e["upstream_status"],
             e["mock_status"], [(d["pointer"], d["kind"]) for d in e["differences"]]) for e in report["entries"]]


def test_the_shadow_proxy_example_gives_the_report_shown(tmp_path: Path) -> None:
    title = "The shadow proxy: is the mock still the provider's twin?"
    (block,) = readme_blocks(title)
    (shown,) = readme_blocks(title, "json")
    start, curl, offline = shell_commands(block)
    upstream = Server("--store", "memory", "--refund-business-days", "7", "--lifecycle", "permissive").start()
    try:
        front = _proxy_from(start, upstream, tmp_path)
        try:  # the client of the report's story
            pl, key = f"{front.url}{PL}", {"Authorization": "Bearer zl_test_demo123"}
            created = requests.post(f"{pl}/returns", headers=key, timeout=10, json={
                "order_id": "ord_abc123", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
                "refund_amount": 49.99}).json()["data"]
            for status in ("received", "inspected"):
                requests.patch(f"{pl}/returns/{created['id']}/status", headers=key, json={"status": status}, timeout=10)
            requests.post(f"{pl}/returns/{created['id']}/refund", headers=key, json={"amount": 49.99}, timeout=10)
            auth = ("my-shop", "secret")
            requests.post(f"{front.url}{UP35}/returns", auth=auth, timeout=10, json={
                "orderId": "42346434",
                "items": [{"itemId": "412412", "sku": "vendor_id/FEI60XX114014XXAPIP80", "quantity": 2}]})
            for status in ("customer_shipped", "seller_received"):
                requests.patch(f"{front.url}{UP35}/returns/42346434", auth=auth, json={"status": status}, timeout=10)
            result = _bash(curl.replace("127.0.0.1:8090", f"127.0.0.1:{front.port}"), tmp_path, _path_env())
            report = json.loads(result.stdout)
            assert _drift_shape(report) == _drift_shape(json.loads(shown))
            assert report["summary"] == json.loads(shown)["summary"]
        finally:
            front.stop()
    finally:
        upstream.stop()
    replayed = _bash(offline, tmp_path, _path_env())
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    assert "value at /data/refund/expected_at: recorded '" in replayed.stdout
    assert "mock_refuses at (status): recorded 200, mock 409" in replayed.stdout
    assert "  #7 PATCH /35up/v1/returns/42346434 (35up, my-shop, follows from #6): recorded 200, mock 409" \
        in replayed.stdout


INTEGRATION = '''
import os
import requests

BASE = os.environ["THREEPLSHIP_BASE_URL"]
KEY = {"Authorization": "Bearer zl_test_ci"}


def test_create_and_find_a_return():
    body = {"order_id": "ord_ci", "reason": "defective", "items": [{"sku": "P-1", "quantity": 1}], "refund_amount": 5}
    assert requests.post(f"{BASE}/returns", json=body, headers=KEY, timeout=10).status_code == 201
    assert requests.get(f"{BASE}/returns", params={"order_id": "ord_ci"}, headers=KEY, timeout=10).json()["data"]
'''

MISTAKE = '''
import os
import requests


def test_a_client_that_sends_a_quantity_of_zero():
    body = {"order_id": "ord_0", "reason": "defective", "items": [{"sku": "P-1", "quantity": 0}], "refund_amount": 5}
    answer = requests.post(f"{os.environ['THREEPLSHIP_BASE_URL']}/returns", json=body,
                           headers={"Authorization": "Bearer zl_test_ci"}, timeout=10)
    assert answer.status_code == 422
'''


def test_the_proxy_ci_job_example_fails_only_when_a_side_breaks_the_contract(tmp_path: Path) -> None:
    """The README's CI job as written: proxy with a recording, the team's integration tests through it,
    validate-har: exit 0 for a conforming client, 1 once a test sends what the contract forbids."""
    blocks = readme_blocks("The proxy: check live traffic against the contracts")
    (job,) = [b for b in blocks if "SANDBOX_URL" in b]
    start, run_tests, validate = shell_commands(job)
    (tmp_path / "tests" / "integration").mkdir(parents=True)
    (tmp_path / "tests" / "integration" / "test_returns.py").write_text(INTEGRATION)
    upstream = Server("--store", "memory").start()
    try:
        front = _proxy_from(start, upstream, tmp_path)
        try:
            env = _path_env()
            run = run_tests.replace("http://127.0.0.1:8090", front.url) + " -p no:cacheprovider -q"
            assert _bash(run, tmp_path, env).returncode == 0
            checked = _bash(validate, tmp_path, env)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            (tmp_path / "tests" / "integration" / "test_mistake.py").write_text(MISTAKE)
            assert _bash(run, tmp_path, env).returncode == 0  # the client's own test passes ...
            checked = _bash(validate, tmp_path, env)
            assert checked.returncode == 1 and "quantity" in checked.stdout, checked.stdout  # ... the job does not
        finally:
            front.stop()
    finally:
        upstream.stop()


def test_the_replica_commands_make_one_mock_of_two_servers(postgres_cluster: Cluster) -> None:
    """The PostgreSQL section's commands, with the suite's cluster as db.internal and loopback for 0.0.0.0
    (no test listens beyond this machine): createdb as the mock user, two replicas, one mock."""
    (block,) = readme_blocks("Many replicas: the PostgreSQL store")
    install, createdb, *replicas = shell_commands(block)
    assert install.startswith("pip install") and len(replicas) == 2
    postgres_cluster.sql(f"ALTER ROLE {pg.USER} CREATEDB")
    where = f"127.0.0.1:{postgres_cluster.port}"
    env = _path_env(PGPASSWORD=pg.PASSWORD, PGUSER=pg.USER, PGPORT=str(postgres_cluster.port))
    made = _bash(createdb.replace("createdb ", f"{postgres_cluster.bin / 'createdb'} ", 1).replace(
        "db.internal", "127.0.0.1"), ROOT, env)
    assert made.returncode == 0, made.stderr
    servers = []
    try:
        for line in replicas:
            line = line.split("#", 1)[0].replace("mock:secret@", f"{pg.USER}:{pg.PASSWORD}@").replace(
                "db.internal:5432", where).replace("db.internal", where).replace('"$TOKEN"', "t0ken")
            args = shlex.split(line)[2:]
            for flag in ("--host", "--port"):
                at = args.index(flag)
                del args[at:at + 2]
            servers.append(Server(*args, env={"PGPASSWORD": pg.PASSWORD}).start())
        one, two = servers
        created = requests.post(f"{one.url}{PL}/returns", headers={"Authorization": "Bearer zl_test_rep"},
                                json=fixture("3plship/create-return.minimal.request.json"), timeout=10)
        assert created.status_code == 201
        read = requests.get(f"{two.url}{PL}/returns", headers={"Authorization": "Bearer zl_test_rep"}, timeout=10)
        assert [r["id"] for r in read.json()["data"]] == [created.json()["data"]["id"]]
        assert created.headers["X-Returns-Mock-Worker"] != read.headers["X-Returns-Mock-Worker"]
    finally:
        for server in servers:
            server.stop()
        postgres_cluster.sql("DROP DATABASE IF EXISTS returns_mock")


def test_the_front_door_command_and_first_request_work(tmp_path: Path) -> None:
    """The README's first screen as a newcomer runs it in the checkout: the command where make run puts
    it, then the first request against a server (on a free port)."""
    (command,) = shell_commands(doc_blocks("Set up: two commands")[1])
    assert command.startswith(".venv/bin/returns-mock")
    assert (ROOT / ".venv" / "bin" / "returns-mock").exists(), "make run and make test put the command there"
    shown = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "serve" in shown.stdout, shown.stderr
    (first,) = doc_blocks("Set up: two commands")[2:]
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}").start()
    try:
        script = first.replace("http://127.0.0.1:8080", server.url).replace("curl -s ", "curl -s -w ' %{http_code}' ")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                                timeout=60)
    finally:
        server.stop()
    body, status = result.stdout.rsplit(" ", 1)
    assert status == "201", result.stdout + result.stderr
    assert [h["status"] for h in json.loads(body)["history"]] == ["created"]


def test_the_front_door_pytest_example_passes(pytester: pytest.Pytester) -> None:
    (source,) = doc_blocks("Client tests in pytest: no server needed", "python")
    pytester.makepyfile(test_readme_first_example=source)
    pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-strict").assert_outcomes(passed=1)


def test_the_front_door_verify_line_passes_against_the_mock() -> None:
    """The README's verify line is the CI guide's, which the sandbox test runs as written."""
    (line,) = shell_commands(doc_blocks("A contract check in CI")[0])
    guide = [c for b in doc_blocks("Contract checks in CI") for c in shell_commands(b)]
    assert line in guide
    assert "test_the_sandbox_verify_commands_pass_against_the_mock_standing_in_for_the_sandbox" in RUN_BY.values()


def test_the_front_door_shadow_proxy_lines_report_drift(tmp_path: Path) -> None:
    start, drift = shell_commands(doc_blocks("Check live traffic, and find drift: the proxies")[0])
    upstream = Server("--store", "memory").start()
    try:
        front = _proxy_from(start, upstream, tmp_path)
        try:
            created = requests.post(f"{front.url}{PL}/returns", headers={"Authorization": "Bearer zl_test_demo"},
                                    json=fixture("3plship/create-return.minimal.request.json"), timeout=10)
            assert created.status_code == 201
            result = _bash(drift.replace("127.0.0.1:8090", f"127.0.0.1:{front.port}"), tmp_path, _path_env())
        finally:
            front.stop()
    finally:
        upstream.stop()
    assert json.loads(result.stdout)["summary"] == {"exchanges": 1, "diverged": 0, "root_causes": 0,
                                                    "consequences": 0, "uncompared": 0}, result.stdout
    assert json.loads((tmp_path / "traffic.har").read_text())["log"]["entries"]


# Each shell and Python block of README.md and docs/, as "FILE: TEXT" (a text only that block of FILE holds):
# the test that runs it (in this file, or FILE::TEST). A block no test runs says why in its own text, as a
# comment its reader sees (NOT_RUN). A block that is neither fails the test below, and so does an entry
# that outlives its block.
RUN_BY = {
    "README.md: .venv/bin/returns-mock --help": "test_the_front_door_command_and_first_request_work",
    "README.md: curl -s -u shop-a:secret -X POST http://127.0.0.1:8080/35up/v1/returns -H":
        "test_the_front_door_command_and_first_request_work",
    "README.md: def test_a_return_is_created(returns_mock)": "test_the_front_door_pytest_example_passes",
    "README.md: returns-mock verify --provider 3plship": "test_the_front_door_verify_line_passes_against_the_mock",
    "README.md: returns-mock proxy --shadow": "test_the_front_door_shadow_proxy_lines_report_drift",
    "docs/guides/local-server.md: # Request a return (the guide's example":
        "test_the_curl_examples_work_against_the_server",
    "docs/guides/local-server.md: KEY=zl_test_demo123": "test_the_curl_examples_work_against_the_server",
    "docs/guides/client-tests.md: def test_35up_return_moves_along_its_lifecycle(returns_mock)":
        "test_the_fixture_examples_pass",
    "docs/guides/client-tests.md: def test_refund_completes_after_five_business_days()": "test_the_python_example_runs",
    "docs/guides/client-tests.md: from threeplship_client import AuthenticatedClient":
        "tests/test_generated_clients.py::test_the_readme_example_runs",
    "docs/guides/client-fuzzing.md: def test_tracking_link(returns_mock)":
        "test_the_client_fuzzing_example_fails_as_shown_and_passes_once_fixed",
    "docs/guides/client-fuzzing.md: pytest --returns-mock-fuzz=50 tests/test_tracking.py":
        "test_the_client_fuzzing_example_fails_as_shown_and_passes_once_fixed",
    "docs/guides/client-fuzzing.md: def test_each_refund_is_booked_once(returns_mock_webhooks)":
        "tests/test_fuzz_consumer.py::test_the_guides_consumer_example_passes_fuzzed_runs",
    "docs/guides/ci-contract-checks.md: returns-mock verify --provider 3plship --base-url https://":
        "test_the_sandbox_verify_commands_pass_against_the_mock_standing_in_for_the_sandbox",
    "docs/guides/ci-contract-checks.md: schemathesis run ":
        "test_the_plain_schemathesis_examples_pass_with_every_check",
    "docs/guides/ci-contract-checks.md: returns-mock serve --store memory --self-check &":
        "tests/test_npm_tools.py::test_the_readme_dredd_commands_send_every_example_and_get_the_documented_answers",
    "docs/guides/ci-contract-checks.md: returns-mock validate-har recorded.har":
        "test_the_proxy_recording_and_validate_har_examples",
    "docs/guides/ci-contract-checks.md: from pact import Verifier":
        "tests/test_pact.py::test_the_readme_verification_passes_for_pacts_the_mock_honours",
    "docs/guides/proxy-and-shadow.md: returns-mock proxy --3plship-upstream https://":
        "test_the_proxy_recording_and_validate_har_examples",
    'docs/guides/proxy-and-shadow.md: returns-mock proxy --3plship-upstream "$SANDBOX_URL"':
        "test_the_proxy_ci_job_example_fails_only_when_a_side_breaks_the_contract",
    "docs/guides/proxy-and-shadow.md: returns-mock proxy --shadow --3plship-upstream https://":
        "test_the_shadow_proxy_example_gives_the_report_shown",
    "docs/guides/replicas-postgresql.md: pip install '/path/to/returns-mock[postgres]'":
        "test_the_replica_commands_make_one_mock_of_two_servers",
    "docs/guides/control-plane.md: curl -s -X POST http://127.0.0.1:8080/__admin/seed":
        "test_the_control_plane_curl_examples_work",
    "docs/guides/webhooks-and-realism.md: def verify_3plship_signature(":
        "test_the_signature_example_verifies_a_real_delivery_signature",
    "docs/guides/webhooks-and-realism.md: class Shop:": "tests/test_autopilot.py::test_the_guides_shop_tests_pass",
    "docs/guides/webhooks-and-realism.md: curl -s -X PUT http://127.0.0.1:8080/__admin/autopilot":
        "tests/test_delivery_faults.py::test_the_guides_commands_work",
}
NOT_RUN = "# Not run by the test suite: "
SHELL_AND_PYTHON = ("sh", "python")
UNSEEN = ("bash", "shell", "console", "zsh", "py", "python3", "pycon")  # fences this test would not see


def _doc_blocks() -> list[tuple[str, str, str]]:
    """(file, language, text) of every fenced block of README.md and docs/."""
    found = []
    for path in doc_files():
        for language, text in re.findall(r"^```(\w*)\n(.*?)^```", path.read_text(), flags=re.S | re.M):
            found.append((str(path.relative_to(ROOT)), language, text))
    return found


def test_every_shell_and_python_block_is_run_by_a_test_or_says_why_not() -> None:
    blocks = [(file, language, text) for file, language, text in _doc_blocks() if language in SHELL_AND_PYTHON]
    assert {file for file, _, _ in blocks} >= {"README.md", "docs/guides/client-tests.md"}
    unseen = [(file, language) for file, language, _ in _doc_blocks() if language in UNSEEN]
    assert not unseen, f"write these fences as sh or python, so that this test sees them: {unseen}"
    used = set()
    for file, _, text in blocks:
        keys = [key for key in RUN_BY if key.startswith(f"{file}: ") and key.split(": ", 1)[1] in text]
        reasons = [line.strip() for line in text.splitlines() if line.strip().startswith(NOT_RUN)]
        where = f"{file}, the block {text.strip().splitlines()[0]!r}"
        assert len(keys) + len(reasons) == 1, (
            f"{where}: add it to RUN_BY with the test that runs it, or say why not in the block "
            f"({NOT_RUN}...); it matches {keys + reasons}")
        if reasons:
            assert len(reasons[0]) > len(NOT_RUN) + 10, where  # a reason, not just the words
            continue
        used.add(keys[0])
        file_, _, name = RUN_BY[keys[0]].rpartition("::")
        source = (ROOT / file_).read_text() if file_ else Path(__file__).read_text()
        assert f"\ndef {name}(" in source, RUN_BY[keys[0]]
    assert used == set(RUN_BY), f"entries whose block is gone: {set(RUN_BY) - used}"
