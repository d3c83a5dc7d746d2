# The user's interface. `make` alone lists the targets; variables below can be overridden:
#   make train CONFIG=configs/fashion_rnn.yaml EPOCHS=3 BATCH_SIZE=64 SET="model.units=64"

SHELL := /bin/bash
.DEFAULT_GOAL := help

#> PYTHON    the interpreter that builds the virtualenv
PYTHON ?= python3
#> VENV      the virtualenv every target runs in
VENV ?= .venv
#> GPU       1 installs TensorFlow's CUDA extra into VENV; auto: when nvidia-smi lists a GPU
GPU ?= auto
PY := $(VENV)/bin/python
#> CONFIG    the run config (YAML): model name, data, model, training, tuning
CONFIG ?= configs/fashion_cnn.yaml
#> EPOCHS    train: train.epochs; tune: epochs per trial (tune.epochs) and of the best model's retraining
EPOCHS ?=
#> BATCH_SIZE  data.batch_size
BATCH_SIZE ?=
#> NAME      the model's name: saved_models/<NAME>/, the registered model, checkpoints/<NAME>/
NAME ?=
#> SET       any config field, applied last: SET="model.filters=16 train.lr_schedule=constant"
SET ?=
#> MLFLOW_PORT  the MLflow UI's port, and mlflow-server's
MLFLOW_PORT ?= 5000
# tune
#> TUNER     tune.tuner: random, bayesian or hyperband
TUNER ?=
#> TRIALS    tune.max_trials: the number of trials, whatever the tuner
TRIALS ?=
#> RETRAIN_EPOCHS  tune.retrain_epochs: epochs of the best model's retraining (default: EPOCHS, else train.epochs)
RETRAIN_EPOCHS ?=
#> OBJECTIVE  tune.objective: val_accuracy or val_loss
OBJECTIVE ?=
#> EXECUTIONS  tune.executions_per_trial
EXECUTIONS ?=
#> WORKERS   train: N MultiWorkerMirroredStrategy workers on loopback; tune.workers: more than 1 runs KerasTuner's chief and that many workers here
WORKERS ?=
#> OVERWRITE  1/yes/true/on (any case) deletes CONFIG's tuning/<name>/ project and starts a new search
OVERWRITE ?=
# promote, serve, predict
#> MODEL     a registered (and exported) model name; default: CONFIG's name
MODEL ?=
#> MARGIN    tune.promotion_margin: how much higher the challenger's test accuracy must be
MARGIN ?=
#> MODEL_CONFIG  serve this models.config (TF Serving's format) instead of every model in saved_models/
MODEL_CONFIG ?=
#> MODELS_CONFIG_OUT  serving-config: where to write models.config (default: saved_models/models.config)
MODELS_CONFIG_OUT ?=
#> BASE_PATH_ROOT  serving-config: base paths as <this>/<name>, where a container mounts saved_models/ (deploy/: /models)
BASE_PATH_ROOT ?=
#> HOST      serve, mlflow-ui: the interface to listen on (0.0.0.0: all; neither has a login); predict-*: the server
HOST ?= 127.0.0.1
#> GRPC_PORT  the model server's gRPC port
GRPC_PORT ?= 8500
#> REST_PORT  the model server's REST port
REST_PORT ?= 8501
#> IMAGE     image file(s) to send, e.g. serving/client/samples/digit_7.png
IMAGE ?=
#> TEXT      a string to send to a text model, e.g. TEXT="Der Hund schläft" (configs/fortunes_langid.yaml)
TEXT ?=
#> COUNT     how many Fashion-MNIST test images to send when IMAGE is unset
COUNT ?= 5
#> RELOADS   hot reloads of bench-soak
RELOADS ?= 50
#> PROMPT    generate: the text a language model continues (configs/fortunes_charlm.yaml)
PROMPT ?=
#> LENGTH    generate: characters to add to PROMPT
LENGTH ?= 200
#> TEMPERATURE  generate: sampling temperature (lower: safer, duller)
TEMPERATURE ?= 0.8
#> PROTOCOL  generate: rest or grpc
PROTOCOL ?= rest
#> LAB       lab: run only these experiments, e.g. LAB="adding activations" (default: all three)
LAB ?=
#> PYTEST_ARGS  extra pytest arguments, e.g. PYTEST_ARGS="-k export -x"
PYTEST_ARGS ?=
#> TEST_WORKERS  test: pytest processes, each taking whole test files (0: one process, no pytest-xdist)
TEST_WORKERS ?= 2
PYTEST_XDIST = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)
# serve: TF Serving's batching and monitoring flags, and any other server flag
#> BATCHING  serve: 1/yes/true/on starts the server with --enable_batching
BATCHING ?=
#> BATCHING_PARAMS  serve: a BatchingParameters text file for --batching_parameters_file (implies BATCHING)
BATCHING_PARAMS ?=
#> MONITORING  serve: 1/yes/true/on adds --monitoring_config_file=configs/serving/monitoring.config (Prometheus)
MONITORING ?=
#> SERVER_FLAGS  serve: any other server flags, e.g. SERVER_FLAGS="--rest_api_timeout_in_ms=5000"
SERVER_FLAGS ?=
#> SLO_MS    tune-batching: the p99 latency bound (ms) the chosen batching configuration meets
SLO_MS ?= 20
#> TUNE_BATCHING_FLAGS  tune-batching: sweep options, e.g. "--max-batch-sizes 8,16,32 --concurrency 8,32"
TUNE_BATCHING_FLAGS ?=
SERVE_SERVER_FLAGS = $(strip $(if $(or $(call yes,BATCHING),$(BATCHING_PARAMS)),--enable_batching) \
	$(if $(BATCHING_PARAMS),--batching_parameters_file=$(abspath $(BATCHING_PARAMS))) \
	$(if $(call yes,MONITORING),--monitoring_config_file=$(CURDIR)/configs/serving/monitoring.config) \
	$(SERVER_FLAGS))
#> TF_CPP_MIN_LOG_LEVEL  TensorFlow's C++ log level: 2 hides INFO and WARNING lines, 0 shows them
TF_CPP_MIN_LOG_LEVEL ?= 2
export TF_CPP_MIN_LOG_LEVEL
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Yes/no variables: 1/yes/true/on or 0/no/false/off in any case; anything else stops make.
lower = $(subst A,a,$(subst B,b,$(subst C,c,$(subst D,d,$(subst E,e,$(subst F,f,$(subst G,g,$(subst H,h,$(subst I,i,$(subst J,j,$(subst K,k,$(subst L,l,$(subst M,m,$(subst N,n,$(subst O,o,$(subst P,p,$(subst Q,q,$(subst R,r,$(subst S,s,$(subst T,t,$(subst U,u,$(subst V,v,$(subst W,w,$(subst X,x,$(subst Y,y,$(subst Z,z,$(1)))))))))))))))))))))))))))
yes = $(if $(filter 1 yes true on,$(call lower,$($(1)))),1,$(if $(filter-out 0 no false off $(2),$(call lower,$($(1)))),$(error $(1)=$($(1)) is not a yes/no value; use 1, yes, true or on (or 0, no, false, off)$(if $(2), or $(2)))))
GPU_WANTED = $(if $(filter auto,$(call lower,$(GPU))),$(shell nvidia-smi -L 2>/dev/null | grep -q GPU && echo 1),$(call yes,GPU,auto))
EXTRAS = dev$(if $(GPU_WANTED),$(comma)gpu)
comma := ,

# Empty Make variables leave the config file's value alone.
OVERRIDES := $(foreach item,$(SET),--set $(item))
TRAIN_FLAGS := $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) \
	$(if $(NAME),--name $(NAME)) $(OVERRIDES)
TUNE_FLAGS := $(if $(TUNER),--tuner $(TUNER)) $(if $(TRIALS),--max-trials $(TRIALS)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(OBJECTIVE),--objective $(OBJECTIVE)) \
	$(if $(or $(RETRAIN_EPOCHS),$(EPOCHS)),--retrain-epochs $(or $(RETRAIN_EPOCHS),$(EPOCHS))) \
	$(if $(EXECUTIONS),--executions $(EXECUTIONS)) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(NAME),--name $(NAME)) \
	$(if $(call yes,OVERWRITE),--overwrite) $(OVERRIDES)
PREDICT_INPUT := $(if $(TEXT),--text "$(TEXT)",$(if $(IMAGE),--image $(IMAGE),--test-images $(COUNT)))
MLFLOW_URI = $(or $(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlruns/mlflow.db)
# Where a browser on this machine reaches the UI (0.0.0.0 is where it listens, not an address).
MLFLOW_URL = http://$(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(HOST)):$(MLFLOW_PORT)

# The variables each target reads (`make help` lists them). One given on the command line
# that none of the goals reads stops make, naming it. Every target also reads PYTHON, VENV,
# GPU (through venv) and TF_CPP_MIN_LOG_LEVEL.
READS_ALL := PYTHON VENV GPU TF_CPP_MIN_LOG_LEVEL
READS_data = CONFIG SET
READS_train = CONFIG EPOCHS BATCH_SIZE NAME SET WORKERS
READS_tune = CONFIG TUNER TRIALS EPOCHS RETRAIN_EPOCHS OBJECTIVE EXECUTIONS WORKERS OVERWRITE BATCH_SIZE NAME SET
READS_promote = CONFIG MODEL MARGIN SET
READS_serve = CONFIG SET HOST GRPC_PORT REST_PORT MODEL_CONFIG BATCHING BATCHING_PARAMS MONITORING SERVER_FLAGS
READS_rollback = CONFIG MODEL SET
READS_serving-config = CONFIG SET MODELS_CONFIG_OUT BASE_PATH_ROOT
READS_status = CONFIG SET
READS_tune-batching = SLO_MS TUNE_BATCHING_FLAGS
READS_predict-grpc = CONFIG MODEL TEXT IMAGE COUNT HOST GRPC_PORT
READS_predict-rest = CONFIG MODEL TEXT IMAGE COUNT HOST REST_PORT
READS_mlflow-ui = CONFIG MLFLOW_PORT HOST
READS_bench = $(sort $(READS_bench-train) $(READS_bench-serve) $(READS_bench-tune))
READS_bench-train = CONFIG SET
READS_bench-serve =
READS_bench-tune = CONFIG SET
READS_bench-soak = RELOADS
READS_lab = LAB
READS_generate = CONFIG MODEL PROMPT LENGTH TEMPERATURE PROTOCOL HOST GRPC_PORT REST_PORT
READS_test = PYTEST_ARGS TEST_WORKERS
READS_test-full = PYTEST_ARGS TEST_WORKERS

.PHONY: help venv data train tune promote rollback status serving-config serve predict-grpc predict-rest mlflow-ui bench lab \
	generate bench-train bench-serve bench-soak bench-tune tune-batching test test-full lint clean

help: ## Show the targets, the variables each reads, and what every variable means
	@echo "Usage: make <target> [VARIABLE=value ...]   e.g. make train EPOCHS=3 SET='model.filters=16'"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' -v reads='$(foreach r,$(filter READS_%,$(.VARIABLES)),$(r:READS_%=%)=$(strip $($(r)));)' \
	  'BEGIN { n = split(reads, pairs, ";"); for (i = 1; i <= n; i++) { split(pairs[i], kv, "="); sub(/^ +/, "", kv[1]); r[kv[1]] = kv[2] } } \
	   { printf "  %-14s %s\n", $$1, $$2; if (r[$$1] != "") printf "  %-14s reads: %s\n", "", r[$$1] }'
	@echo
	@echo "Variables (every target also reads $(READS_ALL); MLFLOW_TRACKING_URI from the environment):"
	@awk '/^#> / { name = $$2; text = substr($$0, 4); sub(/^[^ ]+ +/, "", text); \
	  getline def; sub(/^[^?]*\?= ?/, "", def); printf "  %-21s %s%s\n", name, text, (def != "" ? " [" def "]" : "") }' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[$(EXTRAS)]'
	echo '$(EXTRAS)' > $@

venv: $(VENV)/.installed ## Create .venv with every dependency (once; again when pyproject.toml changes; GPU=1 adds CUDA)
	@$(if $(GPU_WANTED),grep -qs gpu $(VENV)/.installed || { $(VENV)/bin/pip install --quiet -e '.[$(EXTRAS)]' && echo '$(EXTRAS)' > $(VENV)/.installed; },:)

# Runs a pipeline command; if it exits 3 (the config's data needs Debian packages that are
# missing: dataset-fashion-mnist, fortunes-*), installs the packages `pipeline packages`
# names for CONFIG (or the config given as second argument) and runs it again. The command
# validates its config first.
define with_debian_packages
echo '$(strip $(1))'; $(1); status=$$?; \
if [ $$status -eq 3 ]; then \
  packages="$$($(PY) -m pipeline packages --config $(or $(2),$(CONFIG)) $(if $(2),,$(OVERRIDES)))"; \
  [ -n "$$packages" ] || exit 3; \
  echo "installing Debian's packages $$packages"; \
  $(SUDO) apt-get install -y -q $$packages >/dev/null \
    || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q $$packages >/dev/null; } \
    && $(1); \
else exit $$status; fi
endef

data: venv ## Find or fetch CONFIG's data and print its identity; installs the Debian packages it needs (Fashion-MNIST, fortunes)
	@$(call with_debian_packages,$(PY) -m pipeline data --config $(CONFIG) $(OVERRIDES))

train: venv ## Train CONFIG, evaluate on the test split, export to saved_models/ and register in MLflow (WORKERS=N: N workers)
	@$(call with_debian_packages,$(PY) -m pipeline train --config $(CONFIG) $(TRAIN_FLAGS) $(if $(WORKERS),--workers $(WORKERS)))

tune: venv ## Search CONFIG's space with KerasTuner, retrain the best for RETRAIN_EPOCHS (else EPOCHS), register it as challenger
	@$(call with_debian_packages,$(PY) -m pipeline tune --config $(CONFIG) $(TUNE_FLAGS))

promote: venv ## Gate MODEL's challenger in a real server, then make it champion if it beats it on the test split by MARGIN; live on `make serve`
	$(PY) -m pipeline promote --config $(CONFIG) $(if $(MODEL),--model $(MODEL)) $(if $(MARGIN),--margin $(MARGIN)) $(OVERRIDES)

serving-config: venv ## Write models.config from the registry's aliases (stable/canary labels); BASE_PATH_ROOT=/models for deploy/'s containers
	$(PY) -m pipeline serving-config --config $(CONFIG) $(if $(MODELS_CONFIG_OUT),--output $(MODELS_CONFIG_OUT)) \
	  $(if $(BASE_PATH_ROOT),--base-path-root $(BASE_PATH_ROOT)) $(OVERRIDES)

serve: venv ## Serve the registry's champion (label stable) and challenger (canary), or MODEL_CONFIG, on gRPC 8500 / REST 8501 until Ctrl-C (BATCHING=1 BATCHING_PARAMS MONITORING=1 SERVER_FLAGS)
	@config="$(MODEL_CONFIG)"; registry=; \
	if [ -z "$$config" ]; then \
	  config=$$($(PY) -m pipeline serving-config --config $(CONFIG) $(OVERRIDES)) || exit $$?; registry=--from-registry; \
	  echo "models.config written from the MLflow registry: $$config"; fi; \
	$(PY) -m serving.launch --grpc-port $(GRPC_PORT) --rest-port $(REST_PORT) --host $(HOST) \
	  --model_config_file "$$config" $$registry \
	  $(if $(SERVE_SERVER_FLAGS),-- $(SERVE_SERVER_FLAGS))

rollback: venv ## Give MODEL's champion alias back to the previous champion (a running `make serve` follows live)
	$(PY) -m pipeline rollback --config $(CONFIG) $(if $(MODEL),--model $(MODEL)) $(OVERRIDES)

status: venv ## Registry versions, aliases and accuracies beside what the running server has loaded; do they agree?
	$(PY) -m pipeline status --config $(CONFIG) $(OVERRIDES)

predict-grpc: venv ## Send TEXT, IMAGE (or the first COUNT test examples) to MODEL over gRPC; print classes
	$(PY) -m serving.predict_demo --protocol grpc $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(GRPC_PORT)

predict-rest: venv ## Send TEXT, IMAGE (or the first COUNT test examples) to MODEL over REST; print classes
	$(PY) -m serving.predict_demo --protocol rest $(if $(MODEL),--model $(MODEL)) --config $(CONFIG) $(PREDICT_INPUT) \
	  --host $(HOST) --port $(REST_PORT)

mlflow-ui: venv ## Print the URLs of CONFIG's experiment and latest run; start the MLflow UI on MLFLOW_PORT (not for an http:// MLFLOW_TRACKING_URI: that server is the UI)
	@case "$(MLFLOW_URI)" in \
	  http://*|https://*) \
	    $(PY) -m pipeline mlflow-links --config $(CONFIG) --ui-url "$(MLFLOW_URI)"; \
	    echo "MLFLOW_TRACKING_URI is a tracking server, which serves the UI itself: open $(MLFLOW_URI)";; \
	  *) mkdir -p mlruns/artifacts; \
	    $(PY) -m pipeline mlflow-links --config $(CONFIG) --ui-url "$(MLFLOW_URL)"; \
	    echo "starting the MLflow UI on $(HOST):$(MLFLOW_PORT) (HOST=0.0.0.0 to reach it from other machines; it has no login); Ctrl-C stops it"; \
	    exec $(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_URI)" \
	      --default-artifact-root "$(CURDIR)/mlruns/artifacts" --host $(HOST) --port $(MLFLOW_PORT);; \
	esac

generate: venv ## Continue PROMPT with MODEL's (default configs/fortunes_charlm.yaml's) in-graph `generate` over PROTOCOL
	$(PY) -m serving.predict_demo --protocol $(PROTOCOL) $(if $(MODEL),--model $(MODEL)) \
	  --config $(if $(filter command line,$(origin CONFIG)),$(CONFIG),configs/fortunes_charlm.yaml) \
	  --prompt "$(PROMPT)" --length $(LENGTH) --temperature $(TEMPERATURE) --host $(HOST) \
	  --port $(if $(filter grpc,$(PROTOCOL)),$(GRPC_PORT),$(REST_PORT))

lab: venv ## The lab: adding problem (SimpleRNN/LSTM/GRU), vanishing gradients, activations, representations (MLflow + lab_results/)
	@$(call with_debian_packages,$(PY) -m pipeline data --config configs/fashion_cnn.yaml >/dev/null,configs/fashion_cnn.yaml)
	@$(call with_debian_packages,$(PY) -m pipeline data --config configs/fortunes_langid.yaml >/dev/null,configs/fortunes_langid.yaml)
	$(PY) -m pipeline lab $(if $(LAB),$(foreach item,$(LAB),--only $(item)))

bench: bench-train bench-serve bench-tune ## Run every benchmark (JSON and Markdown under bench/results/)

bench-train: data ## Time to 0.90/0.92/0.93 test accuracy vs bare Keras, speed choices (XLA, oneDNN, threads, batch, precision), throughput (~40 min on 2 AVX2 cores)
	$(PY) -m pipeline.bench.accuracy --config $(CONFIG) $(OVERRIDES)
	$(PY) -m pipeline.bench.choices --config $(CONFIG) $(OVERRIDES) \
	  $(if $(filter configs/fashion_cnn.yaml,$(CONFIG)),--compare configs/fashion_cnn_large.yaml)
	$(PY) -m pipeline.bench.train --config $(CONFIG) $(OVERRIDES)

bench-tune: data ## Resident memory across 20 small trials of one sweep (no growth from trial to trial)
	$(PY) -m pipeline.bench.tune --config $(CONFIG) $(OVERRIDES)

bench-serve: venv ## gRPC/REST latency next to the in-process call; batching off/on at 1-64 clients vs the in-process ceiling (~5 min)
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-0} $(PY) -m serving.bench.serve --output-dir bench/results

tune-batching: venv ## Sweep batching parameters with real clients; keep the fastest with p99 <= SLO_MS (batching_parameters.txt, MLflow)
	TF_ENABLE_ONEDNN_OPTS=$${TF_ENABLE_ONEDNN_OPTS:-0} $(PY) -m serving.bench.tune_batching --slo-ms $(SLO_MS) \
	  --output-dir bench/results $(TUNE_BATCHING_FLAGS)

bench-soak: venv ## RELOADS hot reloads (default 50) under load: failed requests (must be 0), resident memory per reload (must plateau)
	$(PY) -m serving.bench.soak --reloads $(RELOADS) --output-dir bench/results

# mlflow-server, fetch-models, deploy-check, compose-up
#> MLFLOW_DATA  mlflow-server: the folder of its PostgreSQL cluster (and of the artifacts by default)
MLFLOW_DATA ?= mlflow-server
#> MLFLOW_HOST  mlflow-server: the interface to listen on (0.0.0.0: all; it has no login)
MLFLOW_HOST ?= 127.0.0.1
#> MLFLOW_ARTIFACTS  mlflow-server: the artifact store (default MLFLOW_DATA/artifacts; s3://bucket/path, gs://bucket/path)
MLFLOW_ARTIFACTS ?=
READS_mlflow-server = MLFLOW_DATA MLFLOW_HOST MLFLOW_PORT MLFLOW_ARTIFACTS
READS_fetch-models = CONFIG MODEL
.PHONY: mlflow-server fetch-models
mlflow-server: venv ## Shared MLflow server on PostgreSQL: MLFLOW_DATA folder, MLFLOW_HOST, MLFLOW_PORT, MLFLOW_ARTIFACTS (s3://, gs://)
	$(PY) -m pipeline mlflow-server --data-dir $(MLFLOW_DATA) --host $(MLFLOW_HOST) --port $(MLFLOW_PORT) \
	  $(if $(MLFLOW_ARTIFACTS),--artifacts-destination $(MLFLOW_ARTIFACTS))

fetch-models: venv ## Download the registry's aliased versions of MODEL (default: every model) into saved_models/
	$(PY) -m pipeline fetch-models --config $(CONFIG) $(if $(MODEL),--model $(MODEL))

.PHONY: deploy-check compose-up
deploy-check: venv ## Validate deploy/ offline: Kubernetes schemas (strict), the Compose spec, TF Serving's config protos
	$(PY) -m serving.deploy_check

compose-up: ## Start deploy/compose.yaml (TF Serving GPU, MLflow on PostgreSQL, Prometheus) where Docker exists
	docker compose -f deploy/compose.yaml up -d --build

test: venv ## Run the test suite (real TF, MLflow and SavedModels on tiny data; not the slow tests) in TEST_WORKERS processes
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-full: venv ## Run every test, the slow end-to-end ones too
	$(PY) -m pytest -m "" $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: venv ## Check style with ruff
	$(VENV)/bin/ruff check pipeline models serving tests

clean: ## Remove caches, checkpoints/ and bench/results/ (keeps .venv, mlruns/, saved_models/ and tuning/)
	rm -rf .pytest_cache .ruff_cache checkpoints bench/results
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +

# Refuse a command-line variable that none of the goals reads (see READS_<target> above),
# and a yes/no variable that is neither.
KNOWN_VARIABLES := $(sort $(READS_ALL) $(foreach r,$(filter READS_%,$(.VARIABLES)),$($(r))))
GOAL_READS := $(READS_ALL) $(foreach goal,$(or $(MAKECMDGOALS),help),$(READS_$(goal)))
UNREAD := $(strip $(foreach v,$(KNOWN_VARIABLES),$(if $(filter command line,$(origin $(v))),$(if $(filter $(v),$(GOAL_READS)),,$(v)))))
ifneq ($(UNREAD),)
$(error $(firstword $(UNREAD))=$($(firstword $(UNREAD))) is not read by `make $(or $(MAKECMDGOALS),help)`$(if $(strip $(foreach goal,$(MAKECMDGOALS),$(READS_$(goal)))), (it reads $(sort $(foreach goal,$(MAKECMDGOALS),$(READS_$(goal))))),); `make help` lists what each target reads)
endif
YES_NO_CHECKED := $(call yes,OVERWRITE) $(call yes,GPU,auto) $(call yes,BATCHING) $(call yes,MONITORING)
