"""Starting and restarting: replicas keep the shared state, a port is usable again at once, a bad file
or secret is one line and exit 2, and secrets stay out of ps, banners and messages."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from helpers import PL, UP35, Server, bearer, cli, fixture, free_port, mock_or_proxy
from pg import PASSWORD, Cluster
from test_reliability import _kill_tree

pytestmark = pytest.mark.system


def _banner(server: Server) -> str:
    server.stop()
    return server.output


def test_restarting_a_replica_keeps_the_shared_clock_faults_and_rate_policy(postgres_url: str) -> None:
    one = Server("--store", postgres_url, "--workers", "1").start()
    two = Server("--store", postgres_url, "--workers", "1").start()
    try:
        assert requests.post(two.url + "/__admin/clock", json={"mode": "frozen", "set": "2030-06-01T00:00:00Z"},
                             timeout=10).status_code == 200
        assert requests.post(two.url + "/__admin/faults", json={"provider": "3plship", "status": 503, "times": 5},
                             timeout=10).status_code == 201
        policy = {"windows": [{"limit": 500, "period": "minute"}], "enforce": True}
        assert requests.put(two.url + "/__admin/rate-limits", json=policy, timeout=10).status_code == 200
        assert one.proc is not None
        _kill_tree(one.proc.pid)
        one.proc.wait(timeout=10)
        again = Server("--store", postgres_url, "--workers", "1")
        again.port, again.url = one.port, one.url
        again.args[1] = str(one.port)
        again.start()
        for server in (again, two):
            assert requests.get(server.url + "/__admin/clock", timeout=10).json() == {
                "now": "2030-06-01T00:00:00.000Z", "mode": "frozen"}
            rules = requests.get(server.url + "/__admin/faults", timeout=10).json()["rules"]
            assert [r["status"] for r in rules] == [503]
            assert requests.get(server.url + "/__admin/rate-limits", timeout=10).json()["enforce"] is True
        banner = _banner(again)
        assert "kept as the other replicas use them" in banner
        # A flag given on a start is applied, and the banner says so.
        third = Server("--store", postgres_url, "--workers", "1", "--clock", "real").start()
        assert requests.get(two.url + "/__admin/clock", timeout=10).json()["mode"] == "real"
        assert [r["status"] for r in requests.get(two.url + "/__admin/faults", timeout=10).json()["rules"]] == [503]
        assert "set clock real" in _banner(third)
    finally:
        for server in (one, two):
            server.stop()


def test_a_restart_on_the_same_port_works_at_once_after_kill_9(tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}", "--workers", "1").start()
    clients = []  # kept-alive connections that the kill closes from the server's side: TIME_WAIT on its port
    for _ in range(5):
        client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        client.sendall(b"GET /__admin/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.recv(1000).startswith(b"HTTP/1.1 200")
        clients.append(client)
    assert server.proc is not None
    _kill_tree(server.proc.pid)
    server.proc.wait(timeout=10)
    time.sleep(0.2)
    for client in clients:
        client.close()
    again = Server("--store", f"sqlite:{tmp_path / 'state.db'}", "--workers", "1")
    again.port, again.url, again.args[1] = server.port, server.url, str(server.port)
    try:
        again.start()
        assert requests.get(again.url + "/__admin/health", timeout=10).status_code == 200
    finally:
        again.stop()


def _one_line_exit_2(*args: str, expect: str) -> None:
    ran = cli("serve", "--store", "memory", *args, timeout=20)
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert expect in ran.stderr, ran.stderr


def test_a_fifo_a_device_or_an_oversized_file_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "seed.fifo"
    os.mkfifo(fifo)
    _one_line_exit_2("--seed-file", str(fifo), expect="a FIFO")
    _one_line_exit_2("--faults", str(fifo), expect="a FIFO")
    _one_line_exit_2("--faults", "/dev/zero", expect="a device")
    _one_line_exit_2("--admin-token-file", "/dev/zero", expect="a device")
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(17 * 1024 * 1024)
    _one_line_exit_2("--faults", str(big), expect="larger than")


@pytest.mark.parametrize(("entries", "where"), [
    (["x"], "log.entries[0]: an entry must be an object"),
    ([{"request": {"url": "http://h/3plship/api/v1/returns"}, "response": {"status": "abc"}}],
     "log.entries[0].response.status"),
    ([{"request": {"url": "http://h/3plship/api/v1/returns"}, "response": {"status": None}}],
     "log.entries[0].response.status"),
    ([{"request": {"url": "http://h/x"}, "response": {"status": 200}},
      {"request": {"url": "http://h/3plship/api/v1/returns"}, "response": {"status": 1e400}}],
     "1e400 is not a finite number"),  # not JSON at all: refused as the file is read
    ([{"request": {}, "response": {"status": 200}}], "log.entries[0].request.url"),
])
def test_a_malformed_har_seed_names_the_entry(tmp_path: Path, entries: list[object], where: str) -> None:
    har = tmp_path / "bad.har"
    har.write_text(json.dumps({"log": {"version": "1.2", "entries": entries}}).replace("Infinity", "1e400"))
    _one_line_exit_2("--seed-file", str(har), expect=where)


def test_the_admin_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-t0ken\n")
    token_file.chmod(0o600)
    server = Server("--store", "memory", "--admin-token-file", str(token_file)).start()
    try:
        assert requests.get(server.url + "/__admin/journal", timeout=10).status_code == 401
        authorized = requests.get(server.url + "/__admin/journal", headers=bearer("file-t0ken"), timeout=10)
        assert authorized.status_code == 200
        assert server.proc is not None
        with open(f"/proc/{server.proc.pid}/cmdline", "rb") as fh:
            assert b"file-t0ken" not in fh.read()
    finally:
        server.stop()
    server = Server("--store", "memory", env={"RETURNS_MOCK_ADMIN_TOKEN": "env-token"}).start()
    try:
        assert requests.get(server.url + "/__admin/journal", timeout=10).status_code == 401
        assert requests.get(server.url + "/__admin/journal", headers=bearer("env-token"), timeout=10).status_code == 200
    finally:
        server.stop()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    _one_line_exit_2("--admin-token-file", str(empty), expect="empty")
    _one_line_exit_2("--admin-token", "x", "--admin-token-file", str(token_file), expect="not both")
    _one_line_exit_2("--admin-token", "tök", expect="printable ASCII")


def test_utf8_and_latin1_basic_passwords_work_through_the_server() -> None:
    server = Server("--store", "memory", "--35up-user", "ci:pässwörd").start()
    try:
        body = fixture("35up/create-return.request.json")
        utf8 = "Basic " + base64.b64encode("ci:pässwörd".encode()).decode()
        assert requests.post(server.url + UP35 + "/returns", json=body, headers={"Authorization": utf8},
                             timeout=10).status_code == 201
        # requests' auth=(user, password) encodes ISO-8859-1, as clients did before RFC 7617
        answer = requests.patch(server.url + UP35 + "/returns/" + body["orderId"], json={"status": "rejected"},
                                auth=("ci", "pässwörd"), timeout=10)
        assert answer.status_code in (200, 409), answer.text
        assert requests.patch(server.url + UP35 + "/returns/" + body["orderId"], json={"status": "rejected"},
                              auth=("ci", "passwort"), timeout=10).status_code == 401
    finally:
        server.stop()


def test_the_store_from_the_environment(tmp_path: Path) -> None:
    server = Server(env={"RETURNS_MOCK_STORE": f"sqlite:{tmp_path / 'env.db'}"}).start()
    try:
        assert requests.post(server.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                             headers=bearer(), timeout=10).status_code == 201
        assert (tmp_path / "env.db").exists()
    finally:
        server.stop()


def test_passwords_are_masked_wherever_they_come_from(postgres_cluster: Cluster) -> None:
    host = f"127.0.0.1:{postgres_cluster.port}"
    for url, expect in ((f"postgresql://mock@{host}/postgres?password=wrong-s3cret&sslmode=disable",
                         "password=***"),
                        ("postgresql://mock:%zzwrong-s3cret@127.0.0.1/x", "percent-encoded"),
                        ("postgresql://mock:wrong-s3cret@127.0.0.1:abc/x", "unusable store URL"),
                        ("postgresql://mock:wrong-s3cret@127.0.0.1:99999/x", "unusable store URL")):
        ran = cli("serve", "--store", url)
        assert ran.returncode == 2 and ran.stderr.count("\n") == 1, ran.stderr
        assert "wrong-s3cret" not in ran.stderr and expect in ran.stderr, ran.stderr
    good = postgres_cluster.new_database()
    query = good.replace(f":{PASSWORD}@", "@") + f"?password={PASSWORD}"
    server = Server("--store", query, "--workers", "1").start()
    try:
        assert requests.get(server.url + "/", timeout=10).status_code == 200
        assert PASSWORD not in requests.get(server.url + "/__admin/health", timeout=10).text
    finally:
        banner = _banner(server)
    assert PASSWORD not in banner and "password=***" in banner


def test_a_bad_port_is_one_line() -> None:
    for port in ("abc", "0", "70000", "-1"):
        ran = subprocess.run([sys.executable, "-m", "mockserver.cli", "serve", "--port", port],
                             capture_output=True, text=True, timeout=30)
        assert ran.returncode == 2 and ran.stderr.count("\n") == 1 and "--port" in ran.stderr


def test_host_names_are_resolved_and_make_run_takes_an_empty_host() -> None:
    server = Server("--store", "memory", "--host", "localhost")
    try:
        server.start()
        assert requests.get(f"http://localhost:{server.port}/", timeout=10).status_code == 200
    finally:
        banner = _banner(server)
    assert f"http://localhost:{server.port}/3plship/api/v1" in banner
    _one_line_exit_2("--host", "no-such-host.invalid", "--admin-token", "t0ken", expect="cannot resolve")
    dry = subprocess.run(["make", "--no-print-directory", "-n", "run", "HOST=", "PORT=9123"], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    (command,) = [line for line in dry.stdout.splitlines() if "returns-mock serve" in line]
    assert "--host" not in command and "--port 9123" in command


def test_messages_say_what_to_do(tmp_path: Path) -> None:
    from mockserver.domain.config import Config
    from mockserver.web import create_app

    client = create_app(Config()).test_client()
    answer = client.post("/__admin/clock", json={"advance": "P1Y"}).get_json()
    assert "P365D" in answer["error"]["message"] and "^" not in answer["error"]["message"]
    listed = tmp_path / "scenario-list.json"
    listed.write_text("[1]")
    _one_line_exit_2("--seed-file", str(listed), expect="scenario must be an object, not an array")


def test_a_bound_host_name_is_answered_under_its_own_name() -> None:
    """--host with a name of this machine that resolves to loopback binds without a token, and requests that
    name it in Host are answered (the DNS-rebinding guard lets the bound name through, and only it)."""
    import socket as sockets

    name = sockets.gethostname()
    try:
        resolved = sockets.gethostbyname(name)
    except OSError:
        pytest.skip("this machine's name does not resolve")
    if not resolved.startswith("127."):
        pytest.skip(f"this machine's name resolves to {resolved}, not loopback")
    server = Server("--store", "memory", "--host", name)
    server.url = f"http://{resolved}:{server.port}"
    try:
        server.start()
        assert requests.get(f"{server.url}/", headers={"Host": f"{name}:{server.port}"}, timeout=10).status_code == 200
        assert requests.get(f"{server.url}/", headers={"Host": "other.example"}, timeout=10).status_code == 403
    finally:
        server.stop()


def _refused(*args: str, expect: str) -> None:
    """`returns-mock ARGS` (serve and proxy on a free port) stops at once: one line, exit code 2."""
    command = [*args, "--port", str(free_port())] if args[0] in ("serve", "proxy") else list(args)
    ran = cli(*command, timeout=30)
    assert ran.returncode == 2, (args, ran.returncode, ran.stderr[-2000:])
    assert ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert expect in ran.stderr, ran.stderr


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root passes mode checks: a sysfs folder refuses it)."""
    if os.geteuid() == 0:
        return Path("/sys")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555, exist_ok=True)
    return locked


def test_every_path_flag_given_a_directory_a_fifo_or_an_unwritable_path_is_one_line_exit_2(tmp_path: Path) -> None:
    """Every flag of every command that names a file: read ones (a directory, a FIFO with no writer) and
    written ones (a directory, a FIFO, a missing folder, a folder this user cannot write). A traceback
    (exit 1) before, or a proxy whose worker hung opening a FIFO."""
    folder, fifo = tmp_path / "folder", tmp_path / "fifo"
    folder.mkdir()
    os.mkfifo(fifo)
    (tmp_path / "rec.har").write_text(json.dumps({"log": {"version": "1.2", "entries": []}}))
    proxy = ("proxy", "--3plship-upstream", "http://127.0.0.1:9")
    verify = ("verify", "--provider", "3plship", "--base-url", "http://127.0.0.1:9", "--api-key", "zl_test_a")
    for flag in ("--seed-file", "--faults", "--admin-token-file"):
        _refused("serve", "--store", "memory", flag, str(folder), expect=f"{flag} {folder}: a directory")
    _refused("serve", "--store", f"sqlite:{folder}", expect="it is a directory")
    _refused("serve", "--store", f"sqlite:{fifo}", expect="it is not a regular file")
    _refused("serve", "--store", f"sqlite:{tmp_path / 'missing' / 's.db'}", expect="No such file or directory")
    _refused("serve", "--store", f"sqlite:{_unwritable(tmp_path) / 's.db'}", expect="cannot use")
    _refused(*proxy, "--admin-token-file", str(folder), expect="a directory")
    for name in ("validate-har", "drift"):
        _refused(name, str(folder), expect="a directory")
        _refused(name, str(fifo), expect="a FIFO")
    _refused("drift", str(tmp_path / "rec.har"), "--seed-file", str(folder), expect="a directory")
    har, drift = ("validate-har", str(tmp_path / "rec.har")), ("drift", str(tmp_path / "rec.har"))
    writers: list[tuple[tuple[str, ...], str]] = [(proxy, "--record"), (verify, "--junit-xml"), (verify, "--sarif"),
                                                  (har, "--markdown"), (drift, "--sarif")]
    for command, flag in writers:
        _refused(*command, flag, str(folder), expect=f"{flag} {folder}: a directory")
        _refused(*command, flag, str(fifo), expect="a FIFO")
        _refused(*command, flag, str(tmp_path / "missing" / "out"), expect="does not exist")
        _refused(*command, flag, str(_unwritable(tmp_path) / "out"), expect="cannot write it")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "folder", *(["locked"] if os.geteuid() else []),
                                                           "rec.har"]  # nothing left behind


def test_an_admin_token_file_others_can_read_or_change_is_refused_with_the_fix(tmp_path: Path) -> None:
    """Anyone on the machine could read the token (or set it to one they know) and drive /__admin: refused,
    as ssh refuses such a key, naming chmod 600; a file its group may read (given on purpose) is accepted."""
    token = tmp_path / "token"
    token.write_text("file-t0ken\n")
    for mode in (0o644, 0o604, 0o620, 0o602):
        token.chmod(mode)
        _refused("serve", "--store", "memory", "--admin-token-file", str(token), expect=f"chmod 600 {token}")
        _refused("proxy", "--3plship-upstream", "http://127.0.0.1:9", "--admin-token-file", str(token),
                 expect="chmod 600")
    token.chmod(0o640)
    server = Server("--store", "memory", "--admin-token-file", str(token)).start()
    try:
        answer = requests.get(server.url + "/__admin/journal", headers=bearer("file-t0ken"), timeout=10)
        assert answer.status_code == 200
    finally:
        server.stop()


def test_a_password_is_masked_as_a_whole_in_every_form_of_store_string(postgres_cluster: Cluster) -> None:
    """A one-letter password was masked wherever its letter appeared (`c***nnecti***n failed`, `database
    "n***db"`); a key=value string was echoed with its password; a password with an unencoded `@` or `/`
    left a piece of itself in the message (libpq cuts it there and names the rest as the host or port)."""
    postgres_cluster.sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shorty') THEN "
                         "CREATE ROLE shorty LOGIN PASSWORD 'o'; END IF; END $$;")
    host = f"127.0.0.1:{postgres_cluster.port}"
    for store, secrets, expect in (
            (f"postgresql://shorty:o@{host}/nodb", [], 'connection failed: connection to server at "127.0.0.1"'),
            (f"postgresql://shorty:o@{host}/nodb", [], 'database "nodb" does not exist'),
            (f"postgresql://mock@{host}/postgres?password=o", [], 'authentication failed for user "mock"'),
            (f"host=127.0.0.1 port={postgres_cluster.port} user=mock password={PASSWORD} dbname=postgres",
             [PASSWORD], "password=***"),
            ("host=db.internal password='wrong s3cret' dbname=x", ["wrong s3cret", "s3cret"], "password=***"),
            (f"postgresql://mock:pa@ss@{host}/x", ["ss@", "pa@ss"], "postgresql://mock:***@127.0.0.1"),
            (f"postgresql://mock:pa/ss@{host}/x", ["'pa'", "pa/ss"], "postgresql://mock:***@127.0.0.1")):
        ran = cli("serve", "--store", store, "--port", str(free_port()))
        assert ran.returncode == 2 and ran.stderr.count("\n") == 1, ran.stderr
        assert expect in ran.stderr and not any(secret in ran.stderr for secret in secrets), ran.stderr
        assert re.search(r"[A-Za-z]\*\*\*|\*\*\*[A-Za-z]", ran.stderr) is None, ran.stderr  # never inside a word


def test_the_index_and_health_name_the_store_by_its_masked_url(postgres_url: str, tmp_path: Path) -> None:
    """The README promised `postgresql://user:***@host:port/db` where `/` and /__admin/health said only
    "postgresql"; the dashboard shows what health says."""
    db = tmp_path / "state.db"
    masked = postgres_url.replace(f":{PASSWORD}@", ":***@")
    for store, shown in ((postgres_url, masked), (f"sqlite:{db}", f"sqlite:{db}")):
        server = Server("--store", store, "--workers", "1").start()
        try:
            for path in ("/", "/__admin/health"):
                answer = requests.get(server.url + path, timeout=10).json()
                assert answer["store"] == shown and answer["engine"] == store.split(":")[0], answer
        finally:
            server.stop()


def test_the_store_and_journal_files_are_private_to_their_owner(tmp_path: Path) -> None:
    """The journal holds API keys (a 3plship account is its key) and answers with `whsec_` secrets; the store
    holds the subscriptions: every file of a SQLite store (-wal, -shm, -rate, -lock, -requests and the
    journal's own) is created 0600, whatever the umask lets through (0644 before)."""
    old = os.umask(0o022)
    try:
        server = Server("--store", f"sqlite:{tmp_path / 'state.db'}", "--workers", "2").start()
    finally:
        os.umask(old)
    try:
        subscribed = requests.post(server.url + PL + "/webhooks", headers=bearer(), timeout=10,
                                   json={"url": "http://127.0.0.1:9/hook", "events": ["return.created"]})
        assert subscribed.json()["data"]["secret"].startswith("whsec_")
        assert requests.post(server.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                             headers=bearer(), timeout=10).status_code == 201
        assert "whsec_" in requests.get(server.url + "/__admin/journal", timeout=10).text
        modes = {path.name: oct(path.stat().st_mode & 0o777) for path in tmp_path.iterdir()}  # while it runs
    finally:
        server.stop()
    assert {"state.db", "state.db-wal", "state.db-shm", "state.db-rate", "state.db-lock", "state.db-requests",
            "state.db-requests-wal"} <= set(modes), modes
    assert set(modes.values()) == {"0o600"}, modes


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie awaiting its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGQUIT, signal.SIGTERM], ids=["KILL", "QUIT", "TERM"])
def test_workers_die_with_the_main_process_and_a_restart_works_at_once(tmp_path: Path, stop: signal.Signals) -> None:
    """`kill -9 $!` of the main process (or any signal that ends it) leaves no worker serving as an orphan
    and holding the port: a restart right after it, with no pause, serves."""
    store = f"sqlite:{tmp_path / 'state.db'}"
    server = Server("--store", store, "--workers", "2").start()
    assert server.proc is not None
    main = server.proc.pid
    children = Path(f"/proc/{main}/task/{main}/children")
    workers = [int(c) for c in children.read_text().split()]
    assert len(workers) == 2
    os.kill(main, stop)  # the main process only, as `kill -9 $!` does
    server.proc.wait(timeout=30)
    again = Server("--store", store, "--workers", "2")
    again.port, again.url, again.args[1] = server.port, server.url, str(server.port)
    try:
        again.start()  # at once: no sleep, no retry here
        answered = {requests.get(again.url + "/__admin/health", timeout=10).json()["pid"] for _ in range(20)}
        assert answered.isdisjoint(workers)  # only the new server's workers answer
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        again.stop()
        server.stop()


def test_two_servers_started_together_on_one_port_one_is_refused(tmp_path: Path) -> None:
    """Started within milliseconds of each other, before either has bound (SO_REUSEPORT would let both run,
    each with half the traffic): one serves, the other is one line and exit 2."""
    for attempt in range(3):
        port = free_port()
        both = [subprocess.Popen([sys.executable, "-m", "mockserver.cli", "serve", "--store", "memory", "--port",
                                  str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True) for _ in range(2)]
        try:
            deadline = time.monotonic() + 30
            while all(p.poll() is None for p in both) and time.monotonic() < deadline:
                time.sleep(0.05)
            refused = [p for p in both if p.poll() is not None]
            assert len(refused) == 1, attempt
            assert refused[0].returncode == 2
            error = refused[0].stderr.read() if refused[0].stderr else ""
            assert error.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in error, error
            serving = next(p for p in both if p.poll() is None)
            pids = {requests.get(f"http://127.0.0.1:{port}/__admin/health", timeout=10).json()["pid"]
                    for _ in range(10)}
            assert len(pids) == 1 and Path(f"/proc/{pids.pop()}/stat").exists()
            assert serving.poll() is None
        finally:
            for proc in both:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
                with contextlib.suppress(ProcessLookupError, PermissionError):  # any worker left behind
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(("kind", "stop", "group"), [("serve", signal.SIGINT, True), ("proxy", signal.SIGTERM, False)],
                         ids=["serve-INT-to-the-group", "proxy-TERM-to-the-main-process"])
def test_a_stop_signal_ends_the_server_in_its_grace_whatever_requests_are_under_way(
        kind: str, stop: signal.Signals, group: bool) -> None:
    """Ctrl-C (the terminal signals the whole group) or a supervisor's SIGTERM (the main process only), with
    requests asleep in 60 s latency faults (behind the proxy: in its upstream): the stop waited for them, a
    minute and more; now they have launch.SHUTDOWN_GRACE_S (5 s) to finish, then the workers are killed."""
    waits = f"{kind} --upstream-timeout-ms 70000" if kind == "proxy" else kind
    with mock_or_proxy(waits, "--store", "memory") as front:
        mock_url = front.url if kind == "serve" else front.args[front.args.index("--3plship-upstream") + 1][:-len(PL)]
        rule = {"provider": "3plship", "latency_ms": 60000}
        assert requests.post(f"{mock_url}/__admin/faults", json=[rule], timeout=10).status_code == 201
        cut: list[str] = []

        def asleep() -> None:
            try:
                requests.get(f"{front.url}{PL}/returns", headers=bearer(), timeout=80)
            except requests.ConnectionError as exc:
                cut.append(type(exc).__name__)

        sleepers = [threading.Thread(target=asleep, daemon=True) for _ in range(4)]
        for thread in sleepers:
            thread.start()
        time.sleep(1)  # all four are asleep now
        assert front.proc is not None
        if group:
            os.killpg(front.proc.pid, stop)
        else:
            os.kill(front.proc.pid, stop)
        front.proc.wait(timeout=30)  # half the faults' sleep: it waited them out before (59 s)
        for thread in sleepers:
            thread.join(timeout=10)
        assert len(cut) == 4  # each cut off, none answered after the stop
