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

.PHONY: setup test demo lint format bench lock protos wheel clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --python $(PY) -r requirements/lock.txt
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	bash .ci/demo.sh "$(DELF)" "$(DEMO_DIR)"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) benchmarks/bench_download.py
	$(PY) benchmarks/bench_build_image_dataset.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_match_images.py
	$(PY) benchmarks/bench_extract_features.py
	$(PY) benchmarks/bench_perform_retrieval.py
	$(PY) benchmarks/bench_mini_retrieval.py

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

# The package as a wheel in dist/, for Beam workers (--extra_package) and docker/.
wheel: $(STAMP)
	$(UV) build --wheel -o dist

clean:
	rm -rf $(VENV) $(DEMO_DIR) dist .pytest_cache .ruff_cache
