"""``python -m lossbench.studies.tune``: every head/loss pair compared at its own best
learning rate.

1. search: per valid pair of the dataset, one Optuna study (``+experiment=tune_lr``:
   hydra-optuna-sweeper, TPE over log10 lr, maximising ``val/acc_best`` averaged over the
   runs of ``tune.seeds``, default 101 and 102: not the comparison's seeds) in its own
   ``train.py`` process (a study is one Hydra multirun);
2. compare: one ``train.py`` multirun of every pair at its best lr over seeds (one sweep id);
3. report: ``lossbench.report`` on that sweep, with a section on the tuned learning rates.

Extra arguments are Hydra overrides given to both stages, e.g. ``dataset=mnist
trainer.max_epochs=5``, except the search's sweeper settings (``hydra.sweeper.*``): those go to
the search only (the comparison runs Hydra's basic sweeper), and ``hydra.sweeper.n_trials=N``
means ``--n-trials N``. A pair whose every trial failed is reported and left out. Given the
``--dir`` of an interrupted tune, finished studies and comparison runs are not trained again.

``--workers N`` runs N processes at once on each pair's study, which then lives in an Optuna
storage (``tune.storage=...``; by default ``sqlite:///<dir>/optuna.db``): the pair's trials are
shared out among them, and its best lr is read from the study once all have ended.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lossbench import matrix
from lossbench.config import ROOT, compose_run_config
from lossbench.data import DATASETS
from lossbench.errors import LossbenchError, exit_on_user_error
from lossbench.heads import HEADS
from lossbench.report.summary import outcomes
from lossbench.report.verdicts import TWO_CLASS_ONLY
from lossbench.report.write import check_metric, write_report
from lossbench.studies.storage import prepare_study_storage
from lossbench.tracking.mlflow_run import sweep_id

EXPERIMENT = "+experiment=tune_lr"
RESULTS = "optimization_results.yaml"  # written by the Optuna sweeper into its sweep dir


@dataclass
class Search:
    head: str
    loss: str
    sweep_dir: Path
    lr: float | None = None  # None: no trial finished
    value: float | None = None
    trials: int = 0


def train_py(*overrides: str) -> int:
    """Run ``train.py`` with these overrides (its output goes to the console); its exit code."""
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides]).returncode


def search(head: str, loss: str, directory: Path, overrides: list[str]) -> Search:
    """One Optuna study of the pair's learning rate; its best lr from the sweeper's results.
    A study that already finished in ``directory`` (an earlier, interrupted tune) is reused."""
    found = Search(head, loss, directory / "search" / f"{head}-{loss}")
    results = found.sweep_dir / RESULTS
    if not results.exists():
        train_py(EXPERIMENT, f"head={head}", f"loss={loss}", f"hydra.sweep.dir={found.sweep_dir}",
                 *overrides)  # fmt: skip
    found.trials = len(outcomes(found.sweep_dir))
    if results.exists():  # it exits 1 when a trial failed (a diverged lr): the study stands
        best = OmegaConf.load(results)
        found.lr, found.value = float(best.best_params["optimizer.lr"]), float(best.best_value)
    return found


def shared_search(
    head: str, loss: str, directory: Path, overrides: list[str], workers: int, trials: int,
    storage: str, study_name: str | None,
) -> Search:  # fmt: skip
    """One Optuna study of the pair's lr in ``storage``, worked on by ``workers`` processes at
    once (``tune.worker`` 0..N-1, each its own sweep dir and share of ``trials``); the best lr
    is the study's best trial once every worker has ended. Workers whose results file exists
    (an interrupted tune given again) are not started again."""
    import optuna

    found = Search(head, loss, directory / "search" / f"{head}-{loss}")
    name = [f"tune.study_name={study_name}-{head}-{loss}"] if study_name else []
    procs = []
    for w in range(workers):
        share = trials // workers + (w < trials % workers)
        sweep_dir = found.sweep_dir / f"worker{w}"
        if share and not (sweep_dir / RESULTS).exists():
            cmd = [sys.executable, str(ROOT / "train.py"), EXPERIMENT, f"head={head}",
                   f"loss={loss}", f"tune.storage={storage}", f"tune.worker={w}", *name,
                   f"hydra.sweeper.n_trials={share}", f"hydra.sweep.dir={sweep_dir}",
                   *overrides]  # fmt: skip
            procs.append(subprocess.Popen(cmd))
    for proc in procs:
        proc.wait()
    found.trials = sum(len(outcomes(d)) for d in found.sweep_dir.glob("worker*"))
    cfg = compose_run_config([EXPERIMENT, f"head={head}", f"loss={loss}", *name, *overrides],
                             ROOT / "outputs" / "compose")  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=cfg.tune.study_name, storage=storage)
    try:
        best = study.best_trial  # Optuna's, in the study's direction
    except ValueError:  # no trial completed
        return found
    found.lr, found.value = float(best.params["optimizer.lr"]), float(best.value)
    return found


def compare(
    found: list[Search], seeds: str, directory: Path, overrides: list[str]
) -> tuple[str, int]:
    """Every tuned pair at its own lr, over ``seeds``, as one multirun: (sweep id, exit code).

    The lr comes from a ``tuned_lr`` table indexed by the job's head and loss; the grid is
    heads × losses, so cells that are not valid pairs are skipped as in any lossbench sweep, and
    valid cells that were not tuned (``--pairs``) have a null lr, which skips them too.
    """
    table: dict[str, dict[str, float | None]] = {}
    for s in found:
        table.setdefault(s.head, {})[s.loss] = s.lr
    names = list(dict.fromkeys(loss for per_head in table.values() for loss in per_head))
    for per_head in table.values():  # null: a valid cell of heads x losses not tuned: skipped
        for loss in names:
            per_head.setdefault(loss, None)
    cells = {head: ",".join(f"{loss}:{'null' if lr is None else repr(lr)}"
                            for loss, lr in per_head.items())
             for head, per_head in table.items()}  # fmt: skip
    lrs = ",".join(f"{head}:{{{row}}}" for head, row in cells.items())
    sweep_dir = directory / "compare"
    code = train_py(EXPERIMENT, "hydra/sweeper=basic", f"head={','.join(table)}",
                    f"loss={','.join(names)}",
                    f"seed={seeds}", "tune.seeds=null", f"tuned_lr={{{lrs}}}",
                    "optimizer.lr='${tuned_lr.${head.name}.${loss.name}}'",
                    f"hydra.sweep.dir={sweep_dir}", *overrides)  # fmt: skip
    return sweep_id(sweep_dir), code


def lr_section(found: list[Search], metric: str) -> list[str]:
    lines = [
        "## Learning rates (Optuna)",
        "",
        f"Each pair was trained at the learning rate that maximised `{metric}` in its own "
        "Optuna study (`conf/hydra/sweeper/lr_search.yaml`: TPE over log lr). The runs above "
        "are that lr over fresh seeds.",
        "",
        f"| head + loss | trials | best lr | best {metric} (search) | search sweep |",
        "|---|---|---|---|---|",
    ]
    for s in found:
        lr = "— (no trial finished)" if s.lr is None else f"{s.lr:.3g}"
        value = "—" if s.value is None else f"{s.value:.4f}"
        sweep = sweep_id(s.sweep_dir)
        lines.append(f"| {s.head} + {s.loss} | {s.trials} | {lr} | {value} | `{sweep}` |")
    return lines


def split_overrides(
    overrides: list[str], n_trials: int | None
) -> tuple[list[str], list[str], int | None]:
    """The user's overrides as (for both stages, for the search only, trials per pair).

    The search's Optuna sweeper takes ``hydra.sweeper.*``; the comparison runs Hydra's basic
    sweeper, which refuses them. ``hydra.sweeper.n_trials=N`` is the trials per pair, the same
    as ``--n-trials N`` (with ``--workers`` it is shared out among them, not given to each)."""
    both: list[str] = []
    search_only: list[str] = []
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if key == "hydra.sweeper.n_trials" and sep:
            if not (value.isdigit() and int(value) > 0):
                raise LossbenchError(
                    f"{override}: the trials per pair must be a whole number above 0. Fix: "
                    "e.g. --n-trials 12"
                )
            if n_trials is not None and n_trials != int(value):
                raise LossbenchError(
                    f"--n-trials {n_trials} and {override} both set the trials per pair. Fix: "
                    "give one of them"
                )
            n_trials = int(value)
        elif key.startswith(("hydra.sweeper.", "hydra/sweeper")):
            search_only.append(override)
        else:
            both.append(override)
    return both, search_only, n_trials


def cfg_trials() -> int:
    """``n_trials`` of the search's sweeper config (``conf/hydra/sweeper/lr_search.yaml``)."""
    return int(OmegaConf.load(ROOT / "conf" / "hydra" / "sweeper" / "lr_search.yaml").n_trials)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=None, help="per pair (config: 12)")
    parser.add_argument("--seeds", default="1,2,3", help="seeds of the comparison")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes at once on each pair's study (an Optuna storage)",
    )
    parser.add_argument("--pairs", default=None, help="head:loss,... (default: every valid one)")
    parser.add_argument("--dir", type=Path, default=None, help="sweep dirs (multirun/tune_lr/…)")
    parser.add_argument("--out", type=Path, default=None, help="report dir (reports/tune_lr)")
    parser.add_argument("--metric", default="test/acc",
                        help="the test score that ranks the report's pairs (e.g. map)")  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    with exit_on_user_error("lossbench.studies.tune"):
        overrides, sweeper, n_trials = split_overrides(args.overrides, args.n_trials)

    cfg = compose_run_config([EXPERIMENT, *overrides, *sweeper], ROOT / "outputs" / "compose")
    task = DATASETS[cfg.dataset.name].task_of(OmegaConf.to_container(cfg.dataset))
    with exit_on_user_error("lossbench.studies.tune"):
        metric = check_metric(args.metric, task)  # before hours of training, not after
        if metric in TWO_CLASS_ONLY and task == "multiclass":  # the classes of a user's table
            from lossbench.training.run import make_data  # Lightning's import: this case only

            check_metric(metric, task, make_data(cfg).num_classes)
    if args.pairs:
        pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
        for head, loss in pairs:
            matrix.check(task, head, loss)
    else:
        pairs = [(h, loss) for h in HEADS for loss in matrix.valid_losses(task, h)]
    directory = args.dir or ROOT / "multirun" / "tune_lr" / time.strftime("%Y-%m-%d/%H-%M-%S")
    trials = [f"hydra.sweeper.n_trials={n_trials}"] if n_trials else []

    if args.workers > 1 or cfg.tune.storage:
        storage = cfg.tune.storage or f"sqlite:///{directory.resolve()}/optuna.db"
        directory.mkdir(parents=True, exist_ok=True)
        with exit_on_user_error("lossbench.studies.tune"):
            prepare_study_storage(storage)  # once, before the workers race to create it
        given = [o.split("=", 1)[1] for o in overrides if o.startswith("tune.study_name=")]
        others = [o for o in overrides if not o.startswith(("tune.storage=", "tune.study_name="))]
        found = [shared_search(h, loss, directory, [*others, *sweeper], max(1, args.workers),
                               n_trials or cfg_trials(), storage, given[-1] if given else None)
                 for h, loss in pairs]  # fmt: skip
    else:
        found = [search(h, loss, directory, [*trials, *overrides, *sweeper]) for h, loss in pairs]
    tuned = [s for s in found if s.lr is not None]
    if not tuned:
        sys.exit(
            "lossbench.studies.tune: no pair has a finished trial; see the runs' failures above"
        )
    sweep, code = compare(tuned, args.seeds, directory, overrides)
    out = args.out or ROOT / "reports" / "tune_lr"
    extra = lr_section(found, cfg.optimized_metric)
    with exit_on_user_error("lossbench.studies.tune"):
        print(write_report(cfg.logger.tracking_uri, cfg.logger.experiment_name, sweep, out, True,
                           extra, metric=args.metric))  # fmt: skip
    sys.exit(code or int(len(tuned) < len(found)))


if __name__ == "__main__":
    main()
