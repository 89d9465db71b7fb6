"""pytest --returns-mock-fuzz: deliberately naive clients fail, naming the varied field; fixed ones pass."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

# Each test runs pytest in a subprocess (real processes: the system tier, out of make check's quick lane).
pytestmark = pytest.mark.system

CLIENTS = Path(__file__).parent / "fuzz_clients"


def run_pytest(*args: str, cwd: Path = CLIENTS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def failures(output: str) -> dict[str, str]:
    """Each failed test's section of pytest's report."""
    parts = re.split(r"^_{3,} (\S+) _{3,}$", output, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_each_naive_client_fails_naming_the_varied_answer_that_breaks_it() -> None:
    run = run_pytest("naive.py", "--returns-mock-fuzz=50", "--returns-mock-fuzz-seed=1")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "3 failed" in run.stdout, run.stdout
    found = failures(run.stdout)
    expected = {
        "test_tracking_link": "POST /3plship/api/v1/returns -> 201: /data/return_shipping/tracking_url: null",
        "test_refund_pending": "POST /3plship/api/v1/returns -> 201: /data/refund: absent",
        "test_list_returns": "GET /3plship/api/v1/returns -> 503: status: 503",
    }
    for test, variation in expected.items():
        report = found[test]
        # Shrunk: the one variation that breaks the client, and nothing else it happened to draw.
        varied = report.split("break this test:\n", 1)[1].split("\nE       replay:", 1)[0]
        assert varied.strip() == f"E         {variation}", report
        assert f"fuzz_clients/naive.py::{test}' --returns-mock-fuzz=50 --returns-mock-fuzz-seed=1" in report


def test_the_named_seed_replays_the_same_failure() -> None:
    first = run_pytest("naive.py::test_refund_pending", "--returns-mock-fuzz=50")
    seed = re.search(r"--returns-mock-fuzz-seed=(\d+)", first.stdout)
    assert seed, first.stdout
    again = run_pytest("naive.py::test_refund_pending", "--returns-mock-fuzz=50", f"--returns-mock-fuzz-seed={seed[1]}")
    assert again.returncode == 1
    assert failures(again.stdout)["test_refund_pending"].split("\nE       replay:")[0].split("break this test:")[1] == \
        failures(first.stdout)["test_refund_pending"].split("\nE       replay:")[0].split("break this test:")[1]


def test_the_fixed_clients_pass_200_varied_runs() -> None:
    run = run_pytest("fixed.py", "--returns-mock-fuzz=200", "--returns-mock-fuzz-seed=7")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_without_the_flag_nothing_changes() -> None:
    # The naive clients hold against the mock's habits: that is what makes them dangerous.
    run = run_pytest("naive.py")
    assert run.returncode == 0, run.stdout
    assert "3 passed" in run.stdout


def test_the_marker_fuzzes_one_test(tmp_path: Path) -> None:
    (tmp_path / "test_marked.py").write_text(
        "import pytest, requests\n"
        "from naive import RETURN, KEY, BASE, send\n"
        "@pytest.mark.returns_mock(fuzz=30)\n"
        "def test_marked(returns_mock):\n"
        "    created = send('POST', '/returns', json=RETURN).json()['data']\n"
        "    assert created['refund'] is None\n"
        "def test_unmarked(returns_mock):\n"
        "    created = send('POST', '/returns', json=RETURN).json()['data']\n"
        "    assert created['refund'] is None\n")
    run = run_pytest(str(tmp_path / "test_marked.py"), "--returns-mock-fuzz-seed=3", "--rootdir", str(tmp_path))
    assert "1 failed, 1 passed" in run.stdout, run.stdout + run.stderr
    assert "/data/refund: absent" in failures(run.stdout)["test_marked"]


def test_a_bad_fuzz_flag_is_one_line_and_exit_2() -> None:
    run = run_pytest("naive.py", "--returns-mock-fuzz=lots")
    assert run.returncode == 4, run  # pytest's own exit code for a usage error
    assert "--returns-mock-fuzz: expected a whole number, got 'lots'" in run.stderr


# --- each run from scratch (issue 41, item 1) -----------------------------------------------------

SHOP = '''
import pytest, requests

BASE = "https://app.3plship.com/api/v1"
KEY = {"Authorization": "Bearer zl_test_runs"}
RETURN = {"order_id": "ord_runs", "reason": "defective", "items": [{"sku": "PROD-001", "quantity": 1}],
          "refund_amount": 20.0}


def send(method, path, **kwargs):
    for _ in range(10):
        answer = requests.request(method, BASE + path, headers=KEY, timeout=10, **kwargs)
        if answer.status_code not in (429, 500, 503):
            return answer
    answer.raise_for_status()


@pytest.fixture
def synced():
    """The shop's own list of what it synced: empty at the start of every test."""
    return []
'''


def test_a_function_scoped_fixture_is_fresh_in_every_run(pytester: pytest.Pytester) -> None:
    """On e98ac54 the list kept the first run's entries: the second run failed, noted as failing unvaried."""
    pytester.makepyfile(test_shop=SHOP + '''
def test_sync(returns_mock, synced):
    assert synced == []
    synced.append(send("POST", "/returns", json=RETURN).json()["data"]["id"])
    assert len(synced) == 1


def test_naive_sync(returns_mock, synced):
    assert synced == []
    synced.append(send("POST", "/returns", json=RETURN).json()["data"]["refund"])
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-fuzz=50", "--returns-mock-fuzz-seed=2")
    result.assert_outcomes(passed=1, failed=1)
    report = failures(str(result.stdout))["test_naive_sync"]
    varied = report.split("break this test:\n", 1)[1].split("\nE       replay:", 1)[0]
    assert varied.strip() == "E         POST /3plship/api/v1/returns -> 201: /data/refund: absent", report


def test_fixtures_are_torn_down_and_set_up_again_around_every_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_setup=SHOP + '''
EVENTS = []


@pytest.fixture
def database(tmp_path):
    EVENTS.append(("setup", tmp_path))
    yield tmp_path
    EVENTS.append(("teardown", tmp_path))


@pytest.fixture
def shop(database, returns_mock):
    return {"db": database, "mock": returns_mock}


class TestShop:
    def test_method(self, shop):
        assert not hasattr(self, "seen"), "the instance of a previous run"
        self.seen = True
        assert shop["mock"].journal == []
        send("POST", "/returns", json=RETURN)


def test_after():
    kinds = [kind for kind, _ in EVENTS]
    assert kinds == ["setup", "teardown"] * (len(kinds) // 2) and len(kinds) >= 20, kinds
    paths = [path for _, path in EVENTS]
    assert len(set(paths)) == len(paths) // 2  # a fresh tmp_path each run
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:randomly", "--returns-mock-fuzz=10",
                                "--returns-mock-fuzz-seed=4")
    result.assert_outcomes(passed=2)


def test_the_nothing_note_only_when_the_test_fails_unvaried(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_unvaried=SHOP + '''
def test_always_fails(returns_mock):
    send("POST", "/returns", json=RETURN)
    assert False, "the test's own mistake"
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-fuzz=10", "--returns-mock-fuzz-seed=4")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returns-mock fuzz: nothing was varied: the test fails on the answers as the "
                                 "rules give them (run unvaried, it fails too: AssertionError)*"])


def test_an_async_test_no_plugin_runs_is_refused_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_async=SHOP + '''
async def test_coroutine(returns_mock):
    pass
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-fuzz=5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returns-mock fuzz cannot run test_async.py::test_coroutine from scratch for every "
                                 "run: it is a coroutine, and no plugin ran it*"])


def test_strict_mode_checks_every_fuzzed_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_strict=SHOP + '''
def test_bad_body(returns_mock):
    send("POST", "/returns", json={**RETURN, "reason": "broken"})
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "--returns-mock-fuzz=5", "--returns-mock-strict")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*returns-mock strict: the code under test sent 1 request(s) that break the "
                                 "contract:*"])
