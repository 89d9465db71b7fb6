"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import PL, UP35, Server, basic, bearer, fixture

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        pytest.fail("CI must have chromium and chromedriver (.ci/run installs them)", pytrace=False)
    pytest.skip("needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.system


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


SCENARIO = fixture("scenarios/example.json")


def wait(browser: webdriver.Chrome, css: str, check: Any = bool, seconds: float = 10) -> Any:
    """The elements matching `css` once `check(elements)` holds (the page refreshes itself every 2 s)."""
    def ready(b: webdriver.Chrome) -> Any:
        found = b.find_elements(By.CSS_SELECTOR, css)
        return [found] if check(found) else False  # wrapped: an empty list may be what is awaited

    return WebDriverWait(browser, seconds, ignored_exceptions=(StaleElementReferenceException,)).until(ready)[0]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Server]:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--admin-token", "dash", "--clock", "frozen").start()
    auth = {"Authorization": "Bearer dash"}
    assert requests.post(server.url + "/__admin/seed", json=SCENARIO, headers=auth, timeout=10).status_code == 201
    requests.post(server.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                  headers=bearer("zl_test_dash"), timeout=10)
    requests.patch(server.url + UP35 + "/returns/1002", json={"status": "approved"}, headers=basic("shop-a"),
                   timeout=10)
    yield server
    server.stop()


def login(browser: webdriver.Chrome, server: Server) -> None:
    """The page asks for the token once (it never goes into a URL) and then shows the mock."""
    browser.get(server.url + "/__admin/")
    token = wait(browser, "#token-form:not(.hidden) #token")[0]
    token.send_keys("dash")
    browser.find_element(By.ID, "token-save").click()
    wait(browser, "#journal tr.entry")
    assert "dash" not in browser.current_url
    # Once the token is taken, the page no longer says it is needed.
    wait(browser, "#header-error", lambda found: found and found[0].text == "")


def test_find_why_a_request_was_refused(browser: webdriver.Chrome, seeded: Server, tmp_path: Path) -> None:
    login(browser, seeded)
    browser.find_element(By.ID, "f-violations").click()
    rows = wait(browser, "#journal tr.entry", lambda found: len(found) == 1)
    assert "PATCH /35up/v1/returns/1002" in rows[0].text
    why = rows[0].find_element(By.CSS_SELECTOR, "td.why")
    assert why.text.startswith("status: 'approved' is not one of the valid values")
    assert why.value_of_css_property("color") == "rgba(179, 38, 30, 1)"
    rows[0].click()
    request_body = wait(browser, "#journal tr.detail pre.request-body")[0].text
    assert '"status": "approved"' in request_body
    assert '"code": "validation_error"' in browser.find_element(By.CSS_SELECTOR, "pre.response-body").text
    assert "35up/return-update-request.json#/" in browser.find_element(By.CSS_SELECTOR, ".violation-detail").text
    time.sleep(2.5)  # a live refresh keeps the filter and the open entry
    assert len(browser.find_elements(By.CSS_SELECTOR, "#journal tr.entry")) == 1
    assert browser.find_elements(By.CSS_SELECTOR, "#journal tr.detail pre.request-body")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_put_the_mock_into_a_state_with_clicks(browser: webdriver.Chrome, seeded: Server) -> None:
    login(browser, seeded)
    # Move a 3plship return along its lifecycle through the provider's own rules.
    search = browser.find_element(By.ID, "r-search")
    search.send_keys("ret_seedinitiated")
    wait(browser, "#returns tr.return", lambda found: len(found) == 1)[0].click()
    wait(browser, "#returns button.move[data-status='received']")[0].click()
    wait(browser, "#returns tr.return td.status", lambda found: found and found[0].text == "received")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.lifecycle rect[data-status='inspected']")
    # Advance the clock past the 35up return window: the awaiting return expires.
    search.clear()
    search.send_keys("1002")
    advance = browser.find_element(By.ID, "advance")
    advance.clear()
    advance.send_keys("P31D")
    browser.find_element(By.ID, "advance-btn").click()
    wait(browser, "#returns tr.return td.status", lambda found: found and found[0].text == "expired")
    # A fault rule: the next request fails with it.
    browser.find_element(By.ID, "fault-add").click()
    wait(browser, "#faults li.fault")
    failed = requests.get(seeded.url + PL + "/returns", headers=bearer("zl_test_dash"), timeout=10)
    assert failed.status_code == 503
    browser.find_element(By.ID, "faults-clear").click()
    wait(browser, "#faults li.fault", lambda found: not found)
    # A chaos profile, chosen from the list the server serves.
    wait(browser, "#chaos option[value='light']")[0].click()
    browser.find_element(By.ID, "chaos-apply").click()
    rules = wait(browser, "#faults li.fault", lambda found: len(found) >= 2)
    assert '"probability"' in rules[0].text


def test_without_the_token_nothing_is_shown(browser: webdriver.Chrome, seeded: Server) -> None:
    browser.get(seeded.url + "/__admin/")
    wait(browser, "#token-form:not(.hidden)")
    assert browser.find_elements(By.CSS_SELECTOR, "#journal tr.entry") == []
    assert requests.get(seeded.url + "/__admin/returns", timeout=10).status_code == 401


def test_nothing_scrolls_sideways_at_1400_px(browser: webdriver.Chrome, seeded: Server) -> None:
    """Long ids, keys and query strings wrap inside their columns instead of widening the panels."""
    long_key = "zl_test_" + "k" * 60
    requests.post(seeded.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                  headers=bearer(long_key), timeout=10)
    requests.get(seeded.url + PL + "/returns", params={"order_id": "o" * 120, "status": "initiated"},
                 headers=bearer(long_key), timeout=10)
    browser.set_window_size(1400, 1000)
    login(browser, seeded)
    wait(browser, "#returns tr.return")
    time.sleep(0.5)
    overflowing = browser.execute_script(
        "return [...document.querySelectorAll('section')].filter(s => !s.classList.contains('hidden'))"
        ".filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.id + ' ' + s.scrollWidth + '>' + s.clientWidth)")
    assert overflowing == []
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1400


def test_a_varied_answer_says_what_was_varied(browser: webdriver.Chrome, seeded: Server) -> None:
    auth = {"Authorization": "Bearer dash"}
    assert requests.post(seeded.url + "/__admin/vary", json={"seed": 4}, headers=auth, timeout=10).status_code == 200
    for n in range(30):
        requests.post(seeded.url + PL + "/returns", headers=bearer("zl_test_dash"), timeout=10,
                      json={**fixture("3plship/create-return.request.json"), "order_id": f"ord_vary{n}"})
    journal = requests.get(seeded.url + "/__admin/journal", headers=auth, timeout=10).json()["entries"]
    varied = [e for e in journal if any(v.startswith("/data/") for v in e["varied"])]
    assert varied
    login(browser, seeded)
    row = wait(browser, f"#journal tr.entry[data-id='{varied[-1]['id']}']")[0]
    row.click()
    shown = wait(browser, "#journal tr.detail .varied")[0].text
    assert shown == "varied: " + "; ".join(varied[-1]["varied"])


def test_the_providers_moves_and_each_deliverys_fault_are_shown(browser: webdriver.Chrome, seeded: Server) -> None:
    from test_webhooks import Receiver

    auth = {"Authorization": "Bearer dash"}
    with Receiver() as receiver:
        requests.post(seeded.url + PL + "/webhooks", json={"url": receiver.url, "events": ["return.received"]},
                      headers=bearer("zl_test_dash"), timeout=10)
        requests.post(seeded.url + "/__admin/webhooks/faults", json={"duplicate": 2}, headers=auth, timeout=10)
        requests.put(seeded.url + "/__admin/autopilot", json={"provider": "3plship", "moves": [
            {"to": "received", "after": "PT1H"}]}, headers=auth, timeout=10)
        requests.post(seeded.url + "/__admin/clock", json={"advance": "PT1H"}, headers=auth, timeout=10)
        receiver.wait_for(2)
        login(browser, seeded)
        moves = wait(browser, "#journal tr.entry.provider-move", lambda found: len(found) == 2)  # seeded, created
        assert all("\nMOVE /3plship/api/v1/returns/ret_" in row.text for row in moves), [row.text for row in moves]
        assert moves[0].value_of_css_property("font-style") == "italic"
        faults = wait(browser, "#deliveries tr.delivery td.fault", lambda found: len(found) == 2)
        assert sorted(f.text.rsplit(": ", 1)[1] for f in faults) == ["copy 1 of 2", "copy 2 of 2"]


def test_the_shadow_proxy_shows_its_drift_beside_the_journal(browser: webdriver.Chrome, seeded: Server) -> None:
    upstream = Server("--store", "memory", "--refund-business-days", "7").start()
    proxy = Server("--3plship-upstream", f"{upstream.url}/3plship/api/v1", "--shadow", "--admin-token", "dash",
                   command="proxy").start()
    try:
        pl, key = f"{proxy.url}/3plship/api/v1", bearer("zl_test_dash")
        created = requests.post(f"{pl}/returns", headers=key, json=fixture("3plship/create-return.request.json"),
                                timeout=10).json()["data"]
        for status in ("received", "inspected"):
            requests.patch(f"{pl}/returns/{created['id']}/status", headers=key, json={"status": status}, timeout=10)
        requests.post(f"{pl}/returns/{created['id']}/refund", headers=key, json={"amount": 1}, timeout=10)
        login(browser, proxy)
        rows = wait(browser, "#drift tr.drift", lambda found: len(found) == 1)
        cells = [cell.text for cell in rows[0].find_elements(By.TAG_NAME, "td")]
        assert cells[:4] == [f"POST /3plship/api/v1/returns/{created['id']}/refund", "200 / 200",
                             "/data/refund/expected_at", "value"]
        assert wait(browser, "#drift-summary")[0].text == "1 of 4 exchanges diverged"
        browser.find_element(By.ID, "drift-clear").click()
        wait(browser, "#drift tr.drift", lambda found: not found)
        # The mock's own dashboard has no drift to show.
        login(browser, seeded)
        assert "hidden" in (browser.find_element(By.ID, "drift-section").get_attribute("class") or "")
    finally:
        proxy.stop()
        upstream.stop()


LONG_KEY = "zl_test_" + "k" * 40
"""An API key as long as real ones get: an account the dashboard shows in its narrowest columns."""

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
"""Where the width test keeps its screenshots (gitignored), to look at after a run."""

MEASURE = """
const out = [];
for (const panel of document.querySelectorAll("main section")) {
  if (panel.getClientRects().length === 0) continue;  // hidden (the drift panel off the proxy)
  const p = panel.getBoundingClientRect(), cs = getComputedStyle(panel);
  const left = p.left + parseFloat(cs.borderLeftWidth), right = p.right - parseFloat(cs.borderRightWidth);
  if (p.right > window.innerWidth + 0.5) out.push([panel.id, "the panel", Math.round(p.width), window.innerWidth]);
  for (const e of panel.querySelectorAll("*")) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    const name = e.tagName.toLowerCase() + (typeof e.className === "string" && e.className ? "." + e.className : "");
    if (r.right > right + 0.5 || r.left < left - 0.5) {
      out.push([panel.id, name, Math.round(r.width), Math.round(right - left)]);
    }
    // A cell's own text spilling out of it (a fixed column narrower than its value) is no wider box, but it is
    // wider than its cell: what is wider must end in an ellipsis inside it, never spill.
    if (e.tagName === "TD" && e.scrollWidth > e.clientWidth + 1) {
      out.push([panel.id, name + " (its text)", e.scrollWidth, e.clientWidth]);
    }
  }
}
const lines = (cell) => {  // line boxes the cell's text takes (its ::before label is no text of its own)
  const tops = [], walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const range = document.createRange(); range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width > 0 && !tops.some(top => Math.abs(top - r.top) < 4)) tops.push(r.top);
    }
  }
  return tops.length;
};
const cells = [];
for (const [row, columns] of [["#journal tr.entry", {3: "account", 4: "request", 5: "status"}],
                              ["#returns tr.return", {2: "account", 3: "id", 4: "status"}]]) {
  for (const tr of document.querySelectorAll(row)) for (const [n, what] of Object.entries(columns)) {
    const cell = tr.querySelector(`td:nth-child(${n})`);
    const titles = [cell, ...cell.querySelectorAll("*")].map(e => e.getAttribute("title")).filter(Boolean);
    cells.push({what, text: cell.textContent, lines: lines(cell), titles});
  }
}
for (const segment of document.querySelectorAll(".request-line .seg")) {  // an opened entry's request line
  cells.push({what: "segment", text: segment.textContent, lines: lines(segment), titles: [segment.title]});
}
return {overflow: out, page: document.documentElement.scrollWidth, viewport: window.innerWidth, cells};
"""


@pytest.mark.parametrize("width", [1400, 390])
def test_no_element_is_wider_than_its_panel_at_1400_and_390_px(browser: webdriver.Chrome, seeded: Server,
                                                               width: int) -> None:
    """Element widths measured in Chromium, with an entry and a return closed and then open: nothing is
    wider than its panel, the page never scrolls sideways, and ids, accounts, requests and statuses take
    one line each (truncated, if they must be, with the whole value on hover and in what is copied)."""
    long_path = f"{PL}/returns?order_id=ord_{'o' * 60}&status=initiated"
    requests.get(seeded.url + long_path, headers=bearer(LONG_KEY), timeout=10)
    requests.post(seeded.url + PL + "/webhooks", headers=bearer(LONG_KEY), timeout=10, json={
        "url": f"http://127.0.0.1:9/{'hook' * 20}", "events": ["return.created"]})  # a delivery with a long URL
    created = requests.post(seeded.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                            headers=bearer(LONG_KEY), timeout=10).json()["data"]
    browser.set_window_size(width, 1000)
    login(browser, seeded)
    wait(browser, "#returns tr.return")
    ARTIFACTS.mkdir(exist_ok=True)
    for opened in (False, True):
        if opened:  # the refused request and the long key's return, each opened in place
            wait(browser, "#journal tr.violation")[0].click()
            wait(browser, "#journal tr.detail pre.request-body")
            browser.find_element(By.ID, "r-search").send_keys(created["id"])
            wait(browser, "#returns tr.return", lambda found: len(found) == 1)[0].click()
            wait(browser, "#returns svg.lifecycle")
        found = browser.execute_script(MEASURE)
        browser.save_screenshot(str(ARTIFACTS / f"dashboard-{width}px-{'open' if opened else 'closed'}.png"))
        state = f"{width} px, {'an entry open' if opened else 'closed'}"
        assert found["overflow"] == [], (state, found["overflow"][:10])
        assert found["page"] <= found["viewport"], (state, "the page scrolls sideways")
        for cell in found["cells"]:
            assert cell["lines"] == 1, (state, "broken over lines", cell)
            assert cell["titles"] and cell["titles"][0] == cell["text"].strip(), (state, "no whole value", cell)
        assert opened == any(cell["what"] == "segment" for cell in found["cells"]), state
        texts = {cell["text"] for cell in found["cells"]}
        assert LONG_KEY in texts and created["id"] in texts and any("o" * 60 in t for t in texts)
        assert browser.find_elements(By.CSS_SELECTOR, "#deliveries tr.delivery"), state


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """A browser whose network requests can be read back (Chrome's performance log)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def logged(browser: webdriver.Chrome, kind: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = browser.get_log(kind)  # type: ignore[no-untyped-call]
    return entries


def admin_calls(browser: webdriver.Chrome, server: Server) -> list[str]:
    """The /__admin paths the page asked for, once it has polled twice after drawing."""
    import json

    seen: list[str] = []

    def polled(b: webdriver.Chrome) -> bool:
        for record in logged(b, "performance"):
            message = json.loads(record["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                url = message["params"]["request"]["url"]
                if url.startswith(server.url + "/__admin/") and not url.endswith("/__admin/"):
                    seen.append(url[len(server.url) + len("/__admin"):].split("?")[0])
        return seen.count("/health") >= 3

    WebDriverWait(browser, 15).until(polled)
    return seen


def test_the_mock_s_dashboard_never_asks_for_drift(watched: webdriver.Chrome, seeded: Server) -> None:
    login(watched, seeded)
    calls = admin_calls(watched, seeded)
    assert "/drift" not in calls and {"/journal", "/returns", "/faults"} <= set(calls)
    assert not [e for e in logged(watched, "browser") if "/__admin/" in e["message"] and "(Unauthorized)" not in
                e["message"]]  # before the token is given, the health check's 401 asks for it
    assert "hidden" in (watched.find_element(By.ID, "drift-section").get_attribute("class") or "")


@pytest.mark.parametrize("shadow", [False, True], ids=["proxy", "shadow proxy"])
def test_the_proxy_s_dashboard_shows_only_what_the_proxy_has(watched: webdriver.Chrome, shadow: bool) -> None:
    upstream = Server("--store", "memory").start()
    proxy = Server("--3plship-upstream", f"{upstream.url}/3plship/api/v1", "--admin-token", "dash",
                   *(["--shadow"] if shadow else []), command="proxy").start()
    try:
        requests.post(f"{proxy.url}/3plship/api/v1/returns", headers=bearer("zl_test_dash"),
                      json=fixture("3plship/create-return.request.json"), timeout=10)
        login(watched, proxy)
        calls = set(admin_calls(watched, proxy))
        assert calls == {"/health", "/journal", *(["/drift"] if shadow else [])}
        assert not [e for e in logged(watched, "browser") if "/__admin/" in e["message"] and "(Unauthorized)" not in
                    e["message"]]
        for hidden in ("clock", "clock-controls", "returns-section", "faults-section", "webhooks-section",
                       *([] if shadow else ["drift-section"])):
            assert "hidden" in (watched.find_element(By.ID, hidden).get_attribute("class") or ""), hidden
    finally:
        proxy.stop()
        upstream.stop()
