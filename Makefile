# The project's verbs. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
STORE ?= model_store
# The browser the frontend tests drive: Debian's chromium, never a downloaded one.
CHROMIUM ?= /usr/bin/chromium
export FASTAI_SERVE_CHROMIUM := $(CHROMIUM)
export MPLBACKEND := Agg
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install browser models run test test-slow lint format typecheck bench bench-peer bench-access bench-ray bench-explain bench-monitor bench-record clean wrk proto gpu-check gpu-carry

help:
	@echo "make run        set up .venv, build the tabular/vision demos if missing, serve on 0.0.0.0:8000"
	@echo "                (the text, collab and segmentation demos train in the background meanwhile)"
	@echo "make test       same set-up (plus Debian's chromium for the browser tests), then the whole test suite"
	@echo "make models     build the missing demo models (all five) into $(STORE)/"
	@echo "make lint       ruff + mypy"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project's dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install --quiet -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import fastai, fastapi, torch, playwright"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium for the browser tests (Playwright drives it; it never downloads a browser).
$(CHROMIUM):
	@echo "installing Debian's chromium for the browser tests"
	apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| (echo "cannot install chromium: run 'apt-get install chromium' as root, or set CHROMIUM=/path/to/chromium" && false)

browser: $(CHROMIUM)

# All five demo models, in the foreground (tests and the Docker build need every one).
models: install
	$(BIN)/fastai-serve train demo --store $(STORE)

# Serving starts once the tabular and vision demos are there (about a minute the first time); the text,
# collab and segmentation demos train meanwhile in a background process (its log: $(STORE)/.training.log),
# listed as "training" with their progress, and appear when done (the server rescans the store every
# RESCAN_S seconds). Stopping the server stops that process; the next `make run` trains what is missing.
RESCAN_S ?= 5
run: install
	$(BIN)/fastai-serve train demo --store $(STORE) --only existing
	@mkdir -p $(STORE); \
	$(BIN)/fastai-serve train demo --store $(STORE) --only new > $(STORE)/.training.log 2>&1 & trainer=$$!; \
	trap 'kill $$trainer 2>/dev/null' EXIT INT TERM; \
	FASTAI_SERVE_RESCAN_S=$(RESCAN_S) FASTAI_SERVE_MODEL_STORE=$(STORE) $(BIN)/fastai-serve serve

test: models browser
	$(BIN)/python -m pytest -q -m "not slow"

# The slow suite also reads the payload log with Spark: pyspark (the `spark` extra) only here.
$(VENV)/.spark: pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,spark]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import pyspark"
	touch $@

test-slow: install $(VENV)/.spark
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests
	$(BIN)/mypy

format: install
	$(BIN)/ruff format service tests
	$(BIN)/ruff check --fix service tests

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf .cache .pytest_cache .mypy_cache .ruff_cache

# The gRPC front door's Python modules from its .proto (committed; run after editing the .proto). grpcio-tools
# goes into a throwaway folder, never the venv. The generated modules register their messages in a private
# descriptor pool instead of protobuf's default one: `inference.*` is also what tritonclient.grpc registers,
# and one pool refuses the same names twice (a process holding both, like the tests, would fail to import).
PROTO_DIR := service/api/v2/proto
GRPC_TOOLS ?= .cache/grpcio-tools
GRPC_TOOLS_VERSION ?= 1.85.1
proto: install
	test -d $(GRPC_TOOLS)/grpc_tools || $(BIN)/pip install --quiet --target $(GRPC_TOOLS) grpcio-tools==$(GRPC_TOOLS_VERSION)
	PYTHONPATH=$(GRPC_TOOLS) $(BIN)/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. \
		--grpc_python_out=. $(PROTO_DIR)/grpc_predict_v2.proto
	sed -i 's/_descriptor_pool.Default()/_descriptor_pool.DescriptorPool()/' $(PROTO_DIR)/grpc_predict_v2_pb2.py

# The peer a fastai user would otherwise pick: BentoML 1.4 with adaptive batching around fastai's batch path
# (bench/peers/bentoml_service.py), in its own venv since BentoML pins its own starlette and pydantic ranges;
# it gets this project's torch and torchvision versions, so both servers run the same kernels (pyarrow: the
# learners' pickled pandas objects need it). `make bench-peer` runs only the side-by-side rows.
PEER_VENV := .cache/venv-bentoml
PEER_STAMP := $(PEER_VENV)/.installed
PEER_TORCH = $(shell $(BIN)/python -c "from importlib.metadata import version; \
	print(*(f'{p}=={version(p).split(chr(43))[0]}' for p in ('torch', 'torchvision')))")

# In-process and HTTP benchmark against fastai's own paths, the naive server and the compute floor
# (the bench/ package; the models it times are its cases, bench/cases.py: the demo models, and a tabular
# regression and a vision multi-label model that it trains once into .cache/bench/store; the text,
# collab and segmentation demo models, or stand-ins it trains there while they are missing; a 10,000-item
# recommender for the recommend latency). Results go to
# .cache/bench/results.json (ignored); `make bench-record` keeps the last run in bench/results.json, the
# tracked reference, on purpose only. `make bench PEER=1` adds the BentoML rows. A smoke run that only
# checks it runs: `$(BIN)/python -m bench --quick [--skip-http]` (every timing a fraction of a second,
# written to .cache/bench/results-quick.json, never recorded).
bench: models wrk $(if $(PEER),$(PEER_STAMP))
	$(BIN)/python -m bench --store $(STORE) $(if $(PEER),--peer)

wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1 \
		|| echo "wrk is not installable here: the benchmark uses its httpx load generator"

$(PEER_STAMP): | $(STAMP)
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install --quiet 'bentoml>=1.4,<1.5' 'fastai>=2.8,<2.9' pyarrow $(PEER_TORCH) 2>&1 \
		| grep -v "is ignored" || true
	$(PEER_VENV)/bin/python -c "import bentoml, fastai, pyarrow, torch"
	touch $(PEER_STAMP)

bench-peer: models wrk $(PEER_STAMP)
	$(BIN)/python -m bench --store $(STORE) --peer-only

# The same one-item requests through Ray Serve (1 and 2 replicas per model) and the plain server, in one run.
# The cost of API keys and a rate limit on one-row requests, beside the same server without (added to the
# last results).
bench-access: models wrk
	$(BIN)/python -m bench --store $(STORE) --access-only

bench-ray: models wrk
	$(BIN)/python -m bench.ray_bench --store $(STORE)

# Explanations alone (issue 24): occlusion faithfulness on the demo image model, completeness on rows and
# texts, and predict p50 beside a steady explain load (`python -m bench` runs it too).
bench-explain: models
	$(BIN)/python -m bench.explain_bench --store $(STORE)

# The payload log's cost (issue 25): tabular and vision at 32 clients, LOG_DIR unset vs every prediction logged.
bench-monitor: models wrk
	$(BIN)/python -m bench.monitor_bench --store $(STORE)

# CUDA, proven (issue 26): every demo model built and a tiny learner of every kind and task, CPU against
# cuda:0 per runtime, the server on cuda, images/s per batch and precision; one JSON under $$OUT (else
# .cache/gpu-check). Without a CUDA device it runs its CPU half and says so. docs/GPU_CHECK.md.
gpu-check: install
	$(BIN)/python -m bench.gpu_check --store $(STORE)

# What the check needs on this workplace's device machine, in three parts (bench/gpu_device.sh a|b|c).
gpu-carry: models
	$(BIN)/python -m bench.gpu_carry --store $(STORE)

bench-record:
	@test -f .cache/bench/results.json || (echo "no run to record: make bench first" && false)
	cp .cache/bench/results.json bench/results.json
	@echo "bench/results.json updated from the last run; commit it with the numbers in the message"

# Build the image and run it, then the compose file, on docker or podman; checks both demo models.
.PHONY: docker-smoke docker-smoke-ray
docker-smoke:
	bash docker/smoke-test.sh

# The same for the compose ray profile: the EXTRAS=ray image, a Ray head and a worker, predictions through Ray Serve.
docker-smoke-ray:
	bash docker/smoke-test.sh --ray
