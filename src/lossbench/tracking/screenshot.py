"""``make screenshot``: the runs view ``make ui`` prints, opened in headless Chromium, as PNGs.

``python -m lossbench.tracking.screenshot --tracking-uri sqlite:///mlflow.db
--experiment multilabel_grid --out docs/ui-runs.png --charts-out docs/ui-charts.png``.
Selenium drives Debian's ``chromium`` through its ``chromedriver`` (never Selenium Manager's
downloads); tests/test_ui.py uses the same functions.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lossbench.tracking.store import is_server, resolve_tracking_uri
from lossbench.tracking.ui import free_port, stop_group, wait_for_http

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")
MISSING = "`make setup` installs them (Debian's chromium and chromium-driver)"
# The MLflow Assistant panel opens by itself on a first visit and hides a third of the page.
QUIET = {
    "mlflow.assistant.panelOpen_v1": "false",
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
}
LOSS_CHARTS = ("train/loss", "val/loss")


def chromium(width: int = 1600, height: int = 1000) -> WebDriver:
    """Headless Chromium driven by Debian's chromedriver."""
    driver = shutil.which("chromedriver")
    if driver is None or shutil.which("chromium") is None:
        raise FileNotFoundError(f"chromium or chromedriver is not on PATH; {MISSING}")
    options = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@contextmanager
def serve_ui(tracking_uri: str, timeout: float = 120) -> Iterator[dict[str, str]]:
    """``python -m lossbench.tracking.ui`` (what ``make ui`` runs) on a free port of 127.0.0.1
    until the block ends; yields the runs URL it printed for each experiment. For a tracking
    server's URI it only prints the server's own URLs, and the server's UI is used."""
    if is_server(tracking_uri):
        out = subprocess.run([sys.executable, "-m", "lossbench.tracking.ui",
                              "--tracking-uri", tracking_uri],
                             capture_output=True, text=True, timeout=timeout)  # fmt: skip
        if out.returncode:
            raise RuntimeError(f"lossbench.tracking.ui failed: {out.stderr[-3000:]}")
        yield dict(re.findall(r"^  (.+?): (https?://\S+)$", out.stdout, re.M))
        return
    port = free_port()
    # One worker and no GenAI job runner: lighter than `make ui`, the same pages.
    env = {**os.environ, "MLFLOW_WORKERS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "lossbench.tracking.ui", "--tracking-uri", tracking_uri]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "ui.log"
        with open(log, "a") as out:
            proc = subprocess.Popen(
                [*cmd, "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its uvicorn workers share its process group
            )  # fmt: skip
        try:
            try:
                wait_for_http(f"http://127.0.0.1:{port}/health", proc, timeout)
            except (RuntimeError, TimeoutError) as err:
                raise RuntimeError(f"{err}; its output:\n{log.read_text()[-3000:]}") from err
            yield dict(re.findall(r"^  (.+?): (http://\S+)$", log.read_text(), re.M))
        finally:
            stop_group(proc)


def page_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def open_page(
    driver: WebDriver, url: str, ready: Callable[[str], bool], timeout: float = 60
) -> None:
    """Load ``url`` (the Assistant panel closed) and wait until ``ready(page text)``."""
    origin = url.split("/#", 1)[0]
    if not driver.current_url.startswith(origin):
        driver.get(f"{origin}/health")
        for key, value in QUIET.items():
            driver.execute_script("localStorage.setItem(arguments[0], arguments[1])", key, value)
    driver.get(url)
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.5).until(lambda d: ready(page_text(d)))
    except TimeoutException as err:
        shown = " | ".join(page_text(driver).splitlines())[:1500]
        raise TimeoutError(f"{url} not ready within {timeout:.0f} s; it shows: {shown}") from err


def open_runs(driver: WebDriver, url: str, run_names: list[str], timeout: float = 60) -> None:
    """The runs table at ``url``, once it lists every run of ``run_names``."""
    open_page(driver, url, lambda text: all(name in text for name in run_names), timeout)


def metric_cells(driver: WebDriver, metric: str) -> dict[str, str]:
    """The runs table's column of ``metric``: {run id: the text its cell shows}."""
    cells = driver.find_elements(By.CSS_SELECTOR, f'.ag-row[row-id] [col-id="metrics.`{metric}`"]')
    return {c.find_element(By.XPATH, "ancestor::*[@row-id]").get_attribute("row-id"): c.text
            for c in cells}  # fmt: skip


def open_charts(
    driver: WebDriver, url: str, metrics: tuple[str, ...] = LOSS_CHARTS, timeout: float = 60
) -> None:
    """The chart view of the runs at ``url``, once a chart legend names each of ``metrics``."""
    url += ("&" if "?" in url else "?") + "compareRunsMode=CHART"
    open_page(driver, url, lambda text: all(f" ({m})" in text for m in metrics), timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--out", type=Path, default=Path("docs/ui-runs.png"))
    parser.add_argument("--charts-out", type=Path, default=None)
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(args.experiment)
    if exp is None:
        parser.error(f"no experiment {args.experiment!r} in {uri}")
    top = client.search_runs(
        [exp.experiment_id], order_by=["metrics.`test/acc` DESC"], max_results=5
    )
    names = [r.info.run_name for r in top]  # the top of the view's table
    # 1400 px high: the table's first 20 runs, both loss charts.
    with serve_ui(uri) as urls, chromium(height=1400) as driver:
        open_runs(driver, urls[args.experiment], names)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(args.out)
        if args.charts_out:
            open_charts(driver, urls[args.experiment])
            args.charts_out.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.charts_out))
            print(args.charts_out)


if __name__ == "__main__":
    main()
