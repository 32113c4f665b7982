"""Issue #17, plan and confirm in the UI: the dialog before a run, in headless Chromium.

Real ``linkops demo`` (sshd fleet, Git config repository; its example links are tagged
``prod``, so the default ``confirm_tags`` asks for the phrase). The tests share one browser
and run in file order: the plan dialog and its phrase, Escape, a plan made stale by a synced
script change, the quick path of a run that needs no confirmation, an unknown host key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures_browser import (
    DemoService,
    api_run,
    confirm_plan,
    console_errors,
    failed_loads,
    live_title,
    new_operation_id,
    open_tab,
    plan_dialog_open,
    screenshot,
    submit_run,
    wait_for,
)
from tests.fixtures_git import RepoWriter, git
from tests.test_browser_operations_ui import clear_scripts, js, pick_script, pick_targets

pytestmark = pytest.mark.browser


def plan_form(driver: WebDriver, script: str, targets: list[str]) -> None:
    open_tab(driver, "operations")
    wait_for("the script list", lambda: driver.find_elements(By.CSS_SELECTOR, "#run-scripts input"))
    clear_scripts(driver)
    pick_script(driver, script)
    pick_targets(driver, targets)


def open_plan(driver: WebDriver, button: str = "run-submit") -> None:
    driver.find_element(By.ID, button).click()
    wait_for("the plan dialog", lambda: plan_dialog_open(driver))


def dialog_state(driver: WebDriver) -> dict[str, Any]:
    """What the dialog shows, read in one script call."""
    state: dict[str, Any] = js(driver, """
        const q = (s) => document.querySelector(s);
        const text = (s) => (q(s) ? q(s).textContent : null);
        return {
          planId: q('#plan-form').dataset.planId,
          commitText: q('#plan-commit').textContent, commitTitle: q('#plan-commit').title,
          targets: [...document.querySelectorAll('#plan-targets .plan-target')].map(li => ({
            id: li.dataset.target, hostKey: li.dataset.hostKey, text: li.textContent,
            warn: li.classList.contains('plan-target-warn'),
            badges: [...li.querySelectorAll('.badge')].map(b => [b.textContent, b.className])})),
          scripts: [...document.querySelectorAll('#plan-scripts .plan-script')].map(li => ({
            id: li.dataset.script, sha256: li.dataset.sha256,
            shaText: li.querySelector('.plan-sha').textContent,
            shaTitle: li.querySelector('.plan-sha').title, text: li.textContent,
            script: li.querySelector('.plan-text').textContent})),
          reason: text('#plan-confirm-reason'), phrase: text('#plan-confirm .plan-phrase-text'),
          runEnabled: !q('#plan-run').disabled,
          error: q('#plan-error').hidden ? null : q('#plan-error').textContent,
          again: !q('#plan-again').hidden,
        };""")
    return state


def type_phrase(driver: WebDriver, text: str) -> None:
    field = driver.find_element(By.ID, "plan-phrase")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    if text:
        field.send_keys(text)


def demo_repo(demo: DemoService, work: Path) -> RepoWriter:
    """A clone of the demo's config repository to push changes from."""
    bare = demo.workdir / "demo" / "config-repo.git"
    git("clone", "-q", str(bare), str(work), cwd=work.parent)
    return RepoWriter(bare=bare, work=work)


def new_operation(driver: WebDriver, before: str) -> str:
    """The dialog closes and the output pane follows a new operation: its id."""
    wait_for("the dialog to close", lambda: not plan_dialog_open(driver))
    return str(wait_for("the new operation", lambda: (
        t.split(" ")[0] if (t := live_title(driver)).startswith("OP-")
        and new_operation_id(driver, before) else None)))


def sync(http: httpx.Client) -> str:
    r = http.post("/api/git/sync")
    assert r.status_code == 200 and r.json()["success"], r.text
    return str(r.json()["commit_hash"])


def test_the_plan_shows_what_runs_where_and_asks_for_the_phrase(
        app: WebDriver, demo_service: DemoService) -> None:
    plan_form(app, "system_info", ["vps-fra-01", "vm-db-01"])
    open_plan(app)
    assert app.switch_to.active_element.get_attribute("id") == "plan-phrase"
    with demo_service.http() as http:
        api_script = http.get("/api/scripts/system_info").json()
        commit = http.get("/api/git/status").json()["commit_hash"]
    state = wait_for("the script text", lambda: (
        s if (s := dialog_state(app))["scripts"][0]["script"] == api_script["content"] else None))
    # Targets with their badges.
    assert {t["id"] for t in state["targets"]} == {"vps-fra-01", "vm-db-01"}
    for target in state["targets"]:
        badges = [text for text, _ in target["badges"]]
        assert "enrolled ✓" in badges, badges
        assert any(b.startswith("verified ") for b in badges), badges
        assert "host key known" in badges and target["hostKey"] == "known"
        assert "#prod" in target["text"] and not target["warn"]
        assert len(badges) == 4  # enrolled, verified, health status, host key
    # The commit, and the script: its sha256 is the sha256 of the text the API reports.
    assert state["commitTitle"] == commit and state["commitText"] == commit[:12]
    (script,) = state["scripts"]
    assert script["sha256"] == api_script["sha256"] == \
        hashlib.sha256(api_script["content"].encode("utf-8")).hexdigest()
    assert script["shaTitle"] == script["sha256"] and script["shaText"] == script["sha256"][:12]
    assert api_script["path"] in script["text"] and "(none)" in script["text"]  # no flags
    # Prod: the reason and the exact phrase; Run waits for it.
    assert "prod" in state["reason"] and "vps-fra-01" in state["reason"]
    assert state["phrase"] == "run on 2 targets" and not state["runEnabled"]
    screenshot(app, "plan-dialog-prod")
    for wrong in ("run on 3 targets", "Run on 2 targets", "run on 2 targets ", "run on 2"):
        type_phrase(app, wrong)
        assert not app.find_element(By.ID, "plan-run").is_enabled(), wrong
    type_phrase(app, "run on 2 targets")
    assert app.find_element(By.ID, "plan-run").is_enabled()
    before = live_title(app)
    app.find_element(By.ID, "plan-run").click()
    op_id = new_operation(app, before)
    with demo_service.http() as http:
        view = http.get(f"/api/operations/{op_id}").json()
    assert view["plan"]["plan_id"] == state["planId"]
    assert view["plan"]["confirm"]["phrase"] == "run on 2 targets"
    assert view["plan"]["scripts"][0]["sha256"] == api_script["sha256"]


def test_escape_cancels_and_nothing_runs(app: WebDriver, demo_service: DemoService) -> None:
    plan_form(app, "system_info", ["vps-nyc-01"])
    def newest() -> list[str]:
        with demo_service.http() as http:
            return [o["id"] for o in http.get("/api/operations?limit=1").json()["operations"]]

    before = newest()
    open_plan(app)
    app.switch_to.active_element.send_keys("run on 1")
    app.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for("the dialog closed by Escape", lambda: not plan_dialog_open(app))
    wait_for("the focus back on Run", lambda: app.switch_to.active_element.get_attribute("id")
             == "run-submit")
    assert newest() == before


def test_a_script_changed_after_the_plan_is_refused_as_stale(
        app: WebDriver, demo_service: DemoService, tmp_path: Path) -> None:
    plan_form(app, "system_info", ["vps-nyc-01"])
    open_plan(app)
    planned = dialog_state(app)
    # Another operator edits the script and syncs while the dialog is open.
    repo = demo_repo(demo_service, tmp_path / "clone")
    hostile = "# edited after the plan <img src=x id=pwned-plan> </pre><b>bold</b>\n"
    repo.write("scripts/system_info.sh", repo.read("scripts/system_info.sh") + hostile)
    repo.commit_and_push("system_info: edited after the plan")
    with demo_service.http() as http:
        sync(http)
        new_sha = http.get("/api/scripts/system_info").json()["sha256"]
    assert new_sha != planned["scripts"][0]["sha256"]
    type_phrase(app, "run on 1 target")
    before = live_title(app)
    app.find_element(By.ID, "plan-run").click()
    state = wait_for("the stale message", lambda: (
        s if (s := dialog_state(app))["error"] else None))
    assert "stale" in state["error"] and "script system_info changed" in state["error"]
    assert "inventory moved from commit" in state["error"] and "Nothing ran" in state["error"]
    assert state["again"] and not state["runEnabled"]
    assert app.switch_to.active_element.get_attribute("id") == "plan-again"
    assert live_title(app) == before
    wait_for("the toast", lambda: any("PLAN_STALE" in t.text for t in
                                      app.find_elements(By.CSS_SELECTOR, "#toasts .toast")))
    screenshot(app, "plan-dialog-stale")
    # Plan again: the new hash, the phrase again, and it runs.
    app.find_element(By.ID, "plan-again").click()
    fresh = wait_for("the new plan", lambda: (
        s if (s := dialog_state(app))["planId"] != planned["planId"] else None))
    assert fresh["scripts"][0]["sha256"] == new_sha and fresh["error"] is None
    # The script text is shown as text: markup in it stays characters.
    wait_for("the new text", lambda: hostile.strip() in dialog_state(app)["scripts"][0]["script"])
    assert app.find_elements(By.ID, "pwned-plan") == []
    assert app.find_elements(By.CSS_SELECTOR, "#plan-dialog b, #plan-dialog img") == []
    assert not fresh["runEnabled"]
    op_id = submit_run_in_dialog(app, before)
    with demo_service.http() as http:
        assert http.get(f"/api/operations/{op_id}").json()["plan"]["plan_id"] == fresh["planId"]


def submit_run_in_dialog(driver: WebDriver, before: str) -> str:
    type_phrase(driver, "run on 1 target")
    driver.find_element(By.ID, "plan-phrase").send_keys(Keys.ENTER)  # Enter runs once it matches
    return new_operation(driver, before)


def test_a_run_without_confirmation_skips_the_dialog_but_is_planned(
        app: WebDriver, demo_service: DemoService, tmp_path: Path) -> None:
    repo = demo_repo(demo_service, tmp_path / "clone")
    repo.replace("links.yaml", "tags: [prod, vm, web, nginx]", "tags: [vm, web, nginx]")
    repo.commit_and_push("vm-web-01 is not prod any more")
    with demo_service.http() as http:
        sync(http)
        assert http.get("/api/links/vm-web-01").json()["enrolled"] is True
    plan_form(app, "system_info", ["vm-web-01"])
    op_id = submit_run(app)  # no dialog: straight to the output
    with demo_service.http() as http:
        plan = http.get(f"/api/operations/{op_id}").json()["plan"]
    assert plan["plan_id"].startswith("PLAN-") and plan["confirm"] is None
    # "Plan…" shows the plan all the same; one click on Run runs.
    open_plan(app, "run-review")
    state = dialog_state(app)
    assert state["phrase"] is None and state["runEnabled"]
    assert [t["id"] for t in state["targets"]] == ["vm-web-01"]
    assert app.switch_to.active_element.get_attribute("id") == "plan-run"
    before = live_title(app)
    app.find_element(By.ID, "plan-run").click()
    op_id = new_operation(app, before)
    with demo_service.http() as http:
        assert http.get(f"/api/operations/{op_id}").json()["plan"]["plan_id"] == state["planId"]


def test_an_unknown_host_key_is_a_warning_in_the_plan(app: WebDriver,
                                                      demo_service: DemoService) -> None:
    known_hosts = demo_service.workdir / "demo" / "ssh" / "known_hosts"
    original = known_hosts.read_text(encoding="utf-8")
    with demo_service.http() as http:
        ssh = http.get("/api/links/vm-web-01").json()["ssh"]
    name = f"[{ssh['host']}]:{ssh['port']} "
    assert name in original
    known_hosts.write_text("".join(line for line in original.splitlines(keepends=True)
                                   if not line.startswith(name)), encoding="utf-8")
    try:
        # Not prod any more (the test before), but its key is unknown: the dialog opens anyway.
        plan_form(app, "system_info", ["vm-web-01"])
        open_plan(app)
        alone = dialog_state(app)
        assert alone["phrase"] is None and alone["runEnabled"]
        assert alone["targets"][0]["hostKey"] == "unknown" and alone["targets"][0]["warn"]
        app.find_element(By.ID, "plan-cancel").click()
        wait_for("the dialog closed", lambda: not plan_dialog_open(app))
        plan_form(app, "system_info", ["vm-web-01", "vps-fra-01"])
        open_plan(app)  # prod (vps-fra-01) and an unknown key
        state = dialog_state(app)
        rows = {t["id"]: t for t in state["targets"]}
        assert rows["vm-web-01"]["hostKey"] == "unknown" and rows["vm-web-01"]["warn"]
        assert ["host key unknown", "badge badge-warn"] in rows["vm-web-01"]["badges"]
        assert rows["vps-fra-01"]["hostKey"] == "known" and not rows["vps-fra-01"]["warn"]
        warning = app.find_element(By.ID, "plan-hostkey-warning").text
        assert "vm-web-01" in warning and "vps-fra-01" not in warning
        screenshot(app, "plan-dialog-unknown-host-key")
        app.find_element(By.ID, "plan-cancel").click()
        wait_for("the dialog closed", lambda: not plan_dialog_open(app))
    finally:
        known_hosts.write_text(original, encoding="utf-8")


RERUN_SCRIPT = """
const [opId, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const { request } = await import("/js/api.js");
  const { planAndConfirm } = await import("/js/plandialog.js");
  const endpoint = `/api/operations/${opId}/rerun`;
  try {
    await request("POST", endpoint, { which: "failed" });
    done({ code: "accepted without confirmation" });
  } catch (err) {
    window.__rerun = null;
    planAndConfirm(err.details.run, { endpoint, send: { which: "failed" } }).then(
      (r) => { window.__rerun = { result: r.result, planId: r.plan.plan_id }; },
      (e) => { window.__rerun = { error: e.code }; });
    done({ code: err.code });
  }
})();
"""


def test_a_rerun_is_confirmed_through_plan_and_confirm(app: WebDriver,
                                                       demo_service: DemoService) -> None:
    """The contract the rerun buttons use: a rerun answered CONFIRMATION_REQUIRED is planned
    from ``details.run`` and re-sent to the rerun endpoint with plan_id and the phrase."""
    with demo_service.http() as http:
        parent = api_run(http, {"scripts": ["disk_usage"], "targets": ["vps-nyc-01"],
                                "flags": {"disk_usage": ["--threshold=0"]}})["operation_id"]
        wait_for("the failing run to end", lambda: http.get(
            f"/api/operations/{parent}").json()["status"] == "failed", timeout=40)
    open_tab(app, "operations")
    answer = app.execute_async_script(RERUN_SCRIPT, parent)
    assert answer == {"code": "CONFIRMATION_REQUIRED"}, answer
    wait_for("the plan dialog", lambda: plan_dialog_open(app))
    assert dialog_state(app)["phrase"] == "run on 1 target"
    confirm_plan(app)
    rerun = wait_for("the rerun accepted", lambda: js(app, "return window.__rerun"))
    assert "error" not in rerun, rerun
    assert rerun["result"]["parent"] == parent
    with demo_service.http() as http:
        child = http.get(f"/api/operations/{rerun['result']['operation_id']}").json()
    assert child["parent"] == parent and child["plan"]["plan_id"] == rerun["planId"]
    assert child["targets"] == ["vps-nyc-01"]


def test_no_console_errors(app: WebDriver) -> None:
    # Expected: the 409 of the stale plan's run and the rerun's CONFIRMATION_REQUIRED.
    errors = console_errors(app, failed_loads(r"/api/operations/run - .* status of 409",
                                              r"/api/operations/OP-\d+/rerun - .* status of 409"))
    assert errors == [], errors
