"""The product as a new user installs it: ``pip install .`` into a fresh virtualenv (from a
clean clone, no nox, no vendor/ beforehand), the installed ``linkops demo``, headless Chromium.

The page loads without a single console error (a missing ``vendor/xterm/xterm.css`` used to
be answered with a JSON 404 and refused as a stylesheet) and a terminal opens and runs a
command on a real sshd of the sandbox fleet.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures_browser import (
    DemoService,
    app_ready,
    console_errors,
    log_in,
    open_tab,
    run_demo,
    terminal_text,
    wait_for,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def installed_service(installed_venv: Path, tmp_path_factory: pytest.TempPathFactory,
                      ) -> Iterator[DemoService]:
    elsewhere = tmp_path_factory.mktemp("not-the-checkout")
    where = subprocess.run(
        [str(installed_venv / "bin" / "python"), "-c", "import linkops; print(linkops.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert where.startswith(str(installed_venv)), where  # the installed copy, not the checkout
    with run_demo([str(installed_venv / "bin" / "linkops")], elsewhere) as service:
        yield service


def test_installed_service_serves_the_vendored_frontend(installed_service: DemoService) -> None:
    with httpx.Client(base_url=installed_service.url, timeout=30) as client:
        css = client.get("/vendor/xterm/xterm.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        js = client.get("/vendor/xterm/xterm.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        health = client.get("/api/health").json()
    assert health["frontend"] == "ok"


def test_installed_service_opens_a_terminal_without_console_errors(
    browser: WebDriver, installed_service: DemoService
) -> None:
    log_in(browser, installed_service)
    wait_for("the app after login", lambda: app_ready(browser), timeout=30)
    open_tab(browser, "terminal")
    # The pane's target list fills in when the links arrive: a value set before its option
    # exists is dropped (the pane then stays idle, "pick an enrolled link").
    option = '.pane-target[data-pane="A"] option[value="vps-fra-01"]'
    wait_for("vps-fra-01 among pane A's targets",
             lambda: browser.find_elements(By.CSS_SELECTOR, option), timeout=30)
    select = browser.find_element(By.CSS_SELECTOR, '.pane-target[data-pane="A"]')
    browser.execute_script("arguments[0].value = arguments[1]", select, "vps-fra-01")
    assert select.get_attribute("value") == "vps-fra-01"
    browser.find_element(By.ID, "term-connect-all").click()
    try:
        wait_for("pane A connected", lambda: browser.find_element(
            By.CSS_SELECTOR, '.pane[data-pane="A"]').get_attribute("data-status")
            in ("connected", "enrolled"), timeout=40)
    except AssertionError as exc:  # say what the pane and the service said
        pane = browser.find_element(By.CSS_SELECTOR, '.pane[data-pane="A"]')
        log = (installed_service.workdir / "demo.stderr").read_text()[-3000:]
        raise AssertionError(f"{exc}; pane status {pane.get_attribute('data-status')!r}, "
                             f"text {pane.text[-500:]!r}; service log tail:\n{log}") from None
    wait_for("a prompt in pane A",
             lambda: re.search(r"[$#] ?$", terminal_text(browser, "A").strip() + " "), timeout=20)
    browser.find_element(By.CSS_SELECTOR, '.pane[data-pane="A"] .xterm').click()
    ActionChains(browser).send_keys("echo installed-$((6*7))\n").perform()
    wait_for("the command output in pane A",
             lambda: "installed-42" in terminal_text(browser, "A").replace("$((6*7))", ""),
             timeout=20)
    # The xterm stylesheet applied (a refused stylesheet leaves .xterm unstyled).
    assert browser.execute_script(
        "return getComputedStyle(document.querySelector('.xterm .xterm-helpers'))"
        ".position") == "absolute"
    assert console_errors(browser, allow=lambda entry: False) == []
