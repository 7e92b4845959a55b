"""The MLflow UI in a real browser: `harness ui` after a smoke search, opened in headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium). Screenshots are kept in `test-artifacts/browser/`
(HARNESS_TEST_ARTIFACTS moves it). Skipped, with the reason, only where Chromium could not be installed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness import tracking
from tests.conftest import component_missing, free_port

HARNESS = str(Path(sys.executable).parent / "harness")
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("HARNESS_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=2400,1000",
]


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        reason = f"no {CHROMIUM} and {CHROMEDRIVER}: `make setup` installs Debian's chromium and chromium-driver"
        component_missing(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def page_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for(driver, *texts: str, timeout: float = 90) -> str:
    """Wait until every text shows on the page (the UI renders after its API calls); returns the page text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda d: all(t in page_text(d) for t in texts))
    except TimeoutException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "timed-out.png"))
        missing = [t for t in texts if t not in page_text(driver)]
        raise AssertionError(f"{missing} not on {driver.current_url} after {timeout} s:\n{page_text(driver)}") from None
    return page_text(driver)


def grid(driver) -> dict[str, dict[str, str]]:
    """The runs grid as {run name: {column id: cell text}}, in row order (MLflow's grid marks each cell with its
    row's `row-index` and its column's `col-id`)."""
    from selenium.webdriver.common.by import By

    cells: dict[str, dict[str, str]] = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, "[row-index] [col-id]"):
        row = cell.find_element(By.XPATH, "./ancestor::*[@row-index][1]").get_attribute("row-index")
        cells.setdefault(row, {})[cell.get_attribute("col-id")] = cell.text
    by_name = {}
    for row in sorted(cells, key=int):
        name = cells[row].get("attributes.`Run Name`", "").splitlines()[-1:]  # a colour chip, then the name
        if name:
            by_name[name[0]] = cells[row]
    return by_name


@pytest.mark.slow
def test_the_ui_ranks_the_trials_with_their_f1_micro_and_compares_two(browser, smoke_study, monkeypatch):
    mlruns = smoke_study.mlruns
    monkeypatch.setenv("HARNESS_MLRUNS", str(mlruns))
    tracking.configure()
    client = MlflowClient()
    experiment = client.get_experiment_by_name("legal")
    trials = {
        run.info.run_name: run
        for run in client.search_runs([experiment.experiment_id], filter_string="tags.`harness.kind` = 'trial'")
        if run.info.run_name.startswith("trial-")  # not the registration's refit
    }
    assert sorted(trials) == ["trial-0", "trial-1"]

    started = subprocess.run(
        [HARNESS, "ui", "legal", "--port", str(free_port()), "--detach"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HARNESS_MLRUNS": str(mlruns), "COLUMNS": "200"},
    )
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(re.search(r"MLflow UI pid (\d+)", started.stdout).group(1))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page = re.search(r"http://127\.0\.0\.1:\d+/#/experiments/\S+", started.stdout).group(0)
        browser.get(page)
        text = wait_for(browser, "trial-0", "trial-1", "f1_micro", "lora.r")
        browser.save_screenshot(str(ARTIFACTS / "trials-ranked.png"))
        # Each trial is a row of the runs grid, best first, its f1_micro in the f1_micro column (the tiny model
        # scores 0.0 on both; the UI prints 0).
        rows = grid(browser)
        ranked = sorted(trials.values(), key=lambda r: -r.data.metrics["f1_micro"])
        assert [name for name in rows if name.startswith("trial-")] == [r.info.run_name for r in ranked]
        for run in ranked:
            assert rows[run.info.run_name]["metrics.`f1_micro`"] == f"{run.data.metrics['f1_micro']:g}"
            assert rows[run.info.run_name]["params.`lora.r`"] == run.data.params["lora.r"]

        runs = json.dumps([r.info.run_id for r in ranked])
        browser.get(page.split("#")[0] + f'#/compare-runs?runs={runs}&experiments=["{experiment.experiment_id}"]')
        # The comparison lists the two runs side by side: parameters, then metrics (a scrolled, virtual list that
        # starts at acc_* / exact_match), then tags.
        text = wait_for(browser, "Comparing 2 Runs", "trial-0", "trial-1", "Metrics", "exact_match")
        browser.save_screenshot(str(ARTIFACTS / "two-trials-compared.png"))
        assert f"lora.r {ranked[0].data.params['lora.r']} {ranked[1].data.params['lora.r']}" in text
    finally:
        os.killpg(pid, signal.SIGTERM)
    assert (ARTIFACTS / "trials-ranked.png").stat().st_size > 10_000
    assert (ARTIFACTS / "two-trials-compared.png").stat().st_size > 10_000
