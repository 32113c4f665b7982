"""Fixtures for the browser tests: the real service with a sandbox fleet, and headless Chromium.

* ``demo_service`` (module): ``python -m linkops demo`` as a child process — a fleet of real
  sshd servers (:mod:`linkops.sandbox`), a Git config repository made from ``examples/``, one
  sync, one verification of every link, the service on a free port and a demo admin whose
  password the demo prints once. Ended with SIGINT (the demo then stops the service
  gracefully and every sshd it started, by PID); SIGKILL by PID only if that hangs.
* ``browser`` (module): Selenium 4 driving ``/usr/bin/chromium`` through
  ``/usr/bin/chromedriver`` (nothing is downloaded), headless, fresh profile, 1280×800.
* ``app`` (module): ``browser`` logged in to ``demo_service``.
* :func:`screenshot` saves ``artifacts/screenshots/<name>.png``; :func:`wait_for` polls a
  condition with a deadline and says what it waited for when it fails.

The Selenium calls are blocking, which is why the service runs in its own process: an
in-process Trio server would freeze while the test thread waits on the browser.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import attrs
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures_core import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
START_TIMEOUT = 120.0
T = TypeVar("T")


@attrs.frozen
class DemoService:
    url: str
    username: str
    password: str
    workdir: Path
    process: subprocess.Popen[str]

    @contextlib.contextmanager
    def http(self) -> Iterator[httpx.Client]:
        """A bearer-token client for setting up or checking state beside the browser."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            r = client.post("/api/auth/login",
                            json={"username": self.username, "password": self.password})
            assert r.status_code == 200, r.text
            client.headers["Authorization"] = f"Bearer {r.json()['token']}"
            client.cookies.clear()
            yield client


def _ensure_vendor() -> None:
    """The app imports xterm.js from frontend/vendor/ (built from the npm lock)."""
    check = subprocess.run([sys.executable, str(REPO_ROOT / "frontend" / "build.py"), "--check"],
                           check=False, capture_output=True)
    if check.returncode != 0:
        subprocess.run([sys.executable, str(REPO_ROOT / "frontend" / "build.py")], check=True)


def _read_banner(proc: subprocess.Popen[str], deadline: float) -> tuple[str, str]:
    """Read the demo's stdout until it printed its URL and password.

    A reader thread does the blocking reads (select() on a buffered text pipe misses lines
    already in Python's buffer); it keeps draining stdout afterwards so the demo never blocks
    on a full pipe.
    """
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True, name="demo-stdout").start()
    seen: list[str] = []
    url = password = None
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if m := re.search(r"LinkOps demo is running: (\S+)", line):
            url = m.group(1).rstrip("/")
        if m := re.search(r"user: \S+\s+password: (\S+)", line):
            password = m.group(1)
        if url and password:
            return url, password
    raise RuntimeError("linkops demo did not start:\n" + "".join(seen))


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by PID
            proc.wait(timeout=10)


@contextlib.contextmanager
def run_demo(command: list[str], cwd: Path) -> Iterator[DemoService]:
    """``<command> demo`` on a free port until the block ends (``command`` is the program:
    this checkout's ``python -m linkops``, or an installed ``linkops`` executable)."""
    workdir = Path(tempfile.mkdtemp(prefix="linkops-browser-"))
    log = (workdir / "demo.stderr").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*command, "demo", "--port", str(free_port()), "--workdir", str(workdir / "demo")],
        cwd=cwd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
    )
    try:
        try:
            url, password = _read_banner(proc, time.monotonic() + START_TIMEOUT)
        except RuntimeError as exc:
            log.flush()
            raise RuntimeError(f"{exc}\nstderr:\n{(workdir / 'demo.stderr').read_text()}") from None
        yield DemoService(url=url, username="admin", password=password, workdir=workdir,
                          process=proc)
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_service() -> Iterator[DemoService]:
    _ensure_vendor()
    with run_demo([sys.executable, "-m", "linkops"], REPO_ROOT) as service:
        yield service


def chrome_options(profile: Path, width: int = 1280, height: int = 800) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    # Lets the tests read console messages (the app must not log errors).
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    profile = Path(tempfile.mkdtemp(prefix="linkops-chromium-"))
    driver = webdriver.Chrome(options=chrome_options(profile),
                              service=Service(executable_path=CHROMEDRIVER))
    # --window-size sets the window; the viewport is what the layout must fit.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 800, "deviceScaleFactor": 1,
                            "mobile": False})
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(what: str, condition: Callable[[], T | None], timeout: float = 20.0,
             interval: float = 0.1) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as exc:  # stale elements etc. while the page re-renders
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error})" if last_error else ""))


def click_fresh(driver: WebDriver, selector: str) -> None:
    """Click `selector`, finding it again if a poll re-rendered it in between."""
    def attempt() -> bool:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True
    wait_for(f"a click on {selector}", attempt, timeout=10)


def screenshot(driver: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    return path


class SignIn(Protocol):
    """Where and as whom to sign in: a :class:`DemoService` or any service of a test's own."""

    @property
    def url(self) -> str: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...


def log_in(driver: WebDriver, service: SignIn, password: str | None = None) -> None:
    driver.get(f"{service.url}/login.html")
    wait_for("the login form", lambda: driver.find_element(By.ID, "username"))
    user = driver.find_element(By.ID, "username")
    user.clear()
    user.send_keys(service.username)
    pw = driver.find_element(By.ID, "password")
    pw.clear()
    pw.send_keys(password if password is not None else service.password)
    driver.find_element(By.ID, "login-submit").click()


def app_ready(driver: WebDriver) -> bool:
    return bool(driver.execute_script(
        "return document.body && document.body.dataset.ready === 'true'"))


@pytest.fixture(scope="module")
def app(browser: WebDriver, demo_service: DemoService) -> WebDriver:
    log_in(browser, demo_service)
    wait_for("the app after login", lambda: app_ready(browser), timeout=30)
    return browser


def open_tab(driver: WebDriver, name: str) -> None:
    """Click the tab, as an operator would: a modal dialog still open (the link details
    have been seen to open again from their URL after a test closed them; not explained
    yet) is first dismissed with Escape, since nothing behind a modal can be clicked."""
    if driver.execute_script("return !!document.querySelector('dialog[open]')"):
        ActionChains(driver).send_keys(Keys.ESCAPE).perform()
        wait_for("the open dialog dismissed", lambda: driver.execute_script(
            "return !document.querySelector('dialog[open]')"), timeout=5)
    driver.find_element(By.ID, f"tab-{name}").click()
    wait_for(f"the {name} tab", lambda: driver.find_element(By.ID, f"panel-{name}").is_displayed())


def console_errors(driver: WebDriver, allow: Callable[[dict[str, Any]], bool]) -> list[str]:
    """SEVERE console entries since the last call, minus those ``allow`` accepts."""
    # get_log is Chromium-specific (not on the generic WebDriver type).
    entries: list[dict[str, Any]] = cast(Any, driver).get_log("browser")
    return [e["message"] for e in entries
            if e["level"] == "SEVERE" and not allow(e)]


def failed_loads(*patterns: str) -> Callable[[dict[str, Any]], bool]:
    """An ``allow`` for :func:`console_errors`: the network errors a test provokes on purpose
    (Chromium logs every 4xx as a failed load), each a regex over the entry's message such as
    ``r"/api/operations/plan - .* status of 403"``. Script errors are never allowed."""
    def allow(entry: dict[str, Any]) -> bool:
        message = str(entry["message"])
        return entry.get("source") == "network" and any(re.search(p, message) for p in patterns)
    return allow


# Lists re-render while polling: read them in one script call so no element goes stale
# between finding it and reading it.
def texts(driver: WebDriver, selector: str) -> list[str]:
    return [str(t) for t in driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
        selector)]


def header_texts(driver: WebDriver, target: str) -> list[str]:
    return texts(driver, f'#op-live-body .target-group[data-target="{target}"] .task-header')


def set_flag(driver: WebDriver, script: str, flag: str, value: str) -> None:
    """Tick `flag` of `script` in the run form and type `value` into its field."""
    toggle = driver.find_element(
        By.CSS_SELECTOR, f'#run-flags input[data-script="{script}"][data-flag="{flag}"]')
    if not toggle.is_selected():
        toggle.click()
    field = driver.find_element(
        By.CSS_SELECTOR, f'#run-flags input[data-script="{script}"][data-flag-value="{flag}"]')
    field.clear()
    field.send_keys(value)


def live_title(driver: WebDriver) -> str:
    return str(driver.find_element(By.ID, "op-live-title").text)


def new_operation_id(driver: WebDriver, before: str) -> str | None:
    """The id of the operation the output pane shows, if it is not the one in ``before``
    (an earlier title). Ids are compared, not titles: the same operation's title changes
    as it loads ("Output · OP-1" → "OP-1 · Disk Usage"), which is not a new operation."""
    old = re.search(r"OP-\d+", before)
    found = re.search(r"OP-\d+", live_title(driver))
    if found and (old is None or found.group(0) != old.group(0)):
        return found.group(0)
    return None


def plan_dialog_open(driver: WebDriver) -> bool:
    return bool(driver.execute_script(
        "return document.getElementById('plan-dialog').open"))


def confirm_plan(driver: WebDriver) -> None:
    """In the open plan dialog: type the phrase it names (if it asks for one), press Run."""
    phrase = driver.find_elements(By.ID, "plan-phrase")
    if phrase:
        named = driver.find_element(By.CSS_SELECTOR, "#plan-confirm .plan-phrase-text").text
        assert named and named == phrase[0].get_attribute("data-phrase"), named
        phrase[0].send_keys(named)
    run = driver.find_element(By.ID, "plan-run")
    wait_for("the plan's Run button enabled", run.is_enabled, timeout=5)
    run.click()


def submit_run(driver: WebDriver, button: str = "run-submit") -> str:
    """Press Run (or ``button``), go through the plan dialog when it opens (the demo's links
    are tagged prod: the phrase is typed), and return the id of the operation the output
    pane then follows."""
    before = live_title(driver)
    driver.find_element(By.ID, button).click()

    def new_id() -> str | None:
        return new_operation_id(driver, before)

    def started_or_asked() -> str | None:
        if plan_dialog_open(driver):
            return "dialog"
        return new_id()

    if wait_for("the plan dialog or the new operation", started_or_asked) == "dialog":
        confirm_plan(driver)
        wait_for("the plan dialog to close", lambda: not plan_dialog_open(driver))
    return wait_for("the new operation in the output pane", new_id)


def api_run(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """Run through the API as the UI does: plan, then run with plan_id and, when the plan
    asks for it (the demo's links are tagged prod), the phrase. Returns the 202 answer."""
    r = http.post("/api/operations/plan", json=body)
    assert r.status_code == 200, r.text
    plan = r.json()
    confirmed = {**body, "plan_id": plan["plan_id"]}
    if plan["confirm"]:
        confirmed["confirm"] = plan["confirm"]["phrase"]
    r = http.post("/api/operations/run", json=confirmed)
    assert r.status_code == 202, r.text
    answer: dict[str, Any] = r.json()
    return answer


# -- terminal panes ------------------------------------------------------------------------------


def terminal_text(driver: WebDriver, pane: str) -> str:
    return str(driver.execute_script(
        "const t = window.__linkops.terminals[arguments[0]]; if (!t) return '';"
        "const b = t.buffer.active; const out = [];"
        "for (let i = 0; i < b.length; i++) { const l = b.getLine(i);"
        "  if (l) out.push(l.translateToString(true)); }"
        "return out.join('\\n');", pane))


def pane_live(driver: WebDriver, pane: str) -> bool:
    status = driver.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"]')
    return status.get_attribute("data-status") in ("connected", "enrolled")


def type_into(driver: WebDriver, pane: str, keys: str) -> None:
    driver.find_element(By.CSS_SELECTOR, f'.pane[data-pane="{pane}"] .xterm').click()
    ActionChains(driver).send_keys(keys).perform()
