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
def test_the_ui_ranks_the_runs_by_f1_micro_best_first_and_compares_two(browser, smoke_study, monkeypatch):
    mlruns = smoke_study.mlruns
    monkeypatch.setenv("HARNESS_MLRUNS", str(mlruns))
    tracking.configure()
    client = MlflowClient()
    experiment = client.get_experiment_by_name("legal")
    scored = {  # the smoke trials and the refit (the tiny model: 0), the run trained to one answer (1.0 on its own set)
        run.info.run_name: run
        for run in client.search_runs([experiment.experiment_id])
        if "f1_micro" in run.data.metrics
    }
    assert {"trial-0", "trial-1", "constant-answer"} <= set(scored)
    best = smoke_study.constant_answer_run_id
    assert scored["constant-answer"].data.metrics["f1_micro"] > max(
        r.data.metrics["f1_micro"] for r in scored.values() if r.info.run_id != best
    )

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
        wait_for(browser, "constant-answer", "trial-0", "trial-1", "f1_micro", "lora.r")
        browser.save_screenshot(str(ARTIFACTS / "trials-ranked.png"))
        # Every scored run is a row of the runs grid, best first, with its own f1_micro and lora.r: the one run
        # that scores above zero heads the list (a grid in another order, or a view ranked by another column,
        # puts it elsewhere).
        rows = {name: cells for name, cells in grid(browser).items() if name in scored}
        assert set(rows) == set(scored)
        assert next(iter(rows)) == "constant-answer"
        shown = [float(cells["metrics.`f1_micro`"]) for cells in rows.values()]
        assert shown == sorted(shown, reverse=True)
        for name, cells in rows.items():
            assert cells["metrics.`f1_micro`"] == f"{scored[name].data.metrics['f1_micro']:g}"
            assert cells["params.`lora.r`"] == scored[name].data.params["lora.r"]

        # ... and beside it a trial with another value of a recipe parameter, so the comparison shows two values.
        constant = scored["constant-answer"]
        differing = [
            (key, run)
            for key in ("lora.r", "lora.target_modules", "quantization")
            for name, run in scored.items()
            if name.startswith("trial-") and run.data.params[key] != constant.data.params[key]
        ]
        assert differing, "every smoke trial has the constant-answer run's rank, modules and quantization"
        key, other = differing[0]
        compared = [constant, other]
        runs = json.dumps([r.info.run_id for r in compared])
        browser.get(page.split("#")[0] + f'#/compare-runs?runs={runs}&experiments=["{experiment.experiment_id}"]')
        # The comparison lists the two runs side by side: parameters, then metrics (a scrolled, virtual list that
        # starts at acc_* / exact_match), then tags.
        text = wait_for(browser, "Comparing 2 Runs", "constant-answer", other.info.run_name, "Metrics", "exact_match")
        browser.save_screenshot(str(ARTIFACTS / "two-trials-compared.png"))
        assert f"{key} {constant.data.params[key]} {other.data.params[key]}" in text
    finally:
        os.killpg(pid, signal.SIGTERM)
    assert (ARTIFACTS / "trials-ranked.png").stat().st_size > 10_000
    assert (ARTIFACTS / "two-trials-compared.png").stat().st_size > 10_000
