"""`make ui` on a small real sweep: the runs URL it prints, opened in headless Chromium, lists the
runs with their metrics, and its chart view overlays their loss curves. The same on a SQLite
store (`make ui` serves the UI) and on a tracking server backed by PostgreSQL (`make ui
STORE=http://...`: the server serves it, `make ui` only prints the runs' addresses)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from test_postgres import postgres_server

from conftest import run_train, sqlite_uri
from lossbench.tracking.screenshot import (
    LOSS_CHARTS,
    chromium,
    metric_cells,
    open_charts,
    open_runs,
    page_text,
    serve_ui,
)
from lossbench.tracking.store import is_server
from lossbench.tracking.ui import COLUMNS


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The tracking URI the sweep writes to: a SQLite file, or a server on PostgreSQL."""
    if request.param == "sqlite":
        yield sqlite_uri(tmp_path / "mlflow.db")
    else:
        with postgres_server(tmp_path) as url:
            yield url


@pytest.fixture
def sweep(store: str, tmp_path: Path, tiny_data) -> str:
    """Two runs recorded in ``store``; returns its URI."""
    proc = run_train(
        tmp_path, tiny_data[0], "dataset=multilabel", "dataset.n_samples=300",
        "dataset.val_size=60", "dataset.test_size=60", "dataset.batch_size=32", "head=sigmoid",
        "loss=bce_logits,focal", "seed=1", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
        "trainer.accelerator=cpu", "progress_bar=log",
        f"logger.tracking_uri={store}",  # after run_train's own: the last value wins
        multirun=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return store


def is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ui_lists_the_runs_with_their_metrics_and_loss_curves(sweep: str, tmp_path: Path) -> None:
    uri = sweep
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("lossbench")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    names = [r.info.run_name for r in runs]
    try:
        browser = chromium()
    except FileNotFoundError as err:  # a failure, not a skip: `make setup` installs them
        pytest.fail(str(err))
    # on a store, make ui's own UI; on a server, its UI (make ui only prints the URLs)
    with browser, serve_ui(uri) as urls:  # the driver quits, the UI's processes end
        url = urls["lossbench"]
        assert url.startswith(uri if is_server(uri) else "http://127.0.0.1:")
        assert f"/#/experiments/{exp.experiment_id}/runs?viewStateShareKey=" in url
        open_runs(browser, url, names)
        browser.save_screenshot(str(tmp_path / "ui-runs.png"))
        text = page_text(browser)
        assert all(f"\n{k}\n" in text for k in COLUMNS)  # the metric columns' headers
        for metric in ("test/acc", "test/map", "val/loss"):  # each run's row shows its values
            shown = metric_cells(browser, metric)
            assert set(shown) == {r.info.run_id for r in runs}, f"no {metric} cells: {shown}"
            for run in runs:
                assert float(shown[run.info.run_id]) == pytest.approx(run.data.metrics[metric])
        open_charts(browser, url)
        browser.save_screenshot(str(tmp_path / "ui-charts.png"))
        text = page_text(browser)
        for metric in LOSS_CHARTS:  # a chart per loss, one curve (legend entry) per run
            assert f"\n{metric}\n" in text
            assert all(f"{name} ({metric})" in text for name in names)
    assert is_png(tmp_path / "ui-runs.png") and is_png(tmp_path / "ui-charts.png")
