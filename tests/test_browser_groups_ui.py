"""Issue #17, the groups / diff / rerun UI (SPEC §10.3) in real headless Chromium.

The service is a ``linkops serve`` subprocess of this module (:mod:`tests.serve_process`)
whose Git inventory has **50 links** on three real sshd servers of a sandbox fleet of its own:
``web-01..47`` on ``grp-01``, ``db-01``/``db-02`` on ``grp-02``, ``edge-01`` on ``grp-03``
(several links may share one host: each is enrolled by the client ID file on it, synced from
Git and verified over SSH like any link). The one script tells the hosts apart by its sshd's
port (``$SSH_CONNECTION``) and prints the host's address, which normalisation folds: so the
operation ends in exactly three groups — 47 identical, 2 differ (one line, plus an HTML tag
that must stay text), 1 failed.

``[operations] confirm_over = 10``: the 50-target run is planned and confirmed through the
API, and rerunning the 47-target group from the UI meets ``CONFIRMATION_REQUIRED``.

The tests share one browser session and run in file order (live groups → diff → rerun
failed → confirmation → viewer).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from linkops import auth
from linkops.db import Database
from linkops.sandbox import Sandbox
from tests.fixtures_browser import (
    app_ready,
    confirm_plan,
    console_errors,
    failed_loads,
    live_title,
    log_in,
    open_tab,
    plan_dialog_open,
    texts,
    wait_for,
)
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD
from tests.fixtures_git import make_repo
from tests.fixtures_sandbox import make_ssh_env
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.browser

SCRIPT_ID = "app_check"
VIEWER, VIEWER_PASSWORD = "watcher", "viewer-password-1"
FINAL = "47 identical · 2 differ · 1 failed"
# link ids per fleet host, in inventory order
LAYOUT = {"grp-01": [f"web-{i:02d}" for i in range(1, 48)],
          "grp-02": ["db-01", "db-02"],
          "grp-03": ["edge-01"]}
# The run's order: the odd ones among the others, so they end while the rest still run.
WEB = LAYOUT["grp-01"]
TARGETS = [*WEB[:15], "db-01", *WEB[15:30], "edge-01", *WEB[30:40], "db-02", *WEB[40:]]
SCRIPT = """#!/usr/bin/env bash
# Which sandbox host am I? Its sshd's port (the 4th field of SSH_CONNECTION) says.
set -- $SSH_CONNECTION
sleep 0.3
echo "app 2.4.1 listening on $3:443"
case "$4" in
  {odd}) echo "config sha 77ab"; echo '<img src=x onerror=alert(1)>' ;;
  {bad}) echo "config: /etc/app.conf: No such file or directory" >&2; exit 3 ;;
  *) echo "config sha 9d1c" ;;
esac
"""


@attrs.frozen
class Account:
    url: str
    username: str
    password: str


@attrs.frozen
class GroupsService:
    url: str
    admin: Account
    viewer: Account

    def http(self) -> httpx.Client:
        token = httpx.post(f"{self.url}/api/auth/login", timeout=20,
                           json={"username": ADMIN, "password": ADMIN_PASSWORD}).json()["token"]
        return httpx.Client(base_url=self.url, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


def links_yaml(fleet: Sandbox) -> str:
    lines = ["links:"]
    for host_name, ids in LAYOUT.items():
        host = fleet.host(host_name)
        for link_id in ids:
            lines += [
                f"  {link_id}:", f"    name: {link_id}", "    type: VPS", "    provider: sandbox",
                f"    host: {host.address}", f"    port: {host.port}", f"    user: {fleet.user}",
                f"    tags: [{link_id.split('-')[0]}]",
                "    enrollment:", "      required: true", f"      clientId: {host.client_id}",
                f"      clientIdPath: {host.client_id_path}",
                "    ssh:", f"      keyRef: {fleet.key_path.name}",
            ]
    return "\n".join(lines) + "\n"


def scripts_yaml() -> str:
    return (f"scripts:\n  {SCRIPT_ID}:\n    name: App check\n    description: Release and "
            f"config of the app\n    path: scripts/{SCRIPT_ID}.sh\n    estimatedDuration: 1\n"
            "    tags: [monitoring]\n")


@pytest.fixture(scope="module")
def groups_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GroupsService]:
    root = tmp_path_factory.mktemp("groups-ui")
    with Sandbox(root / "fleet", hosts=3, prefix="grp") as fleet:
        env = make_ssh_env(fleet, root / "ssh-env")
        (root / "repo").mkdir()
        (root / "serve").mkdir()
        repo = make_repo(root / "repo")
        repo.write("links.yaml", links_yaml(fleet))
        repo.write("scripts.yaml", scripts_yaml())
        ports = {name: str(fleet.host(name).port) for name in LAYOUT}
        repo.write(f"scripts/{SCRIPT_ID}.sh",
                   SCRIPT.replace("{odd}", ports["grp-02"]).replace("{bad}", ports["grp-03"]))
        repo.commit_and_push("50 links on three hosts")
        serve = ServeProcess(
            root / "serve",
            git={"repository_url": str(repo.bare), "sync_interval_minutes": 0},
            ssh={"keys_directory": env.keys_dir, "known_hosts_path": env.known_hosts,
                 "default_key": fleet.key_path.name, "connection_timeout": 10},
            operations={"max_concurrency": 20, "confirm_over": 10, "script_timeout": 30})
        db = Database(serve.settings.database.path)
        try:
            db.write_sync(lambda c: auth.add_user(c, VIEWER, VIEWER_PASSWORD, role="viewer"))
        finally:
            db.close()
        try:
            serve.start()
            service = GroupsService(url=serve.base_url,
                                    admin=Account(serve.base_url, ADMIN, ADMIN_PASSWORD),
                                    viewer=Account(serve.base_url, VIEWER, VIEWER_PASSWORD))
            with service.http() as http:
                sync = http.post("/api/git/sync", timeout=60)
                assert sync.status_code == 200 and sync.json()["success"], sync.text
                verified = http.post("/api/links/verify", json={}, timeout=120)
                assert verified.status_code == 200, verified.text
                assert verified.json()["enrolled"] == 50, verified.text
            yield service
        finally:
            serve.stop()


@pytest.fixture(scope="module")
def groups_app(browser: WebDriver, groups_service: GroupsService) -> WebDriver:
    log_in(browser, groups_service.admin)
    wait_for("the app after login", lambda: app_ready(browser), timeout=30)
    return browser


@pytest.fixture(scope="module")
def finished_op() -> dict[str, Any]:
    """Filled by the first test: the 50-target operation (its id and groups)."""
    return {}


# ---- helpers ----------------------------------------------------------------------------------

def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def summary(driver: WebDriver) -> str:
    found = texts(driver, '#op-groups .grp-script[data-position="0"] .grp-summary')
    return found[0] if found else ""


def rows(driver: WebDriver) -> list[dict[str, str]]:
    return [{str(k): str(v) for k, v in r.items()} for r in js(driver, """
        return [...document.querySelectorAll('#op-groups .grp-row')].map(r => ({
          key: r.dataset.key, count: r.dataset.count, status: r.dataset.status,
          majority: r.querySelector('.grp-majority') ? 'yes' : 'no',
          targets: r.querySelector('.grp-targets').textContent}));""")]


def click(driver: WebDriver, selector: str) -> None:
    """Click `selector`, finding it again if a redraw replaced it in between."""
    def attempt() -> bool:
        element = driver.find_element(By.CSS_SELECTOR, selector)
        if not element.is_enabled():
            return False
        js(driver, "arguments[0].scrollIntoView({block: 'nearest'})", element)
        element.click()
        return True
    wait_for(f"a click on {selector}", attempt, timeout=15)


def open_operation(driver: WebDriver, op_id: str) -> None:
    js(driver, "location.hash = arguments[0]", f"#operations/{op_id}")
    wait_for(f"{op_id} in the output pane", lambda: op_id in live_title(driver))


def op_id_in_title(driver: WebDriver) -> str:
    found = re.search(r"OP-\d+", live_title(driver))
    return found.group(0) if found else ""


def wait_ended(http: httpx.Client, op_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view: dict[str, Any] = http.get(f"/api/operations/{op_id}").json()
        return view if view["status"] not in ("queued", "running") else None
    return wait_for(f"the end of {op_id}", ended, timeout=60, interval=0.3)


# The 409 answers these tests provoke on purpose, which Chromium logs as failed loads.
provoked_409 = failed_loads(r"/(rerun|diff)\S* - Failed to load resource: the server "
                            r"responded with a status of 409")


# ---- tests ------------------------------------------------------------------------------------

def test_the_group_summary_updates_live_while_50_tasks_end(
        groups_app: WebDriver, groups_service: GroupsService,
        finished_op: dict[str, Any]) -> None:
    driver = groups_app
    open_tab(driver, "operations")
    # Every text the summary line shows, in order, recorded in the page as it changes.
    js(driver, """
        window.__grpSeen = [];
        window.__grpRerunWhileRunning = [];
        const box = document.getElementById('op-groups');
        new MutationObserver(() => {
          const s = box.querySelector('.grp-script[data-position="0"] .grp-summary');
          const t = s ? s.textContent : '';
          if (t && window.__grpSeen[window.__grpSeen.length - 1] !== t) window.__grpSeen.push(t);
          const b = document.getElementById('grp-rerun-failed');
          if (t.includes('pending') && b) window.__grpRerunWhileRunning.push(b.disabled);
        }).observe(box, {subtree: true, childList: true, characterData: true});""")
    body = {"scripts": [SCRIPT_ID], "targets": TARGETS, "concurrency": 5,
            "require_enrollment": True}
    with groups_service.http() as http:
        plan = http.post("/api/operations/plan", json=body)
        assert plan.status_code == 200, plan.text
        assert plan.json()["confirm"]["phrase"] == "run on 50 targets"
        run = http.post("/api/operations/run", json={
            **body, "plan_id": plan.json()["plan_id"], "confirm": "run on 50 targets"})
        assert run.status_code == 202, run.text
        op_id = run.json()["operation_id"]
        open_operation(driver, op_id)
        wait_for(f"the summary {FINAL!r}", lambda: summary(driver) == FINAL, timeout=60)
        assert wait_ended(http, op_id)["status"] == "partial"
        groups = http.get(f"/api/operations/{op_id}/groups").json()
    seen = [str(t) for t in js(driver, "return window.__grpSeen")]
    assert seen[-1] == FINAL, seen
    running = [t for t in seen if "pending" in t]
    # While tasks were pending, Rerun failed waited for the end.
    disabled = js(driver, "return window.__grpRerunWhileRunning")
    assert disabled and all(disabled), disabled
    # Many different counts while tasks were still ending (more than GET …/groups, fetched at
    # most every 1.5 s, could give: the `groups` events drive it), never going backwards.
    assert len(running) >= 10, seen
    done = [sum(int(n) for n in re.findall(r"(\d+) (?:identical|differ|failed)", t)) for t in seen]
    assert done == sorted(done) and done[0] < 50 and done[-1] == 50, seen
    assert all(re.fullmatch(r"\d+ identical · \d+ differ · \d+ failed( · \d+ pending)?", t)
               for t in seen), seen
    # The odd groups showed up while others were still pending.
    assert any(re.search(r"[1-9] differ · [1-9] failed · \d+ pending", t) for t in running), seen

    shown = rows(driver)
    majority = groups["script_groups"][0]["majority"]
    assert [(r["count"], r["status"], r["majority"]) for r in shown] == [
        ("47", "success", "yes"), ("2", "success", "no"), ("1", "failed", "no")]
    assert shown[0]["key"] == majority
    assert shown[0]["targets"] == "web-01, web-02, web-03 +44"
    assert shown[1]["targets"] == "db-01, db-02" and shown[2]["targets"] == "edge-01"
    assert texts(driver, "#op-groups .grp-row .grp-exit") == ["exit 0", "exit 0", "exit 3"]
    # Finished: only failed/unfinished targets can be rerun, and they are counted.
    assert driver.find_element(By.ID, "grp-rerun-failed").text == "Rerun failed (1)"
    assert driver.find_element(By.ID, "grp-rerun-unfinished").text == "Rerun unfinished (1)"
    assert driver.find_element(By.ID, "grp-rerun-failed").is_enabled()

    # A reload draws the same groups from GET …/groups (no events for a finished operation).
    driver.refresh()
    wait_for("the app after the reload", lambda: app_ready(driver), timeout=30)
    wait_for(f"{FINAL!r} after the reload", lambda: summary(driver) == FINAL, timeout=20)
    assert [r["key"] for r in rows(driver)] == [r["key"] for r in shown]
    finished_op.update(id=op_id, groups=groups, keys=[r["key"] for r in shown])


def test_a_group_opens_with_its_targets_output_and_diff(
        groups_app: WebDriver, finished_op: dict[str, Any]) -> None:
    driver = groups_app
    odd = finished_op["keys"][1]
    open_operation(driver, finished_op["id"])
    wait_for("the groups", lambda: summary(driver) == FINAL)
    click(driver, f'#op-groups .grp-row[data-key="{odd}"]')
    detail = f'#op-groups .grp-detail[data-key="{odd}"]'
    wait_for("the group's targets", lambda: texts(driver, f"{detail} .grp-target") ==
             ["db-01", "db-02"])
    # The head is the normalised output: the host's address reads {host}.
    head = texts(driver, f"{detail} .grp-head")[0]
    assert head == ("app 2.4.1 listening on {host}:443\nconfig sha 77ab\n"
                    "<img src=x onerror=alert(1)>\n"), head
    # Output is text: the tag a host printed is characters, not an element.
    assert js(driver, "return document.querySelectorAll('#op-groups img').length") == 0

    click(driver, f'{detail} .grp-target[data-target="db-02"]')
    wait_for("db-02's full output", lambda: texts(
        driver, f'{detail} .grp-view[data-target="db-02"] .grp-output[data-stream="stdout"]'))
    full = texts(driver, f'{detail} .grp-output[data-stream="stdout"]')[0]
    assert full.startswith("app 2.4.1 listening on 127.0.0.1:443\n"), full  # as kept

    click(driver, "#grp-diff-majority")
    wait_for("the diff", lambda: driver.find_elements(By.CSS_SELECTOR, "#grp-diff .diff-add"))
    assert texts(driver, "#grp-diff .diff-del") == ["-config sha 9d1c\n"]
    assert texts(driver, "#grp-diff .diff-add") == [
        "+config sha 77ab\n", "+<img src=x onerror=alert(1)>\n"]
    assert "=== stderr ===\n(identical)\n" in texts(driver, "#grp-diff")[0]
    assert js(driver, "return document.querySelectorAll('#grp-diff img').length") == 0

    # The majority group is what the others are compared with: no diff against itself.
    click(driver, f'#op-groups .grp-row[data-key="{finished_op["keys"][0]}"]')
    wait_for("the majority's detail", lambda: driver.find_elements(
        By.CSS_SELECTOR, f'#op-groups .grp-detail[data-key="{finished_op["keys"][0]}"]'))
    assert not driver.find_element(By.ID, "grp-diff-majority").is_enabled()


def test_rerun_failed_opens_the_child_operation_on_exactly_the_failed_targets(
        groups_app: WebDriver, groups_service: GroupsService,
        finished_op: dict[str, Any]) -> None:
    driver = groups_app
    parent = finished_op["id"]
    open_operation(driver, parent)
    wait_for("the groups", lambda: summary(driver) == FINAL)
    click(driver, "#grp-rerun-failed")
    wait_for("the child operation in the output pane",
             lambda: op_id_in_title(driver) not in ("", parent))
    child = op_id_in_title(driver)
    assert driver.current_url.endswith(f"#operations/{child}")
    with groups_service.http() as http:
        view = wait_ended(http, child)
        assert view["parent"] == parent
        assert view["targets"] == ["edge-01"]
        assert [(log["target"], log["status"]) for log in view["logs"]] == [("edge-01", "failed")]
        assert http.get(f"/api/operations/{parent}").json()["children"] == [child]
    # The header says where it came from; the child failed again, on its own.
    wait_for("the parent link in the header", lambda: texts(driver, "#op-meta .lineage-parent")
             == [f"rerun of {parent}"])
    wait_for("the child's groups", lambda: summary(driver) == "0 identical · 0 differ · 1 failed")
    (key,) = [r["key"] for r in rows(driver)]
    click(driver, f'#op-groups .grp-row[data-key="{key}"]')
    click(driver, "#grp-diff-majority")
    wait_for("the no-majority message", lambda: "no majority" in " ".join(
        texts(driver, "#op-groups .grp-message")))
    # History: the child says whose rerun it is, the parent names its rerun.
    driver.find_element(By.ID, "ops-show-history").click()
    wait_for("the lineage in the history list", lambda: js(driver, """
        const row = document.querySelector(`#ops-table tr[data-op="${arguments[0]}"]`);
        return row && row.querySelector('.lineage') ? row.querySelector('.lineage').textContent
                                                     : null;""", child) == f"rerun of {parent}")
    wait_for("the parent's children in the history list", lambda: js(driver, """
        const row = document.querySelector(`#ops-table tr[data-op="${arguments[0]}"]`);
        return row && row.querySelector('.lineage') ? row.querySelector('.lineage').textContent
                                                     : null;""", parent) == f"reruns: {child}")
    # The parent link goes back; the parent's header names the rerun.
    click(driver, "#op-meta .lineage-parent a")
    wait_for(f"{parent} again", lambda: op_id_in_title(driver) == parent)
    wait_for("the children in the header", lambda: texts(driver, "#op-meta .lineage-children")
             == [f"reruns: {child}"])
    finished_op["child"] = child


def test_a_rerun_that_needs_confirmation_goes_through_the_plan_dialog(
        groups_app: WebDriver, groups_service: GroupsService,
        finished_op: dict[str, Any]) -> None:
    """47 targets > confirm_over: the rerun is answered CONFIRMATION_REQUIRED and the plan
    dialog opens on what would run; Cancel starts nothing, the phrase starts the child."""
    driver = groups_app
    parent, majority = finished_op["id"], finished_op["keys"][0]
    open_operation(driver, parent)
    wait_for("the groups", lambda: summary(driver) == FINAL)
    with groups_service.http() as http:
        def ids() -> list[str]:
            return [o["id"] for o in
                    http.get("/api/operations", params={"limit": 50}).json()["operations"]]
        before = ids()
        click(driver, f'#op-groups .grp-row[data-key="{majority}"]')
        button = wait_for("Rerun this group", lambda: driver.find_element(By.ID, "grp-rerun-group"))
        assert button.text == "Rerun this group (47 targets)"
        click(driver, "#grp-rerun-group")
        wait_for("the plan dialog", lambda: plan_dialog_open(driver))
        named = driver.find_element(By.CSS_SELECTOR, "#plan-confirm .plan-phrase-text").text
        assert named == "run on 47 targets", named
        assert len(driver.find_elements(By.CSS_SELECTOR, "#plan-dialog .plan-target")) == 47
        driver.find_element(By.ID, "plan-cancel").click()
        wait_for("the dialog closed", lambda: not plan_dialog_open(driver))
        assert op_id_in_title(driver) == parent and ids() == before  # nothing started
        click(driver, "#grp-rerun-group")
        wait_for("the plan dialog again", lambda: plan_dialog_open(driver))
        confirm_plan(driver)
        child = wait_for("the confirmed child", lambda: (
            t if (t := op_id_in_title(driver)) and t != parent else None))
        view = http.get(f"/api/operations/{child}").json()
        assert view["parent"] == parent and len(view["targets"]) == 47, view["targets"]
        assert view["plan"] and view["plan"]["confirm"]["phrase"] == "run on 47 targets"
        assert ids() == [child, *before]
    assert console_errors(driver, provoked_409) == []


def test_an_operation_where_everything_succeeded_offers_no_rerun_of_failed_or_unfinished(
        groups_app: WebDriver, groups_service: GroupsService) -> None:
    driver = groups_app
    with groups_service.http() as http:
        run = http.post("/api/operations/run", json={
            "scripts": [SCRIPT_ID], "targets": WEB[:3], "require_enrollment": True})
        assert run.status_code == 202, run.text
        op_id = run.json()["operation_id"]
        assert wait_ended(http, op_id)["status"] == "success"
    open_operation(driver, op_id)
    wait_for("the groups", lambda: summary(driver) == "3 identical · 0 differ · 0 failed")
    for button, title in (("grp-rerun-failed", "No task failed or timed out"),
                          ("grp-rerun-unfinished", "Every task succeeded")):
        element = driver.find_element(By.ID, button)
        assert not element.is_enabled() and element.get_attribute("title") == title
    # One group, the majority: it can be rerun as a whole, but not diffed against itself.
    (row,) = rows(driver)
    click(driver, f'#op-groups .grp-row[data-key="{row["key"]}"]')
    wait_for("Rerun this group", lambda: driver.find_element(By.ID, "grp-rerun-group").is_enabled())
    assert not driver.find_element(By.ID, "grp-diff-majority").is_enabled()
    assert driver.find_element(By.ID, "grp-rerun-group").text == "Rerun this group (3 targets)"


def test_a_viewer_sees_groups_and_diffs_but_no_rerun_buttons(
        groups_app: WebDriver, groups_service: GroupsService,
        finished_op: dict[str, Any]) -> None:
    driver = groups_app
    driver.delete_all_cookies()
    log_in(driver, groups_service.viewer)
    wait_for("the app as the viewer", lambda: app_ready(driver), timeout=30)
    console_errors(driver, provoked_409)  # drain: polls that met the deleted cookie got their 401
    open_tab(driver, "operations")
    open_operation(driver, finished_op["id"])
    wait_for("the groups", lambda: summary(driver) == FINAL)
    failed = finished_op["keys"][2]
    click(driver, f'#op-groups .grp-row[data-key="{failed}"]')
    wait_for("the failed group's stderr head", lambda: texts(
        driver, "#op-groups .grp-detail .grp-head.grp-stderr") ==
        ["config: /etc/app.conf: No such file or directory\n"])
    click(driver, "#grp-diff-majority")
    wait_for("the diff", lambda: driver.find_elements(By.CSS_SELECTOR, "#grp-diff .diff-add"))
    assert "+config: /etc/app.conf: No such file or directory\n" in texts(
        driver, "#grp-diff .diff-add")
    assert js(driver, "return document.querySelectorAll("
                      "'#grp-rerun-failed, #grp-rerun-unfinished, #grp-rerun-group').length") == 0
    # The server agrees: a viewer's rerun is refused before anything else.
    with httpx.Client(base_url=groups_service.url, timeout=20) as http:
        token = http.post("/api/auth/login", json={"username": VIEWER,
                                                   "password": VIEWER_PASSWORD}).json()["token"]
        r = http.post(f"/api/operations/{finished_op['id']}/rerun", json={"which": "failed"},
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
    assert console_errors(driver, provoked_409) == []


def test_the_fixture_inventory_is_what_the_docstring_says(groups_service: GroupsService) -> None:
    with groups_service.http() as http:
        links = http.get("/api/links").json()["links"]
    assert sorted(link["id"] for link in links) == sorted(TARGETS)
    assert len({(link["ssh"]["host"], link["ssh"]["port"]) for link in links}) == 3
    assert all(link["enrolled"] for link in links)
