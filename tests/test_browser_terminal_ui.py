"""The terminal tab as an operator uses it, in real headless Chromium against ``linkops demo``
(real sshd hosts, real bash, vim and top on them).

- Replay never types: after full-screen programs and programs that query the terminal, page
  reloads re-attach and replay the scrollback, and the shell's history holds exactly the
  commands typed — nothing xterm.js answered to the replayed queries. The page's own guard is
  checked separately (replies to a replayed frame are dropped, live ones are not).
- The scrollback is replayed at the size it was recorded at and reflowed to the pane.
- Choosing another host never replaces a live session silently.
- The small things: idle pane labels, the hint, focus ring, per-pane maximise / close,
  remembered targets, keyboard-only use, no console errors.

The tests share one browser and run in file order. The sandbox hosts run on this machine,
so a shell's ``history -w FILE`` can be read back by the test directly.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from linkops.terminal.buffers import strip_terminal_queries
from tests.fixtures_browser import (
    DemoService,
    app_ready,
    console_errors,
    log_in,
    open_tab,
    pane_live,
    screenshot,
    type_into,
    wait_for,
)

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _panes_closed_afterwards(app: WebDriver, demo_service: DemoService) -> Iterator[None]:
    """Each test starts with no live session, whatever the previous one left (a failure, or
    a pane hidden by a layout change)."""
    yield
    ws_id = app.execute_script("return sessionStorage.getItem('linkops.workspace')")
    if not ws_id:
        return
    with demo_service.http() as http:
        found = http.get(f"/api/terminal/workspaces/{ws_id}")
        if found.status_code != 200:
            return
        for pane in found.json()["panes"]:
            if pane["status"] in ("connecting", "connected"):
                http.post(f"/api/terminal/workspaces/{ws_id}/panes/{pane['pane']}/disconnect",
                          json={})
    wait_for("every pane closed", lambda: not any(
        pane_live(app, p) for p in "ABCD"), timeout=20)


# ---- helpers -----------------------------------------------------------------------------------

# Reads a pane's whole buffer; lines xterm.js wrapped are joined back into one logical line.
READ_BUFFER = """
const t = window.__linkops.terminals[arguments[0]]; if (!t) return '';
const b = t.buffer.active; const out = [];
for (let i = 0; i < b.length; i++) {
  const l = b.getLine(i); if (!l) continue;
  const next = b.getLine(i + 1);
  const text = l.translateToString(!(next && next.isWrapped));
  if (l.isWrapped && out.length) out[out.length - 1] += text; else out.push(text);
}
return out.join('\\n');
"""


def terminal_text(driver: WebDriver, pane: str) -> str:
    """The pane's buffer with wrapped rows joined into their logical lines (these tests look
    at lines a narrow pane wraps; fixtures_browser.terminal_text keeps the rows)."""
    return str(driver.execute_script(READ_BUFFER, pane))


def pane_status(driver: WebDriver, pane: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"]')
               .get_attribute("data-status"))


def buffer_type(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "return window.__linkops.terminals[arguments[0]].buffer.active.type", pane))


def at_prompt(driver: WebDriver, pane: str) -> bool:
    return bool(re.search(r"[$#] ?$", terminal_text(driver, pane).rstrip() + " "))


def set_layout(driver: WebDriver, layout: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#term-layouts [data-layout="{layout}"]').click()


def connect_pane(driver: WebDriver, pane: str, target: str) -> None:
    """Pick ``target`` in an idle pane's menu (which connects it) and wait for a prompt."""
    assert not pane_live(driver, pane), f"pane {pane} is live; close it first"
    menu = driver.find_element(By.CSS_SELECTOR, f'.pane-target[data-pane="{pane}"]')
    wait_for(f"{target} in pane {pane}'s menu", lambda: driver.execute_script(
        "return [...arguments[0].options].some(o => o.value === arguments[1])", menu, target))
    if menu.get_attribute("value") == target:  # picking it again changes nothing: Connect
        driver.find_element(By.CSS_SELECTOR,
                            f'.pane[data-pane="{pane}"] [data-pane-action="connect"]').click()
    else:
        Select(menu).select_by_value(target)
    wait_for(f"pane {pane} connected to {target}", lambda: pane_live(driver, pane), timeout=40)
    wait_for(f"a prompt in pane {pane}", lambda: at_prompt(driver, pane), timeout=20)


def disconnect_pane(driver: WebDriver, pane: str) -> None:
    driver.find_element(By.CSS_SELECTOR,
                        f'.pane[data-pane="{pane}"] [data-pane-action="disconnect"]').click()
    wait_for(f"pane {pane} closed", lambda: pane_status(driver, pane) == "closed")


def reload_and_reattach(driver: WebDriver, pane: str, marker: str) -> None:
    """Reload the page; wait until ``pane`` is live again and its replay shows ``marker``."""
    driver.refresh()
    wait_for("the app after reload", lambda: app_ready(driver), timeout=30)
    wait_for(f"pane {pane} re-attached", lambda: pane_live(driver, pane), timeout=30)
    wait_for("the replayed scrollback", lambda: marker in terminal_text(driver, pane),
             timeout=20)
    # Whatever the page would (wrongly) type in answer to the replay goes out right away:
    # give it time to reach the shell and be echoed before the next command is typed.
    time.sleep(1.0)


def shell_history(driver: WebDriver, pane: str, path: Path) -> list[str]:
    """The shell's in-memory history (``history -w``), as typed lines."""
    command = f"history -w {path}"
    type_into(driver, pane, command + "\n")
    wait_for("the history file", lambda: path.exists() and command in path.read_text(),
             timeout=20)
    return path.read_text().splitlines()


# ---- 1. replay never types ---------------------------------------------------------------------

def test_vim_then_three_reloads_types_nothing(app: WebDriver, tmp_path: Path) -> None:
    open_tab(app, "terminal")
    set_layout(app, "single")
    connect_pane(app, "A", "vps-fra-01")
    # vim asks the terminal for its attributes, cursor position, modes and colours.
    type_into(app, "A", "vim\n")
    wait_for("vim's alternate screen", lambda: buffer_type(app, "A") == "alternate")
    time.sleep(0.5)  # vim's queries are answered live and read by vim
    ActionChains(app).send_keys(":q!\n").perform()
    wait_for("the shell again", lambda: buffer_type(app, "A") == "normal")
    for _ in range(3):
        reload_and_reattach(app, "A", "vim")
    type_into(app, "A", "echo once\n")
    wait_for("echo's output", lambda: re.search(r"^once$", terminal_text(app, "A"), re.M))
    history = shell_history(app, "A", tmp_path / "history")
    assert history == ["vim", "echo once", f"history -w {tmp_path / 'history'}"]
    disconnect_pane(app, "A")


@pytest.mark.parametrize(("program", "screen"), [("top", "load average"),
                                                  ("htop", "Load average")])
def test_full_screen_monitor_then_three_reloads_types_nothing(
        app: WebDriver, tmp_path: Path, program: str, screen: str) -> None:
    # htop comes from .ci/run's package list (the sandbox hosts are this machine).
    open_tab(app, "terminal")
    connect_pane(app, "A", "vps-nyc-01")
    # Both programs run on the same host: the earlier shell's saved history is loaded by this
    # one. Cleared first, so the history below is exactly what this test typed.
    type_into(app, "A", "history -c\n")
    type_into(app, "A", f"{program}\n")
    wait_for(f"{program}'s screen", lambda: screen in terminal_text(app, "A"), timeout=20)
    time.sleep(1.0)
    ActionChains(app).send_keys("q").perform()
    wait_for("the shell again", lambda: buffer_type(app, "A") == "normal" and at_prompt(app, "A"))
    for _ in range(3):
        reload_and_reattach(app, "A", program)
    type_into(app, "A", "echo once\n")
    wait_for("echo's output", lambda: re.search(r"^once$", terminal_text(app, "A"), re.M))
    history = shell_history(app, "A", tmp_path / "history")
    assert history == [program, "echo once", f"history -w {tmp_path / 'history'}"]
    disconnect_pane(app, "A")


# Asks for the foreground and background colours and the device attributes the way programs
# do, reads the answers (raw, no echo) up to the DA reply and prints them quoted.
QUERY_SCRIPT = r"""
old=$(stty -g)
stty raw -echo
printf '\e]10;?\a\e]11;?\a\e[c'
reply=""
while IFS= read -r -s -N 1 -t 3 ch; do
  reply+="$ch"
  [[ $reply == *$'\e[?'*c ]] && break
done
stty "$old"
printf 'REPLY=%q\n' "$reply"
"""


def test_colour_queries_answer_live_but_not_on_replay(app: WebDriver, tmp_path: Path) -> None:
    script = tmp_path / "query.sh"
    script.write_text(QUERY_SCRIPT)
    open_tab(app, "terminal")
    connect_pane(app, "A", "vm-web-01")
    type_into(app, "A", f"bash {script}\n")
    # Live, xterm.js answers (the program asked): both colours and the attributes arrive.
    reply = wait_for("the live answers", lambda: re.search(
        r"^REPLY=(.*)$", terminal_text(app, "A"), re.M), timeout=20).group(1)
    assert re.search(r"\]10;rgb:[0-9a-f]{4}/[0-9a-f]{4}/[0-9a-f]{4}", reply), reply
    assert re.search(r"\]11;rgb:[0-9a-f]{4}/", reply), reply
    assert re.search(r"\[\?[0-9;]+c", reply), reply
    wait_for("the prompt", lambda: at_prompt(app, "A"))
    for _ in range(3):
        reload_and_reattach(app, "A", "REPLY=")
    type_into(app, "A", "echo once\n")
    wait_for("echo's output", lambda: re.search(r"^once$", terminal_text(app, "A"), re.M))
    history = shell_history(app, "A", tmp_path / "history")
    assert history == [f"bash {script}", "echo once", f"history -w {tmp_path / 'history'}"]
    disconnect_pane(app, "A")


# The page's own guard, independent of the server's filtering: a spy records every frame the
# page sends and lets the test deliver frames as if the server had sent them.
SOCKET_SPY = """
(() => {
  const Native = window.WebSocket;
  window.__spy = { sent: [], sockets: [] };
  window.WebSocket = class extends Native {
    constructor(...args) { super(...args); window.__spy.sockets.push(this); }
    send(data) { window.__spy.sent.push(String(data)); return super.send(data); }
  };
})();
"""
QUERIES = "\x1b[c\x1b[>c\x1b]10;?\x07\x1b]11;?\x1b\\\x1b[?2004$p\x1b[6n"


def deliver(driver: WebDriver, frame: dict[str, object]) -> None:
    driver.execute_script(
        "const ws = window.__spy.sockets[window.__spy.sockets.length - 1];"
        "ws.dispatchEvent(new MessageEvent('message', {data: JSON.stringify(arguments[0])}));",
        frame)


def sent_stdin(driver: WebDriver, pane: str) -> list[str]:
    frames = driver.execute_script("return window.__spy.sent.splice(0)")
    return [m["data"] for m in map(json.loads, frames)
            if m.get("type") == "stdin" and m.get("pane") == pane]


def test_page_drops_answers_to_replayed_output_only(app: WebDriver) -> None:
    open_tab(app, "terminal")
    connect_pane(app, "A", "vm-db-01")
    added = app.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SOCKET_SPY})
    try:
        app.refresh()
        wait_for("the app after reload", lambda: app_ready(app), timeout=30)
        wait_for("pane A re-attached", lambda: pane_live(app, "A"), timeout=30)
        wait_for("a prompt", lambda: at_prompt(app, "A"))
        sent_stdin(app, "A")
        deliver(app, {"pane": "A", "type": "stdout", "replay": True, "data": QUERIES})
        time.sleep(1.0)
        assert sent_stdin(app, "A") == []
        # Typed text still goes out at once.
        type_into(app, "A", "x")
        wait_for("the keystroke sent", lambda: "x" in sent_stdin(app, "A"))
        # Live output with the same queries is answered (programs like vim depend on it).
        deliver(app, {"pane": "A", "type": "stdout", "data": QUERIES})
        answers = "".join(wait_for("the live answers", lambda: sent_stdin(app, "A")))
        assert "\x1b[?" in answers and "]11;rgb:" in answers, repr(answers)
        # What the server replays (queries filtered out) gets no answer even as live output.
        time.sleep(0.5)
        sent_stdin(app, "A")
        deliver(app, {"pane": "A", "type": "stdout", "data": strip_terminal_queries(QUERIES)})
        time.sleep(1.0)
        assert sent_stdin(app, "A") == []
    finally:
        app.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument",
                            {"identifier": added["identifier"]})
    # The answers were typed into the shell: wipe the line, leave the pane.
    type_into(app, "A", "\x15")
    disconnect_pane(app, "A")


# ---- 3. replay at the recorded size ------------------------------------------------------------

def test_scrollback_is_replayed_at_its_width_and_reflowed(app: WebDriver) -> None:
    """Output drawn for a wide PTY, re-attached from a narrow page."""
    open_tab(app, "terminal")
    set_layout(app, "single")
    connect_pane(app, "A", "vm-docker-01")
    wide = int(app.execute_script("return window.__linkops.terminals.A.cols"))
    assert wide > 120, wide
    # "right" drawn at column 100 with a cursor move, not with spaces.
    type_into(app, "A", "printf 'left\\e[100Gright\\n'\n")
    wait_for("the output", lambda: re.search(r"^left +right$", terminal_text(app, "A"), re.M))
    # The page is left first (the way one re-opens it on a smaller screen): narrowing the
    # window under it would make it resize the PTY, and the recorded size would be narrow too.
    page = app.current_url
    app.get("about:blank")
    app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 720, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
        app.get(page)
        reload_and_reattach(app, "A", "right")
        narrow = int(app.execute_script("return window.__linkops.terminals.A.cols"))
        assert narrow < 100, narrow
        line = re.search(r"^left +right$", terminal_text(app, "A"), re.M)
        assert line, terminal_text(app, "A")
        # Drawn at the recorded width, then reflowed: still at column 100 of the logical line
        # (replayed at the narrow width, the cursor move would have stopped at its edge).
        assert line.group(0).index("right") == 99, line.group(0)
        screenshot(app, "terminal-reflowed-replay")
    finally:
        app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1,
                             "mobile": False})
    wait_for("pane A wide again",
             lambda: int(app.execute_script("return window.__linkops.terminals.A.cols")) > 120)
    disconnect_pane(app, "A")


# ---- 2. sessions are never replaced silently ---------------------------------------------------

def choose_in_menu(driver: WebDriver, pane: str, target: str) -> None:
    """Pick ``target`` in a pane's menu. Dispatched from a timer: the page may answer with a
    confirmation, which would block a synchronous script call."""
    driver.execute_script(
        "const s = document.querySelector(`.pane-target[data-pane='${arguments[0]}']`);"
        "setTimeout(() => { s.value = arguments[1]; s.dispatchEvent(new Event('change')); }, 0);",
        pane, target)


def confirmation(driver: WebDriver) -> Alert:
    return wait_for("the confirmation", lambda: driver.switch_to.alert, timeout=10)


def pane_target(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "return document.querySelector(`.pane-target[data-pane='${arguments[0]}']`).value", pane))


def test_another_host_uses_a_free_pane_or_asks(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "terminal")
    set_layout(app, "single")
    connect_pane(app, "A", "vps-fra-01")
    type_into(app, "A", "echo fra-$((40+2))\n")
    wait_for("pane A's output", lambda: "fra-42" in terminal_text(app, "A"))

    # Links → another host → Terminal: pane A is busy, so the layout grows and pane B is used.
    open_tab(app, "links")
    # The table is drawn once the links are fetched (CI found it not drawn yet).
    wait_for("vm-web-01's Terminal button", lambda: app.find_element(
        By.CSS_SELECTOR, '#links-table tr[data-link="vm-web-01"] [data-action="terminal"]')).click()
    wait_for("pane B on vm-web-01", lambda: pane_live(app, "B")
             and pane_target(app, "B") == "vm-web-01", timeout=40)
    wait_for("a prompt in pane B", lambda: at_prompt(app, "B"))
    assert app.find_element(By.ID, "term-grid").get_attribute("data-layout") == "grid2x1"
    assert pane_live(app, "A") and pane_target(app, "A") == "vps-fra-01"
    assert "fra-42" in terminal_text(app, "A")
    assert "fra-42" not in terminal_text(app, "B")

    # The same host again: its pane is focused, nothing new is opened or closed.
    open_tab(app, "links")
    app.find_element(By.CSS_SELECTOR, '#links-table tr[data-link="vm-web-01"] '
                                      '[data-action="terminal"]').click()
    wait_for("the terminal tab", lambda: app.find_element(By.ID, "panel-terminal").is_displayed())
    wait_for("pane B focused", lambda: app.execute_script(
        "return document.activeElement.closest('.pane')?.dataset.pane") == "B")
    assert app.find_element(By.ID, "term-grid").get_attribute("data-layout") == "grid2x1"

    # Another host in pane A's own menu: the page asks first. Declined, nothing changes.
    choose_in_menu(app, "A", "vm-db-01")
    alert = confirmation(app)
    assert "vps-fra-01" in alert.text and "vm-db-01" in alert.text
    alert.dismiss()
    wait_for("the menu back on vps-fra-01", lambda: pane_target(app, "A") == "vps-fra-01")
    time.sleep(0.5)
    assert pane_live(app, "A") and "fra-42" in terminal_text(app, "A")

    # Accepted: a new session on a clean screen (the old host's output is gone).
    choose_in_menu(app, "A", "vm-db-01")
    confirmation(app).accept()
    wait_for("pane A on vm-db-01", lambda: pane_live(app, "A")
             and pane_target(app, "A") == "vm-db-01", timeout=40)
    wait_for("the new prompt", lambda: at_prompt(app, "A"))
    assert "fra-42" not in terminal_text(app, "A")
    assert "session closed" not in terminal_text(app, "A")
    type_into(app, "A", "hostname; echo db-$((1+1))\n")
    wait_for("output of the new session", lambda: "db-2" in terminal_text(app, "A")
             .replace("$((1+1))", ""))
    ws_id = app.execute_script("return sessionStorage.getItem('linkops.workspace')")
    with demo_service.http() as http:
        panes = {p["pane"]: p for p in
                 http.get(f"/api/terminal/workspaces/{ws_id}").json()["panes"]}
    assert panes["A"]["target"] == "vm-db-01" and panes["B"]["target"] == "vm-web-01"
    screenshot(app, "terminal-two-hosts")
    set_layout(app, "single")


# ---- 4. the small things -----------------------------------------------------------------------

def status_text(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "return document.querySelector(`.pane[data-pane='${arguments[0]}'] .pane-status`)"
        ".textContent", pane))


def hint_shown(driver: WebDriver, pane: str) -> bool:
    return bool(driver.find_element(
        By.CSS_SELECTOR, f'.pane[data-pane="{pane}"] .pane-hint').is_displayed())


def test_unused_panes_say_not_connected_even_hidden(app: WebDriver) -> None:
    open_tab(app, "terminal")
    set_layout(app, "single")
    app.refresh()
    wait_for("the app after reload", lambda: app_ready(app), timeout=30)
    # A and B had sessions (closed now); C and D were never used: hidden or not, they are
    # "not connected", never "closed", and no stray "null" shows up next to the label.
    wait_for("the workspace re-attached", lambda: status_text(app, "A") == "closed")
    assert status_text(app, "B") == "closed"
    for pane in "CD":
        assert status_text(app, pane) == "not connected", (pane, status_text(app, pane))
    set_layout(app, "grid2x2")
    for pane in "ABCD":
        assert "null" not in app.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"]').text
    for pane in "CD":
        assert status_text(app, pane) == "not connected"
        assert hint_shown(app, pane)
    screenshot(app, "terminal-four-idle-panes")


def test_hint_is_not_terminal_output(app: WebDriver) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x2")
    assert "pick an enrolled link" in app.find_element(
        By.CSS_SELECTOR, '.pane[data-pane="C"] .pane-hint').text
    connect_pane(app, "C", "vps-fra-01")
    assert not hint_shown(app, "C")
    assert "pick an enrolled link" not in terminal_text(app, "C")
    assert hint_shown(app, "D")


def ring(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "const s = getComputedStyle(document.querySelector(`.pane[data-pane='${arguments[0]}']`));"
        "return s.boxShadow + ' | ' + s.borderColor;", pane))


def test_the_pane_with_the_keyboard_is_marked(app: WebDriver) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x2")
    connect_pane(app, "C", "vps-fra-01")
    app.execute_script("document.activeElement.blur()")
    rest = {p: ring(app, p) for p in "CD"}
    type_into(app, "C", "")
    wait_for("pane C marked", lambda: ring(app, "C") != rest["C"])
    assert "0px 0px 0px 2px" in ring(app, "C")  # the focus ring
    assert ring(app, "D") == rest["D"]
    type_into(app, "D", "")
    wait_for("the mark moves to D", lambda: ring(app, "D") != rest["D"])
    assert ring(app, "C") == rest["C"]
    screenshot(app, "terminal-focused-pane")


def visible_panes(driver: WebDriver) -> list[str]:
    return [str(p) for p in driver.execute_script(
        "return [...document.querySelectorAll('#term-grid .pane')]"
        ".filter(p => p.offsetWidth > 0).map(p => p.dataset.pane)")]


def test_maximise_and_close_one_pane(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x2")
    connect_pane(app, "C", "vps-fra-01")
    connect_pane(app, "D", "vps-nyc-01")
    small = int(app.execute_script("return window.__linkops.terminals.C.cols"))
    maximise = '.pane[data-pane="C"] [data-pane-action="maximise"]'
    app.find_element(By.CSS_SELECTOR, maximise).click()
    wait_for("only pane C", lambda: visible_panes(app) == ["C"])
    wait_for("pane C to grow", lambda: int(app.execute_script(
        "return window.__linkops.terminals.C.cols")) > small * 1.6)
    assert app.find_element(By.CSS_SELECTOR, maximise).get_attribute("aria-pressed") == "true"
    assert pane_live(app, "D")  # hidden, not closed
    screenshot(app, "terminal-maximised")
    app.find_element(By.CSS_SELECTOR, maximise).click()
    wait_for("all four panes again", lambda: visible_panes(app) == ["A", "B", "C", "D"])

    app.find_element(By.CSS_SELECTOR, '.pane[data-pane="C"] [data-pane-action="close"]').click()
    wait_for("pane C idle", lambda: pane_status(app, "C") == "idle")
    assert pane_target(app, "C") == ""
    assert status_text(app, "C") == "not connected"
    assert hint_shown(app, "C")
    assert terminal_text(app, "C").strip() == ""
    assert pane_live(app, "D")
    ws_id = app.execute_script("return sessionStorage.getItem('linkops.workspace')")
    with demo_service.http() as http:
        panes = {p["pane"]: p for p in
                 http.get(f"/api/terminal/workspaces/{ws_id}").json()["panes"]}
    assert panes["C"]["target"] in (None, "") and panes["C"]["status"] == "idle"


def test_pane_targets_survive_logging_in_again(app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x1")
    connect_pane(app, "A", "vps-nyc-01")
    connect_pane(app, "B", "vm-web-01")
    app.find_element(By.ID, "user-button").click()
    app.find_element(By.ID, "logout").click()
    wait_for("the login page", lambda: app.current_url.endswith("/login.html"))
    log_in(app, demo_service)
    wait_for("the app after login", lambda: app_ready(app), timeout=30)
    open_tab(app, "terminal")
    # Logging out closed the workspace and its shells; the hosts are offered again.
    wait_for("pane A's host", lambda: pane_target(app, "A") == "vps-nyc-01")
    assert pane_target(app, "B") == "vm-web-01"
    assert app.find_element(By.ID, "term-grid").get_attribute("data-layout") == "grid2x1"
    assert pane_status(app, "A") == "idle" and pane_status(app, "B") == "idle"
    app.find_element(By.ID, "term-connect-all").click()
    for pane in "AB":
        wait_for(f"pane {pane} connected", lambda p=pane: pane_live(app, p),  # type: ignore[misc]
                 timeout=40)


# ---- 5. keyboard only --------------------------------------------------------------------------

def active_pane(driver: WebDriver) -> str | None:
    found = driver.execute_script(
        "const a = document.activeElement; const p = a && a.closest('.pane');"
        "return p ? p.dataset.pane + ':' + (a.closest('.xterm') ? 'term' : a.tagName) : null")
    return str(found) if found else None


def press(driver: WebDriver, *keys: str) -> None:
    ActionChains(driver).send_keys(*keys).perform()


def chord(driver: WebDriver, key: str) -> None:
    ActionChains(driver).key_down(Keys.CONTROL).key_down(Keys.SHIFT).send_keys(key) \
        .key_up(Keys.SHIFT).key_up(Keys.CONTROL).perform()


def test_terminal_from_the_keyboard_only(app: WebDriver) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x1")
    # From the tab bar, Tab walks into pane A's header: its host menu.
    app.find_element(By.ID, "tab-terminal").click()
    for _ in range(20):
        if active_pane(app) == "A:SELECT":
            break
        press(app, Keys.TAB)
    assert active_pane(app) == "A:SELECT"
    # Arrows step through the hosts without connecting; Enter connects.
    press(app, Keys.HOME)
    for _ in range(10):
        if pane_target(app, "A") == "vm-db-01":
            break
        press(app, Keys.ARROW_DOWN)
    assert pane_target(app, "A") == "vm-db-01"
    time.sleep(0.5)
    assert not pane_live(app, "A") and pane_status(app, "A") != "connecting"
    press(app, Keys.ENTER)
    wait_for("pane A connected", lambda: pane_live(app, "A"), timeout=40)
    wait_for("a prompt", lambda: at_prompt(app, "A"))
    # Tab on into the terminal (past the pane's buttons) and type.
    for _ in range(10):
        if active_pane(app) == "A:term":
            break
        press(app, Keys.TAB)
    assert active_pane(app) == "A:term"
    press(app, "echo kb-$((3*3))\n")
    wait_for("pane A's output", lambda: "kb-9" in terminal_text(app, "A").replace("$((3*3))", ""))
    # Inside a terminal Tab belongs to the shell (completion): Ctrl+Shift+arrows move on.
    chord(app, Keys.ARROW_RIGHT)
    wait_for("pane B focused", lambda: active_pane(app) == "B:term")
    chord(app, Keys.ARROW_UP)
    wait_for("pane B's menu", lambda: active_pane(app) == "B:SELECT")
    for _ in range(10):
        if pane_target(app, "B") == "vps-fra-01":
            break
        press(app, Keys.ARROW_DOWN)
    press(app, Keys.ENTER)
    wait_for("pane B connected", lambda: pane_live(app, "B"), timeout=40)
    wait_for("a prompt in B", lambda: at_prompt(app, "B"))
    chord(app, Keys.ARROW_LEFT)  # from the header too
    wait_for("pane A focused", lambda: active_pane(app) == "A:term")
    chord(app, Keys.ARROW_LEFT)  # wraps around
    wait_for("pane B focused again", lambda: active_pane(app) == "B:term")
    press(app, "echo kb-$((4*4))\n")
    wait_for("pane B's output", lambda: "kb-16" in terminal_text(app, "B")
             .replace("$((4*4))", ""))
    assert "kb-16" not in terminal_text(app, "A")
    screenshot(app, "terminal-keyboard")


def test_all_four_panes_live_asks_before_replacing(app: WebDriver) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x2")
    for pane, host in zip("ABCD", ("vps-fra-01", "vps-nyc-01", "vm-web-01", "vm-db-01"),
                          strict=True):
        connect_pane(app, pane, host)
    type_into(app, "A", "echo still-$((5*5))\n")
    wait_for("pane A's output", lambda: "still-25" in terminal_text(app, "A")
             .replace("$((5*5))", ""))
    open_tab(app, "links")
    app.execute_script(  # from a timer: the confirmation would block a synchronous click
        "const b = document.querySelector("
        "'#links-table tr[data-link=\"vm-docker-01\"] [data-action=\"terminal\"]');"
        "setTimeout(() => b.click(), 0);")
    alert = confirmation(app)
    assert "Pane A" in alert.text and "vps-fra-01" in alert.text
    alert.dismiss()
    time.sleep(1.0)
    assert pane_target(app, "A") == "vps-fra-01" and pane_live(app, "A")
    assert "still-25" in terminal_text(app, "A")


# Terminal tab photographed in every theme at the two common laptop sizes (four live panes).
@pytest.mark.parametrize("theme", ["gray-fabric", "blue-fabric", "charcoal-leather"])
def test_terminal_screenshots_in_every_theme(app: WebDriver, theme: str) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x2")
    for pane, host in zip("AB", ("vps-fra-01", "vps-nyc-01"), strict=True):
        connect_pane(app, pane, host)
    type_into(app, "A", "ls -la /etc | head -20\n")
    Select(app.find_element(By.ID, "theme-select")).select_by_value(theme)
    try:
        for width, height in ((1280, 800), (1440, 900)):
            app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 1,
                                 "mobile": False})
            time.sleep(0.5)  # fit and redraw
            overflow = app.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (theme, width, overflow)
            type_into(app, "B", "")
            screenshot(app, f"terminal-{theme}-{width}x{height}")
    finally:
        app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1,
                             "mobile": False})
        Select(app.find_element(By.ID, "theme-select")).select_by_value("gray-fabric")


def test_no_console_errors(app: WebDriver) -> None:
    # Expected: the confirmation declined above is no error; nothing else may be logged.
    assert console_errors(app, lambda entry: False) == []
