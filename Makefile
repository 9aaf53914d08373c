# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DELF := $(VENV)/bin/delf
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
DEMO_DIR ?= .demo
# Tests and demos run offline: no telemetry, no analytics calls.
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup test test-fast demo demo-seed ui deploy lint format bench lock protos wheel clean docker

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --python $(PY) -r requirements/lock.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

# Test processes (pytest-xdist); each starts its own Prefect test server and TensorFlow.
# A test file stays on one process, so its fixtures are built once. Files are handed out
# in tests/conftest.py's order (the long ones first), not xdist's by test count.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST)

# The inner loop: everything but the tests marked integration or e2e (CI runs them all).
test-fast: $(STAMP)
	$(PYTEST) -m "not integration and not e2e"

# The whole gldv2 flow on the mini dataset (deployment gldv2-mini's parameters), on
# Prefect's embedded server unless PREFECT_API_URL names one (see `make ui`).
demo: $(STAMP)
	bash .ci/demo.sh "$(DELF)" "$(DEMO_DIR)"

# The seed README's and the DELG instructions' commands, one by one, on the mini dataset.
demo-seed: $(STAMP)
	bash .ci/demo_seed.sh "$(DELF)" "$(DEMO_DIR)-seed"

# The Prefect server and UI on this machine. Runs started with PREFECT_API_URL set to
# it show there: `PREFECT_API_URL=http://127.0.0.1:4200/api make demo` in another shell.
UI_PORT ?= 4200
ui: $(STAMP)
	@echo "Prefect UI: http://127.0.0.1:$(UI_PORT)  (stop with Ctrl-C). In another shell:"
	@echo "  export PREFECT_API_URL=http://127.0.0.1:$(UI_PORT)/api"
	@echo "  make demo                      # the flow here, watched in the UI; or"
	@echo "  make deploy && .venv/bin/prefect worker start --pool gldv2-process"
	@echo "  .venv/bin/prefect deployment run gldv2/gldv2-mini --watch   # in a third shell"
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port $(UI_PORT)

# Registers deployments/prefect.yaml (gldv2-full, gldv2-mini) with the server of
# PREFECT_API_URL, on the process work pool gldv2-process; sets the task concurrency
# limit of tag gpu to GPU_LIMIT; creates or updates the automation that resumes crashed
# runs (deployments/automations.yaml). Safe to repeat.
GPU_LIMIT ?= 1
deploy: $(STAMP)
	bash deployments/deploy.sh $(VENV)/bin $(GPU_LIMIT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/bench_download.py
	$(PY) benchmarks/bench_flow_download.py --dask
	$(PY) benchmarks/bench_build_image_dataset.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_match_images.py
	$(PY) benchmarks/bench_extract_features.py
	$(PY) benchmarks/bench_perform_retrieval.py
	$(PY) benchmarks/bench_search.py --sizes 1000x100000,2000x400000
	$(PY) benchmarks/bench_mini_retrieval.py
	$(PY) benchmarks/bench_flow_start.py
	$(PY) benchmarks/bench_scale.py

# Re-resolve the pinned versions after editing the dependencies in pyproject.toml.
lock: $(STAMP)
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header -o requirements/lock.txt

# Regenerates the committed delf_core/features/protos/*_pb2.py from the .proto files
# beside them. Needs protoc, taken from grpcio-tools (pinned below) in a throwaway venv
# under build/. Its protoc must not be newer than the protobuf runtime pinned in
# requirements/lock.txt (grpcio-tools 1.81.1 bundles protoc 33.5, gencode 6.33.5), or
# the generated modules refuse to import. Not part of setup or test.
PROTOC_VENV := build/protoc-venv
GRPCIO_TOOLS ?= grpcio-tools==1.81.1
protos:
	$(PYTHON) -m venv $(PROTOC_VENV)
	$(PROTOC_VENV)/bin/pip install --quiet --disable-pip-version-check "$(GRPCIO_TOOLS)"
	$(PROTOC_VENV)/bin/python -m grpc_tools.protoc -I. --python_out=. \
	  delf_core/features/protos/*.proto

# The package as a wheel in dist/, for Beam workers (--extra_package).
wheel: $(STAMP)
	$(UV) build --wheel -o dist

# The two images of docker/ (see docker/README.md): the Prefect work-pool image of the
# gldv2 flow and the Dataflow SDK image of the Beam jobs. Needs a Docker engine, not
# .venv. Push to Artifact Registry with IMAGE_REPO=REGION-docker.pkg.dev/PROJECT/REPO;
# GPU=1 adds tensorflow[and-cuda] to the worker image (tagged TAG-gpu).
DOCKER ?= docker
IMAGE_REPO ?= delf-pipeline
IMAGE_TAG ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
GPU ?= 0
WORKER_TAG = $(IMAGE_TAG)$(if $(filter 1,$(GPU)),-gpu)
docker:
	@command -v $(DOCKER) >/dev/null 2>&1 || { \
	  echo "make docker: '$(DOCKER)' not found. Install Docker (https://docs.docker.com/engine/install/)" \
	    "or set DOCKER to a compatible CLI (e.g. DOCKER=podman)." >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { \
	  echo "make docker: '$(DOCKER)' is installed but reaches no engine ('$(DOCKER) info' failed)." \
	    "Start the Docker daemon or set DOCKER_HOST." >&2; exit 1; }
	$(DOCKER) build -f docker/worker.Dockerfile --build-arg GPU=$(GPU) \
	  -t $(IMAGE_REPO)/worker:$(WORKER_TAG) .
	$(DOCKER) build -f docker/beam.Dockerfile -t $(IMAGE_REPO)/beam:$(IMAGE_TAG) .

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_DIR)-seed dist .pytest_cache .ruff_cache
