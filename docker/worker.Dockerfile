# syntax=docker/dockerfile:1
# The image a Prefect docker or kubernetes work pool runs the `gldv2` flow in
# (deployment entrypoint flows/gldv2.py:gldv2, resolved from WORKDIR /opt/delf-pipeline).
# Build from the repository root (or `make docker`):
#   docker build -f docker/worker.Dockerfile -t delf-pipeline/worker:TAG .
#   docker build -f docker/worker.Dockerfile --build-arg GPU=1 -t delf-pipeline/worker:TAG-gpu .
# No CMD that starts anything: the Prefect worker sets the container's command
# (`prefect flow-run execute`). See docker/README.md.

# Debian 12 (bookworm), like the Beam SDK image of docker/beam.Dockerfile. To pin by
# digest: docker buildx imagetools inspect python:3.11.13-slim-bookworm, then build with
# --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest>.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: the locked dependencies and the package, in a venv at /opt/venv ----
FROM ${PYTHON_IMAGE} AS builder
# The uv of the Makefile's `setup`.
ARG UV_VERSION=0.13.8
# GPU=1 adds the `gpu` extra of pyproject.toml (tensorflow[and-cuda]: 12 nvidia-*-cu12
# CUDA/cuDNN wheels, some GB). The lock still pins every other package, but not those:
# tensorflow gives them ranges only (cuDNN >=9.3,<10, ...), so a GPU build takes the
# newest in range on the day it is built.
ARG GPU=0
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "uv==${UV_VERSION}" \
 && uv venv /opt/venv --python /usr/local/bin/python3.11
WORKDIR /src
# The lock first, alone, so that code changes reuse this (large) layer. The lock is
# uv-compiled for linux x86_64 / py3.11 with exact pins and no hashes, so it is installed
# as is; `pip install --require-hashes` does not apply.
COPY requirements/lock.txt requirements/lock.txt
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /opt/venv/bin/python -r requirements/lock.txt
COPY pyproject.toml README.md ./
COPY delf_core delf_core
COPY beam_jobs beam_jobs
COPY flows flows
COPY delf_cli delf_cli
# The package itself, built with the lock's setuptools and wheel (--build-constraints).
RUN --mount=type=cache,target=/root/.cache/uv \
    if [ "${GPU}" = "1" ]; then \
      uv pip install --python /opt/venv/bin/python --build-constraints requirements/lock.txt \
        -c requirements/lock.txt ".[gpu]"; \
    else \
      uv pip install --python /opt/venv/bin/python --build-constraints requirements/lock.txt \
        --no-deps .; \
    fi

# ---- runtime: the venv, the source tree as the flow's working directory, non-root ----
FROM ${PYTHON_IMAGE}
ARG UID=10001
ARG GID=10001
LABEL org.opencontainers.image.title="delf-pipeline worker" \
      org.opencontainers.image.description="Prefect work-pool image for the gldv2 flow" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID so that Kubernetes `runAsNonRoot` can check it.
RUN groupadd --gid "${GID}" delf \
 && useradd --uid "${UID}" --gid delf --create-home --home-dir /home/delf \
      --shell /bin/bash delf \
 && install -d -o delf -g delf /home/delf/.prefect /opt/delf-pipeline
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/delf \
    PREFECT_HOME=/home/delf/.prefect \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DO_NOT_TRACK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
COPY --from=builder /opt/venv /opt/venv
WORKDIR /opt/delf-pipeline
# The code is root-owned and read-only; the directory itself belongs to `delf`, so the
# flow's relative output paths (output_root: gldv2, ...) can be created. In a container
# they vanish with it: give gs:// paths or mount a volume there.
COPY pyproject.toml README.md ./
COPY delf_core delf_core
COPY beam_jobs beam_jobs
COPY flows flows
COPY delf_cli delf_cli
COPY deployments deployments
USER ${UID}:${GID}
# Fails the build, not the first flow run, when the install is broken (-P: import the
# installed package, not the source tree beside it).
RUN python -P -c "import tensorflow, apache_beam, prefect, flows.gldv2" \
 && delf --help > /dev/null
CMD ["delf", "--help"]
