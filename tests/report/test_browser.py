"""The report in a real headless Chromium: it loads with no console errors, shows the
expected cards, and pages through a long list.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make pytest`` installs them with
apt-get where it can) and the ``selenium`` package; skipped with the reason when missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from datapipe.config import ReportParams
from tests.report.conftest import SyntheticRun, make_run, render

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if BROWSER is None or DRIVER is None:
        pytest.skip(
            "needs Debian's chromium and chromium-driver on PATH "
            "(make pytest installs them with apt-get when it can)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # never let Selenium Manager download anything
        browser = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


DECODE_ALL = """
var done = arguments[arguments.length - 1];
var images = Array.prototype.slice.call(document.images);
images.forEach(function (i) { i.loading = 'eager'; });
Promise.all(images.map(function (i) {
  return i.decode().then(function () { return i.naturalWidth; }, function () { return 0; });
})).then(done);
"""


def _load(driver: Any, path: Path) -> list[dict[str, Any]]:
    driver.get(path.resolve().as_uri())
    logs: list[dict[str, Any]] = driver.get_log("browser")
    return logs


def _severe(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry.get("message")) for entry in logs if entry.get("level") == "SEVERE"]


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_page_loads_without_console_errors_and_shows_every_issue_card(
    driver: Any, tmp_path: Path, task: str
) -> None:
    from selenium.webdriver.common.by import By

    run: SyntheticRun = make_run(tmp_path, task=task)
    page = tmp_path / "report.html"
    page.write_text(render(run))
    logs = _load(driver, page)
    assert _severe(logs) == []
    cards = driver.find_elements(By.CSS_SELECTOR, ".issue-card")
    assert len(cards) == run.flagged + run.label_issues
    labels = driver.find_elements(By.CSS_SELECTOR, ".issue-card.label-issue")
    assert len(labels) == run.label_issues
    # every thumbnail decodes (thumbnails load lazily: ask for all of them first)
    widths = driver.execute_async_script(DECODE_ALL)
    assert len(widths) == len(driver.find_elements(By.TAG_NAME, "img")) > 0
    assert min(widths) > 0


def test_long_lists_paginate_in_the_browser(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path, n=60, flagged=25, label_issues=3)
    page = tmp_path / "report.html"
    page.write_text(render(run, ReportParams(page_size=10)))
    assert _severe(_load(driver, page)) == []
    visible = "#integrity .issue-card:not([hidden])"
    assert len(driver.find_elements(By.CSS_SELECTOR, visible)) == 10
    pager = driver.find_element(By.CSS_SELECTOR, "#integrity .pager")
    assert "page 1 of 3" in pager.text
    pager.find_elements(By.TAG_NAME, "button")[1].click()  # next
    pager.find_elements(By.TAG_NAME, "button")[1].click()
    assert "page 3 of 3" in pager.text
    assert len(driver.find_elements(By.CSS_SELECTOR, visible)) == 5
    assert len(driver.find_elements(By.CSS_SELECTOR, "#integrity .issue-card")) == 25


def test_an_external_reference_would_be_a_console_error(driver: Any, tmp_path: Path) -> None:
    # the check above is not vacuous: the page's CSP turns any fetch into a SEVERE entry
    html = render(make_run(tmp_path, n=8, flagged=1, label_issues=1))
    page = tmp_path / "leaky.html"
    page.write_text(html.replace("<main>", '<main><img src="https://example.invalid/x.png">'))
    severe = _severe(_load(driver, page))
    assert len(severe) == 1 and "Content Security Policy" in severe[0]
