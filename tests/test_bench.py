"""The benchmark runs and reports its figures (speed itself lives in `make bench`, not here)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_json_has_the_figures(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lossbench.bench", "--steps", "20", "--warmup", "3",
         "--repeats", "1", "--device", "cpu", "--json", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["samples_per_s"]) == {"bare", "lightning", "lossbench", "naive"}
    assert all(v > 0 for v in result["samples_per_s"].values())
    for key in ("lossbench_over_bare", "lossbench_over_naive", "lightning_over_bare"):
        assert result[key] > 0
    assert result["device"].startswith("cpu") and result["model"] == "mlp"
