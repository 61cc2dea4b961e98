"""The report in a real headless Chromium: it loads with no console errors, shows the
expected cards, pages through a long list, filters its cards (check, class, split, file name)
and opens a thumbnail larger on click.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make pytest`` installs them with
apt-get where it can) and the ``selenium`` package; skipped with the reason when missing.
"""

from __future__ import annotations

import json
import shutil
import time
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


def _load(driver: Any, path: Path, *, wait_for_entry: float = 0.0) -> list[dict[str, Any]]:
    """Open ``path`` and return the console entries; ``wait_for_entry`` seconds to wait for a
    first one (a CSP report can arrive after ``get`` returns on a busy machine)."""
    driver.get(path.resolve().as_uri())
    logs: list[dict[str, Any]] = driver.get_log("browser")
    deadline = time.monotonic() + wait_for_entry
    while not logs and time.monotonic() < deadline:
        time.sleep(0.1)
        logs = driver.get_log("browser")
    return logs


def _severe(logs: list[dict[str, Any]]) -> list[str]:
    return [str(entry.get("message")) for entry in logs if entry.get("level") == "SEVERE"]


@pytest.mark.parametrize("task", ["classification", "segmentation", "detection"])
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
    severe = _severe(_load(driver, page, wait_for_entry=5.0))
    assert len(severe) == 1 and "Content Security Policy" in severe[0]


def _visible(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]


def _checks_of(card: Any) -> list[str]:
    return list(json.loads(card.get_attribute("data-checks")))


def _choose(driver: Any, section: str, key: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    bar = driver.find_element(By.CSS_SELECTOR, f"#{section} .filters")
    Select(bar.find_element(By.CSS_SELECTOR, f'select[data-filter="{key}"]')).select_by_value(value)


@pytest.mark.parametrize(
    ("check", "expected"), [("blank", 1), ("near_duplicate", 4), ("dark", 6)],
    ids=["rare-check", "duplicates", "every-card"],
)  # fmt: skip
def test_filter_by_one_check_shows_exactly_that_checks_cards(
    driver: Any, tmp_path: Path, check: str, expected: int
) -> None:
    from selenium.webdriver.common.by import By

    # 6 flagged: all dark, the first also blank, the last 4 near-duplicates (2 groups)
    run = make_run(tmp_path, n=40, flagged=6, label_issues=2)
    page = tmp_path / "report.html"
    page.write_text(render(run))
    assert _severe(_load(driver, page)) == []
    assert len(_visible(driver, "#integrity .issue-card")) == 6
    _choose(driver, "integrity", "checks", check)
    shown = _visible(driver, "#integrity .issue-card")
    assert len(shown) == expected
    assert all(check in _checks_of(card) for card in shown)
    count = driver.find_element(By.CSS_SELECTOR, "#integrity .filter-count").text
    assert count == f"{expected} of 6 cards"


def test_class_split_and_file_name_filters_combine(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path, n=40, flagged=12, label_issues=2, groups=1)
    page = tmp_path / "report.html"
    page.write_text(render(run))
    _load(driver, page)
    _choose(driver, "integrity", "classes", "c1")  # samples 1, 4, 7, 10
    shown = _visible(driver, "#integrity .issue-card")
    assert sorted(c.get_attribute("data-sample") for c in shown) == [
        "s00001", "s00004", "s00007", "s00010"
    ]  # fmt: skip
    _choose(driver, "integrity", "splits", "val")  # of those, 4 and 7 are in val
    shown = _visible(driver, "#integrity .issue-card")
    assert sorted(c.get_attribute("data-sample") for c in shown) == ["s00004", "s00007"]
    search = driver.find_element(By.CSS_SELECTOR, '#integrity input[data-filter="names"]')
    search.send_keys("00007.PNG")  # case does not matter
    shown = _visible(driver, "#integrity .issue-card")
    assert [c.get_attribute("data-sample") for c in shown] == ["s00007"]
    assert "00007.png" in shown[0].text  # the file name is on the card, not only on hover


def test_a_filter_pages_through_the_matching_cards_only(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path, n=60, flagged=25, label_issues=3, groups=5)
    page = tmp_path / "report.html"
    page.write_text(render(run, ReportParams(page_size=4)))
    _load(driver, page)
    _choose(driver, "integrity", "checks", "near_duplicate")  # 10 cards: 3 pages of 4
    pager = driver.find_element(By.CSS_SELECTOR, "#integrity .pager")
    assert "page 1 of 3 (10)" in pager.text
    assert len(_visible(driver, "#integrity .issue-card")) == 4
    pager.find_elements(By.TAG_NAME, "button")[1].click()
    pager.find_elements(By.TAG_NAME, "button")[1].click()
    shown = _visible(driver, "#integrity .issue-card")
    assert len(shown) == 2 and all("near_duplicate" in _checks_of(c) for c in shown)


def test_a_click_opens_the_larger_picture(driver: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    run = make_run(tmp_path, task="segmentation", n=20, flagged=2, label_issues=2, size=200)
    page = tmp_path / "report.html"
    page.write_text(render(run))
    assert _severe(_load(driver, page)) == []
    thumb = driver.find_element(By.CSS_SELECTOR, "#label-issues .label-issue img.thumb")
    zoom = thumb.get_attribute("data-zoom")
    assert zoom.startswith("data:image/")
    thumb.click()
    big = _visible(driver, ".lightbox img")
    assert len(big) == 1 and big[0].get_attribute("src") == zoom
    assert driver.execute_script("return arguments[0].naturalWidth", big[0]) == 200
    big[0].click()
    assert _visible(driver, ".lightbox") == []
    assert _severe(driver.get_log("browser")) == []
