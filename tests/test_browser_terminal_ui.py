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
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from linkops.terminal.buffers import strip_terminal_queries
from tests.fixtures_browser import app_ready, open_tab, screenshot, wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _panes_closed_afterwards(app: WebDriver) -> Iterator[None]:
    """Each test starts from idle panes whatever the previous one left (a failure above all)."""
    yield
    for pane in "ABCD":
        try:
            if pane_live(app, pane) and app.find_element(
                    By.CSS_SELECTOR, f'.pane[data-pane="{pane}"]').is_displayed():
                disconnect_pane(app, pane)
        except Exception:  # best effort; the next test asserts its own start
            pass


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
    return str(driver.execute_script(READ_BUFFER, pane))


def pane_status(driver: WebDriver, pane: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"]')
               .get_attribute("data-status"))


def pane_live(driver: WebDriver, pane: str) -> bool:
    return pane_status(driver, pane) in ("connected", "enrolled")


def buffer_type(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "return window.__linkops.terminals[arguments[0]].buffer.active.type", pane))


def type_into(driver: WebDriver, pane: str, keys: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"] .xterm').click()
    ActionChains(driver).send_keys(keys).perform()


def at_prompt(driver: WebDriver, pane: str) -> bool:
    return bool(re.search(r"[$#] ?$", terminal_text(driver, pane).rstrip() + " "))


def set_layout(driver: WebDriver, layout: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'#term-layouts [data-layout="{layout}"]').click()


def connect_pane(driver: WebDriver, pane: str, target: str) -> None:
    """Pick ``target`` in an idle pane's menu (which connects it) and wait for a prompt."""
    assert not pane_live(driver, pane), f"pane {pane} is live; close it first"
    Select(driver.find_element(By.CSS_SELECTOR, f'.pane-target[data-pane="{pane}"]')) \
        .select_by_value(target)
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


def test_top_then_three_reloads_types_nothing(app: WebDriver, tmp_path: Path) -> None:
    # htop is not installed on the sandbox hosts (the test machine); top is.
    open_tab(app, "terminal")
    connect_pane(app, "A", "vps-nyc-01")
    type_into(app, "A", "top\n")
    wait_for("top's screen", lambda: "load average" in terminal_text(app, "A"), timeout=20)
    time.sleep(1.0)
    ActionChains(app).send_keys("q").perform()
    wait_for("the shell again", lambda: buffer_type(app, "A") == "normal" and at_prompt(app, "A"))
    for _ in range(3):
        reload_and_reattach(app, "A", "top")
    type_into(app, "A", "echo once\n")
    wait_for("echo's output", lambda: re.search(r"^once$", terminal_text(app, "A"), re.M))
    history = shell_history(app, "A", tmp_path / "history")
    assert history == ["top", "echo once", f"history -w {tmp_path / 'history'}"]
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
    open_tab(app, "terminal")
    set_layout(app, "single")
    connect_pane(app, "A", "vm-docker-01")
    wide = int(app.execute_script("return window.__linkops.terminals.A.cols"))
    assert wide > 120, wide
    # "right" drawn at column 100 with a cursor move, not with spaces.
    type_into(app, "A", "printf 'left\\e[100Gright\\n'\n")
    wait_for("the output", lambda: re.search(r"^left +right$", terminal_text(app, "A"), re.M))
    app.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 720, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    try:
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
