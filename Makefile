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
TEXT ?=
COUNT ?= 5
RELOADS ?= 50
LAB ?=
PYTEST_ARGS ?=
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
PREDICT_INPUT := $(if $(TEXT),--text "$(TEXT)",$(if $(IMAGE),--image $(IMAGE),--test-images $(COUNT)))
MLFLOW_URI = $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlruns/mlflow.db)

.PHONY: help venv data train tune promote serve predict-grpc predict-rest mlflow-ui bench lab \
	bench-train bench-serve bench-soak bench-tune test test-full lint clean

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

data: venv ## Find or fetch CONFIG's data and print its identity; installs the Debian packages it needs (Fashion-MNIST, fortunes)
	@$(PY) -m pipeline data --config $(CONFIG) $(OVERRIDES); status=$$?; \
	if [ $$status -eq 3 ]; then \
	  packages="$$($(PY) -m pipeline packages --config $(CONFIG) $(OVERRIDES))"; \
	  [ -n "$$packages" ] || exit 3; \
	  echo "installing Debian's packages $$packages"; \
	  $(SUDO) apt-get install -y -q $$packages >/dev/null \
	    || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $$packages >/dev/null; } \
	    && $(PY) -m pipeline data --config $(CONFIG) $(OVERRIDES); \
	else exit $$status; fi

train: data ## Train CONFIG, evaluate on the test split, export to saved_models/ and register in MLflow
	$(PY) -m pipeline train --config $(CONFIG) $(TRAIN_FLAGS)

tune: data ## Search CONFIG's space with KerasTuner (TUNER TRIALS EPOCHS OBJECTIVE EXECUTIONS WORKERS OVERWRITE=1)
	$(PY) -m pipeline tune --config $(CONFIG) $(TUNE_FLAGS)

promote: venv ## Make MODEL's (default: CONFIG's name) challenger the champion if it beats it on the test split (MARGIN)
	$(PY) -m pipeline promote --config $(CONFIG) $(if $(MODEL),--model $(MODEL)) $(if $(MARGIN),--margin $(MARGIN))

serve: venv ## Serve saved_models/ (or MODEL_CONFIG) on gRPC 8500 and REST 8501: TF Serving, its Docker image, or ours
	$(PY) -m serving.launch --grpc-port $(GRPC_PORT) --rest-port $(REST_PORT) --host $(HOST) \
	  $(if $(MODEL_CONFIG),--model_config_file $(MODEL_CONFIG))

predict-grpc: venv ## Send TEXT, IMAGE (or the first COUNT test examples) to MODEL over gRPC; print classes
	$(PY) -m serving.predict_demo --protocol grpc $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(GRPC_PORT)

predict-rest: venv ## Send TEXT, IMAGE (or the first COUNT test examples) to MODEL over REST; print classes
	$(PY) -m serving.predict_demo --protocol rest $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(REST_PORT)

mlflow-ui: venv ## Open the MLflow UI on the local store at http://127.0.0.1:5000 (MLFLOW_PORT)
	@mkdir -p mlruns/artifacts
	$(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_URI)" \
	  --default-artifact-root "$(CURDIR)/mlruns/artifacts" --host 127.0.0.1 --port $(MLFLOW_PORT)

lab: venv ## The lab: adding problem (SimpleRNN/LSTM/GRU), vanishing gradients, activations, representations (MLflow + lab_results/)
	$(PY) -m pipeline lab $(if $(LAB),$(foreach item,$(LAB),--only $(item)))

bench: bench-train bench-serve bench-tune ## Run every benchmark (JSON and Markdown under bench/results/)

bench-train: data ## Time to 0.90/0.92/0.93 test accuracy vs bare Keras, speed choices (XLA, oneDNN, threads, batch, precision), throughput (~40 min on 2 AVX2 cores)
	$(PY) -m pipeline.bench.accuracy --config $(CONFIG) $(OVERRIDES)
	$(PY) -m pipeline.bench.choices --config $(CONFIG) $(OVERRIDES) \
	  $(if $(filter configs/fashion_cnn.yaml,$(CONFIG)),--compare configs/fashion_cnn_large.yaml)
	$(PY) -m pipeline.bench.train --config $(CONFIG) $(OVERRIDES)

bench-tune: data ## Resident memory across 20 small trials of one sweep (no growth from trial to trial)
	$(PY) -m pipeline.bench.tune --config $(CONFIG) $(OVERRIDES)

bench-serve: venv ## REST and gRPC p50/p99 latency and throughput next to the in-process SavedModel call
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-0} $(PY) -m serving.bench --output-dir bench/results

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
