"""The dashboard in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

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
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

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


def test_dashboard_lists_returns_and_highlights_violations(browser: webdriver.Chrome, tmp_path: Path) -> None:
    server = Server("--store", f"sqlite:{tmp_path / 's.db'}", "--admin-token", "dash").start()
    try:
        browser.get(server.url + "/__admin/?token=dash")
        assert browser.find_element(By.ID, "no-returns").text == "No returns yet."

        created = requests.post(server.url + PL + "/returns", json=fixture("3plship/create-return.request.json"),
                                headers=bearer("zl_test_dash"), timeout=10).json()["data"]
        requests.post(server.url + UP35 + "/returns", json=fixture("35up/create-return.request.json"),
                      headers=basic("shop-a"), timeout=10)
        requests.patch(server.url + UP35 + "/returns/42346434", json={"status": "awaiting_return"},
                       headers=basic("shop-a"), timeout=10)
        requests.patch(server.url + UP35 + "/returns/42346434", json={"status": "approved"},
                       headers=basic("shop-a"), timeout=10)

        browser.get(server.url + "/__admin/?token=dash")
        accounts = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h3.account")]
        assert accounts == ["35up · shop-a", "3plship · zl_test_dash"]
        row = browser.find_element(By.CSS_SELECTOR, f"tr.return[data-id='{created['id']}']")
        assert row.find_element(By.CSS_SELECTOR, "td.status").text == "initiated"
        history = browser.find_element(By.CSS_SELECTOR, "tr.return[data-id='42346434'] td.history").text
        assert "created" in history and "awaiting_return" in history

        flagged = browser.find_elements(By.CSS_SELECTOR, "#journal tr.violation")
        assert len(flagged) == 1
        assert "PATCH /35up/v1/returns/42346434" in flagged[0].text
        why = flagged[0].find_element(By.CSS_SELECTOR, "td.why")
        assert why.text.startswith("status: 'approved' is not one of the valid values: created, rejected")
        assert why.value_of_css_property("color") == "rgba(179, 38, 30, 1)"  # highlighted in red
        assert len(browser.find_elements(By.CSS_SELECTOR, "#journal tr.entry")) == 4

        browser.get(server.url + "/__admin/")  # without the token
        assert "unauthorized" in browser.page_source
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        server.stop()
