#!/usr/bin/env bash
# lossbench's GPU verification (issue 16), in one call on one GPU (H100/H200), under 9 minutes:
#   0. where the host's start-up goes (python -X importtime of a run's imports, CUDA's init);
#   1. the tests marked gpu (pytest -m gpu): device-resident data, the non-finite check on the
#      device, bf16-mixed, compile=true, resume, the fused launcher;
#   2. `make run`'s command (+experiment=quickstart) on the GPU;
#   3. the GPU benchmark: single-run throughput ratios (bare / lightning / lossbench / naive,
#      CNN) and the multi-class grid (every valid pair x 3 seeds, 1 epoch, CNN) sequential and
#      fused, end to end;
#      and the fused training step alone for 1, 16, 48 and 96 members (wall and GPU-busy time);
#   4. the full-size multiclass_grid study (CNN, 2 epochs, 6 seeds) fused (its 96 valid runs in
#      one group: max_group=96), and its report.
# Usage: bash experiments/bench/gpu.sh OUT_DIR   (results: summary.txt, gpu.log, *.json, report)
# Each step has its own time limit, so a slow step cannot take the others' time.
# STEPS="tests bench_grid" runs only the steps named. The sequential grid runs SEQ_SEEDS seeds
# (default 1: 16 runs of ~5 s on a GPU; 3 would pass the step's limit); its wall time is
# extrapolated to the fused grid's 48 runs (start-up once, the rest x 3: lossbench.bench).
# A machine without hydra-core/omegaconf/mlflow: install the carried wheels first
# (experiments/bench/README.md, "On a lent GPU machine"). Fashion-MNIST: Debian's copy, or
# the same gzipped IDX files carried in .gpu_data/fashion-mnist.
set -uo pipefail
OUT=${1:?usage: bash experiments/bench/gpu.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
export LOSSBENCH_ROOT=$PWD PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src
WORK=$(mktemp -d)
STORE=sqlite:///$WORK/mlflow.db
FASHION=/usr/share/datasets/fashion-mnist
if [ ! -d $FASHION ] && [ -d .gpu_data/fashion-mnist ]; then
  mkdir -p "$(dirname $FASHION)" && cp -r .gpu_data/fashion-mnist $FASHION
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to gpu.log, time it
  local name=$1 limit=$2 start rc
  shift 2
  case " ${STEPS:-all} " in *" all "* | *" $name "*) ;; *) return 0 ;; esac
  start=$(date +%s%N)
  echo "=== $name: $*" >>"$OUT/gpu.log"
  timeout "$limit" "$@" >>"$OUT/gpu.log" 2>&1
  rc=$?
  printf '%-16s exit %3d  %6d ms  (limit %s s)\n' "$name" "$rc" \
    $((($(date +%s%N) - start) / 1000000)) "$limit" | tee -a "$OUT/summary.txt"
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import torch, pytorch_lightning as pl, mlflow, hydra; print('torch', torch.__version__, \
'cuda', torch.version.cuda, '| lightning', pl.__version__, '| mlflow', mlflow.__version__, \
'| hydra', hydra.__version__)"
  ls $FASHION
} >>"$OUT/summary.txt" 2>&1

# where this host's start-up goes (15 s on the H100 of 2026-11-27, 4-5 s on the project's CPU):
# the imports of a run (warm: the header above imported them once) and CUDA's initialisation
step importtime 40 sh -c "$PY -X importtime experiments/bench/startup_imports.py \
  2> '$OUT/importtime.txt' && sort -t'|' -k2 -n -r '$OUT/importtime.txt' | head -25"
step tests 150 $PY -m pytest -m gpu -q -rs -p no:cacheprovider tests/test_gpu.py
step make_run 75 $PY train.py +experiment=quickstart logger.tracking_uri="$STORE" \
  hydra.sweep.dir="$WORK/quickstart"
step bench_single 100 sh -c "$PY -m lossbench.bench --device cuda --model cnn --repeats 3 \
  --steps 200 --json > '$OUT/bench-single.json'"
step fused_step 100 sh -c "$PY -m lossbench.bench --device cuda --model cnn --fused-step 1,16,48,96 \
  --steps 15 --warmup 5 --json > '$OUT/fused-step.json'"
step bench_grid 240 sh -c "$PY -m lossbench.bench --device cuda --grid-only --grid-model cnn \
  --grid-seeds 3 --grid-sequential-seeds ${SEQ_SEEDS:-1} --json > '$OUT/bench-grid.json'"
step multiclass_grid 150 $PY train.py +experiment=multiclass_grid hydra/launcher=fused \
  hydra.launcher.max_group=96 logger.tracking_uri="$STORE" hydra.sweep.dir="$WORK/multiclass_grid"
step report 45 $PY -m lossbench.report --tracking-uri "$STORE" --experiment multiclass_grid \
  --out "$WORK/report"
for f in REPORT.md runs.csv verdicts.csv; do
  [ -f "$WORK/report/$f" ] && cp "$WORK/report/$f" "$OUT/multiclass_grid-$f"
done
grep -E "passed|failed|skipped|jobs:|speed-up|Error|cuda init" "$OUT/gpu.log" | tail -20 \
  >>"$OUT/summary.txt"
cat "$OUT/summary.txt"
