"""``hydra/launcher=slurm``'s launcher: hydra-submitit-launcher's ``SlurmLauncher``, except that a
job which leaves no result (killed by SIGKILL or for memory, cancelled while pending, its node
lost) is one failed job of the sweep rather than the end of it, and its run, left RUNNING by
the dead process, is recorded KILLED (resumable where a checkpoint was saved).

submitit's launcher collects the jobs' results in order and raises ``UncompletedJobError`` at
the first job without one, so the sweep's process ended before its closing table while the
other jobs went on. Here such a job's outcome is FAILED, with the state Slurm gives it
(``sacct``) and its log file, and the sweep waits for the others and prints its table.

Where hydra-submitit-launcher is not installed (a dependency of lossbench, but a trimmed
environment may lack it: the GPU machines' carried wheels), this module still imports, so
Hydra's discovery of plugins does not warn at every start; ``hydra/launcher=slurm`` then fails
to compose (its defaults name ``submitit_slurm``), which ``lossbench.errors.user_message``
turns into what to install.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher
except ImportError:  # not installed: hydra/launcher=slurm cannot compose (see above)
    submitit_launcher = None

log = logging.getLogger(__name__)
OUTCOME = (
    "outcome.json"  # lossbench.report.summary.OUTCOME (not imported: plugin discovery stays fast)
)


class SlurmLauncher(Launcher if submitit_launcher is None else submitit_launcher.SlurmLauncher):
    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import submitit

        jobs: list[Any] = []
        real_map_array = submitit.AutoExecutor.map_array

        def map_array(executor: Any, *args: Any, **kwargs: Any) -> list[Any]:
            jobs.extend(real_map_array(executor, *args, **kwargs))
            return [_Collected(job) for job in jobs]

        # the parent's launch submits through map_array, then calls results() on what it gives
        submitit.AutoExecutor.map_array = map_array
        try:
            returns = super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = real_map_array
        for idx, (job, ret) in enumerate(zip(jobs, returns, strict=True)):
            if ret is None:
                returns[idx] = self._lost(job, list(job_overrides[idx]), initial_job_idx + idx)
        return returns

    def _lost(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        """The return of a job that left no result: its outcome FAILED, with Slurm's word."""
        assert self.config is not None
        reason = (f"Slurm job {job.job_id} ended without a result (state {job.state}); its "
                  f"log: {job.paths.stderr}")  # fmt: skip
        log.error("failed: %s: %s", " ".join(overrides), reason)
        try:  # its run, if it opened one, is left RUNNING by the dead process: KILLED
            from lossbench.tracking.store import close_slurm_job, existing_store

            client = existing_store(str(self.config.logger.tracking_uri))
            closed = close_slurm_job(client, str(job.job_id), reason) if client else []
            if closed:
                log.error("run %s recorded KILLED", ", ".join(closed))
        except Exception as err:  # the sweep goes on; close-stale on that node can do it later
            log.error("its run could not be closed: %s: %s", type(err).__name__, err)
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")
        job_dir = Path(str(self.config.hydra.sweep.dir)) / str(idx)
        if subdir == "${hydra.job.num}" and not (job_dir / OUTCOME).exists():
            (job_dir / ".hydra").mkdir(parents=True, exist_ok=True)  # what outcomes() reads
            record = {"status": "FAILED", "overrides": overrides, "reason": reason}
            (job_dir / OUTCOME).write_text(json.dumps(record))
        # COMPLETED with no value, as a failed lossbench job returns: the sweeper goes on
        return JobReturn(overrides=overrides, status=JobStatus.COMPLETED, _return_value=None)


class _Collected:
    """A submitted job whose ``results()`` is ``[None]`` where submitit has none to give."""

    def __init__(self, job: Any) -> None:
        self.job = job

    def results(self) -> list[Any]:
        from submitit.core.utils import UncompletedJobError

        try:
            return self.job.results()
        except UncompletedJobError:  # FailedJobError too: an error outside the task function
            log.exception("Slurm job %s left no result", self.job.job_id)
            return [None]
