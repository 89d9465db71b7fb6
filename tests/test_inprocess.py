"""`mock_providers()` and the pytest plugin: the same app in-process, isolation, strict mode, passthrough."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import requests
from flask import Flask
from helpers import ThreadedServer, fixture

from mockserver import mock_providers
from mockserver.domain.config import Config
from mockserver.live import LiveMock

UP = "https://api.35up.io/v1"
PL = "https://app.3plship.com/api/v1"
KEY = {"Authorization": "Bearer zl_test_inproc"}


def create_35up(order: str = "42346434") -> requests.Response:
    return requests.post(f"{UP}/returns", json={**fixture("35up/create-return.request.json"), "orderId": order},
                         auth=("shop", "pw"))


def test_context_manager_answers_the_real_hosts_with_state() -> None:
    with mock_providers() as mock:
        assert create_35up().status_code == 201
        assert create_35up().status_code == 409
        moved = requests.patch(f"{UP}/returns/42346434", json={"status": "awaiting_return"}, auth=("shop", "pw"))
        assert moved.json()["history"][-1]["status"] == "awaiting_return"
        created = requests.post(f"{PL}/returns", json=fixture("3plship/create-return.request.json"), headers=KEY)
        assert created.status_code == 201 and created.json()["data"]["id"].startswith("ret_")
        listed = requests.get(f"{PL}/returns", params={"status": "initiated"}, headers=KEY).json()
        assert [r["id"] for r in listed["data"]] == [created.json()["data"]["id"]]
        assert [(e.provider, e.account, e.method, e.status) for e in mock.journal] == [
            ("35up", "shop", "POST", 201), ("35up", "shop", "POST", 409), ("35up", "shop", "PATCH", 200),
            ("3plship", "zl_test_inproc", "POST", 201), ("3plship", "zl_test_inproc", "GET", 200)]
        assert mock.journal[-1].query == "status=initiated"
        assert mock.violations == []


def test_a_long_in_process_run_keeps_no_objects_per_request() -> None:
    """`responses` kept every call (request and response objects, ~50 a request) for as long as the mock
    was active: a long in-process fuzz run grew without bound, and garbage collection walked it all. The
    same requests many times over now leave as many live objects as a few times over."""
    import gc

    url = "https://app.3plship.com/api/v1/returns?limit=5"
    with mock_providers(config=Config(journal_size=20)):
        for _ in range(50):
            requests.get(url, headers={"Authorization": "Bearer zl_test_flat"}, timeout=5)
        gc.collect()
        before = len(gc.get_objects())
        for _ in range(1000):
            requests.get(url, headers={"Authorization": "Bearer zl_test_flat"}, timeout=5)
        gc.collect()
        assert len(gc.get_objects()) - before < 200


def test_violations_name_the_request_and_the_field() -> None:
    with mock_providers() as mock:
        requests.post(f"{PL}/returns", json={"order_id": "o", "reason": "other", "refund_amount": 1,
                                             "items": [{"sku": "P", "quantity": 0}]}, headers=KEY)
        requests.get(f"{PL}/returns", params={"limit": 500}, headers=KEY)
        requests.get(f"{PL}/returns")
        assert [(v.method, v.path, v.status, v.field) for v in mock.violations] == [
            ("POST", "/3plship/api/v1/returns", 422, "items[0].notes"),
            ("POST", "/3plship/api/v1/returns", 422, "items[0].quantity"),
            ("GET", "/3plship/api/v1/returns", 422, "limit"),
            ("GET", "/3plship/api/v1/returns", 401, "Authorization"),
        ]
        with pytest.raises(AssertionError, match=r"items\[0\]\.quantity"):
            mock.assert_no_violations()


def test_state_refusals_are_not_contract_violations() -> None:
    with mock_providers() as mock:
        create_35up()
        assert create_35up().status_code == 409
        assert requests.patch(f"{UP}/returns/nope", json={"status": "closed"}, auth=("s", "p")).status_code == 404
        assert mock.violations == []


def test_each_context_starts_empty() -> None:
    for _ in range(2):
        with mock_providers() as mock:
            assert create_35up().status_code == 201
            assert len(mock.journal) == 1


def test_the_decorator_gives_every_call_a_fresh_mock() -> None:
    seen: list[int] = []

    @mock_providers()
    def client_code() -> None:
        seen.append(create_35up().status_code)

    client_code()
    client_code()
    assert seen == [201, 201]


def test_leaving_the_context_stops_the_mock_and_reset_forgets() -> None:
    with mock_providers() as mock:
        with pytest.raises(requests.ConnectionError) as refused:  # intercepted while active, in one line
            requests.get("http://shop.invalid/hello", timeout=5)
        message = str(refused.value)
        assert "\n" not in message and "re.compile" not in message
        assert "https://api.35up.io/v1, https://app.3plship.com/api/v1" in message and "passthrough=True" in message
        create_35up()
        mock.reset()
        assert mock.journal == [] and mock.state.store.get("35up", "shop", "42346434") is None
        assert create_35up().status_code == 201  # the order is free again
    with pytest.raises(requests.ConnectionError) as after:  # and not after: a real (failing) lookup
        requests.get("http://shop.invalid/hello", timeout=5)
    assert "returns-mock" not in str(after.value)


def _local_site() -> ThreadedServer:
    site = Flask("site")
    site.add_url_rule("/hello", view_func=lambda: "hi")
    return ThreadedServer(site)


def test_passthrough_and_loopback() -> None:
    with _local_site() as site:
        with mock_providers():  # loopback always passes: a real server works beside the in-process mock
            assert requests.get(site.url + "/hello", timeout=5).text == "hi"
            with pytest.raises(requests.ConnectionError, match="is not a provider URL"):  # other hosts are refused
                requests.get("http://shop.invalid/hello", timeout=5)
        with mock_providers(passthrough=True):
            with pytest.raises(requests.ConnectionError) as through:
                requests.get("http://shop.invalid/hello", timeout=5)
            assert "is not a provider URL" not in str(through.value)  # it was let through (and the lookup failed)
            assert create_35up().status_code == 201  # the providers are still mocked
        with mock_providers(passthrough=["http://shop.invalid/hello"]):
            with pytest.raises(requests.ConnectionError) as listed:
                requests.get("http://shop.invalid/hello", timeout=5)
            assert "is not a provider URL" not in str(listed.value)
            with pytest.raises(requests.ConnectionError, match="is not a provider URL"):
                requests.get("http://shop.invalid/other", timeout=5)


@pytest.mark.system
def test_live_mock_serves_any_http_client() -> None:
    with LiveMock() as server:
        body = json.dumps(fixture("3plship/create-return.minimal.request.json")).encode()
        req = urllib.request.Request(server.url_3plship + "/returns", data=body, method="POST",
                                     headers={**KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 201
        assert server.url_35up == server.url + "/35up/v1"
        assert [e.status for e in server.journal] == [201]


PLUGIN_TESTS = '''
import requests, urllib.request, json

def test_first(returns_mock):
    r = requests.post("https://api.35up.io/v1/returns", auth=("a", "b"),
                      json={"orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]})
    assert r.status_code == 201

def test_second_sees_a_fresh_mock(returns_mock):
    test_first(returns_mock)

def test_server(returns_mock_server):
    req = urllib.request.Request(returns_mock_server.url_35up + "/returns", method="POST",
        data=json.dumps({"orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]}).encode(),
        headers={"Authorization": "Basic YTpi", "Content-Type": "application/json"})
    assert urllib.request.urlopen(req).status == 201

def test_sends_a_bad_body(returns_mock):
    r = requests.post("https://app.3plship.com/api/v1/returns", headers={"Authorization": "Bearer zl_test_a"},
                      json={"order_id": "o", "reason": "defective", "items": [{"sku": "P", "quantity": 1}]})
    assert r.status_code == 422

def test_server_gets_a_bad_query(returns_mock_server):
    req = urllib.request.Request(returns_mock_server.url_3plship + "/returns?limit=0",
                                 headers={"Authorization": "Bearer zl_test_a"})
    try:
        urllib.request.urlopen(req)
    except urllib.error.HTTPError as e:
        assert e.code == 422
'''


def test_fixtures_isolate_tests_and_pass_without_strict(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLUGIN_TESTS)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)


@pytest.mark.parametrize("how", [["--returns-mock-strict"], ["-o", "returns_mock_strict=true"]])
def test_strict_mode_fails_tests_that_break_the_contract(pytester: pytest.Pytester, how: list[str]) -> None:
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", *how)
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*returns-mock strict: the code under test sent 1 request(s) that break the contract:*",
        "*POST /3plship/api/v1/returns -> 422: refund_amount (body): refund_amount is required*",
        "*GET /3plship/api/v1/returns -> 422: limit (query): limit must be at least 1*",
    ])


def test_marker_configures_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
import pytest, requests
from mockserver.domain.config import Config

@pytest.mark.returns_mock(config=Config(providers={"35up": {"lifecycle": "permissive"}}))
def test_permissive(returns_mock):
    auth = ("a", "b")
    requests.post("https://api.35up.io/v1/returns", auth=auth,
                  json={"orderId": "1", "items": [{"itemId": "1", "sku": "v/s", "quantity": 1}]})
    r = requests.patch("https://api.35up.io/v1/returns/1", auth=auth, json={"status": "refunded"})
    assert r.status_code == 200
''')
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)




PL_REAL = "https://app.3plship.com/api/v1"
CLIENT_KEY = {"Authorization": "Bearer zl_test_clients"}


def _flow(create: Any, listing: Any, bad: Any) -> None:
    """The same create/list/violation flow for every client: the same app answers each."""
    created = create()
    assert created[0] == 201 and created[1]["data"]["status"] == "initiated"
    listed = listing()
    assert listed[0] == 200 and [r["id"] for r in listed[1]["data"]] == [created[1]["data"]["id"]]
    refused = bad()
    assert refused[0] == 422 and refused[1]["error"]["details"]["field"] == "reason"


def test_httpx_sync_is_answered_by_the_same_mock() -> None:
    import httpx

    body = fixture("3plship/create-return.minimal.request.json")
    with mock_providers() as mock, httpx.Client() as client:
        def call(method: str, **kwargs: Any) -> tuple[int, Any]:
            answer = client.request(method, PL_REAL + "/returns", headers=CLIENT_KEY, **kwargs)
            return answer.status_code, answer.json()

        _flow(lambda: call("POST", json=body), lambda: call("GET", params={"limit": 5}),
              lambda: call("POST", json={**body, "reason": "broken"}))
        assert [v.field for v in mock.violations] == ["reason"]
        assert [e.method for e in mock.journal] == ["POST", "GET", "POST"]


def test_httpx_async_is_answered_by_the_same_mock() -> None:
    import asyncio

    import httpx

    body = fixture("3plship/create-return.minimal.request.json")

    async def run() -> list[tuple[int, Any]]:
        async with httpx.AsyncClient() as client:
            answers = []
            for method, kwargs in (("POST", {"json": body}), ("GET", {"params": {"limit": 5}}),
                                   ("POST", {"json": {**body, "reason": "broken"}})):
                answer = await client.request(method, PL_REAL + "/returns", headers=CLIENT_KEY, **kwargs)
                answers.append((answer.status_code, answer.json()))
            return answers

    with mock_providers() as mock:
        created, listed, refused = asyncio.run(run())
        _flow(lambda: created, lambda: listed, lambda: refused)
        assert [v.field for v in mock.violations] == ["reason"]


def test_aiohttp_is_answered_by_the_same_mock() -> None:
    import asyncio

    import aiohttp

    body = fixture("3plship/create-return.minimal.request.json")

    async def run() -> list[tuple[int, Any]]:
        async with aiohttp.ClientSession() as session:
            answers = []
            for method, kwargs in (("POST", {"json": body}), ("GET", {"params": {"limit": "5"}}),
                                   ("POST", {"json": {**body, "reason": "broken"}})):
                async with session.request(method, PL_REAL + "/returns", headers=CLIENT_KEY, **kwargs) as answer:
                    answers.append((answer.status, await answer.json()))
            basic = aiohttp.BasicAuth("shop", "pw")
            async with session.post("https://api.35up.io/v1/returns", json=fixture("35up/create-return.request.json"),
                                    auth=basic) as up35:
                answers.append((up35.status, await up35.json()))
            return answers

    with mock_providers() as mock:
        created, listed, refused, up35 = asyncio.run(run())
        _flow(lambda: created, lambda: listed, lambda: refused)
        assert up35[0] == 201 and mock.journal[-1].account == "shop"
        assert [v.field for v in mock.violations] == ["reason"]


def test_a_client_the_mock_does_not_intercept_is_stopped_naming_the_server_fixture() -> None:
    with mock_providers(), pytest.raises(OSError, match="returns_mock_server"):
        urllib.request.urlopen("https://app.3plship.com/api/v1/returns", timeout=5)


def test_the_in_process_mock_and_the_real_server_work_in_one_test() -> None:
    with mock_providers() as mock, LiveMock() as server:
        body = fixture("3plship/create-return.minimal.request.json")
        created = requests.post(server.url_3plship + "/returns", json=body, headers=CLIENT_KEY, timeout=10)
        assert created.status_code == 201
        in_process = requests.get(PL_REAL + "/returns", headers=CLIENT_KEY, timeout=10)
        assert in_process.json()["data"] == []  # a separate mock
        assert len(mock.journal) == 1 and len(server.journal) == 1


# --- the client's own timeout (issue 41, item 4) ----------------------------------------------------


def slow(mock: mock_providers, ms: int) -> None:
    mock.state.faults.replace([{"latency_ms": ms}])


def test_requests_times_out_in_process_as_against_a_real_server() -> None:
    """On e98ac54 the in-process mock ignored the timeout: a 100 ms timeout against a 300 ms latency
    answered 201."""
    body = fixture("3plship/create-return.minimal.request.json")
    with mock_providers() as mock:
        slow(mock, 300)
        with pytest.raises(requests.exceptions.ReadTimeout, match=r"read timeout=0.1\)"):
            requests.post(f"{PL}/returns", json=body, headers=KEY, timeout=0.1)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{PL}/returns", json=body, headers=KEY, timeout=(3.05, 0.1))
        assert mock.journal[-1].status == 0  # no answer: the client gave up first
        assert requests.post(f"{PL}/returns", json=body, headers=KEY, timeout=(0.1, 2)).status_code == 201
        assert requests.post(f"{PL}/returns", json=body, headers=KEY).status_code == 201  # no timeout: it waits
        mock.state.faults.replace([])
        assert len(requests.get(f"{PL}/returns", headers=KEY, timeout=5).json()["data"]) == 2


def test_httpx_times_out_in_process() -> None:
    import httpx

    body = fixture("3plship/create-return.minimal.request.json")
    with mock_providers() as mock:
        slow(mock, 300)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{PL}/returns", json=body, headers=KEY, timeout=0.1)
        with httpx.Client(timeout=httpx.Timeout(5, read=0.1)) as client, pytest.raises(httpx.ReadTimeout):
            client.post(f"{PL}/returns", json=body, headers=KEY)
        assert httpx.post(f"{PL}/returns", json=body, headers=KEY, timeout=2).status_code == 201


def test_aiohttp_times_out_in_process_per_request_and_per_session() -> None:
    import asyncio

    import aiohttp

    body = fixture("3plship/create-return.minimal.request.json")

    async def post(session_timeout: aiohttp.ClientTimeout | None, **kwargs: Any) -> int:
        session = aiohttp.ClientSession(timeout=session_timeout) if session_timeout else aiohttp.ClientSession()
        async with session, session.post(f"{PL}/returns", json=body, headers=KEY, **kwargs) as answer:
            return answer.status

    with mock_providers() as mock:
        slow(mock, 300)
        with pytest.raises(aiohttp.SocketTimeoutError):
            asyncio.run(post(None, timeout=aiohttp.ClientTimeout(sock_read=0.1)))
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(post(aiohttp.ClientTimeout(total=0.1)))
        assert asyncio.run(post(aiohttp.ClientTimeout(total=2))) == 201


def test_varied_latencies_time_out_a_short_timeout_and_never_one_past_the_ceiling() -> None:
    body = fixture("3plship/create-return.minimal.request.json")
    timed_out, drawn_longer = 0, 0
    for seed in range(1, 31):
        with mock_providers(vary=seed) as mock:
            for _ in range(3):
                try:
                    requests.post(f"{PL}/returns", json=body, headers=KEY, timeout=0.05)
                except requests.exceptions.ReadTimeout:
                    timed_out += 1
                    assert mock.journal[-1].varied[0].endswith(
                        "longer than the client's read timeout (50 ms): no answer in time")
                drawn = [int(v.split()[1]) for v in mock.journal[-1].varied if v.startswith("latency: ")]
                drawn_longer += bool(drawn) and drawn[0] > 50
                answer = requests.post(f"{PL}/returns", json=body, headers=KEY, timeout=(3.05, 10))
                assert answer.status_code in (201, 429, 500, 503)  # 10 s is past the documented 5 s ceiling
    assert timed_out == drawn_longer >= 1
