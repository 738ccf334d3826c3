"""The page at `/` in a real headless browser: Debian's chromium and chromedriver via selenium
(.ci/run installs them). Outside CI the test skips, saying so, when they are absent.

RECSYS_PREF_SCREENSHOT=PATH saves the profile page as a PNG (the README's screenshot is made
this way over a model of ml-latest-small: see README, "The service").
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recsys_pref.service.process import ServerProcess
from service_support import KEY

SCREENSHOT_ENV = "RECSYS_PREF_SCREENSHOT"


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1300"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    directory = tmp_path_factory.mktemp("page")
    model_dir = Path(os.environ.get("RECSYS_PREF_PAGE_MODEL") or pipeline.save(directory / "model"))
    with ServerProcess(model_dir, f"sqlite:///{directory / 'profiles.sqlite'}", keys=[KEY],
                       log=directory / "server.log") as running:
        yield running


def _submit(browser, element) -> None:
    """Click a form's button and wait until the browser has left the page (each form POST
    answers with a redirect to a new page)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def left_the_page(_) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # stale, or (mid-navigation) "node does not belong to the document"
            return True
        return False

    element.click()
    WebDriverWait(browser, 60).until(left_the_page)
    WebDriverWait(browser, 60).until(lambda driver: driver.execute_script("return document.readyState") == "complete")


def _listed(browser) -> list[str]:
    from selenium.webdriver.common.by import By

    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#recommendations tr")[1:]]


@pytest.mark.integration
def test_a_person_onboards_sees_explained_recommendations_and_mutes_a_persona(browser, server):
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/")
    browser.find_element(By.ID, "key").send_keys(KEY)
    _submit(browser, browser.find_element(By.ID, "login"))
    _submit(browser, browser.find_element(By.ID, "start"))
    for _ in range(50):  # bounded: the interview has ten questions
        if not browser.find_element(By.TAG_NAME, "h1").text.startswith("Question"):
            break
        assert browser.find_elements(By.CSS_SELECTOR, "button.choice .genres")  # titles with genres
        _submit(browser, browser.find_elements(By.CSS_SELECTOR, "button.choice")[0])
    browser.find_element(By.ID, "user-id").send_keys("20000")
    _submit(browser, browser.find_element(By.ID, "finish"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Profile 20000"
    assert browser.find_element(By.ID, "summary").text
    before = _listed(browser)
    labels = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#recommendations td:nth-child(3)")]
    because = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#recommendations td:nth-child(4)")]
    assert len(before) == 10 and all(labels) and any(because)
    if os.environ.get(SCREENSHOT_ENV):
        browser.save_screenshot(os.environ[SCREENSHOT_ENV])
    shares = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "#personas td:nth-child(2)")]
    strongest = max(range(len(shares)), key=lambda m: float(shares[m].rstrip("%")))
    _submit(browser, browser.find_element(By.ID, f"persona-{strongest}-mute"))
    after = _listed(browser)
    weights = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#personas td:nth-child(3)")]
    assert weights[strongest] == "0" and after != before
