"""The dashboard in a real headless Chromium (Debian's ``chromium`` + ``chromedriver``),
driven by selenium, over a real run and a real ``plexa web``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import assert_stays, settled, wait_for
from web_helpers import ROOT, Web, serve_web

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.allow_leftovers,  # the module's fixture checks the run left nothing
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
    ),
]
PIPE = """
actors:
  src:    {class: "actors:Source", options: {count: 100000000, rate_hz: 100}}
  mid:    {class: "actors:Relay"}
  slow:   {class: "actors:Counter", options: {delay: 0.02}}
  fit:    {class: "actors:LongFit", options: {total: 200000, chunk_s: 0.002}}
  chatty: {class: "actors:Chatty", options: {every: 1.0}}
connections:
  src.out: [mid.inp]
  mid.out: {to: [slow.inp], policy: latest, capacity: 4}
jobs:
  site: {module: plexa.examples.job_http, config: {greeting: hello}}
"""
SCREENSHOT = ROOT / "docs" / "web-dashboard.png"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    cfg = tmp_path_factory.mktemp("dash") / "pipe.yaml"
    cfg.write_text(PIPE)
    with serve_web(cfg) as site:
        with site.client() as c:
            assert c.post(f"/runs/{site.name}/setup").status_code == 200
            assert c.post(f"/runs/{site.name}/run").status_code == 200
        yield site


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1400,1300", "--no-first-run", "--disable-extensions",
        "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-default-apps", "--no-proxy-server",
        # names resolve to nothing: a page that reached for a CDN could not load it
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):  # fmt: skip
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not download a driver
    driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _received(web: Web) -> int:
    with web.client() as c:
        return int(c.get(f"/runs/{web.name}/status").json()["actors"]["mid"]["msgs_in"])


def _text(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    try:
        return str(browser.find_element(By.CSS_SELECTOR, css).text)
    except Exception:
        return ""


def test_the_page_loads_from_the_server_alone_and_shows_actors_links_and_the_log(
    web: Web, browser: Any
) -> None:
    browser.get(web.dashboard)
    wait_for(lambda: _text(browser, '#actors tr[data-actor="mid"] .state') == "running",
             30, "the actors table to show mid running")  # fmt: skip
    assert "token" not in browser.current_url, "the token is taken off the URL"
    assert browser.execute_script("return sessionStorage.getItem('plexa.token')") == web.token
    names = browser.execute_script(
        "return [...document.querySelectorAll('#actors tbody tr')].map(r => r.dataset.actor)"
    )
    assert sorted(names) == ["chatty", "fit", "mid", "slow", "src"]
    assert _text(browser, '#actors tr[data-actor="mid"] .where') == "this host"
    links = browser.execute_script(
        "return [...document.querySelectorAll('#links tbody tr')].map(r => r.dataset.link)"
    )
    assert sorted(links) == ["mid.out->slow.inp", "src.out->mid.inp"]
    edges = browser.execute_script(
        "return [...document.querySelectorAll('#graph g.edge')].map(g => g.dataset.link)"
    )
    assert sorted(edges) == sorted(links)
    wait_for(lambda: _text(browser, '#graph g.edge[data-link="src.out->mid.inp"] .rate')
             not in ("", "0.0/s"), 20, "a live rate on the graph's edge")  # fmt: skip
    wait_for(lambda: "line" in _text(browser, "#log"), 20, "chatty's lines in the log")
    wait_for(lambda: _text(browser, '#jobs tr[data-key="site"] .state') == "running",
             20, "the job listed as running")  # fmt: skip
    wait_for(lambda: browser.execute_script(
        "const p = document.querySelector('#actors tr[data-actor=fit] progress');"
        "return p ? p.value : 0") > 0, 20, "fit's progress bar")  # fmt: skip
    origin = web.url.rstrip("/")
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat(performance.getEntriesByType('navigation').map(e => e.name))"
    )
    assert urls and all(u.startswith(origin + "/") for u in urls), urls
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_the_pause_button_stops_the_frames_and_resume_brings_them_back(
    web: Web, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    if "#actors" not in browser.page_source:
        browser.get(web.dashboard)
    wait_for(lambda: _text(browser, "#run-state").startswith("running"), 30, "a running run")
    # a few metrics events so the plots have lines in the screenshot
    wait_for(lambda: browser.execute_script(
        "return (window.plexaHistory?.('src.out->mid.inp') || []).length") >= 12,
        30, "twelve points in a link plot")  # fmt: skip
    browser.save_screenshot(str(tmp_path / "dashboard.png"))
    if os.environ.get("PLEXA_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / "dashboard.png", SCREENSHOT)
    start = _received(web)
    wait_for(lambda: _received(web) > start + 10, 20, "frames to flow")
    browser.find_element(By.CSS_SELECTOR, '#run-buttons button[data-cmd="pause"]').click()
    wait_for(lambda: _text(browser, "#run-state").startswith("paused"), 20, "the page: paused")
    paused = settled(lambda: _received(web))
    assert_stays(lambda: _received(web) == paused, 1.0, "no frame while paused")
    assert _text(browser, "#message") == ""
    browser.find_element(By.CSS_SELECTOR, '#run-buttons button[data-cmd="resume"]').click()
    wait_for(lambda: _received(web) > paused + 10, 20, "frames to flow again")  # type: ignore[operator]


def test_an_actor_button_and_a_refused_command_show_their_result(web: Web, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    row = '#actors tr[data-actor="slow"]'
    wait_for(lambda: _text(browser, f"{row} .state") == "running", 30, "slow running")
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-cmd="pause"]').click()
    wait_for(lambda: _text(browser, f"{row} .state") == "paused", 20, "slow paused on the page")
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-cmd="pause"]').click()
    wait_for(lambda: "not allowed" in _text(browser, "#message"), 20, "the refusal shown")
    browser.find_element(By.CSS_SELECTOR, f'{row} button[data-cmd="resume"]').click()
    wait_for(lambda: _text(browser, f"{row} .state") == "running", 20, "slow running again")


def test_a_job_launched_from_the_page_is_listed(web: Web, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.ID, "job-module").send_keys("plexa.examples.job_http")
    browser.find_element(By.ID, "job-name").send_keys("fromthepage")
    browser.find_element(By.ID, "job-config").send_keys('{"k": 1}')
    browser.find_element(By.ID, "launch-btn").click()
    wait_for(lambda: _text(browser, '#jobs tr[data-key="fromthepage"] .state') == "running",
             20, "the launched job running")  # fmt: skip
    with web.client() as c:
        names = [j["name"] for j in c.get(f"/runs/{web.name}/jobs").json()]
    assert "fromthepage" in names
