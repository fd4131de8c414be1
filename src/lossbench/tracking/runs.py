"""``python -m lossbench.tracking.runs close-stale``: mark KILLED the RUNNING runs of this
machine whose process is gone (kill -9, out of memory, a crash), with their last checkpoint
where one was saved, so that ``resume=<run id>`` continues them. Every run and sweep does this
when it starts; this command does it on demand.
"""

from __future__ import annotations

import argparse

from lossbench.errors import exit_on_user_error
from lossbench.tracking.store import close_stale, open_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.tracking.runs", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    stale = commands.add_parser("close-stale", help="mark dead RUNNING runs of this host KILLED")
    stale.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    stale.add_argument("--host", default=None, help="whose runs (default: this machine)")
    args = parser.parse_args(argv)
    with exit_on_user_error("lossbench.tracking.runs"):
        client = open_store(args.tracking_uri)
    closed = close_stale(client, args.host)
    for run_id in closed:
        run = client.get_run(run_id)
        resumable = "checkpoint" in run.data.tags
        print(f"KILLED {run.info.run_name} ({run_id})" + (", resumable" if resumable else ""))
    print(f"{len(closed)} stale run(s) closed in {client.tracking_uri}")


if __name__ == "__main__":
    main()
