"""What a web page can make a mock on the developer's machine do: nothing. A real page on another
origin in headless Chromium, DNS rebinding by Host, framing, and the admin's content rules."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import PL, Server, bearer, fixture, free_port
from test_dashboard import browser, wait  # noqa: F401 - the real headless Chromium fixture

pytestmark = pytest.mark.system

ATTACK = """<!doctype html><html><body><script>
const mock = "MOCK";
const opts = (body) => ({method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body});
Promise.allSettled([
  fetch(mock + "/__admin/clock", opts('{"advance": "P400D"}')),
  fetch(mock + "/__admin/faults", opts('{"provider": "3plship", "status": 503}')),
  fetch(mock + "/__admin/rate-limits", opts('{"windows": [{"limit": 1, "period": "day"}], "enforce": true}')),
  fetch(mock + "/__admin/reset", {method: "POST", mode: "no-cors"}),
  fetch(mock + "/__admin/journal", {mode: "cors"}).then(r => r.text()),
]).then(results => { document.title = "done " + results.map(r => r.status).join(","); });
</script></body></html>"""


@pytest.fixture
def mock(tmp_path: Path) -> Iterator[Server]:
    server = Server("--store", f"sqlite:{tmp_path / 'state.db'}", "--workers", "1").start()
    yield server
    server.stop()


@pytest.fixture
def attacker(mock: Server, tmp_path: Path) -> Iterator[str]:
    """Another origin on loopback (another port is another origin, and the same site) serving the page."""
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "attack.html").write_text(ATTACK.replace("MOCK", mock.url))
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    site = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    yield f"http://localhost:{site.server_address[1]}"
    site.shutdown()


def test_a_page_on_another_origin_cannot_drive_the_mock(mock: Server, attacker: str,
                                                        browser: object) -> None:  # noqa: F811
    created = requests.post(f"{mock.url}{PL}/returns", json=fixture("3plship/create-return.request.json"),
                            headers=bearer(), timeout=10)
    assert created.status_code == 201
    before = requests.get(f"{mock.url}/__admin/clock", timeout=10).json()["now"]
    browser.get(f"{attacker}/attack.html")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while not browser.title.startswith("done") and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    assert browser.title.startswith("done")  # type: ignore[attr-defined]
    assert requests.get(f"{mock.url}/__admin/faults", timeout=10).json()["rules"] == []
    assert requests.get(f"{mock.url}/__admin/rate-limits", timeout=10).json()["enforce"] is False
    after = requests.get(f"{mock.url}/__admin/clock", timeout=10).json()["now"]
    assert after[:10] == before[:10]  # not moved 400 days
    assert requests.get(f"{mock.url}/__admin/returns", timeout=10).json()["returns"]  # not reset
    assert requests.get(f"{mock.url}{PL}/returns", headers=bearer(), timeout=10).status_code == 200


def test_the_dashboard_runs_under_its_policy_and_cannot_be_framed(mock: Server, attacker: str, tmp_path: Path,
                                                                   browser: object) -> None:  # noqa: F811
    page = requests.get(f"{mock.url}/__admin/", timeout=10)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Access-Control-Allow-Origin" not in page.headers
    browser.get(f"{mock.url}/__admin/")  # type: ignore[attr-defined]
    wait(browser, "#f-provider option", lambda found: len(found) > 1, seconds=15)  # type: ignore[arg-type]
    refused = [e for e in browser.get_log("browser")  # type: ignore[attr-defined]
               if "Content Security Policy" in e.get("message", "")]
    assert refused == []  # its own script and style run under the policy
    (tmp_path / "www" / "frame.html").write_text(f'<iframe id="f" src="{mock.url}/__admin/"></iframe>')
    browser.get(f"{attacker}/frame.html")  # type: ignore[attr-defined]
    time.sleep(1.5)
    framed = [e for e in browser.get_log("browser")  # type: ignore[attr-defined]
              if "frame-ancestors" in e.get("message", "") or "Refused to frame" in e.get("message", "")]
    assert framed


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io", "10.0.0.1"])
def test_a_foreign_host_is_refused_on_every_route(mock: Server, host: str) -> None:
    for path in ("/", "/__admin/journal", "/3plship/openapi.json"):
        answer = requests.get(mock.url + path, headers={"Host": host, **bearer()}, timeout=10)
        assert answer.status_code == 403, path
        assert answer.json()["error"]["code"] == "forbidden_host"
    refused = requests.get(f"{mock.url}{PL}/returns", headers={"Host": host, **bearer()}, timeout=10)
    assert refused.status_code == 403  # on a provider's path, in the provider's format
    assert refused.json()["success"] is False and refused.json()["error"]["code"] == "FORBIDDEN"
    assert refused.json()["error"]["details"]["field"] == "Host"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:9", "app.localhost", "127.0.0.1", "127.1.2.3:80",
                                  "[::1]:8080"])
def test_loopback_names_are_answered(mock: Server, host: str) -> None:
    assert requests.get(mock.url + "/__admin/health", headers={"Host": host}, timeout=10).status_code == 200


def test_allow_host_adds_a_name(tmp_path: Path) -> None:
    server = Server("--store", "memory", "--allow-host", "host.docker.internal").start()
    try:
        ok = requests.get(server.url + "/__admin/health", headers={"Host": "host.docker.internal:8080"}, timeout=10)
        assert ok.status_code == 200
        assert requests.get(server.url + "/", headers={"Host": "other.internal"}, timeout=10).status_code == 403
    finally:
        server.stop()


def test_admin_writes_take_json_from_their_own_origin_only(mock: Server) -> None:
    clock = f"{mock.url}/__admin/clock"
    text = requests.post(clock, data='{"advance": "P1D"}', headers={"Content-Type": "text/plain"}, timeout=10)
    assert text.status_code == 415 and text.json()["error"]["code"] == "unsupported_media_type"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site"}):
        answer = requests.post(clock, json={"advance": "P1D"}, headers=headers, timeout=10)
        assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_site_request", headers
    own = requests.post(clock, json={"advance": "P1D"}, headers={"Origin": mock.url, "Sec-Fetch-Site": "same-origin"},
                        timeout=10)
    assert own.status_code == 200
    assert requests.post(f"{mock.url}/__admin/reset", timeout=10).status_code == 200  # curl: no body, no origin
    answer = requests.get(f"{mock.url}/__admin/journal", timeout=10)
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Access-Control-Allow-Origin" not in answer.headers
