"""``make ui``: serve the MLflow UI on a store and print where the runs are.

On a tracking server's URI (``make ui STORE=http://host:5000``) nothing is started: the server
serves the UI itself, and ``make ui`` prints the runs' addresses there.

MLflow 3.x opens an experiment on its GenAI traces page, and its runs table shows no metric
by default. ``make ui`` stores a shared view of the runs (MLflow's Views > share link: an
experiment tag) with the test metrics as columns, ranked by test accuracy, and charts filtered
to the loss curves, and prints its address, ``#/experiments/<id>/runs?viewStateShareKey=...``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from mlflow.tracking import MlflowClient

from lossbench.errors import exit_on_user_error
from lossbench.tracking.store import is_server, open_store, prepare_store, resolve_tracking_uri

VIEW_KEY = "lossbench"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # the MLflow UI reads shared views from these tags
COLUMNS = ("test/acc", "test/f1_macro", "test/map", "test/loss", "val/loss")
CHARTS = "^(train|val)/loss$"  # the chart view's search box, a regular expression


def runs_url(base: str, experiment_id: str, view: str | None = None) -> str:
    """The runs page of an experiment in the UI at ``base`` (``http://host:port``)."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
    return f"{url}?viewStateShareKey={view}" if view else url


def runs_view(metric_keys: set[str]) -> dict:
    """The runs page's state: metric columns, best test accuracy first, loss charts."""
    state: dict = {
        "selectedColumns": [f"metrics.`{k}`" for k in COLUMNS if k in metric_keys],
        "chartsSearchFilter": CHARTS,
        "runsHiddenMode": "FIRST_20_RUNS",  # the charts' runs (MLflow's default: 10)
    }
    if "test/acc" in metric_keys:
        state |= {"orderByKey": "metrics.`test/acc`", "orderByAsc": False}
    return state


def share_runs_view(client: MlflowClient, experiment_id: str) -> str | None:
    """Store the runs view as a shared view of the experiment; its key, or None if no metrics."""
    runs = client.search_runs([experiment_id], max_results=100)
    keys = {k for run in runs for k in run.data.metrics}
    if not keys & set(COLUMNS):
        return None
    view = json.dumps(runs_view(keys))
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + VIEW_KEY, view)
    return VIEW_KEY


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``url`` answers 200; raise if ``proc`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode} before {url}")
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen) -> None:
    """End a server started with ``start_new_session=True`` and its workers: SIGTERM to its
    process group, SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--create", action="store_true",
        help="create the store if missing (make ui: the project's own store, before any run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    with exit_on_user_error("lossbench.tracking.ui"):
        client = prepare_store(uri) if args.create else open_store(uri)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    server = is_server(uri)
    base = uri if server else f"http://{args.host}:{args.port}"
    print(f"MLflow UI of the tracking server {uri}" if server else f"MLflow UI on {uri}")
    for exp in experiments:
        view = share_runs_view(client, exp.experiment_id)
        print(f"  {exp.name}: {runs_url(base, exp.experiment_id, view)}")
    if experiments:
        print("  (its chart view, the toggle beside the table's, overlays the runs' loss curves)")
    else:
        print("  (no lossbench runs yet: `make run` records some)")
    if server:  # it serves the UI already
        return
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    cmd = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    sys.stdout.flush()
    os.execv(mlflow, cmd)


if __name__ == "__main__":
    main()
