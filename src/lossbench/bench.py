"""``make bench``: what lossbench's training path costs, as ratios measured in one process.

For one model, batch size, optimizer (Adam, lr 1e-3) and number of steps, the training
throughput (samples/s) of
  (a) ``bare``: a plain PyTorch loop over in-memory uint8 tensors (index slices of a permutation),
  (b) ``lossbench``: lossbench's own path, ``run.train`` through Lightning with MLflow logging,
  (c) ``naive``: torchvision's dataset + ``ToTensor`` + ``DataLoader``, the same plain loop,
and, to say where (b) loses time against (a), ``lightning``: a minimal LightningModule (loss
only, no logging, no callbacks) on lossbench's data path: Lightning's own per-step floor.
Each is timed over ``--steps`` steps after ``--warmup`` steps, ``--repeats`` times; the medians
and the ratios b/a and b/c are printed (``--json``: one JSON object). ``--grid`` also times a
whole sweep of ``train.py`` (every valid head/loss pair on Fashion-MNIST, 1 epoch) from process
start to MLflow records, split into start-up, data, training, test and recording.

Data: Fashion-MNIST (from ``--data-dir`` or Debian's copy); without it, random images written in
the same IDX format, since only the shape matters for speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from lossbench import matrix
from lossbench.config import ROOT
from lossbench.data import make_datamodule
from lossbench.data.idx import write_idx_dir
from lossbench.models import make_model

DEBIAN_FASHION = "/usr/share/datasets/fashion-mnist"
MEAN, STD = 0.2860, 0.3530


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fashion_mnist_dir(data_dir: Path) -> tuple[Path, str]:
    """A data dir holding FashionMNIST/raw: the real set where it can be had, else random."""
    data = make_datamodule(
        "fashion_mnist", data_dir, batch_size=1, val_size=5000, split_seed=0, download=False,
        mean=MEAN, std=STD, system_dir=DEBIAN_FASHION,
    )  # fmt: skip
    try:
        data.prepare_data()
        return data_dir, "Fashion-MNIST"
    except Exception:
        fake = Path(tempfile.mkdtemp(prefix="lossbench-bench-"))
        rng = np.random.default_rng(0)
        arrays = {
            split: (rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n, np.uint8))
            for split, n in (("train", 60000), ("test", 10000))
        }
        write_idx_dir(fake / "FashionMNIST" / "raw", arrays)
        return fake, "random images (Fashion-MNIST not found)"


def timed_steps(step: Callable[[], int], warmup: int, steps: int, device: torch.device) -> float:
    """Samples/s of ``step`` (which returns its batch size) over ``steps`` after ``warmup``."""
    for _ in range(warmup):
        step()
    sync(device)
    start, samples = time.perf_counter(), 0
    for _ in range(steps):
        samples += step()
    sync(device)
    return samples / (time.perf_counter() - start)


def plain_loop(
    args: argparse.Namespace, batches: Iterator[tuple[Tensor, Tensor]], device: torch.device
) -> float:
    """Samples/s of plain optimisation steps (cross-entropy, Adam) over ``batches``."""
    model = new_model(args, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> int:
        x, y = next(batches)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(y)

    return timed_steps(step, args.warmup, args.steps, device)


def bare(args: argparse.Namespace, data_dir: Path, device: torch.device) -> float:
    ds = datasets.FashionMNIST(str(data_dir), train=True, download=False)
    x, y = ds.data.unsqueeze(1).to(device), ds.targets.to(device)
    generator = torch.Generator().manual_seed(0)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            for idx in (
                torch.randperm(len(x), generator=generator).to(device).split(args.batch_size)
            ):
                yield (x[idx].float() / 255 - MEAN) / STD, y[idx]

    return plain_loop(args, batches(), device)


def naive(args: argparse.Namespace, data_dir: Path, device: torch.device) -> float:
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    ds = datasets.FashionMNIST(str(data_dir), train=True, download=False, transform=transform)
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True)

    def batches() -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            for xb, yb in loader:
                yield xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    return plain_loop(args, batches(), device)


class StepTimer(pl.Callback):
    """Times training steps ``warmup`` … ``warmup + steps`` (synchronising only at the ends)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and not self.start:
            sync(pl_module.device)
            self.start = time.perf_counter()
        if self.start and not self.end:
            self.samples += len(batch[1])

    def on_train_end(self, trainer, pl_module) -> None:
        sync(pl_module.device)
        self.end = time.perf_counter()

    @property
    def throughput(self) -> float:
        return self.samples / (self.end - self.start)


class Minimal(pl.LightningModule):
    """Cross-entropy and Adam, nothing else: what any Lightning training costs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return F.cross_entropy(self.model(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def lightning_floor(args: argparse.Namespace, data_dir: Path, device: torch.device) -> float:
    data = make_datamodule(
        "fashion_mnist", data_dir, 0, batch_size=args.batch_size, val_size=5000, split_seed=0,
        download=False, mean=MEAN, std=STD,
    )  # fmt: skip
    timer = StepTimer(args.warmup, args.steps)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, logger=False,
        max_steps=args.warmup + args.steps, limit_val_batches=0, callbacks=[timer],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        precision="bf16-mixed" if args.amp else "32-true",
    )  # fmt: skip
    trainer.fit(Minimal(new_model(args, device)), datamodule=data)
    return timer.throughput


def lossbench_path(args: argparse.Namespace, data_dir: Path, device: torch.device) -> float:
    from lossbench.config import compose_run_config
    from lossbench.training import run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_run_config(
            [
                "dataset=fashion_mnist",
                f"dataset.batch_size={args.batch_size}",
                f"model={args.model}",
                "head=softmax",
                "loss=ce",
                f"data_dir={data_dir}",
                f"trainer.accelerator={'gpu' if device.type == 'cuda' else 'cpu'}",
                "trainer.devices=1",
                f"trainer.max_steps={args.warmup + args.steps}",
                "trainer.limit_val_batches=2",
                "trainer.limit_test_batches=2",
                "trainer.enable_model_summary=false",
                f"trainer.precision={'bf16-mixed' if args.amp else '32-true'}",
                f"compile={str(args.compile).lower()}",
                "progress_bar=log",
                f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
                "logger.experiment_name=bench",
            ],
            Path(tmp),
        )
        timer = StepTimer(args.warmup, args.steps)
        run.train(cfg, callbacks=[timer])
        return timer.throughput


def new_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = make_model(args.model, (1, 28, 28), 10).to(device)
    return torch.compile(model) if args.compile else model


# train.py as the benchmark runs it: the same process, plus the GPU's memory peak at exit
PEAK_RUNNER = """
import atexit, json, runpy, sys
PEAK = sys.argv.pop(1)
def peak():
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        with open(PEAK, "w") as f:
            json.dump(torch.cuda.max_memory_allocated() / 2**20, f)
atexit.register(peak)
sys.argv[0] = TRAIN
runpy.run_path(TRAIN, run_name="__main__")
"""


def grid(
    data_dir: Path, model: str, seeds: int, device: torch.device, fused: bool
) -> dict[str, float]:
    """One sweep of train.py over every valid multi-class pair × ``seeds`` seeds, 1 epoch of
    Fashion-MNIST, timed end to end (start-up, every run, MLflow records, closing table):
    sequential (Hydra's basic launcher) or ``hydra/launcher=fused``."""
    from mlflow.tracking import MlflowClient

    pairs = [(h, loss) for t, h, loss, ok in matrix.table() if ok and t == "multiclass"]
    losses = sorted({loss for _, loss in pairs})
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        peak_file = Path(tmp) / "peak.json"
        runner = PEAK_RUNNER.replace("TRAIN", repr(str(ROOT / "train.py")))
        cmd = [
            sys.executable, "-c", runner, str(peak_file), "-m", "dataset=fashion_mnist",
            f"model={model}", "head=softmax,sigmoid", f"loss={','.join(losses)}",
            f"seed={','.join(str(s) for s in range(1, seeds + 1))}", "trainer.max_epochs=1",
            f"trainer.accelerator={accelerator}", "trainer.devices=1",
            f"data_dir={data_dir}", f"logger.tracking_uri={uri}", "logger.experiment_name=grid",
            f"hydra.sweep.dir={tmp}/multirun", "progress_bar=log",
        ]  # fmt: skip
        if fused:
            cmd.append("hydra/launcher=fused")
        launched, start = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode not in (0, 1):  # 1: some job failed (counted below)
            output = proc.stdout[-3000:] + proc.stderr[-3000:]
            raise RuntimeError(f"the grid sweep stopped (exit {proc.returncode}):\n{output}")
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
        peak = json.loads(peak_file.read_text()) if peak_file.exists() else None
        # process start → the sweep's start (imports, Hydra, the store), when Hydra's sweeper
        # writes multirun.yaml: all that follows (its check, the jobs, the table) grows with them
        start_up = (Path(tmp) / "multirun" / "multirun.yaml").stat().st_mtime - launched
    finished = [r for r in runs if r.info.status == "FINISHED"]
    parts = ("data", "setup", "fit", "test", "record", "total")
    sums = {p: sum(r.data.metrics[f"time/{p}_s"] for r in finished) for p in parts}
    accuracy = [r.data.metrics["test/acc"] for r in finished]
    return {
        "launcher": "fused" if fused else "basic",
        "model": model,
        "pairs": len(pairs),
        "seeds": seeds,
        "runs": len(runs),
        "finished": len(finished),
        "wall_s": wall,
        "s_per_run": wall / max(1, len(runs)),
        "start_up_s": start_up,
        "gpu_peak_mb": peak,
        "test_acc_mean": statistics.fmean(accuracy) if accuracy else None,
        # summed over runs: for a fused group, each member counts the group's whole fit
        **{f"{p}_s_per_run": sums[p] / max(1, len(finished)) for p in parts if p != "total"},
    }


def grids(
    data_dir: Path, model: str, seeds: int, device: torch.device, sequential_seeds: int | None
) -> dict:
    """The grid both ways, one after the other in this run, and the ratio of their wall times.
    Where the sequential grid ran ``sequential_seeds`` seeds only, its wall time is extrapolated
    to the fused grid's runs (:func:`extrapolated_wall`)."""
    sequential = grid(data_dir, model, sequential_seeds or seeds, device, fused=False)
    fused = grid(data_dir, model, seeds, device, fused=True)
    if sequential["seeds"] != fused["seeds"]:
        sequential["wall_extrapolated_s"] = extrapolated_wall(sequential, fused["runs"])
    wall = sequential.get("wall_extrapolated_s", sequential["wall_s"])
    return {"sequential": sequential, "fused": fused, "fused_speedup": wall / fused["wall_s"]}


def extrapolated_wall(sequential: dict, runs: int) -> float:
    """The wall time the sequential grid would take for ``runs`` runs: its start-up (process
    start → the sweep's start) once, and the rest (the sweeper's check of every job, the jobs,
    alike and one after another, the closing table), scaled by the number of runs. (A plain
    ratio of seconds per run would spread the start-up over fewer runs, and flatter the fused
    grid.)"""
    fixed = sequential["start_up_s"]
    return fixed + (sequential["wall_s"] - fixed) * runs / sequential["runs"]


def fused_step(
    model: str,
    counts: list[int],
    device: torch.device,
    steps: int = 30,
    warmup: int = 10,
    batch: int = 128,
) -> dict[str, dict[str, float]]:
    """The fused loop's training step alone, for each number of members in ``counts``: the
    stacked forward pass, the members' criteria (the grid's valid multi-class pairs in turn),
    the summed losses' backward pass and one fused Adam step (``lossbench.fused.loop``). Per
    step, in ms: ``wall_ms`` (synchronised; the criteria of one pair in one call, as the loop
    computes them), ``one_by_one_wall_ms`` (each member's criterion in turn, as the loop did
    before), ``one_ce_wall_ms`` (one cross-entropy over all members: the criteria's floor),
    ``criteria_ms`` and ``criteria_one_by_one_ms`` (the criteria alone, forward and backward,
    both ways); on CUDA, ``device_busy_ms`` (the sum of the kernels' times, from torch's
    profiler), ``tf32_wall_ms`` (float32 matmuls in TF32) and ``bf16_wall_ms`` (bf16
    autocast): what those settings would buy. Where ``device_busy_ms`` is well under
    ``wall_ms``, the step waits on the host's Python and kernel launches, not on the GPU's
    arithmetic."""
    from torch.profiler import ProfilerActivity, profile

    from lossbench.fused.criteria import MemberLosses, criterion_key
    from lossbench.fused.stacked import StackedNet
    from lossbench.heads import make_head
    from lossbench.losses import make_criterion

    pairs = [(h, loss) for t, h, loss, ok in matrix.table() if ok and t == "multiclass"]
    class_counts = torch.full((10,), 6000)
    if device.type == "cuda":  # as the fused loop sets it: fixed shapes, cuDNN picks kernels
        torch.backends.cudnn.benchmark = True
    out: dict[str, dict[str, float]] = {}
    for m in counts:
        torch.manual_seed(0)
        net = StackedNet([make_model(model, (1, 28, 28), 10) for _ in range(m)]).to(device)
        criteria, keys = [], []
        for i in range(m):
            head, loss = pairs[i % len(pairs)]
            criteria.append(make_criterion(make_head(head), loss, class_counts).to(device))
            keys.append(criterion_key(criteria[-1], (head, loss)))
        member_losses = MemberLosses(criteria, keys)  # the fused loop's: one call per pair
        try:
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
        except (RuntimeError, TypeError):
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
        x = torch.randn(m, batch, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (m, batch), device=device)

        run = (net, member_losses, optimizer, x, y)
        row: dict[str, float] = {}
        variants = {"one_by_one_wall_ms": ("loop", None, "highest"),
                    "wall_ms": (False, None, "highest"),
                    "one_ce_wall_ms": (True, None, "highest")}  # fmt: skip
        if device.type == "cuda":  # what the precision knobs would buy (not lossbench's default)
            variants |= {"tf32_wall_ms": (False, None, "high"),
                         "bf16_wall_ms": (False, torch.bfloat16, "highest")}  # fmt: skip
        for name, (one_ce, dtype, matmul) in variants.items():
            torch.set_float32_matmul_precision(matmul)
            autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
            for _ in range(warmup):
                _fused_step_once(*run, one_ce=one_ce, autocast=autocast)
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                _fused_step_once(*run, one_ce=one_ce, autocast=autocast)
            sync(device)
            row[name] = 1000 * (time.perf_counter() - start) / steps
        torch.set_float32_matmul_precision("highest")
        # the criteria alone (forward and backward, on logits of the step's shape)
        z = net(x).detach().float().requires_grad_()
        for name, loop in (("criteria_one_by_one_ms", True), ("criteria_ms", False)):
            for timed in (False, True):
                sync(device)
                start = time.perf_counter()
                for _ in range(steps if timed else warmup):
                    losses = (torch.stack([c(z[i], y[i]).float() for i, c in enumerate(criteria)])
                              if loop else member_losses(z, y))  # fmt: skip
                    losses.sum().backward()
                sync(device)
            row[name] = 1000 * (time.perf_counter() - start) / steps
        if device.type == "cuda":
            try:
                with profile(activities=[ProfilerActivity.CUDA]) as prof:
                    for _ in range(steps):
                        _fused_step_once(*run, one_ce=False)
                    sync(device)
                events = prof.key_averages()
                busy = [getattr(e, "self_device_time_total", None)
                        or getattr(e, "self_cuda_time_total", 0) for e in events]  # fmt: skip
                row["device_busy_ms"] = sum(busy) / 1000 / steps
                top = sorted(zip(busy, (e.key for e in events), strict=True), reverse=True)[:4]
                row["top_kernels"] = [f"{k[:70]}: {t / 1000 / steps:.2f} ms" for t, k in top]
            except Exception as err:  # noqa: BLE001  (the timings above stand without it)
                row["profiler_error"] = f"{type(err).__name__}: {err}"
        out[str(m)] = row
    return out


def _fused_step_once(
    net: nn.Module,
    losses: Any,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    one_ce: bool | str,
    autocast: Any = None,
) -> None:
    """One step of :func:`fused_step`: the members' criteria as the fused loop computes them
    (``losses``, a :class:`lossbench.fused.criteria.MemberLosses`), each in turn
    (``one_ce="loop"``), or one cross-entropy for all (``autocast``: the forward pass only)."""
    with autocast or nullcontext():
        logits = net(x)
    logits = logits.float()
    if one_ce == "loop":
        criteria = losses.criteria
        total = torch.stack([c(logits[i], y[i]).float() for i, c in enumerate(criteria)]).sum()
    elif one_ce:
        total = F.cross_entropy(logits.flatten(0, 1), y.flatten()) * len(x)
    else:
        total = losses(logits, y).sum()
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()


def startup(runs: int) -> dict:
    """Process start → first training step of ``python train.py dataset=fashion_mnist
    trainer.max_epochs=1`` (MLP, progress_bar=log, a store of its own), ``runs`` times after
    one untimed run that creates the MLflow store and warms the file cache, each followed by
    a bare Lightning process: what any Lightning run pays to start; and, before each, a
    process that only imports Lightning, Hydra and MLflow's SQL store (``dependency_imports_s``,
    to the end of its imports): the part of the start-up no change to lossbench removes.

    Times run from the parent's clock just before it starts the child: to the time the
    child's ``FirstStepMarker`` (``LOSSBENCH_FIRST_STEP_FILE``) writes as its first batch
    starts, and to the child's exit; ``cpu``: the child's user + system time by then.
    Medians, and each run's values."""
    import os
    import textwrap

    from lossbench.training.progress import FIRST_STEP_FILE

    # the floor under any Lightning run: a bare LightningModule (one linear layer, random data,
    # no Hydra, no MLflow) that starts training at once, timed by the same marker
    bare_lightning = textwrap.dedent("""
    import torch, pytorch_lightning as pl
    from lossbench.training.progress import FirstStepMarker, first_step_file
    class Bare(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(784, 10)
        def training_step(self, batch, batch_idx):
            return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])
        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters())
    data = torch.utils.data.TensorDataset(torch.randn(256, 784), torch.randint(0, 10, (256,)))
    pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_checkpointing=False,
               enable_model_summary=False, callbacks=[FirstStepMarker(first_step_file())]).fit(
        Bare(), torch.utils.data.DataLoader(data, batch_size=128))
    """)
    # what no lossbench change can remove: importing the libraries a run uses (with the
    # collector off, as train.py imports them); the child prints when it is done
    imports = ("import gc; gc.disable(); import time, pytorch_lightning, hydra, "
               "mlflow.store.tracking.sqlalchemy_store; print(time.time())")  # fmt: skip
    args = ["dataset=fashion_mnist", "trainer.max_epochs=1"]
    times: dict[str, dict[str, list[float]]] = {
        p: {"first_step_s": [], "first_step_cpu_s": [], "wall_s": [], "modules": []}
        for p in ("lossbench", "bare_lightning")
    }
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "lossbench": [
                sys.executable, str(ROOT / "train.py"), *args, "progress_bar=log",
                f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db", "logger.experiment_name=startup",
            ],
            "bare_lightning": [sys.executable, "-c", bare_lightning],
        }  # fmt: skip
        imports_s = []
        for i in range(runs + 1):
            start = time.time()
            done = subprocess.run([sys.executable, "-c", imports], check=True, cwd=ROOT,
                                  capture_output=True, text=True).stdout  # fmt: skip
            if i:
                imports_s.append(float(done) - start)
            for name, cmd in commands.items():
                mark = Path(tmp) / f"{name}-{i}.json"
                extra = [f"hydra.run.dir={tmp}/run{i}"] if name == "lossbench" else []
                env = {**os.environ, FIRST_STEP_FILE: str(mark)}
                start = time.time()
                subprocess.run([*cmd, *extra], check=True, capture_output=True, env=env, cwd=ROOT)
                end = time.time()
                if not i:  # the first run creates the store: not timed
                    continue
                marked = json.loads(mark.read_text())
                for key, value in (("first_step_s", marked["time"] - start),
                                   ("first_step_cpu_s", marked["cpu"]), ("wall_s", end - start),
                                   ("modules", marked["modules"])):  # fmt: skip
                    times[name][key].append(value)
    median = {p: {k: statistics.median(v) for k, v in t.items()} for p, t in times.items()}
    return {
        "command": f"python train.py {' '.join(args)}",
        "runs": runs,
        "cpus": os.cpu_count(),
        **median["lossbench"],
        "bare_lightning": median["bare_lightning"],
        "over_bare_lightning": median["lossbench"]["first_step_s"]
        / median["bare_lightning"]["first_step_s"],
        "dependency_imports_s": statistics.median(imports_s),
        "all": {**times, "dependency_imports": {"wall_s": imports_s}},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--amp", action="store_true", help="bf16 mixed precision (GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--grid", action="store_true",
        help="also time the multi-class grid (every valid pair x --grid-seeds seeds, 1 epoch), "
        "sequential and fused",
    )  # fmt: skip
    parser.add_argument("--grid-model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--grid-seeds", type=int, default=3)
    parser.add_argument(
        "--grid-sequential-seeds", type=int, default=None,
        help="seeds of the sequential grid (default: --grid-seeds); fewer: a per-run ratio",
    )  # fmt: skip
    parser.add_argument("--grid-only", action="store_true", help="only the grid (no throughput)")
    parser.add_argument(
        "--fused-step", type=str, default=None, metavar="M1,M2,...",
        help="only time the fused loop's training step with --model for these numbers of "
        "members (wall and GPU-busy ms per step; see fused_step)",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--startup", action="store_true",
        help="only time train.py's start-up (process start → first step), --repeats runs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.startup:
        result = {"startup": startup(args.repeats)}
        print(json.dumps(result, indent=None if args.json else 2))
        return result
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.fused_step:
        counts = [int(c) for c in args.fused_step.split(",")]
        result = {"device": device_name(device), "model": args.model,
                  "fused_step": fused_step(args.model, counts, device, args.steps,
                                           args.warmup, args.batch_size)}  # fmt: skip
        print(json.dumps(result, indent=None if args.json else 2))
        return result
    data_dir, data_name = fashion_mnist_dir(args.data_dir)
    if args.grid_only:
        result = {"device": device_name(device), "data": data_name,
                  "grid": grids(data_dir, args.grid_model, args.grid_seeds, device,
                               args.grid_sequential_seeds)}  # fmt: skip
        print(json.dumps(result, indent=None if args.json else 2))
        return result

    paths = {
        "bare": bare,
        "lightning": lightning_floor,
        "lossbench": lossbench_path,
        "naive": naive,
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, path in paths.items():
            samples[name].append(path(args, data_dir, device))
    median = {name: statistics.median(v) for name, v in samples.items()}
    result = {
        "device": device_name(device),
        "data": data_name,
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "repeats": args.repeats,
        "precision": "bf16-mixed" if args.amp else "32-true",
        "compile": args.compile,
        "samples_per_s": median,
        "samples_per_s_all": samples,
        "lossbench_over_bare": median["lossbench"] / median["bare"],
        "lossbench_over_naive": median["lossbench"] / median["naive"],
        "lightning_over_bare": median["lightning"] / median["bare"],
    }  # fmt: skip
    if args.grid:
        result["grid"] = grids(
            data_dir, args.grid_model, args.grid_seeds, device, args.grid_sequential_seeds
        )
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return result


def report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"training throughput, {result['model']}, batch {result['batch_size']}, "
        f"{result['steps']} steps, median of {result['repeats']}; {result['device']}"
    )
    table.add_column("path")
    table.add_column("samples/s", justify="right")
    for name, value in result["samples_per_s"].items():
        table.add_row(name, f"{value:,.0f}")
    console = Console()
    console.print(table)
    console.print(
        f"lossbench / bare = {result['lossbench_over_bare']:.2f}   "
        f"lossbench / naive = {result['lossbench_over_naive']:.2f}   ({result['data']})"
    )
    if "grid" in result:
        report_grid(result["grid"], console)


def report_grid(grids: dict, console: Any) -> None:
    for g in (grids["sequential"], grids["fused"]):
        peak = "" if g["gpu_peak_mb"] is None else f", GPU peak {g['gpu_peak_mb']:,.0f} MiB"
        console.print(
            f"grid ({g['launcher']}, {g['model']}): {g['runs']} runs ({g['pairs']} pairs x "
            f"{g['seeds']} seeds) in {g['wall_s']:.1f} s ({g['s_per_run']:.2f} s/run{peak}); "
            f"per run: data {g['data_s_per_run']:.2f} s, setup {g['setup_s_per_run']:.2f} s, "
            f"fit {g['fit_s_per_run']:.2f} s, test {g['test_s_per_run']:.2f} s, "
            f"record {g['record_s_per_run']:.2f} s"
        )
    console.print(f"fused / sequential speed-up: {grids['fused_speedup']:.2f}x")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


if __name__ == "__main__":
    main()
