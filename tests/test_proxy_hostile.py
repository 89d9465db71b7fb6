"""`returns-mock proxy` in front of a hostile upstream on loopback: a gzip bomb, slow and dripping answers,
recordings under concurrency and signals, credentials in every place a request shows, paths that try to
leave the provider's base path."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, Server, ThreadedServer, bearer
from werkzeug.serving import make_server

pytestmark = pytest.mark.system

KEY = "zl_test_hostile"
LIST = json.dumps({"success": True, "data": [], "meta": {"pagination": {"page": 1, "limit": 50, "total": 0,
                                                                       "pages": 0}}}).encode()


class Upstream:
    """A 3plship stand-in that records the raw request line of what reaches it, and misbehaves on cue."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.methods: list[str] = []
        self.headers: list[dict[str, bytes]] = []
        self.behaviour = "ok"
        self.bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB decoded, ~64 KB sent

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.seen.append(environ["RAW_URI"])
        self.methods.append(environ["REQUEST_METHOD"])
        # WSGI hands header values over one character a byte (latin-1): these are the bytes that arrived.
        self.headers.append({k: v.encode("latin-1") for k, v in environ.items() if k.startswith("HTTP_X_")})
        if self.behaviour == "deep":
            body = b"[" * 100_000 + b"]" * 100_000
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        if self.behaviour == "bomb":
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Encoding", "gzip"),
                                      ("Content-Length", str(len(self.bomb)))])
            return [self.bomb]
        if self.behaviour == "drip" and "drip" in environ.get("QUERY_STRING", ""):
            start_response("200 OK", [("Content-Type", "application/json")])
            return self._drip()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(LIST)))])
        return [LIST]

    @staticmethod
    def _drip() -> Iterator[bytes]:
        for byte in LIST:
            time.sleep(0.5)
            yield bytes([byte])


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, ThreadedServer]]:
    app = Upstream()
    with ThreadedServer(app) as server:
        yield app, server


def proxy(url: str, *args: str, cwd: Path | None = None) -> Server:
    return Server("--3plship-upstream", url + "/api/v1", *args, command="proxy", cwd=cwd).start()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_gzip_bomb_is_cut_off_at_the_cap_and_answered_502(upstream: tuple[Upstream, ThreadedServer],
                                                            tmp_path: Path) -> None:
    app, server = upstream
    app.behaviour = "bomb"
    front = proxy(server.url, "--max-answer-bytes", "1048576", "--record", str(tmp_path / "r.har"))
    try:
        answer = requests.get(f"{front.url}{PL}/returns", headers=bearer(KEY), timeout=30)
        assert answer.status_code == 502 and answer.json()["error"]["code"] == "BAD_GATEWAY"
        assert "1048576 bytes" in answer.json()["error"]["message"]  # names the cap
        assert front.proc is not None and rss_kb(front.proc.pid) < 150_000  # never held the 64 MiB
    finally:
        front.stop()
    assert (tmp_path / "r.har").stat().st_size < 100_000


def test_the_timeout_bounds_a_dripping_answer_and_slow_upstreams_stall_nothing_else(
        upstream: tuple[Upstream, ThreadedServer]) -> None:
    app, server = upstream
    app.behaviour = "drip"
    front = proxy(server.url, "--upstream-timeout-ms", "5000")
    try:
        with ThreadPoolExecutor(10) as pool:
            slow = [pool.submit(requests.get, f"{front.url}{PL}/returns?drip=1", headers=bearer(KEY), timeout=30)
                    for _ in range(10)]
            time.sleep(0.3)  # all ten are waiting on their upstream now
            assert requests.get(f"{front.url}/__admin/health", timeout=10).status_code == 200
            assert requests.get(f"{front.url}{PL}/returns", headers=bearer(KEY), timeout=10).status_code == 200
            # Answered while every dripping exchange is still held (no wall-clock bound: an order of events).
            assert not any(future.done() for future in slow)
            for future in slow:
                # The drip lasts far longer than the client's 30 s: a 504 at all means the timeout bounded the
                # whole exchange, not each read.
                answer = future.result()
                assert answer.status_code == 504 and answer.json()["error"]["code"] == "GATEWAY_TIMEOUT"
    finally:
        front.stop()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_the_recording_is_valid_har_after_concurrent_exchanges_and_a_signal(
        upstream: tuple[Upstream, ThreadedServer], tmp_path: Path, stop: signal.Signals) -> None:
    _, server = upstream
    record = tmp_path / "r.har"
    front = proxy(server.url, "--record", str(record))
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: requests.get(f"{front.url}{PL}/returns", headers=bearer(KEY),
                                                           timeout=30), range(16)))
        assert all(a.status_code == 200 for a in answers)
        assert front.proc is not None
        os.killpg(front.proc.pid, stop)  # the server and its worker, where the recording is written
        front.proc.wait(timeout=60)  # a machine busy with disk writes may take its time to deliver even SIGKILL
    finally:
        front.stop()
    har = json.loads(record.read_text())  # whole, valid JSON
    assert len(har["log"]["entries"]) == 16


WORDS = ("pwd", "pass", "passwd", "bearer", "token", "secret", "auth", "userPwd", "db_pass", "Bearer-Token")
SECRETS = ("s3cr3t-query", "s3cr3t-token", "s3cr3t-access", "s3cr3t-sig", "s3cr3t-form", "s3cr3t-xauth",
           "s3cr3t-session", "UPSTREAM-PW", "s3cr3t-json", *(f"s3cr3t-word-{word}" for word in WORDS))


def test_credentials_are_masked_wherever_the_proxy_shows_a_request(upstream: tuple[Upstream, ThreadedServer],
                                                                   tmp_path: Path) -> None:
    _, server = upstream
    record = tmp_path / "r.har"
    with_userinfo = server.url.replace("http://", "http://user:UPSTREAM-PW@")
    front = proxy(with_userinfo, "--record", str(record))
    dead = Server("--3plship-upstream", "http://user:UPSTREAM-PW@127.0.0.1:9/api/v1", command="proxy").start()
    try:
        query = ("api_key=s3cr3t-query&token=s3cr3t-token&access_token=s3cr3t-access&sig=s3cr3t-sig"
                 "&status=initiated")
        headers = {**bearer(KEY), "X-Auth": "s3cr3t-xauth", "X-Session": "s3cr3t-session"}
        requests.get(f"{front.url}{PL}/returns?{query}", headers=headers, timeout=10)
        requests.post(f"{front.url}{PL}/returns", data={"password": "s3cr3t-form", "order_id": "o"},
                      headers=headers, timeout=10)
        requests.post(f"{front.url}{PL}/webhooks", json={"url": "http://127.0.0.1:1/h", "events": ["return.created"],
                                                        "secret": "whsec_s3cr3t-json"}, headers=headers, timeout=10)
        # One word list masks for every door: each of these names holds a secret, nested or not.
        nested = {word: f"s3cr3t-word-{word}" for word in WORDS[:5]}
        requests.post(f"{front.url}{PL}/returns", json={"order_id": "o", "notes": [nested], "extra": {
            word: f"s3cr3t-word-{word}" for word in WORDS[5:]}}, headers=headers, timeout=10)
        shown = [requests.get(f"{front.url}{path}", timeout=10).text
                 for path in ("/", "/__admin/health", "/__admin/journal", "/__admin/violations")]
        failed = requests.get(f"{dead.url}{PL}/returns", headers=bearer(KEY), timeout=10)
        assert failed.status_code == 502
        shown += [failed.text, requests.get(f"{dead.url}/", timeout=10).text]
    finally:
        front.stop()
        dead.stop()
    shown += [record.read_text(), front.output + dead.output]  # the banners too
    assert "user:***@" in front.output
    journal = json.loads(shown[2])["entries"]
    assert {e["account"] for e in journal} == {"zl_test_***tile"}  # KEY, told apart from others, not usable
    assert all(KEY not in text for text in shown)
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:2000])
    assert "status=initiated" in record.read_text()  # what is not a credential stays


def test_a_path_leaving_the_base_path_is_refused_and_an_encoded_question_mark_stays_in_the_path(
        upstream: tuple[Upstream, ThreadedServer]) -> None:
    app, server = upstream
    front = proxy(server.url)
    try:
        for path in ("/3plship/api/v1/../../../etc/passwd", "/3plship/api/v1/returns/../../../admin",
                     "/3plship/api/v1/..%2f..%2fadmin", "/3plship/api/v1/returns/%2e%2e/%2e%2e/x",
                     # ..; leaves the base path on Tomcat and Spring; a backslash (or %5c) on IIS and others;
                     # an escape encoded twice on a server that decodes twice.
                     "/3plship/api/v1/returns/..;/x", "/3plship/api/v1/returns/%2e%2e%3bjsessionid=1/x",
                     "/3plship/api/v1/returns/..%5c..%5cadmin", "/3plship/api/v1/returns/..%5C..%5Cadmin",
                     "/3plship/api/v1/returns/%252e%252e/%252e%252e/x", "/3plship/api/v1/returns/a%255cb"):
            status, body = raw_get(front.port, path)
            assert status == 400, (path, status, body)
            assert json.loads(body)["error"]["code"] == "BAD_REQUEST"  # the provider's own format
        assert app.seen == []  # none of them reached the upstream
        status, _ = raw_get(front.port, "/3plship/api/v1/returns/a%3Fb")
        assert app.seen == ["/api/v1/returns/a%3Fb"]  # the ? is still part of the path, not a query
        raw_get(front.port, "/3plship/api/v1/returns/a%2Fb%FF")
        assert app.seen[-1] == "/api/v1/returns/a%2Fb%FF"  # as sent: one segment, and the byte that is no text
    finally:
        front.stop()


def raw_get(port: int, path: str, method: str = "GET", head: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
    """A request with the path (and any extra header lines, as bytes) exactly as written: HTTP clients
    normalise `..` away, and encode what they send, before sending."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
                     f"Connection: close\r\nContent-Length: {len(body)}\r\n".encode() + head + b"\r\n" + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_query_violations_seen_through_the_proxy_name_their_rule(upstream: tuple[Upstream, ThreadedServer]) -> None:
    _, server = upstream
    front = proxy(server.url)
    try:
        requests.get(f"{front.url}{PL}/returns?limit=1000", headers=bearer(KEY), timeout=10)
        found = requests.get(f"{front.url}/__admin/violations", timeout=10).json()["violations"]
        (limit,) = [v for v in found if v["field"] == "limit"]
        assert limit["schema"] == "3plship/listReturns-query-limit.inline.json#/maximum"  # as the mock says it
    finally:
        front.stop()



def test_an_https_upstream_is_checked_against_the_configured_authorities(tmp_path: Path) -> None:
    """A real provider is HTTPS: the proxy verifies its certificate (SSL_CERT_FILE or REQUESTS_CA_BUNDLE,
    else certifi's authorities, as requests does) and refuses one it cannot verify with a 502."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    app = Upstream()
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=(str(cert), str(key)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    upstream = f"https://127.0.0.1:{server.server_port}/api/v1"
    trusted = Server("--3plship-upstream", upstream, command="proxy", env={"SSL_CERT_FILE": str(cert)}).start()
    unknown = Server("--3plship-upstream", upstream, command="proxy",
                     env={"SSL_CERT_FILE": "", "REQUESTS_CA_BUNDLE": ""}).start()
    try:
        through = requests.get(f"{trusted.url}{PL}/returns", headers=bearer(KEY), timeout=10)
        assert through.status_code == 200 and through.json()["success"] is True
        refused = requests.get(f"{unknown.url}{PL}/returns", headers=bearer(KEY), timeout=10)
        assert refused.status_code == 502 and "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]["message"]
        assert app.seen == ["/api/v1/returns"]  # the refused one never sent its request
    finally:
        trusted.stop()
        unknown.stop()
        server.shutdown()
        thread.join(timeout=10)


def test_every_request_under_a_providers_path_is_answered_in_its_format(
        upstream: tuple[Upstream, ThreadedServer]) -> None:
    """Forwarded or refused, whatever its path or method: a newline in the path and a method no operation
    has go to the upstream as sent; TRACE (it would echo the credentials back) is refused; never a page of
    the proxy's own framework."""
    app, server = upstream
    front = proxy(server.url)
    try:
        status, body = raw_get(front.port, "/3plship/api/v1/ret%0Aurns")
        assert status == 200 and app.seen == ["/api/v1/ret%0Aurns"]
        status, body = raw_get(front.port, "/3plship/api/v1/returns", method="BREW")
        assert status == 200 and app.methods[-1] == "BREW"
        for method in ("TRACE", "CONNECT"):
            status, body = raw_get(front.port, "/3plship/api/v1/returns", method=method)
            assert status == 405, (method, body[:200])
            answer = json.loads(body)
            assert answer["success"] is False and answer["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert app.methods == ["GET", "BREW"]  # neither was forwarded
        entries = requests.get(f"{front.url}/__admin/journal", timeout=10).json()["entries"]
        assert sorted(e["status"] for e in entries) == [200, 200, 405, 405]  # each journaled
    finally:
        front.stop()


def test_json_nested_deeper_than_the_mocks_limit_is_refused_before_forwarding(
        upstream: tuple[Upstream, ThreadedServer], tmp_path: Path) -> None:
    """Deeper than the mock itself reads (128 levels): refused in the provider's format, never forwarded; an
    upstream's answer 100,000 deep is passed on unchanged and recorded as a violation (its journal entry
    shows a marker: it could not be masked), not a 500."""
    app, server = upstream
    front = proxy(server.url, "--record", str(tmp_path / "r.har"))
    try:
        for body in (b"[" * 129 + b"]" * 129, b'{"a": ' * 900 + b"1" + b"}" * 900, b"[" * 100_000):
            answer = requests.post(f"{front.url}{PL}/returns", data=body, timeout=10,
                                   headers={**bearer(KEY), "Content-Type": "application/json"})
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "BAD_REQUEST", answer.text[:300]
            assert "nests deeper than 128 levels" in answer.json()["error"]["message"]
        assert app.seen == []
        app.behaviour = "deep"
        deep = requests.get(f"{front.url}{PL}/returns", headers=bearer(KEY), timeout=30)
        assert deep.status_code == 200 and deep.content == b"[" * 100_000 + b"]" * 100_000
        found = requests.get(f"{front.url}/__admin/violations", timeout=10).json()["violations"]
        assert any("nests deeper than 128 levels" in v["message"] for v in found if v["source"] == "response")
        entry = requests.get(f"{front.url}/__admin/journal?status=200", timeout=10).json()["entries"][0]
        assert "not shown" in entry["response_body"]
    finally:
        front.stop()
    assert len(json.loads((tmp_path / "r.har").read_text())["log"]["entries"]) == 4


def test_header_values_are_forwarded_as_sent(upstream: tuple[Upstream, ThreadedServer], tmp_path: Path) -> None:
    """A UTF-8 value (and a byte that is no UTF-8 at all) reaches the upstream as the bytes the client sent;
    the recording shows the UTF-8 one as text."""
    app, server = upstream
    record = tmp_path / "r.har"
    front = proxy(server.url, "--record", str(record))
    try:
        status, _ = raw_get(front.port, "/3plship/api/v1/returns",
                            head=b"X-Customer: Jos\xc3\xa9 M\xc3\xbcller\r\nX-Latin: caf\xe9\r\n")
        assert status == 200
    finally:
        front.stop()
    assert app.headers[0]["HTTP_X_CUSTOMER"] == "José Müller".encode()
    assert app.headers[0]["HTTP_X_LATIN"] == b"caf\xe9"
    sent = json.loads(record.read_text())["log"]["entries"][0]["request"]["headers"]
    assert {"name": "X-Customer", "value": "José Müller"} in sent


def test_an_upstream_answering_before_the_whole_body_arrived_is_relayed(tmp_path: Path) -> None:
    """A 413 the upstream sends after the headers of a 10 MB body, closing without reading the rest, is the
    upstream's answer to relay, not a 502."""
    listener = socket.create_server(("127.0.0.1", 0))
    refusal = b'{"success":false,"error":{"code":"PAYLOAD_TOO_LARGE","message":"too large"}}'

    def early() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(refusal)).encode() + b"\r\nConnection: close\r\n\r\n"
                             + refusal)
                time.sleep(0.2)  # then close, with most of the body unread: a reset

    thread = threading.Thread(target=early, daemon=True)
    thread.start()
    front = proxy(f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        for _ in range(2):
            answer = requests.post(f"{front.url}{PL}/returns", data=b"x" * (10 * 1024 * 1024), timeout=60,
                                   headers={**bearer(KEY), "Content-Type": "application/json"})
            assert answer.status_code == 413 and answer.content == refusal
    finally:
        front.stop()
        listener.close()
