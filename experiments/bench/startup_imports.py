"""gpu.sh's ``importtime`` step, under ``python -X importtime``: CUDA's initialisation, then the
imports of a run (what a lossbench process does before composing its config)."""

import time

import torch

start = time.time()
if torch.cuda.is_available():
    torch.zeros(1, device="cuda")
print("cuda init s", round(time.time() - start, 2))

import lossbench.training.task  # noqa: E402, F401
