# The user's interface. `make` alone lists the targets; variables below can be overridden:
#   make train CONFIG=configs/fashion_rnn.yaml EPOCHS=3 BATCH_SIZE=64 SET="model.units=64"

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/fashion_cnn.yaml
EPOCHS ?=
BATCH_SIZE ?=
NAME ?=
SET ?=
MLFLOW_PORT ?= 5000
# tune
TUNER ?=
TRIALS ?=
OBJECTIVE ?=
EXECUTIONS ?=
WORKERS ?=
OVERWRITE ?=
# promote, serve, predict
MODEL ?=
MARGIN ?=
MODEL_CONFIG ?=
HOST ?= 127.0.0.1
GRPC_PORT ?= 8500
REST_PORT ?= 8501
IMAGE ?=
COUNT ?= 5
RELOADS ?= 50
PYTEST_ARGS ?=
# serve: TF Serving's batching and monitoring flags (BATCHING=1 BATCHING_PARAMS=file MONITORING=1),
# and any other server flag (SERVER_FLAGS="--flag=value ...")
BATCHING ?=
BATCHING_PARAMS ?=
MONITORING ?=
SERVER_FLAGS ?=
# tune-batching: p99 bound (ms); TUNE_BATCHING_FLAGS="--max-batch-sizes 8,16,32 --concurrency 8,32 ..."
SLO_MS ?= 20
TUNE_BATCHING_FLAGS ?=
SERVE_SERVER_FLAGS = $(strip $(if $(or $(filter 1 yes true,$(BATCHING)),$(BATCHING_PARAMS)),--enable_batching) \
	$(if $(BATCHING_PARAMS),--batching_parameters_file=$(abspath $(BATCHING_PARAMS))) \
	$(if $(filter 1 yes true,$(MONITORING)),--monitoring_config_file=$(CURDIR)/configs/serving/monitoring.config) \
	$(SERVER_FLAGS))
# TensorFlow's C++ INFO and WARNING lines off (not the few it prints while importing); 0 shows them.
TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_CPP_MIN_LOG_LEVEL
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Empty Make variables leave the config file's value alone.
OVERRIDES := $(foreach item,$(SET),--set $(item))
TRAIN_FLAGS := $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
	$(if $(NAME),--name $(NAME)) $(OVERRIDES)
TUNE_FLAGS := $(if $(TUNER),--tuner $(TUNER)) $(if $(TRIALS),--max-trials $(TRIALS)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(OBJECTIVE),--objective $(OBJECTIVE)) \
	$(if $(EXECUTIONS),--executions $(EXECUTIONS)) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(filter 1 yes true,$(OVERWRITE)),--overwrite) $(OVERRIDES)
PREDICT_INPUT := $(if $(IMAGE),--image $(IMAGE),--test-images $(COUNT))
MLFLOW_URI = $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlruns/mlflow.db)

.PHONY: help venv data train tune promote serve predict-grpc predict-rest mlflow-ui bench \
	bench-train bench-serve bench-soak bench-tune tune-batching test test-full lint clean

help: ## Show the targets and the variables they read
	@echo "Usage: make <target> [CONFIG=... EPOCHS=... BATCH_SIZE=... NAME=... SET='a.b=1 c.d=2']"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed ## Create .venv with every dependency (once; again when pyproject.toml changes)

data: venv ## Find or fetch CONFIG's data and print its identity (Fashion-MNIST: TFDS, else Debian's files)
	@$(PY) -m pipeline data --config $(CONFIG) $(OVERRIDES); status=$$?; \
	if [ $$status -eq 3 ]; then \
	  echo "installing Debian's package dataset-fashion-mnist (offline copy of Fashion-MNIST)"; \
	  $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null \
	    || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q dataset-fashion-mnist >/dev/null; } \
	    && $(PY) -m pipeline data --config $(CONFIG) $(OVERRIDES); \
	else exit $$status; fi

train: data ## Train CONFIG, evaluate on the test split, export to saved_models/ and register in MLflow
	$(PY) -m pipeline train --config $(CONFIG) $(TRAIN_FLAGS)

tune: data ## Search CONFIG's space with KerasTuner (TUNER TRIALS EPOCHS OBJECTIVE EXECUTIONS WORKERS OVERWRITE=1)
	$(PY) -m pipeline tune --config $(CONFIG) $(TUNE_FLAGS)

promote: venv ## Make MODEL's (default: CONFIG's name) challenger the champion if it beats it on the test split (MARGIN)
	$(PY) -m pipeline promote --config $(CONFIG) $(if $(MODEL),--model $(MODEL)) $(if $(MARGIN),--margin $(MARGIN))

serve: venv ## Serve saved_models/ (or MODEL_CONFIG) on gRPC 8500 and REST 8501: TF Serving, its Docker image, or ours (BATCHING=1 BATCHING_PARAMS MONITORING=1 SERVER_FLAGS)
	$(PY) -m serving.launch --grpc-port $(GRPC_PORT) --rest-port $(REST_PORT) --host $(HOST) \
	  $(if $(MODEL_CONFIG),--model_config_file $(MODEL_CONFIG)) \
	  $(if $(SERVE_SERVER_FLAGS),-- $(SERVE_SERVER_FLAGS))

predict-grpc: venv ## Send IMAGE (or the first COUNT test images) to MODEL over gRPC; print classes
	$(PY) -m serving.predict_demo --protocol grpc $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(GRPC_PORT)

predict-rest: venv ## Send IMAGE (or the first COUNT test images) to MODEL over REST; print classes
	$(PY) -m serving.predict_demo --protocol rest $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(REST_PORT)

mlflow-ui: venv ## Open the MLflow UI on the local store at http://127.0.0.1:5000 (MLFLOW_PORT)
	@mkdir -p mlruns/artifacts
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_URI)" \
	  --default-artifact-root "$(CURDIR)/mlruns/artifacts" --host 127.0.0.1 --port $(MLFLOW_PORT)

bench: bench-train bench-serve bench-tune ## Run every benchmark (JSON and Markdown under bench/results/)

bench-train: data ## Time to 0.90/0.92/0.93 test accuracy vs bare Keras, speed choices (XLA, oneDNN, threads, batch, precision), throughput (~40 min on 2 AVX2 cores)
	$(PY) -m pipeline.bench.accuracy --config $(CONFIG) $(OVERRIDES)
	$(PY) -m pipeline.bench.choices --config $(CONFIG) $(OVERRIDES) \
	  $(if $(filter configs/fashion_cnn.yaml,$(CONFIG)),--compare configs/fashion_cnn_large.yaml)
	$(PY) -m pipeline.bench.train --config $(CONFIG) $(OVERRIDES)

bench-tune: data ## Resident memory across 20 small trials of one sweep (no growth from trial to trial)
	$(PY) -m pipeline.bench.tune --config $(CONFIG) $(OVERRIDES)

bench-serve: venv ## gRPC/REST latency next to the in-process call; batching off/on at 1-64 clients vs the in-process ceiling (~4 min)
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-0} $(PY) -m serving.bench --output-dir bench/results

tune-batching: venv ## Sweep batching parameters with real clients; keep the fastest with p99 <= SLO_MS (batching_parameters.txt, MLflow)
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-0} $(PY) -m serving.tune_batching --slo-ms $(SLO_MS) \
	  --output-dir bench/results $(TUNE_BATCHING_FLAGS)

bench-soak: venv ## RELOADS hot reloads (default 50) under load: failed requests (must be 0), resident memory per reload (must plateau)
	$(PY) -m serving.bench_soak --reloads $(RELOADS) --output-dir bench/results

test: venv ## Run the test suite (real TF, MLflow and SavedModels on tiny data; not the slow tests)
	$(PY) -m pytest $(PYTEST_ARGS)

test-full: venv ## Run every test, the slow end-to-end ones too
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

lint: venv ## Check style with ruff
	$(VENV)/bin/ruff check pipeline models serving tests

clean: ## Remove caches and checkpoints (keeps .venv, mlruns/ and saved_models/)
	rm -rf .pytest_cache .ruff_cache checkpoints bench/results
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
