"""Issue #16, operations and links half: what an operator sees in the first hour.

Real headless Chromium against ``linkops demo`` (real sshd fleet, real Git repository). The
tests share one browser session and run in file order: operations first (flags, Run again,
statuses and the summary strip, URLs, the run form, output tools), then Links and Overview,
then the screenshots of every tab in every theme and size, the keyboard-only walk and the
console check.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.fixtures_browser import (
    DemoService,
    app_ready,
    click_fresh,
    console_errors,
    failed_loads,
    header_texts,
    live_title,
    new_operation_id,
    open_tab,
    plan_dialog_open,
    screenshot,
    set_flag,
    submit_run,
    texts,
    wait_for,
)

pytestmark = pytest.mark.browser

THEMES = ("gray-fabric", "blue-fabric", "charcoal-leather")
SIZES = ((1280, 800), (1440, 900))
TABS = ("overview", "links", "operations", "terminal", "recordings")
# login.html?next=<given> → the hash the app lands on (URL-encoded; "" = the default page).
NEXT_CASES = (
    ("https%3A%2F%2Fevil.example%2F", ""),
    ("%2F%2Fevil.example", ""),
    ("%23links%2F..%2F..%2Fx%20y", ""),
    ("%23links%2Fvm-db-01", "#links/vm-db-01"),
)


# ---- helpers ----------------------------------------------------------------------------------

def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def counts(driver: WebDriver) -> dict[str, int]:
    return {str(k): int(v) for k, v in js(driver, """
        const out = {};
        for (const e of document.querySelectorAll('#op-summary [data-count]'))
          out[e.dataset.count] = Number(e.querySelector('b').textContent);
        return out;""").items()}


def ticked(driver: WebDriver, box: str) -> list[str]:
    """Values of the ticked checkboxes in #run-scripts / #run-targets, in order."""
    return [str(v) for v in js(driver, "return [...document.querySelectorAll(arguments[0])]"
                                       ".map(i => i.value)", f"#{box} input:checked")]


def link_rows(driver: WebDriver) -> list[str]:
    return [str(r.get_attribute("data-link"))
            for r in driver.find_elements(By.CSS_SELECTOR, "#links-table tbody tr")]


def output_white_space(driver: WebDriver) -> str:
    return str(js(driver, "return getComputedStyle("
                          "document.querySelector('#op-live-body pre')).whiteSpace"))


def th_widths(driver: WebDriver) -> list[int]:
    return [int(w) for w in js(driver, "return [...document.querySelectorAll("
                                       "'#links-table th')].map(t => t.offsetWidth)")]


def details_open(driver: WebDriver) -> bool:
    return bool(js(driver, "return document.getElementById('details-dialog').open"))


def pick_script(driver: WebDriver, script: str) -> None:
    box = wait_for(f"{script} in the script list", lambda: driver.find_element(
        By.CSS_SELECTOR, f'#run-scripts input[data-script="{script}"]'))
    if not box.is_selected():
        js(driver, "arguments[0].scrollIntoView({block: 'nearest'})", box)
        box.click()


def clear_scripts(driver: WebDriver) -> None:
    # Each click re-renders the list: find the next ticked box afresh every time.
    while boxes := driver.find_elements(By.CSS_SELECTOR, "#run-scripts input:checked"):
        js(driver, "arguments[0].scrollIntoView({block: 'nearest'})", boxes[0])
        boxes[0].click()


def pick_targets(driver: WebDriver, targets: list[str]) -> None:
    js(driver, "document.getElementById('run-target-search').value = '';"
               "document.getElementById('run-target-search').dispatchEvent(new Event('input'))")
    driver.find_element(By.ID, "run-none").click()
    for target in targets:
        selector = f'#run-targets input[data-target="{target}"]'
        box = wait_for(f"{target} in the targets",
                       lambda s=selector: driver.find_element(By.CSS_SELECTOR, s))  # type: ignore[misc]
        js(driver, "arguments[0].scrollIntoView({block: 'nearest'})", box)
        box.click()


def empty_search(driver: WebDriver, element_id: str) -> None:
    """Empty a search field the way a user does (select all, delete): fires `input`."""
    field = driver.find_element(By.ID, element_id)
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)


def op_status(driver: WebDriver) -> str:
    # textContent, not .text: WebDriver's text is "" while the element is scrolled or laid
    # out of view, which is not what these tests ask about.
    return str(js(driver, "return document.getElementById('op-live-status').textContent")
               ).strip()


def long_task(driver: WebDriver, targets: list[str], duration: str,
              extra: tuple[str, ...] = ()) -> str:
    open_tab(driver, "operations")
    wait_for("the script list", lambda: driver.find_elements(By.CSS_SELECTOR, "#run-scripts input"))
    clear_scripts(driver)
    pick_script(driver, "long_task")
    set_flag(driver, "long_task", "--duration", duration)
    set_flag(driver, "long_task", "--interval", "1")
    for script in extra:
        pick_script(driver, script)
    pick_targets(driver, targets)
    return submit_run(driver)


def confirm_dialog_open(driver: WebDriver) -> bool:
    return bool(js(driver, "return document.getElementById('confirm-dialog').open"))


# ---- 1. flags and Run again -------------------------------------------------------------------

def test_flags_are_shown_and_run_again_prefills(app: WebDriver, demo_service: DemoService) -> None:
    op_id = long_task(app, ["vps-fra-01"], "2")
    js(app, "document.getElementById('run-concurrency').value = '3'")
    meta = wait_for("the flags in the header", lambda: (
        t if "--duration=2 --interval=1" in (t := app.find_element(By.ID, "op-meta").text)
        else None))
    assert "Long Task (demo)" in meta and "long_task" in meta
    wait_for("success", lambda: op_status(app) == "success", timeout=40)
    with demo_service.http() as http:
        assert http.get(f"/api/operations/{op_id}").json()["flags"] == \
            {"long_task": ["--duration=2", "--interval=1"]}
    # History: the flags under the script name; a click on the row (not a button) opens it.
    app.find_element(By.ID, "ops-show-history").click()
    row = f'#ops-table tr[data-op="{op_id}"]'
    wait_for("the run in history", lambda: texts(app, f"{row} .op-flags"))
    assert "--duration=2 --interval=1" in texts(app, f"{row} .op-flags")[0]
    assert "Long Task (demo)" in texts(app, f"{row} .op-scripts")[0]
    # Open something else first, then the row.
    js(app, "document.getElementById('op-live-title').textContent = 'Output'")
    click_fresh(app, f'#ops-table tr[data-op="{op_id}"] td:nth-child(4)')
    wait_for("the row to open its operation", lambda: op_id in live_title(app))
    wait_for("the stored header flags",
             lambda: "--duration=2" in app.find_element(By.ID, "op-meta").text)
    # Run again: same scripts, flags, targets, concurrency.
    clear_scripts(app)
    pick_targets(app, ["vm-db-01", "vm-web-01"])
    app.find_element(By.ID, "op-rerun").click()
    wait_for("the form refilled", lambda: app.find_element(
        By.CSS_SELECTOR, '#run-scripts input[data-script="long_task"]').is_selected())
    assert ticked(app, "run-scripts") == ["long_task"]
    assert ticked(app, "run-targets") == ["vps-fra-01"]
    value = app.find_element(By.CSS_SELECTOR, '#run-flags input[data-flag-value="--duration"]')
    assert value.get_attribute("value") == "2"
    assert app.find_element(By.ID, "run-concurrency").get_attribute("value") == "5"
    assert op_id in app.find_element(By.ID, "run-warning").text
    assert app.switch_to.active_element.get_attribute("id") == "run-submit"
    app.find_element(By.ID, "ops-show-active").click()


# ---- 2. statuses apart, summary strip, Stop confirmed -------------------------------------------

def test_summary_strip_and_skipped_after_stop(app: WebDriver, demo_service: DemoService) -> None:
    op_id = long_task(app, ["vm-web-01"], "300", extra=("system_info",))
    wait_for("one task running, one queued",
             lambda: counts(app) == {"ok": 0, "failed": 0, "running": 1, "queued": 1, "skipped": 0},
             timeout=40)
    eta = app.find_element(By.ID, "op-eta").text
    # From estimatedDuration (120 s + 2 s) less the time already run (a few seconds here).
    # On a slow start it may already be under a minute ("ETA ~58s"): both forms are read.
    shown = re.fullmatch(r"ETA ~(?:(\d+)m(\d\d)|(\d+(?:\.\d)?))s", eta)
    assert shown, eta
    left = int(shown[1]) * 60 + int(shown[2]) if shown[1] else float(shown[3])
    assert 30 <= left <= 122, eta
    first = app.find_element(By.ID, "op-duration").text
    wait_for("the duration to tick", lambda: app.find_element(By.ID, "op-duration").text != first,
             timeout=5)
    bar = app.find_element(By.CSS_SELECTOR, "#op-summary .progress")
    assert bar.get_attribute("aria-valuemax") == "2" and bar.get_attribute("aria-valuenow") == "0"
    screenshot(app, "ops-summary-running")
    # Stop asks first; Cancel keeps it running.
    app.find_element(By.ID, "op-stop").click()
    wait_for("the confirmation", lambda: confirm_dialog_open(app))
    assert "cannot be undone" in app.find_element(By.ID, "confirm-message").text
    app.find_element(By.ID, "confirm-cancel").click()
    time.sleep(1)
    assert op_status(app) == "running"
    app.find_element(By.ID, "op-stop").click()
    wait_for("the confirmation", lambda: confirm_dialog_open(app))
    app.find_element(By.ID, "confirm-ok").click()
    wait_for("STOPPED, then SKIPPED", lambda: header_texts(app, "vm-web-01") == [
        "[1] - [Long Task (demo)] - [long_task] - [STOPPED]",
        "[2] - [System Information] - [system_info] - [SKIPPED]"], timeout=40)
    wait_for("the summary after the stop", lambda: counts(app) == {
        "ok": 0, "failed": 0, "running": 0, "queued": 0, "skipped": 1, "stopped": 1})
    bar = app.find_element(By.CSS_SELECTOR, "#op-summary .progress")
    assert bar.get_attribute("aria-valuenow") == "2"  # both tasks are done (stopped, skipped)
    assert not app.find_elements(By.ID, "op-eta")  # no ETA once it ended
    with demo_service.http() as http:
        result = http.get(f"/api/operations/{op_id}").json()["result"]
    assert result.get("tasks_skipped") == 1  # the same word and number as the server
    # The stored view after a reload says the same.
    app.get(f"{demo_service.url}/#operations/{op_id}")
    wait_for("the app", lambda: app_ready(app), timeout=30)
    wait_for("the stored statuses", lambda: header_texts(app, "vm-web-01") == [
        "[1] - [Long Task (demo)] - [long_task] - [STOPPED]",
        "[2] - [System Information] - [system_info] - [SKIPPED]"], timeout=20)
    assert counts(app)["skipped"] == 1


# ---- 3. names and URLs ------------------------------------------------------------------------

def test_operation_and_link_urls_open_on_load_reload_and_back(app: WebDriver,
                                                              demo_service: DemoService) -> None:
    with demo_service.http() as http:
        ops = http.get("/api/operations?limit=5").json()["operations"]
    first, second = ops[0]["id"], ops[1]["id"]
    app.get(f"{demo_service.url}/#operations/{second}")
    wait_for("the app", lambda: app_ready(app), timeout=30)
    wait_for("the operation from the URL", lambda: second in live_title(app))
    assert app.find_element(By.ID, "panel-operations").is_displayed()
    app.refresh()
    wait_for("the app after reload", lambda: app_ready(app), timeout=30)
    wait_for("the same operation after reload", lambda: second in live_title(app))
    # Opening another one is a new history entry; Back returns to the first.
    app.find_element(By.ID, "ops-show-history").click()
    wait_for("the View button", lambda: app.find_element(
        By.CSS_SELECTOR, f'#ops-table tr[data-op="{first}"] button'))
    click_fresh(app, f'#ops-table tr[data-op="{first}"] button')
    wait_for("the other operation", lambda: first in live_title(app))
    assert js(app, "return location.hash") == f"#operations/{first}"
    app.back()
    wait_for("Back to the previous operation", lambda: second in live_title(app))
    # This operation's own script names, not only ids, in the title.
    with demo_service.http() as http:
        names = {s["id"]: s["name"] for s in http.get("/api/scripts").json()["scripts"]}
    wanted = [names[script] for script in ops[1]["scripts"]]
    wait_for(f"{wanted} in the title",
             lambda: all(name in live_title(app) for name in wanted))
    # A link's URL opens its details.
    app.get(f"{demo_service.url}/#links/vm-db-01")
    wait_for("the app", lambda: app_ready(app), timeout=30)
    wait_for("the details of vm-db-01", lambda: details_open(app) and
        "vm-db-01" in app.find_element(By.ID, "details-body").text)
    app.find_element(By.CSS_SELECTOR, "#details-dialog .card-head .btn").click()
    wait_for("the URL without the link", lambda: js(app, "return location.hash") == "#links")
    app.find_element(By.ID, "tab-operations").click()
    wait_for("operations", lambda: app.find_element(By.ID, "panel-operations").is_displayed())


def test_hostile_urls_are_text_and_go_nowhere(app: WebDriver, demo_service: DemoService) -> None:
    """What a URL names is only ever looked up and shown as text; login's `next` stays home."""
    payload = "<img src=x id=pwned onerror=alert(1)>"
    app.get(f"{demo_service.url}/#links/{payload}")
    wait_for("the app", lambda: app_ready(app), timeout=30)
    wait_for("the unknown link explained", lambda: any(
        payload in t for t in texts(app, "#toasts .toast-msg")))
    assert app.find_elements(By.ID, "pwned") == []
    assert not details_open(app)
    app.get(f"{demo_service.url}/#operations/OP-99999")
    wait_for("the unknown operation explained", lambda: any(
        "OP-99999" in t for t in texts(app, "#toasts .toast-msg")))
    assert app.find_element(By.ID, "panel-operations").is_displayed()
    app.get(f"{demo_service.url}/#nonsense/%E0%A4%A")  # bad escape, unknown tab
    wait_for("the app", lambda: app_ready(app), timeout=30)
    assert app.find_element(By.ID, "panel-overview").is_displayed()
    # login.html?next=… accepts "#tab" or "#tab/thing" only: never another origin or path.
    for given, landed in NEXT_CASES:
        app.get(f"{demo_service.url}/login.html?next={given}")
        wait_for("the login form", lambda: app.find_element(By.ID, "username"))
        app.find_element(By.ID, "username").send_keys(demo_service.username)
        app.find_element(By.ID, "password").send_keys(demo_service.password)
        app.find_element(By.ID, "login-submit").click()
        wait_for("the app after login", lambda: app_ready(app), timeout=30)
        assert js(app, "return location.origin + location.pathname") == f"{demo_service.url}/"
        assert js(app, "return location.hash") == landed, given
    app.get(f"{demo_service.url}/#operations")
    wait_for("the app", lambda: app_ready(app), timeout=30)


# ---- 4. the run form --------------------------------------------------------------------------

def test_run_form_warns_explains_and_runs_on_the_enrolled(app: WebDriver,
                                                          demo_service: DemoService) -> None:
    open_tab(app, "operations")
    clear_scripts(app)
    pick_script(app, "system_info")
    pick_targets(app, ["vps-fra-01"])
    assert app.find_element(By.ID, "run-warning").get_attribute("hidden") is not None or \
        "not enrolled" not in app.find_element(By.ID, "run-warning").text
    # Ticking the unenrolled target warns at once.
    app.find_element(By.CSS_SELECTOR, '#run-targets input[data-target="vm-staging-01"]').click()
    warning = wait_for("the inline warning", lambda: (
        w if (w := app.find_element(By.ID, "run-warning")).is_displayed() else None))
    assert "vm-staging-01" in warning.text and "not enrolled" in warning.text
    offer = app.find_element(By.ID, "run-enrolled-only")
    assert offer.text == "Run on the 1 enrolled target"
    # Submitting anyway: the server's refusal in words.
    app.find_element(By.ID, "run-submit").click()
    error = wait_for("the refusal", lambda: (
        e if (e := app.find_element(By.ID, "run-error")).is_displayed() else None))
    assert "not enrolled" in error.text and "vm-staging-01" in error.text
    assert "ENROLLMENT_REQUIRED" not in error.text and "offenders" not in error.text
    assert "{" not in error.text
    screenshot(app, "ops-run-form-unenrolled")
    # "Run on the enrolled ones" runs on vps-fra-01 only.
    op_id = submit_run(app, "run-enrolled-only")
    with demo_service.http() as http:
        assert http.get(f"/api/operations/{op_id}").json()["targets"] == ["vps-fra-01"]
    assert not app.find_element(By.ID, "run-warning").is_displayed() or \
        "not enrolled" not in app.find_element(By.ID, "run-warning").text

    # A missing REQUIRED value: highlighted and focused.
    clear_scripts(app)
    pick_script(app, "backup_config")
    app.find_element(By.ID, "run-submit").click()
    field = wait_for("the focused field", lambda: (
        a if (a := app.switch_to.active_element).get_attribute("data-flag-value") == "--destination"
        else None))
    assert field.get_attribute("aria-invalid") == "true"
    assert "--destination needs a value" in app.find_element(By.ID, "run-error").text
    field.send_keys("/tmp")
    assert field.get_attribute("aria-invalid") is None

    # One scroll area, the Run bar always visible: four scripts with flags.
    for script in ("disk_usage", "update_system", "rotate_logs", "long_task"):
        pick_script(app, script)
    geometry = js(app, """
        const scroll = document.getElementById('run-scroll');
        const btn = document.getElementById('run-submit').getBoundingClientRect();
        const lists = [...document.querySelectorAll('#run-form .pick-list')]
          .filter(e => e.scrollHeight > e.clientHeight + 1).length;
        return {overflow: scroll.scrollHeight > scroll.clientHeight, btnBottom: btn.bottom,
                vh: innerHeight, nested: lists};""")
    assert geometry["overflow"] and geometry["nested"] == 0, geometry
    assert geometry["btnBottom"] <= geometry["vh"], geometry
    # Descriptions and estimated durations inline.
    row = app.find_element(By.CSS_SELECTOR, '#run-scripts input[data-script="update_system"]') \
        .find_element(By.XPATH, "..")
    assert "Refresh package lists" in row.text and "~5m00s" in row.text
    assert app.find_element(By.ID, "run-estimate").text.endswith("per target")

    # Target search and chips; a hidden selection is kept.
    pick_targets(app, ["vps-fra-01"])
    search = app.find_element(By.ID, "run-target-search")
    search.send_keys("db")
    wait_for("only vm-db-01", lambda: js(
        app, "return [...document.querySelectorAll('#run-targets input')].map(i => i.value)")
        == ["vm-db-01"])
    empty_search(app, "run-target-search")
    app.find_element(By.CSS_SELECTOR, '#run-target-chips [data-chip="type:VM"]').click()
    shown = js(app, "return [...document.querySelectorAll('#run-targets input')].map(i => i.value)")
    assert shown and all(s.startswith("vm-") for s in shown), shown
    assert app.find_element(By.ID, "run-submit").text == "Run on 1 target"  # vps-fra-01 kept
    app.find_element(By.CSS_SELECTOR, '#run-target-chips [data-chip="type:VM"]').click()
    assert ticked(app, "run-targets") == ["vps-fra-01"]
    clear_scripts(app)


# ---- 5. output tools --------------------------------------------------------------------------

def test_output_search_wrap_and_failed_only(app: WebDriver) -> None:
    open_tab(app, "operations")
    clear_scripts(app)
    pick_script(app, "system_info")
    pick_script(app, "disk_usage")
    set_flag(app, "disk_usage", "--threshold", "0")  # every filesystem is "too full": fails
    pick_targets(app, ["vps-nyc-01"])
    # Every toast from here on, even one gone before the checks below.
    js(app, "window.__toasts = []; new MutationObserver(() => { for (const t of document"
            ".querySelectorAll('#toasts .toast')) window.__toasts.push(t.textContent); })"
            ".observe(document.getElementById('toasts'), {childList: true, subtree: true});")
    submit_run(app)
    wait_for("the end", lambda: op_status(app) in ("partial", "failed"), timeout=40)
    assert header_texts(app, "vps-nyc-01")[1].endswith("[FAILED]")
    search = app.find_element(By.ID, "op-search")
    search.send_keys("WARNING")
    wait_for("matches counted", lambda: re.match(r"[1-9]\d* match", app.find_element(
        By.ID, "op-search-count").text))
    assert js(app, "return CSS.highlights.has('oplog-match')")

    def shown_tasks() -> list[str]:
        return list(js(app, "return [...document.querySelectorAll('#op-live-body .task')]"
                            ".filter(t => !t.hidden).map(t => t.dataset.script)"))
    # Waited for, not read once: the virtual list redraws on its next frame (and again when
    # the stored logs replace the live ones at the end), applying the filter each time.
    wait_for("only the matching task", lambda: shown_tasks() == ["disk_usage"], timeout=10)
    screenshot(app, "ops-output-search")
    empty_search(app, "op-search")
    app.find_element(By.ID, "op-failed-only").click()
    wait_for("only the failed task", lambda: shown_tasks() == ["disk_usage"], timeout=10)
    app.find_element(By.ID, "op-failed-only").click()
    assert output_white_space(app) == "pre"
    app.find_element(By.ID, "op-wrap").click()
    assert output_white_space(app) == "pre-wrap"
    app.find_element(By.ID, "op-wrap").click()
    # No "queued" toast at any moment of the run (the output pane shows the status), and no
    # emoji in the script list.
    seen = js(app, "return window.__toasts")
    assert not any("queued" in t.lower() for t in seen), seen
    names = "".join(texts(app, "#run-scripts"))
    assert not re.search("[\U0001F300-\U0001FAFF\u2600-\u26FF\u23F3]", names), names
    icons = app.find_elements(By.CSS_SELECTOR, "#run-scripts .script-icon")
    assert icons and all(icon.tag_name == "svg" for icon in icons), [i.tag_name for i in icons]


# ---- 6. links -----------------------------------------------------------------------------------

def test_links_search_details_and_topology(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "links")
    wait_for("the table", lambda: app.find_elements(By.CSS_SELECTOR, "#links-table tbody tr"))
    widths = th_widths(app)
    search = app.find_element(By.ID, "links-search")
    search.send_keys("db")
    wait_for("only vm-db-01", lambda: link_rows(app) == ["vm-db-01"])
    marks = texts(app, "#links-table tbody mark")
    assert marks and all(m.lower() == "db" for m in marks)
    assert th_widths(app) == widths  # fixed layout: filtering does not move the columns
    # An enrollment ID matches only with its LINKOPS- prefix.
    with demo_service.http() as http:
        links = http.get("/api/links").json()["links"]
    target = next(link for link in links if link["id"] == "vm-web-01")
    prefix = target["enrollmentId"][:14]
    empty_search(app, "links-search")
    search.send_keys(prefix)
    wait_for("the link with that ID", lambda: link_rows(app) == ["vm-web-01"])
    assert texts(app, "#links-table tbody mark") == [prefix]
    hex_part = target["enrollmentId"][9:15]
    empty_search(app, "links-search")
    search.send_keys(hex_part)  # the ID's hex without the prefix matches nothing
    wait_for("no match through the ID hex",
             lambda: app.find_element(By.ID, "links-empty").is_displayed())
    empty_search(app, "links-search")

    # The details of a link that is not enrolled: why, and the steps.
    row = wait_for("vm-staging-01", lambda: app.find_element(
        By.CSS_SELECTOR, '#links-table tr[data-link="vm-staging-01"]'))
    row.find_element(By.CSS_SELECTOR, '[data-action="details"]').click()
    body = wait_for("the details panel", lambda: (
        b if (b := app.find_element(By.ID, "details-body")).is_displayed() else None))
    text = body.text
    staging = next(link for link in links if link["id"] == "vm-staging-01")
    # The link's own clientIdPath (the demo's sandbox moves it; default /etc/linkops/client_id).
    assert "not enrolled" in text and staging["clientIdPath"] in text
    assert "metadata." not in text and "assets/logos" not in text
    assert "Reached through" in text and "pve-office-01" in text
    assert f"install -d -m 755 {staging['clientIdPath'].rsplit('/', 1)[0]}" in text
    assert "Verified" not in text  # never "Verified" on a host that is not enrolled
    assert app.find_element(By.ID, "details-verify").is_enabled()
    assert not app.find_element(By.ID, "details-terminal").is_enabled()
    assert js(app, "return location.hash") == "#links/vm-staging-01"
    # The step's Copy button puts exactly the command shown on the clipboard.
    app.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": demo_service.url,
        "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    block = body.find_element(By.CSS_SELECTOR, ".enroll-steps .cmd")
    shown = block.find_element(By.CSS_SELECTOR, ".cmd-text").text
    block.find_element(By.CSS_SELECTOR, "button").click()
    wait_for("the Copied toast", lambda: "Copied" in texts(app, "#toasts .toast-msg"))
    copied = app.execute_async_script(
        "navigator.clipboard.readText().then(arguments[0], e => arguments[0]('ERR ' + e))")
    assert copied == shown and staging["clientIdPath"] in copied, copied
    screenshot(app, "links-details-not-enrolled")
    # Run from the panel: the run form with that target ticked.
    app.find_element(By.ID, "details-run").click()
    wait_for("the run form", lambda: app.find_element(By.ID, "panel-operations").is_displayed())
    assert ticked(app, "run-targets") == ["vm-staging-01"]
    assert "not enrolled" in app.find_element(By.ID, "run-warning").text

    # An enrolled one: enrolled, verified time, terminal allowed.
    open_tab(app, "links")
    app.find_element(
        By.CSS_SELECTOR, '#links-table tr[data-link="vm-web-01"] [data-action="details"]').click()
    body = wait_for("the details panel", lambda: (
        b if (b := app.find_element(By.ID, "details-body")).is_displayed()
        and "vm-web-01" in b.text else None))
    assert "enrolled ✓" in body.text and "Verified" in body.text
    assert app.find_element(By.ID, "details-terminal").is_enabled()
    app.find_element(By.CSS_SELECTOR, "#details-dialog .card-head .btn").click()

    # The diagram beside the table, not instead of it.
    app.find_element(By.ID, "links-view-topology").click()
    node = wait_for("the diagram", lambda: app.find_element(
        By.CSS_SELECTOR, '#links-topology .topo-node[data-link="pve-office-01"]'))
    table = app.find_element(By.ID, "links-table-wrap")
    assert table.is_displayed() and node.is_displayed()
    diagram = app.find_element(By.ID, "links-topology")
    assert diagram.rect["x"] > table.rect["x"] + table.rect["width"] - 1  # to the right
    kids = node.find_element(By.XPATH, "..").find_elements(
        By.CSS_SELECTOR, ":scope > ul > li > .topo-node")
    vm_nodes = {k.get_attribute("data-link") for k in kids}
    assert {"vm-web-01", "vm-db-01", "vm-docker-01", "vm-staging-01"} <= vm_nodes
    assert all(k.rect["y"] > node.rect["y"] + node.rect["height"] for k in kids)  # below it
    screenshot(app, "links-table-and-topology")
    node.click()
    wait_for("details from the diagram", lambda: "pve-office-01" in app.find_element(
        By.ID, "details-body").text)
    app.find_element(By.CSS_SELECTOR, "#details-dialog .card-head .btn").click()
    app.find_element(By.ID, "links-view-table").click()


# ---- 7. overview and polish ---------------------------------------------------------------------

def read_fresh(driver: WebDriver, selector: str, script: str) -> Any:
    """``script`` (a function body of ``e``) run on the element ``selector`` finds, in one
    call: the overview re-renders what a poll changed, and an element found in one call and
    read in the next can be stale by then (a CI run failed so). None while nothing matches."""
    return js(driver, "const e = document.querySelector(arguments[0]);"
                      "return e ? (function (e) {" + script + "})(e) : null;", selector)


def test_overview_rows_open_what_they_describe(app: WebDriver) -> None:
    open_tab(app, "overview")
    health = '#health-body a.health-row[data-link="vps-fra-01"]'
    row = wait_for("a health row", lambda: read_fresh(app, health, """
        return {label: e.querySelector('.health-label').textContent.trim(),
                latency: e.dataset.latency};"""))
    assert re.fullmatch(r"\d+ ms", row["label"]), row
    assert row["latency"] in ("ok", "warn", "bad")
    assert "SSH latency" in app.find_element(By.ID, "health-legend").text
    click_fresh(app, health)
    wait_for("the link details", lambda: details_open(app)
             and "vps-fra-01" in app.find_element(By.ID, "details-body").text)
    assert js(app, "return location.hash") == "#links/vps-fra-01"
    app.find_element(By.CSS_SELECTOR, "#details-dialog .card-head .btn").click()
    open_tab(app, "overview")
    href = wait_for("an operation in the activity", lambda: read_fresh(
        app, '#activity-body a.activity-row[href^="#operations/OP-"]',
        "return e.getAttribute('href');"))
    op_id = str(href).split("/")[-1]
    click_fresh(app, f'#activity-body a.activity-row[href$="/{op_id}"]')
    wait_for("the operation", lambda: op_id in live_title(app))
    open_tab(app, "overview")
    # Found again at the click: the overview polls, and a redraw between finding and
    # clicking hands Selenium a stale element (one CI run failed so).
    click_fresh(app, '#infra-body a.infra-row[data-type="VM"]')
    wait_for("links of type VM", lambda: app.find_element(By.ID, "panel-links").is_displayed()
             and app.find_element(By.ID, "links-type").get_attribute("value") == "VM")
    rows = link_rows(app)
    assert rows and all(r.startswith("vm-") for r in rows)
    js(app, "const s = document.getElementById('links-type'); s.value = '';"
            "s.dispatchEvent(new Event('change'))")
    # The user menu is opaque.
    app.find_element(By.ID, "user-button").click()
    colour = js(app, "return getComputedStyle("
                     "document.getElementById('user-dropdown')).backgroundColor")
    assert colour.startswith("rgb(") or colour.endswith(", 1)"), colour
    app.find_element(By.ID, "user-button").click()


# ---- 8. screenshots, keyboard, console ----------------------------------------------------------

def set_theme(driver: WebDriver, theme: str) -> None:
    js(driver, "const s = document.getElementById('theme-select'); s.value = arguments[0];"
               "s.dispatchEvent(new Event('change'))", theme)
    wait_for(f"theme {theme}", lambda: js(
        driver, "return document.documentElement.dataset.theme") == theme)


def settle(driver: WebDriver) -> None:
    """The tab laid out and painted: its first fetch answered (a short pause), then two
    animation frames (a fixed 0.6 s per screenshot cost 18 s of the suite)."""
    time.sleep(0.15)
    driver.execute_async_script(
        "const done = arguments[0];"
        "requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")


def test_screenshots_of_every_tab_theme_and_size(app: WebDriver) -> None:
    written = []
    try:
        for width, height in SIZES:
            app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 1,
                                 "mobile": False})
            for theme in THEMES:
                set_theme(app, theme)
                for tab in TABS:
                    open_tab(app, tab)
                    if tab == "operations":
                        wait_for("an operation shown", lambda: "OP-" in live_title(app))
                    if tab == "links":
                        app.find_element(By.ID, "links-view-topology").click()
                    settle(app)
                    overflow = js(app, "return document.documentElement.scrollWidth - innerWidth")
                    assert overflow <= 0, f"{tab} {theme} {width}: {overflow}px sideways"
                    if tab in ("operations", "terminal"):  # laid out to fit the window
                        down = js(app, "return document.documentElement.scrollHeight - innerHeight")
                        assert down <= 0, f"{tab} {theme} {width}: {down}px below the fold"
                    written.append(screenshot(app, f"i16-{tab}-{theme}-{width}x{height}"))
                    if tab == "links":
                        app.find_element(By.ID, "links-view-table").click()
    finally:
        app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        set_theme(app, "gray-fabric")
    assert len(written) == len(SIZES) * len(THEMES) * len(TABS)
    assert all(p.stat().st_size > 10_000 for p in written)


def wait_for_quietly(condition: Any, seconds: float) -> Any:
    """``condition()`` once it is truthy within ``seconds``, else None (no failure)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if value := condition():
                return value
        time.sleep(0.1)
    return None


def tab_to(driver: WebDriver, predicate: str, limit: int = 250, back: bool = False) -> WebElement:
    """Press Tab (or Shift+Tab) until the focused element satisfies the JS `predicate(el)`."""
    for _ in range(limit):
        if js(driver, f"const el = document.activeElement; return Boolean(el && ({predicate}))"):
            return driver.switch_to.active_element
        # The keys go to whatever has the focus, as a keyboard's do: an element handle's
        # send_keys refuses one that a redraw just hid ("element not interactable", seen in CI).
        keys = ActionChains(driver)
        if back:
            keys.key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT)
        else:
            keys.send_keys(Keys.TAB)
        keys.perform()
    raise AssertionError(f"Tab never reached {predicate}")


def test_keyboard_only_run_stop_history_terminal(app: WebDriver) -> None:
    open_tab(app, "operations")
    clear_scripts(app)
    pick_targets(app, [])
    app.find_element(By.ID, "tab-operations").send_keys(Keys.TAB)  # focus into the page
    box = tab_to(app, "el.dataset.script === 'long_task' && el.type === 'checkbox'")
    box.send_keys(Keys.SPACE)
    # The value field is enabled only with its toggle: go back to the toggle.
    tab_to(app, "el.dataset.flag === '--duration'", back=True).send_keys(Keys.SPACE)
    value = tab_to(app, "el.dataset.flagValue === '--duration'")
    value.send_keys(Keys.CONTROL, "a")
    value.send_keys("300")
    tab_to(app, "el.dataset.target === 'vm-docker-01'").send_keys(Keys.SPACE)
    before = live_title(app)
    tab_to(app, "el.id === 'run-submit'").send_keys(Keys.ENTER)
    # vm-docker-01 is tagged prod: the plan dialog opens with the focus in the phrase field;
    # Tab stays inside the dialog, and Enter in the field runs once the phrase is typed.
    wait_for("the plan dialog", lambda: plan_dialog_open(app))
    phrase = app.switch_to.active_element
    assert phrase.get_attribute("id") == "plan-phrase"
    for _ in range(12):
        phrase.send_keys(Keys.TAB)
        phrase = app.switch_to.active_element
        assert js(app, "return document.getElementById('plan-dialog')"
                       ".contains(document.activeElement)")
    tab_to(app, "el.id === 'plan-phrase'").send_keys("run on 1 target", Keys.ENTER)
    op_id = wait_for("the run", lambda: new_operation_id(app, before))
    wait_for("running", lambda: op_status(app) == "running", timeout=40)
    stop = tab_to(app, "el.id === 'op-stop'")
    stop.send_keys(Keys.ENTER)
    wait_for("the confirmation", lambda: confirm_dialog_open(app))
    assert app.switch_to.active_element.get_attribute("id") == "confirm-cancel"
    app.switch_to.active_element.send_keys(Keys.TAB)
    assert app.switch_to.active_element.get_attribute("id") == "confirm-ok"
    app.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for("stopped", lambda: op_status(app) == "stopped", timeout=40)
    tab_to(app, "el.id === 'ops-show-history'", back=True).send_keys(Keys.ENTER)
    js(app, "document.getElementById('op-live-title').textContent = 'Output'")

    def open_from_history() -> bool:
        # The history list is redrawn while it polls: Tab to the row and press Enter on
        # whatever has the focus (no element handle to go stale); again if a redraw took
        # the focus away before the key arrived.
        tab_to(app, f"el.dataset.focus === 'view:{op_id}'")
        ActionChains(app).send_keys(Keys.ENTER).perform()
        return bool(wait_for_quietly(lambda: op_id in live_title(app), 3))

    wait_for("the history row opened by keyboard", open_from_history, timeout=40)
    seen: list[tuple[str, str]] = []

    def reopened_stopped() -> bool:
        seen[:] = [(live_title(app), op_status(app))]
        return op_id in seen[0][0] and seen[0][1] == "stopped"

    try:
        wait_for("the stopped run from history", reopened_stopped, timeout=40)
    except AssertionError as exc:  # say what the pane showed instead (a rare CI failure)
        raise AssertionError(f"{exc}; title and status seen last: {seen}") from None
    screenshot(app, "ops-keyboard-history")
    # …and on to the terminal: back to the tab list, → to Terminal.
    tab_to(app, "el.id === 'tab-operations'", back=True).send_keys(Keys.ARROW_RIGHT)
    wait_for("the terminal tab", lambda: app.find_element(By.ID, "panel-terminal").is_displayed())
    assert app.switch_to.active_element.get_attribute("id") == "tab-terminal"
    tab_to(app, "el.classList.contains('pane-target')")  # a pane's target picker, by Tab
    open_tab(app, "operations")
    app.find_element(By.ID, "ops-show-active").click()


def test_no_console_errors(app: WebDriver) -> None:
    # Expected: the 403 of the run deliberately submitted with an unenrolled target (refused
    # when it is planned, POST /api/operations/plan) and the
    # 404 of the made-up OP-99999. Anything else, a script error above all, fails.
    errors = console_errors(app, failed_loads(r"/api/operations/plan - .* status of 403",
                                              r"/api/operations/OP-99999 - .* status of 404"))
    assert errors == [], errors
