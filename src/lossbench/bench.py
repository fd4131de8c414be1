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
from pathlib import Path

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
    from lossbench import run
    from lossbench.config import compose_run_config

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


def grid(data_dir: Path) -> dict[str, float]:
    """One sweep of train.py over every valid multi-class pair, 1 epoch, timed end to end."""
    from mlflow.tracking import MlflowClient

    pairs = [(h, loss) for t, h, loss, ok in matrix.table() if ok and t == "multiclass"]
    losses = sorted({loss for _, loss in pairs})
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        cmd = [
            sys.executable, str(ROOT / "train.py"), "-m", "dataset=fashion_mnist",
            "head=softmax,sigmoid", f"loss={','.join(losses)}", "trainer.max_epochs=1",
            f"data_dir={data_dir}", f"logger.tracking_uri={uri}", "logger.experiment_name=grid",
            f"hydra.sweep.dir={tmp}/multirun", "progress_bar=log",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - start
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("grid").experiment_id])
    parts = ("data", "setup", "fit", "test", "record", "total")
    sums = {p: sum(r.data.metrics[f"time/{p}_s"] for r in runs) for p in parts}
    return {
        "runs": len(runs),
        "wall_s": wall,
        "s_per_run": wall / len(runs),
        "startup_s": wall - sums["total"],  # imports, Hydra, skipped pairs, the closing table
        **{f"{p}_s_per_run": sums[p] / len(runs) for p in parts if p != "total"},
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
    parser.add_argument("--grid", action="store_true", help="also time a whole sweep")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data_dir, data_name = fashion_mnist_dir(args.data_dir)

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
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"cpu ({torch.get_num_threads()} threads)",
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
        result["grid"] = grid(data_dir)
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
        g = result["grid"]
        console.print(
            f"grid: {g['runs']} runs in {g['wall_s']:.1f} s ({g['s_per_run']:.1f} s/run); "
            f"start-up {g['startup_s']:.1f} s once; per run: data {g['data_s_per_run']:.2f} s, "
            f"setup {g['setup_s_per_run']:.2f} s, fit {g['fit_s_per_run']:.2f} s, "
            f"test {g['test_s_per_run']:.2f} s, record {g['record_s_per_run']:.2f} s"
        )


if __name__ == "__main__":
    main()
