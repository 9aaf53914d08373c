# syntax=docker/dockerfile:1
# Worker image for Beam jobs on Dataflow: `--sdk_container_image=<this image>`.
# Build from the repository root (or `make docker`):
#   docker build -f docker/beam.Dockerfile -t REGION-docker.pkg.dev/PROJECT/REPO/beam:TAG .
# The base image keeps /opt/apache/beam/boot as its entrypoint, as Dataflow requires, and
# its Beam version must equal the launcher's (2.77.0, the version in requirements/lock.txt).
# Same install as docker/worker.Dockerfile: the lock as is, then the package with
# --no-deps, built from the source tree (no `make wheel` needed).
FROM apache/beam_python3.11_sdk:2.77.0
# The uv of the Makefile's `setup`.
ARG UV_VERSION=0.13.8
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1
WORKDIR /tmp/delf-pipeline
COPY requirements/lock.txt requirements/lock.txt
# Into the base image's own interpreter (the one the boot entrypoint runs), whose
# preinstalled packages the lock's pins replace where they differ.
RUN --mount=type=cache,target=/root/.cache/uv \
    pip install "uv==${UV_VERSION}" \
 && uv pip install --python "$(command -v python)" -r requirements/lock.txt
COPY pyproject.toml README.md ./
COPY delf_core delf_core
COPY beam_jobs beam_jobs
COPY flows flows
COPY delf_cli delf_cli
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python "$(command -v python)" --build-constraints requirements/lock.txt \
      --no-deps . \
 && pip uninstall --yes uv \
 && rm -rf /tmp/delf-pipeline
WORKDIR /
# Fails the build, not the Dataflow job, when the install is broken or Beam moved.
RUN python -c "import apache_beam, tensorflow, beam_jobs.build_image_dataset, beam_jobs.extract_features; assert apache_beam.__version__ == '2.77.0', apache_beam.__version__"
ENTRYPOINT ["/opt/apache/beam/boot"]
