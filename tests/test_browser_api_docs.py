"""GET /api/docs in headless Chromium: Swagger UI, served by the service itself, renders the
generated document under the service's strict CSP (no inline script, no eval, no CDN) and
logs no console error."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.fixtures_browser import console_errors, screenshot, wait_for
from tests.serve_process import ServeProcess, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serving(tmp_path_factory.mktemp("serve")) as proc:
        yield proc


def test_swagger_ui_renders_every_operation(browser: WebDriver, served: ServeProcess) -> None:
    document = httpx.get(f"{served.base_url}/api/openapi.json", timeout=20).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    browser.get(f"{served.base_url}/api/docs")
    blocks = wait_for(
        "Swagger UI to render every operation",
        lambda: (found := browser.find_elements(By.CSS_SELECTOR, ".opblock"))
        and len(found) >= operations and found, timeout=30)
    assert len(blocks) == operations
    title = browser.find_element(By.CSS_SELECTOR, ".info .title").text
    assert "LinkOps API" in title
    assert "/api/operations/run" in browser.page_source
    screenshot(browser, "api-docs")
    # Nothing refused by the CSP, nothing failed to load (the favicon is not ours to serve).
    assert console_errors(browser, lambda e: "favicon" in e["message"]) == []
