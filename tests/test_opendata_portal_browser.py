"""The portal in a real headless Chromium (Selenium): home → search → dataset page → download → SHA-256 checks out.

Needs Debian's chromium and chromium-driver (`scripts/install-test-tools.sh`, run by `make test`). Without them the
test skips on a developer machine; with CI=true it fails, so CI never skips it silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_opendata_portal_fakes import portal_database, running_server, write_fake_releases

from hub import db
from opendata.portal import DownloadCounter, PortalConfig, create_portal

CHROMIUM = os.environ.get("HUB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HUB_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
LEGAL = "legal-entity-registry"
V2 = "2026-11-02.1"

pytestmark = pytest.mark.slow


def _browser_or_skip() -> None:
    """Skip without chromium/chromedriver/selenium on a developer machine; fail in CI."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"headless browser unavailable (run scripts/install-test-tools.sh): missing {', '.join(missing)}"
        if IN_CI:
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium with downloads going to tmp_path/downloads; Selenium Manager never runs (no network)."""
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must not go to the network
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--lang=zh-CN",
                     f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,1000"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "safebrowsing.enabled": False})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.downloads_dir = downloads  # type: ignore[attr-defined]
    try:
        yield browser
    finally:
        browser.quit()


def _wait_for_file(folder: Path, timeout: float = 30) -> Path:
    """The first completely downloaded file in folder (Chromium writes .crdownload until done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if not p.name.endswith((".crdownload", ".tmp"))]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no download finished in {timeout} s: {list(folder.iterdir())}")


def _navigates(driver, action) -> None:
    """Run action (a click, ENTER, refresh) and wait until the browser is on the new page.

    Without the wait, find_element can still see the old page's elements, which then go stale mid-test."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 15).until(lambda d: _replaced(old_page))
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _replaced(element) -> bool:
    """Whether an element's document is gone: stale, or — Chromium's other answer while it swaps documents — a node
    that "does not belong to the document" (seen in CI as an unknown error, which staleness_of does not catch)."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


def test_find_and_download_in_a_real_browser(driver, tmp_path: Path) -> None:
    """Home → search 法人 → dataset page (rendered under the CSP) → click the CSV download → file saved → SHA-256 matches."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    root = tmp_path / "site"
    write_fake_releases(root)
    url = portal_database(root)
    engine = db.engine_for(url)
    app = create_portal(root, engine, PortalConfig(rate=50, burst=200))
    try:
        with running_server(app) as base:
            driver.get(f"{base}/opendata/")
            assert "政务开放数据门户" in driver.title
            assert "共 3 个数据集" in driver.find_element(By.ID, "result-count").text
            # The stylesheet applied despite the strict CSP: the header is coloured, not default white.
            header = driver.find_element(By.CSS_SELECTOR, "header.site")
            assert header.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"

            box = driver.find_element(By.ID, "q")
            _navigates(driver, lambda: box.send_keys("法人登记", Keys.ENTER))
            assert "“法人登记”的检索结果" in driver.find_element(By.TAG_NAME, "h1").text
            links = driver.find_elements(By.CSS_SELECTOR, "a.dataset-link")
            assert links[0].text == "法人登记信息"
            _navigates(driver, links[0].click)

            assert driver.find_element(By.ID, "dataset-title").text == "法人登记信息"
            assert "嘉兴南湖农业专业合作社" in driver.find_element(By.ID, "preview").text
            row = driver.find_element(By.ID, "file-data-csv")
            shown_sha = row.find_element(By.CSS_SELECTOR, "code.sha256").text
            row.find_element(By.CSS_SELECTOR, "a.download").click()
            saved = _wait_for_file(driver.downloads_dir)

            manifest = json.loads((root / "opendata" / LEGAL / V2 / "manifest.json").read_text(encoding="utf-8"))
            expected = next(f["sha256"] for f in manifest["files"] if f["name"] == "data.csv")
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected == shown_sha
            assert saved.name == f"法人登记信息_{V2}_data.csv"  # the UTF-8 filename* was honoured
            deadline = time.monotonic() + 5
            while DownloadCounter(engine).counts(LEGAL).get((LEGAL, V2, "data.csv"), 0) < 1:
                assert time.monotonic() < deadline, "download not counted"
                time.sleep(0.05)
            _navigates(driver, driver.refresh)
            assert driver.find_element(By.CSS_SELECTOR, "#file-data-csv td.count").text == "1"
            assert not [e for e in driver.get_log("browser") if "Content Security Policy" in e.get("message", "")]
    finally:
        db.dispose_engines()
