"""End to end in headless Chromium: the real service, a real sshd fleet, the real frontend.

The tests in this module share one browser session and run in file order (login first, logout
last), the way an operator would use the product: log in, look at the links, verify one, run
scripts and watch them live, stop a long one, work in two terminal panes, log out. Every tab
is photographed into ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.fixtures_browser import (
    DemoService,
    app_ready,
    click_fresh,
    console_errors,
    failed_loads,
    header_texts,
    live_title,
    log_in,
    open_tab,
    pane_live,
    screenshot,
    set_flag,
    submit_run,
    terminal_text,
    texts,
    type_into,
    wait_for,
)

pytestmark = pytest.mark.browser

# The demo's inventory (examples/config-repo): vm-staging-01 is left unenrolled on purpose.
LINK_IDS = {"vps-fra-01", "vps-nyc-01", "pve-office-01", "vm-web-01", "vm-db-01",
            "vm-docker-01", "vm-staging-01"}


def task_output(driver: WebDriver, target: str, script: str) -> str:
    return str(driver.execute_script(
        "const t = document.querySelector("
        "`#op-live-body .task[data-target='${arguments[0]}'][data-script='${arguments[1]}'] pre`);"
        "return t ? t.textContent : '';", target, script))


def pick_script(driver: WebDriver, script: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f'#run-scripts input[data-script="{script}"]')
    if not box.is_selected():
        box.click()


def pick_targets(driver: WebDriver, targets: list[str]) -> None:
    driver.find_element(By.ID, "run-none").click()
    for target in targets:
        driver.find_element(By.CSS_SELECTOR, f'#run-targets input[data-target="{target}"]').click()


def clear_scripts(driver: WebDriver) -> None:
    for box in driver.find_elements(By.CSS_SELECTOR, "#run-scripts input:checked"):
        box.click()


def op_status_badge(driver: WebDriver) -> str:
    return driver.find_element(By.ID, "op-live-status").text.strip()


def rows_if_count(driver: WebDriver, selector: str, count: int) -> list[WebElement]:
    """The elements matching ``selector`` once there are exactly ``count`` of them."""
    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return found if len(found) == count else []


def toast_texts(driver: WebDriver) -> list[str]:
    return texts(driver, "#toasts .toast-body")


# ---- login ------------------------------------------------------------------------------------

def test_login_page_explains_wrong_password_and_lockout(
        browser: WebDriver, demo_service: DemoService) -> None:
    log_in(browser, demo_service, password="not-the-password")
    error = wait_for("the login error", lambda: browser.find_element(By.ID, "login-error")
                     if browser.find_element(By.ID, "login-error").is_displayed() else None)
    assert "Wrong username or password" in error.text
    assert browser.current_url.endswith("/login.html")

    # Five failures lock a username; the page says until when (a throwaway name, not admin).
    browser.find_element(By.ID, "username").clear()
    browser.find_element(By.ID, "username").send_keys("mallory")
    for _ in range(6):
        pw = browser.find_element(By.ID, "password")
        pw.clear()
        pw.send_keys("guess")
        browser.find_element(By.ID, "login-submit").click()
        wait_for("the login button to be usable again",
                 lambda: browser.find_element(By.ID, "login-submit").is_enabled())
    message = browser.find_element(By.ID, "login-error").text
    assert "locked" in message and re.search(r"unlocks at \d", message), message
    screenshot(browser, "login-locked")


def test_signed_out_visitor_is_sent_to_login(browser: WebDriver,
                                             demo_service: DemoService) -> None:
    browser.get(f"{demo_service.url}/#links")
    wait_for("the redirect to the login page", lambda: "/login.html" in browser.current_url)
    assert "next=%23links" in browser.current_url


def test_login_opens_the_app(app: WebDriver, demo_service: DemoService) -> None:
    assert wait_for("the user name in the top bar",
                    lambda: app.find_element(By.ID, "user-name").text == "admin")
    # The session lives in an HttpOnly cookie: JavaScript cannot read the token.
    assert "linkops_session" not in app.execute_script("return document.cookie")
    # …and the token from the login response is not kept anywhere script-readable.
    stored = app.execute_script(
        "return JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage)])")
    assert "eyJ" not in stored  # every JWT starts with the base64url of '{"'


# ---- overview ---------------------------------------------------------------------------------

def test_overview_shows_infrastructure_activity_and_health(app: WebDriver) -> None:
    open_tab(app, "overview")
    names = wait_for("link health rows", lambda: (
        found if len(found := texts(app, "#health-body .health-name")) == len(LINK_IDS)
        else None))
    assert len(set(names)) == len(LINK_IDS)
    counts = wait_for("infrastructure rows", lambda: texts(app, "#infra-body .infra-count"))
    assert sum(int(c) for c in counts) == len(LINK_IDS)
    screenshot(app, "overview")


# ---- links ------------------------------------------------------------------------------------

def test_links_table_lists_the_inventory_and_filters(app: WebDriver) -> None:
    open_tab(app, "links")
    wait_for("every link in the table", lambda: rows_if_count(
        app, "#links-table tbody tr", len(LINK_IDS)))
    assert set(app.execute_script("return [...document.querySelectorAll("
                                  "'#links-table tbody tr')].map(r => r.dataset.link)")) == LINK_IDS
    staging = app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vm-staging-01"]')
    assert "not enrolled" in staging.text
    assert not staging.find_element(By.CSS_SELECTOR, '[data-action="terminal"]').is_enabled()

    Select(app.find_element(By.ID, "links-enrolled")).select_by_value("false")
    shown = [r.get_attribute("data-link")
             for r in app.find_elements(By.CSS_SELECTOR, "#links-table tbody tr")]
    assert shown == ["vm-staging-01"]
    Select(app.find_element(By.ID, "links-enrolled")).select_by_value("")
    app.find_element(By.ID, "links-search").send_keys("vps-")
    searched = [str(r.get_attribute("data-link"))
                for r in app.find_elements(By.CSS_SELECTOR, "#links-table tbody tr")]
    assert sorted(searched) == ["vps-fra-01", "vps-nyc-01"]
    # clear() fires no input event; do what a user's select-all + delete would.
    app.execute_script("const s = document.getElementById('links-search'); s.value = '';"
                       "s.dispatchEvent(new Event('input'))")
    wait_for("the full table again", lambda: len(app.find_elements(
        By.CSS_SELECTOR, "#links-table tbody tr")) == len(LINK_IDS))
    screenshot(app, "links")


def test_copy_an_enrollment_id(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "links")
    with demo_service.http() as http:
        client_id = http.get("/api/links/vps-nyc-01").json()["enrollmentId"]
    row = app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vps-nyc-01"]')
    assert client_id.startswith("LINKOPS-")
    row.find_element(By.CSS_SELECTOR, ".cell-id button").click()
    wait_for("the copy confirmation",
             lambda: any(f"Copied {client_id}" in t for t in toast_texts(app)))


def test_git_sync_from_the_top_bar(app: WebDriver, demo_service: DemoService) -> None:
    with demo_service.http() as http:
        commit = http.get("/api/git/status").json()["commit_hash"]
    app.execute_script("window.scrollTo(0, 0)")
    app.find_element(By.ID, "git-sync").click()
    wait_for("the sync result", lambda: any(t.startswith("Synced") for t in toast_texts(app)),
             timeout=40)
    synced = next(t for t in toast_texts(app) if t.startswith("Synced"))
    assert "links no change" in synced and "[object" not in synced
    assert commit[:8] in app.find_element(By.ID, "git-text").text
    assert app.find_element(By.ID, "git-error").get_attribute("hidden") is not None


def test_verify_one_link(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "links")
    with demo_service.http() as http:
        before = http.get("/api/links/vps-fra-01").json()
    row = app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vps-fra-01"]')
    row.find_element(By.CSS_SELECTOR, '[data-action="verify"]').click()
    wait_for("the verify result", lambda: any("enrolled ✓ (client ID matches)" in t
                                              for t in toast_texts(app)), timeout=40)
    with demo_service.http() as http:
        after = http.get("/api/links/vps-fra-01").json()
    assert after["enrolled"] is True
    assert after["enrollmentVerifiedAt"] and \
        after["enrollmentVerifiedAt"] != before.get("enrollmentVerifiedAt")


def test_link_details_dialog(app: WebDriver) -> None:
    open_tab(app, "links")
    row = app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vm-web-01"]')
    row.find_element(By.CSS_SELECTOR, '[data-action="details"]').click()
    dialog = wait_for("the details dialog", lambda: app.find_element(By.ID, "details-dialog")
                      if app.find_element(By.ID, "details-dialog").is_displayed() else None)
    text = dialog.text
    assert "vm-web-01" in text and "Reached through" in text and "pve-office-01" in text
    screenshot(app, "links-details")
    ActionChains(app).send_keys(Keys.ESCAPE).perform()
    wait_for("the dialog to close",
             lambda: not app.find_element(By.ID, "details-dialog").is_displayed())


def test_topology_nests_vms_under_the_proxmox_host(app: WebDriver) -> None:
    open_tab(app, "links")
    app.find_element(By.ID, "links-view-topology").click()
    node = wait_for("the Proxmox node", lambda: app.find_element(
        By.CSS_SELECTOR, '#links-topology .topo-node[data-link="pve-office-01"]'))
    item: WebElement = node.find_element(By.XPATH, "..")
    children = {n.get_attribute("data-link") for n in item.find_elements(
        By.CSS_SELECTOR, ":scope > ul > li > .topo-node")}
    assert {"vm-web-01", "vm-db-01", "vm-docker-01", "vm-staging-01"} <= children
    screenshot(app, "links-topology")
    app.find_element(By.ID, "links-view-table").click()


# ---- operations -------------------------------------------------------------------------------

def test_run_on_two_targets_streams_live_and_finishes(app: WebDriver,
                                                      demo_service: DemoService) -> None:
    open_tab(app, "operations")
    wait_for("the script list", lambda: app.find_elements(By.CSS_SELECTOR, "#run-scripts input"))
    clear_scripts(app)
    pick_script(app, "long_task")
    set_flag(app, "long_task", "--duration", "6")
    set_flag(app, "long_task", "--interval", "1")
    pick_targets(app, ["vps-fra-01", "vps-nyc-01"])
    op_id = submit_run(app)

    # Live: progress lines appear while the task is still RUNNING.
    def running_with_output() -> bool:
        headers = header_texts(app, "vps-fra-01")
        return bool(headers) and headers[0].endswith("[RUNNING]") and \
            "progress:" in task_output(app, "vps-fra-01", "long_task")
    wait_for("live output while running", running_with_output, timeout=30)
    assert header_texts(app, "vps-fra-01")[0] == \
        "[1] - [Long Task (demo)] - [long_task] - [RUNNING]"
    screenshot(app, "operations-live")

    done = ["[1] - [Long Task (demo)] - [long_task] - [SUCCESS]"]
    for target in ("vps-fra-01", "vps-nyc-01"):
        wait_for(f"{target} to finish",
                 lambda t=target: header_texts(app, t) == done, timeout=40)  # type: ignore[misc]
        assert "long task: done" in task_output(app, target, "long_task")
    wait_for("the operation status", lambda: op_status_badge(app) == "success")
    with demo_service.http() as http:
        detail = http.get(f"/api/operations/{op_id}").json()
    assert detail["status"] == "success"
    assert sorted(log["target"] for log in detail["logs"]) == ["vps-fra-01", "vps-nyc-01"]
    screenshot(app, "operations")


def test_stop_a_long_operation(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "operations")
    clear_scripts(app)
    pick_script(app, "long_task")
    set_flag(app, "long_task", "--duration", "300")
    set_flag(app, "long_task", "--interval", "1")
    pick_targets(app, ["vm-web-01"])
    op_id = submit_run(app)
    wait_for("the first progress line",
             lambda: "progress:" in task_output(app, "vm-web-01", "long_task"), timeout=40)
    stop = app.find_element(By.ID, "op-stop")
    assert stop.is_enabled()
    stop.click()
    # Stop asks first (it cannot be undone).
    wait_for("the confirmation", lambda: app.execute_script(
        "return document.getElementById('confirm-dialog').open"))
    app.find_element(By.ID, "confirm-ok").click()
    wait_for("the task to show STOPPED", lambda: header_texts(app, "vm-web-01") ==
             ["[1] - [Long Task (demo)] - [long_task] - [STOPPED]"], timeout=40)
    wait_for("the operation to be stopped", lambda: op_status_badge(app) == "stopped")
    with demo_service.http() as http:
        assert http.get(f"/api/operations/{op_id}").json()["status"] == "stopped"
    # History lists it, newest first.
    app.execute_script("window.scrollTo(0, 0)")
    app.find_element(By.ID, "ops-show-history").click()
    wait_for("the stopped operation on top", lambda: app.find_element(
        By.CSS_SELECTOR, "#ops-table tbody tr").get_attribute("data-op") == op_id)
    # Viewing it from history draws the stored logs (GET /api/operations/{id}).
    app.execute_script("window.scrollTo(0, 0)")
    click_fresh(app, f'#ops-table tr[data-op="{op_id}"] button')
    wait_for("the stored log", lambda: header_texts(app, "vm-web-01") ==
             ["[1] - [Long Task (demo)] - [long_task] - [STOPPED]"] and
             "progress:" in task_output(app, "vm-web-01", "long_task"))
    assert op_id in live_title(app)
    assert not app.find_element(By.ID, "op-stop").is_enabled()
    app.find_element(By.ID, "ops-show-active").click()


def test_output_from_hosts_is_shown_as_text(app: WebDriver) -> None:
    """A host printing HTML shows it literally: nothing is parsed into the page."""
    open_tab(app, "operations")
    clear_scripts(app)
    pick_script(app, "check_services")
    payload = "<img src=x id=pwned>"
    set_flag(app, "check_services", "--services", payload)
    pick_targets(app, ["vps-nyc-01"])
    submit_run(app)
    wait_for("the payload echoed back",
             lambda: payload in task_output(app, "vps-nyc-01", "check_services"), timeout=40)
    assert app.find_elements(By.ID, "pwned") == []
    assert app.find_elements(By.CSS_SELECTOR, "#op-live-body img") == []


def test_rejected_run_is_explained(app: WebDriver) -> None:
    """The API's refusal (unenrolled target) reaches the user in words, naming the target."""
    open_tab(app, "operations")
    clear_scripts(app)
    pick_script(app, "system_info")
    pick_targets(app, ["vps-fra-01", "vm-staging-01"])
    before = live_title(app)
    app.find_element(By.ID, "run-submit").click()
    # Shown in the form's Run bar, in words (not "ENROLLMENT_REQUIRED — offenders: …").
    message = wait_for("the refusal in the form", lambda: (
        e.text if (e := app.find_element(By.ID, "run-error")).is_displayed() else None))
    assert message.startswith("Not run:") and "not enrolled" in message
    assert "ENROLLMENT_REQUIRED" not in message
    assert "vm-staging-01" in message and "vps-fra-01" not in message
    # The reason from the last verification ("client ID file … not found"), not raw JSON.
    assert "vm-staging-01 (client ID file" in message and "{" not in message
    assert live_title(app) == before  # nothing started

    # And the form's own checks: no script picked.
    clear_scripts(app)
    app.find_element(By.ID, "run-submit").click()
    wait_for("the form check", lambda: "Pick at least one script" in
             app.find_element(By.ID, "run-error").text)


# ---- terminal ---------------------------------------------------------------------------------

def test_two_pane_terminal_runs_a_command_in_pane_b(app: WebDriver) -> None:
    open_tab(app, "terminal")
    app.find_element(By.CSS_SELECTOR, '#term-layouts [data-layout="grid2x1"]').click()
    wait_for("two panes", lambda: app.find_element(By.CSS_SELECTOR, '.pane[data-pane="B"]')
             .is_displayed())
    for pane, target in (("A", "vps-fra-01"), ("B", "vm-db-01")):
        options = set(app.execute_script(
            "return [...arguments[0].options].map(o => o.value)",
            app.find_element(By.CSS_SELECTOR, f'.pane-target[data-pane="{pane}"]')))
        assert "vm-staging-01" not in options  # enrolled links only
        # Setting the value without "change" keeps the test on the Connect All path.
        app.execute_script("arguments[0].value = arguments[1]",
                           app.find_element(By.CSS_SELECTOR, f'.pane-target[data-pane="{pane}"]'),
                           target)
    app.find_element(By.ID, "term-connect-all").click()
    for pane in ("A", "B"):
        wait_for(f"pane {pane} connected",
                 lambda p=pane: pane_live(app, p), timeout=40)  # type: ignore[misc]
    wait_for("a prompt in pane B", lambda: re.search(r"[$#] ?$", terminal_text(app, "B").strip()
                                                     + " "), timeout=20)
    app.find_element(By.CSS_SELECTOR, '.pane[data-pane="B"] .xterm').click()
    ActionChains(app).send_keys("echo linkops-$((6*7))\n").perform()
    wait_for("the command output in pane B's buffer",
             lambda: "linkops-42" in terminal_text(app, "B").replace("$((6*7))", ""),
             timeout=20)
    assert "linkops-42" not in terminal_text(app, "A")
    assert app.find_element(By.ID, "term-summary").text == "2/2 connected"
    screenshot(app, "terminal")


def test_terminal_reattaches_after_reload(app: WebDriver) -> None:
    open_tab(app, "terminal")
    ws_id = app.execute_script("return sessionStorage.getItem('linkops.workspace')")
    assert ws_id and ws_id.startswith("ws-")
    app.refresh()
    wait_for("the app after reload", lambda: app_ready(app), timeout=30)
    assert app.execute_script("return sessionStorage.getItem('linkops.workspace')") == ws_id
    wait_for("pane B connected again", lambda: pane_live(app, "B"), timeout=30)
    app.find_element(By.CSS_SELECTOR, '.pane[data-pane="B"] .xterm').click()
    ActionChains(app).send_keys("echo again-$((7*7))\n").perform()
    wait_for("output after re-attaching", lambda: "again-49" in terminal_text(app, "B"),
             timeout=20)


def test_disconnect_and_reconnect_one_pane(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "terminal")
    ws_id = app.execute_script("return sessionStorage.getItem('linkops.workspace')")
    pane_b = '.pane[data-pane="B"]'
    app.find_element(By.CSS_SELECTOR, f'{pane_b} [data-pane-action="disconnect"]').click()
    wait_for("pane B closed", lambda: app.find_element(
        By.CSS_SELECTOR, '.pane[data-pane="B"]').get_attribute("data-status") == "closed")
    assert app.find_element(By.ID, "term-summary").text == "1/2 connected"
    with demo_service.http() as http:
        workspace = http.get(f"/api/terminal/workspaces/{ws_id}").json()
    panes = {p["pane"]: p for p in workspace["panes"]}
    assert panes["B"]["status"] not in ("connected", "enrolled", "connecting")
    app.find_element(By.CSS_SELECTOR, f'{pane_b} [data-pane-action="connect"]').click()
    wait_for("pane B back", lambda: pane_live(app, "B"), timeout=40)
    type_into(app, "B", "echo back-$((1+1))\n")
    wait_for("output after reconnecting", lambda: "back-2" in terminal_text(app, "B"))


def test_large_output_flows_with_acks_and_the_other_pane_stays_live(app: WebDriver) -> None:
    """Output far beyond the flow-control window arrives whole (the page acks what xterm.js
    rendered), and pane A still answers afterwards."""
    open_tab(app, "terminal")
    type_into(app, "B", "seq 1 150000; echo flow-$((6*7))\n")
    wait_for("the end of 1 MB of output", lambda: "flow-42" in terminal_text(app, "B"),
             timeout=60)
    type_into(app, "A", "echo quiet-$((2+3))\n")
    wait_for("pane A echo", lambda: "quiet-5" in terminal_text(app, "A"))


def test_echo_answers_while_the_other_pane_floods(app: WebDriver) -> None:
    """With the page's flow control on, pane A printing without end never freezes the socket:
    pane B's echoes keep coming back while A floods."""
    open_tab(app, "terminal")
    type_into(app, "A", "timeout 8 cat /dev/urandom | base64; echo flood-$((1+1))-done\n")
    for i in range(3):
        type_into(app, "B", f"echo during-{i}-x{i}y\n")
        wait_for(f"echo {i} while A floods",
                 lambda i=i: f"during-{i}-x{i}y" in  # type: ignore[misc]
                 terminal_text(app, "B").replace(f"echo during-{i}-x{i}y", ""), timeout=30)
    wait_for("the flood to end", lambda: "flood-2-done" in terminal_text(app, "A"), timeout=60)


def last_stty_size(driver: WebDriver, pane: str) -> tuple[int, int] | None:
    found = re.findall(r"^(\d+) (\d+)\s*$", terminal_text(driver, pane), re.MULTILINE)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def term_size(driver: WebDriver, pane: str) -> tuple[int, int]:
    rows, cols = driver.execute_script(
        "const t = window.__linkops.terminals[arguments[0]]; return [t.rows, t.cols];", pane)
    return int(rows), int(cols)


def test_terminal_follows_pane_size_and_runs_vim(app: WebDriver) -> None:
    open_tab(app, "terminal")
    type_into(app, "A", "clear; stty size\n")
    wait_for("stty size in pane A", lambda: last_stty_size(app, "A") == term_size(app, "A"))
    narrow = term_size(app, "A")

    # One pane instead of two: pane A doubles in width and the PTY follows.
    app.find_element(By.CSS_SELECTOR, '#term-layouts [data-layout="single"]').click()
    wait_for("pane A to grow", lambda: term_size(app, "A")[1] > narrow[1] * 1.6)
    type_into(app, "A", "clear; stty size\n")
    wait_for("the PTY to have the new size",
             lambda: last_stty_size(app, "A") == term_size(app, "A"))

    # A full-screen program: vim switches to the alternate screen and back.
    type_into(app, "A", "vim -u NONE -N\n")
    wait_for("vim's alternate screen", lambda: app.execute_script(
        "return window.__linkops.terminals.A.buffer.active.type") == "alternate")
    screenshot(app, "terminal-vim")
    ActionChains(app).send_keys(":q!\n").perform()
    wait_for("the shell again", lambda: app.execute_script(
        "return window.__linkops.terminals.A.buffer.active.type") == "normal")
    app.find_element(By.CSS_SELECTOR, '#term-layouts [data-layout="grid2x1"]').click()


def test_terminal_action_on_a_link_uses_a_free_pane(app: WebDriver) -> None:
    """Panes A and B are live: the Links action opens a third pane instead of replacing one
    (issue 16; the details are in test_browser_terminal_ui.py)."""
    open_tab(app, "links")
    # The table is (re)drawn when the links arrive: find and click the row's action in one
    # go, again if the row was replaced meanwhile (wait_for retries a stale element).
    def click_terminal_action() -> bool:
        app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vm-docker-01"] '
                                          '[data-action="terminal"]').click()
        return True

    wait_for("the terminal action of vm-docker-01", click_terminal_action)
    wait_for("the terminal tab", lambda: app.find_element(By.ID, "panel-terminal").is_displayed())
    wait_for("pane C on vm-docker-01", lambda: app.execute_script(
        "return document.querySelector('.pane-target[data-pane=\"C\"]').value")
        == "vm-docker-01" and pane_live(app, "C"), timeout=40)
    assert pane_live(app, "A") and pane_live(app, "B")
    type_into(app, "C", "echo docker-$((2+3))\n")
    wait_for("output from the new session", lambda: "docker-5" in terminal_text(app, "C"))


# ---- themes, console, logout ------------------------------------------------------------------

def test_theme_is_remembered(app: WebDriver) -> None:
    Select(app.find_element(By.ID, "theme-select")).select_by_value("charcoal-leather")
    app.refresh()
    wait_for("the app after reload", lambda: app_ready(app), timeout=30)
    assert app.execute_script(
        "return document.documentElement.dataset.theme") == "charcoal-leather"
    open_tab(app, "overview")
    screenshot(app, "overview-charcoal-leather")
    Select(app.find_element(By.ID, "theme-select")).select_by_value("gray-fabric")


def test_no_console_errors(app: WebDriver) -> None:
    # Expected: 401/403 answers to the deliberate bad logins, the signed-out visit and the
    # run refused for an unenrolled target (refused when
    # it is planned, POST /api/operations/plan). Anything else (a script error above all) fails.
    assert console_errors(app, failed_loads(r"/api/auth/(login|me) - .* status of (401|403)",
                                            r"/api/operations/plan - .* status of 403")) == []


def test_logout(app: WebDriver, demo_service: DemoService) -> None:
    app.find_element(By.ID, "user-button").click()
    app.find_element(By.ID, "logout").click()
    wait_for("the login page", lambda: app.current_url.endswith("/login.html"))
    screenshot(app, "login")
    app.get(f"{demo_service.url}/#overview")
    wait_for("the redirect to login", lambda: "/login.html" in app.current_url)
