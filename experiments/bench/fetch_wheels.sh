#!/usr/bin/env bash
# Download the wheels that lossbench needs on the GPU machine (x86-64, no network, Python 3.12,
# torch/lightning/numpy/... already installed) into .whl/ at the repository root (git-ignored
# through .git/info/exclude). Exactly this set, one version of each, the versions of .venv:
#
#   Hydra:  hydra-core, omegaconf, antlr4-python3-runtime (no Hydra plugins: the default config
#           uses the basic launcher and sweeper; hydra/sweeper=optuna, hydra/launcher=joblib or
#           submitit_* would need hydra-optuna-sweeper+optuna, hydra-joblib-launcher,
#           hydra-submitit-launcher+submitit, none carried)
#   MLflow: mlflow-skinny only: it holds every file of mlflow-tracing (byte for byte) and all of
#           mlflow's Python code; the full `mlflow` wheel adds only the web UI (server/js) and
#           an LLM model catalogue. The SQLite store needs sqlalchemy + alembic (+ Mako) and
#           cryptography (+ cffi), imported by mlflow.store.*.
#   What `import mlflow` imports at once: pydantic (+ pydantic-core, annotated-types,
#           typing-inspection), opentelemetry-api/-sdk/-proto/-semantic-conventions, sqlparse,
#           cachetools, fastapi (+ starlette), importlib-metadata, databricks-sdk (for the
#           `databricks` namespace that mlflow.genai probes with find_spec).
#
# Usage: experiments/bench/fetch_wheels.sh [python-version, default 3.12]
# On the GPU machine:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

PYVER="${1:-3.12}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.whl"
PY="${PYTHON:-python3}"

# Pure-Python or compiled wheels on PyPI (--no-deps: every need is named here or is on the machine).
WHEELS=(
  hydra-core==1.3.8
  omegaconf==2.3.1
  mlflow-skinny==3.17.2
  sqlalchemy==2.1.9
  alembic==1.20.1
  mako==1.4.3
  cryptography==50.0.2
  cffi==2.1.1
  pydantic==2.14.4
  pydantic-core==2.50.5
  annotated-types==0.8.0
  typing-inspection==0.4.5
  opentelemetry-api==1.45.2
  opentelemetry-sdk==1.45.2
  opentelemetry-proto==1.45.2
  opentelemetry-semantic-conventions==0.66b2
  sqlparse==0.6.1
  cachetools==7.3.3
  fastapi==0.165.0
  starlette==1.10.0
  importlib-metadata==9.1.0
  databricks-sdk==0.162.0
  typing-extensions==4.16.0  # pydantic 2.14 wants >= 4.14.1; the GPU image's may be older
)
# antlr4-python3-runtime 4.9.3 (omegaconf 2.3 pins 4.9.*) exists on PyPI only as an sdist:
# built here into a pure-Python py3-none-any wheel.
SDIST_ONLY=(antlr4-python3-runtime==4.9.3)

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$TMP" "${WHEELS[@]}"
"$PY" -m pip wheel --no-deps --no-binary antlr4-python3-runtime -w "$TMP" "${SDIST_ONLY[@]}"

n=$(ls "$TMP"/*.whl | wc -l)
want=$(( ${#WHEELS[@]} + ${#SDIST_ONLY[@]} ))
if [ "$n" -ne "$want" ]; then
  echo "fetch_wheels: got $n wheels, expected $want" >&2
  exit 1
fi

# Replace the set as a whole: two versions of one package stop the install there.
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
mv "$TMP"/*.whl "$DEST"/
grep -qxF '/.whl/' "$ROOT/.git/info/exclude" 2>/dev/null || echo '/.whl/' >> "$ROOT/.git/info/exclude"
ls -l "$DEST"
du -ch "$DEST"/*.whl | tail -1
