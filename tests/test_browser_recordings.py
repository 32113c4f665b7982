"""Recordings and broadcast in real headless Chromium against ``linkops demo`` (issue #18):

- live panes carry the recording dot; the broadcast toggle marks every receiving pane and one
  typed line reaches two panes at once;
- the Recordings tab searches what the screens showed; a click on a hit opens
  asciinema-player (vendored from npm) at that moment — the screen then shows the hit's line
  and not what came later.
"""

from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.fixtures_browser import (
    DemoService,
    console_errors,
    open_tab,
    screenshot,
    type_into,
    wait_for,
)
from tests.test_browser_terminal_ui import (
    at_prompt,
    connect_pane,
    disconnect_pane,
    set_layout,
    terminal_text,
)

pytestmark = pytest.mark.browser


def attr(driver: WebDriver, selector: str, name: str) -> str | None:
    value = driver.find_element(By.CSS_SELECTOR, selector).get_attribute(name)
    return None if value is None else str(value)


def player_text(driver: WebDriver) -> str:
    return str(driver.execute_script(
        "const t = document.querySelector('#rec-player .ap-term');"
        "return t ? t.textContent : '';"))


def test_broadcast_toggle_types_into_two_panes_and_recordings_replay_at_a_hit(
        app: WebDriver, demo_service: DemoService) -> None:
    open_tab(app, "terminal")
    set_layout(app, "grid2x1")
    connect_pane(app, "A", "vps-fra-01")
    connect_pane(app, "B", "vps-nyc-01")
    # Both sessions are recorded: the dot is on.
    for p in "AB":
        assert attr(app, f'.pane[data-pane="{p}"]', "data-recording") == "true"

    # Broadcast: both live panes are marked, one typed line runs in both.
    app.find_element(By.ID, "term-broadcast").click()
    assert attr(app, "#term-broadcast", "aria-pressed") == "true"
    for p in "AB":
        assert attr(app, f'.pane[data-pane="{p}"]', "data-broadcast") == "true"
    screenshot(app, "terminal-broadcast")
    type_into(app, "A", "echo bcast-$((6*7))-ok\n")
    for p in "AB":
        wait_for(f"the broadcast in pane {p}",
                 lambda p=p: "bcast-42-ok" in terminal_text(app, p), timeout=20)
    app.find_element(By.ID, "term-broadcast").click()
    for p in "AB":
        assert attr(app, f'.pane[data-pane="{p}"]', "data-broadcast") is None
    type_into(app, "B", "echo only-$((1+1))-b\n")
    wait_for("B alone", lambda: "only-2-b" in terminal_text(app, "B"))
    assert "only-2-b" not in terminal_text(app, "A")

    # A line to find later, then a screen that replaces it.
    type_into(app, "A", "echo pangolin$((40+2))word\n")
    wait_for("the word in pane A", lambda: "pangolin42word" in terminal_text(app, "A"))
    time.sleep(2.5)
    type_into(app, "A", "clear; echo laterscreen$((1+1))\n")
    wait_for("the later screen", lambda: "laterscreen2" in terminal_text(app, "A")
             and at_prompt(app, "A"))
    disconnect_pane(app, "A")
    disconnect_pane(app, "B")

    open_tab(app, "recordings")
    wait_for("the recordings list", lambda: app.find_elements(
        By.CSS_SELECTOR, "#rec-list tr[data-recording]"))
    box = app.find_element(By.ID, "rec-q")

    def search(q: str) -> list[WebElement]:
        # The index is written at most a second behind the screen: ask again until it has it.
        box.clear()
        box.send_keys(q, Keys.ENTER)
        time.sleep(0.5)
        return list(app.find_elements(By.CSS_SELECTOR, ".rec-hit"))

    hits = wait_for("a search hit", lambda: search("pangolin42word"), timeout=30)
    assert len(hits) == 1
    text = hits[0].text
    assert "vps-fra-01" in text and "pangolin42word" in text and demo_service.username in text
    screenshot(app, "recordings-search")
    hits[0].click()
    wait_for("the player", lambda: attr(app, "#rec-player", "data-ready") == "true",
             timeout=30)
    try:
        wait_for("the screen at the hit", lambda: "pangolin42word" in player_text(app),
                 timeout=30)
    except AssertionError as exc:
        screenshot(app, "recordings-player-failed")
        raise AssertionError(f"{exc}; the player shows {player_text(app)!r}") from None
    # The moment of the hit, not the end of the recording: the later screen is not shown.
    assert "laterscreen2" not in player_text(app)
    screenshot(app, "recordings-player")
    # A word never typed finds nothing.
    search("neverTypedWord551")
    wait_for("the answer", lambda: "Nothing recorded matches" in app.find_element(
        By.ID, "rec-hits").text)
    assert app.find_elements(By.CSS_SELECTOR, ".rec-hit") == []
    assert console_errors(app, lambda e: False) == []
