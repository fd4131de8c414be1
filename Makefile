# lossbench: `make run` (set up, then the quick comparison) and `make test` (set up, then tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  := sqlite:///$(CURDIR)/mlflow.db
# `make server`: a tracking server for a team; artifacts are served from mlartifacts/. BACKEND can
# be PostgreSQL: `bash deploy/postgres/up.sh` starts Debian's and prints its URL, then
# `make server BACKEND=postgresql://lossbench:lossbench@127.0.0.1:5432/lossbench HOST=0.0.0.0`
# (the driver comes with the project's `server` extra, which `make setup` installs). MLflow
# answers only Host headers of localhost and private IPs (else 403): reached by a name, list
# every name and address used, e.g. ALLOWED_HOSTS='mlflow.lab.org:5000,10.*,127.0.0.1:*'
# (MLflow's --allowed-hosts, which replaces that default).
BACKEND ?= sqlite:///$(CURDIR)/mlflow-server.db
HOST    ?= 127.0.0.1
PORT    ?= 5000
ALLOWED_HOSTS ?=

.PHONY: setup run test bench report tune ui screenshot server lint docs fashion-mnist chromium clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

# Debian's Fashion-MNIST makes the data offline; without apt, torchvision downloads it.
fashion-mnist:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then \
	  echo "Fashion-MNIST: /usr/share/datasets/fashion-mnist"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist) \
	    || echo "apt-get failed: fashion_mnist will be downloaded by torchvision"; \
	else echo "no apt-get: fashion_mnist will be downloaded by torchvision"; fi

# Debian's chromium + chromedriver: tests/test_ui.py and `make screenshot` drive it headless.
chromium:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
	  echo "Chromium: $$(command -v chromium), $$(command -v chromedriver)"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  ($$SUDO apt-get update -q \
	     && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver) \
	    || echo "apt-get failed: install chromium and chromedriver for tests/test_ui.py"; \
	else echo "no apt-get: install chromium and chromedriver for tests/test_ui.py"; fi

setup: $(VENV)/.installed fashion-mnist chromium

run: setup
	$(BIN)/python train.py +experiment=quickstart

test: setup
	$(BIN)/python -m pytest

bench: setup  # throughput ratios (bare PyTorch / Lightning floor / lossbench / naive) + a grid
	$(BIN)/python -m lossbench.bench --repeats 5 --grid

EXPERIMENT ?= quickstart
TRIALS     ?= 12
WORKERS    ?= 1
report: setup  # REPORT.md + plots for an experiment: make report EXPERIMENT=name [METRIC=map]
	$(BIN)/python -m lossbench.report --tracking-uri $(STORE) --experiment $(EXPERIMENT) \
	  --metric $(or $(METRIC),acc) --out reports/$(EXPERIMENT)

tune: setup  # each valid pair at its own Optuna-tuned lr, then the report: make tune TRIALS=8
	$(BIN)/python -m lossbench.studies.tune --n-trials $(TRIALS) --workers $(WORKERS) --out reports/tune_lr

ui: setup
	$(BIN)/python -m lossbench.tracking.ui --tracking-uri $(STORE) --create

screenshot: setup  # the README's pictures of `make ui`: make screenshot EXPERIMENT=multilabel_grid
	$(BIN)/python -m lossbench.tracking.screenshot --tracking-uri $(STORE) --experiment $(EXPERIMENT) \
	  --out docs/ui-runs.png --charts-out docs/ui-charts.png

docs: setup  # regenerate the README's generated tables
	$(BIN)/python -m lossbench.docs

server: setup  # then: python train.py logger.tracking_uri=http://$(HOST):$(PORT)
	$(BIN)/mlflow server --backend-store-uri '$(BACKEND)' \
	  --artifacts-destination $(CURDIR)/mlartifacts --host $(HOST) --port $(PORT) \
	  $(if $(ALLOWED_HOSTS),--allowed-hosts '$(ALLOWED_HOSTS)')

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf outputs multirun
