"""The exchange pages in a real headless Chromium (Selenium), end to end with the API:

a consumer department signs in → browses and searches the catalogue → requests a conditional resource → the
provider signs in and approves → the consumer looks the person up through the API → the data subject's access
page shows that lookup (which department, when, for what purpose, under which case number).

Needs Debian's chromium and chromium-driver (`scripts/install-test-tools.sh`, run by `make test`). Without them the
test skips on a developer machine; with CI=true it fails, so CI never skips it silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import httpx
import pytest
from test_library_views import PERSON, build_dataset
from test_opendata_portal_browser import driver  # noqa: F401  (fixture: headless Chromium, skip/fail rules)
from test_opendata_portal_fakes import running_server

from catalog import access
from catalog.audit import close_writers
from exchange.security import GuardMiddleware, subject_token
from hub import db
from hub.crypto import get_cipher, new_keyring_document

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
CONSUMER, PROVIDER = "minzheng", "gongan"
CASE_NUMBER = "MZ-2026-000777"


@pytest.fixture
def exchange_site(tmp_path, hub_settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The exchange (API + pages, fast path and guard as `hub serve` runs them) on uvicorn over an SQLite hub."""
    from exchange.api import FastLookup, create_exchange_api
    from exchange.pages import add_pages

    monkeypatch.setenv("HUB_KEYRING", json.dumps(new_keyring_document()))
    get_cipher.cache_clear()
    access.reset_caches()
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db.upgrade(url)
    engine = db.engine_for(url)
    build_dataset(engine, get_cipher())
    keys = {}
    for code in (CONSUMER, PROVIDER):
        access.register_consumer(engine, code, T0)
        keys[code] = access.issue_key(engine, code, T0)[1]
    app = create_exchange_api(engine)
    add_pages(app, engine)
    with running_server(GuardMiddleware(FastLookup(app))) as base:
        yield {"base": base, "keys": keys, "engine": engine}
    close_writers()
    access.reset_caches()
    get_cipher.cache_clear()
    db.dispose_engines()


def _wait_text(browser, element_id: str, words: str, timeout: float = 30) -> str:
    """The text of an element once it contains `words` (pages load slowly on a busy machine)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(driver) -> str | bool:
        try:
            text = driver.find_element("id", element_id).text
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return text if words in text else False

    return WebDriverWait(browser, timeout).until(ready)


def _sign_in(browser, base: str, key: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(f"{base}/exchange/login")
    browser.find_element("id", "api_key").send_keys(key)
    browser.find_element("id", "login").click()
    WebDriverWait(browser, 30).until(lambda driver: "/exchange/catalogue" in driver.current_url)


def _lookup(site: dict) -> httpx.Response:
    return httpx.post(f"{site['base']}/exchange/v1/persons/query", timeout=30,
                      json={"resident_id": PERSON, "resource": "RK.household", "fields": ["household_address"]},
                      headers={"X-API-Key": site["keys"][CONSUMER], "X-Purpose": "SHBZ", "X-Case-Number": CASE_NUMBER,
                               "X-User": "mz-clerk-07"})


def test_request_approve_lookup_and_subject_access_in_a_browser(exchange_site: dict, driver) -> None:  # noqa: F811
    from selenium.webdriver.support.ui import Select

    site, browser, base = exchange_site, driver, exchange_site["base"]
    assert _lookup(site).status_code == 403  # conditional: nothing before a request is approved

    # the consumer signs in, searches the catalogue and opens the resource
    _sign_in(browser, base, site["keys"][CONSUMER])
    assert "共享目录" in browser.title or "共享目录" in browser.page_source
    search = browser.find_element("id", "q")
    search.send_keys("户籍")
    search.submit()
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    # the catalogue before the search lists the resource too: wait for the results page to replace it, or the
    # link found may be the old page's, gone stale by the time its text is read (seen once in CI)
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(search))
    link = WebDriverWait(browser, 30).until(lambda driver: driver.find_elements(
        "css selector", 'a.resource-link[href="/exchange/catalogue/RK.household"]'))[0]
    assert "人口户籍信息" in link.text
    link.click()
    WebDriverWait(browser, 30).until(lambda driver: driver.find_elements("id", "request-form"))
    assert "有条件共享" in browser.page_source

    # … and requests the household address for social-security case work
    browser.find_element("id", "fields").send_keys("household_address")
    Select(browser.find_element("id", "purpose_code")).select_by_value("SHBZ")
    browser.find_element("id", "purpose").send_keys("城乡居民养老保险待遇资格认证（依据《社会保险法》）")
    browser.find_element("id", "requested_by").send_keys("mz-clerk-07")
    browser.find_element("id", "submit-request").click()
    submitted = _wait_text(browser, "submitted", "已提交")
    request_id = int("".join(ch for ch in submitted.split("已提交")[0] if ch.isdigit()))
    assert "待答复" in _wait_text(browser, "mine", "待答复")

    # the provider signs in and approves it
    _sign_in(browser, base, site["keys"][PROVIDER])
    browser.get(f"{base}/exchange/requests")
    _wait_text(browser, "pending", "household_address")
    browser.find_element("id", f"approve-{request_id}").click()
    _wait_text(browser, "pending", "没有待答复的申请")

    # the consumer now gets the address through the API (the grant is live at once in this process)
    answer = _lookup(site)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["household_address"]

    # the data subject sees who looked, when and why
    browser.delete_all_cookies()
    browser.get(f"{base}/exchange/subject-access")
    browser.find_element("id", "token").send_keys(subject_token(PERSON))
    browser.find_element("id", "show").click()
    table = _wait_text(browser, "accesses", "省民政厅")
    assert "省民政厅" in table and "mz-clerk-07" in table and "社会保障经办" in table and CASE_NUMBER in table
    assert "已返回" in table and "已拒绝" in table  # the refused attempt before the grant is listed too
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in table
    assert PERSON not in browser.page_source
