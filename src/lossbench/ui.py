"""``make ui``: serve the MLflow UI on a store and print where the runs are.

MLflow 3.x opens an experiment on its GenAI traces page; a lossbench user wants the runs
table and its chart view, at ``#/experiments/<id>/runs``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from mlflow.tracking import MlflowClient

from lossbench.tracking import resolve_tracking_uri


def runs_url(host: str, port: int, experiment_id: str) -> str:
    return f"http://{host}:{port}/#/experiments/{experiment_id}/runs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    uri = resolve_tracking_uri(args.tracking_uri)
    experiments = MlflowClient(uri).search_experiments()
    print(f"MLflow UI on {uri}")
    for exp in experiments:
        if exp.name != "Default":
            print(f"  {exp.name}: {runs_url(args.host, args.port, exp.experiment_id)}")
    if len(experiments) <= 1:
        print("  (no lossbench runs yet: `make run` records some)")
    mlflow = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    cmd = [mlflow, "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]
    sys.stdout.flush()
    os.execv(mlflow, cmd)


if __name__ == "__main__":
    main()
