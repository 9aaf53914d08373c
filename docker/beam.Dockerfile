# Worker image for Beam jobs on Dataflow: `--sdk_container_image=<this image>`.
# Build from the repository root after `make wheel`:
#   docker build -f docker/beam.Dockerfile -t REGION-docker.pkg.dev/PROJECT/REPO/delf-beam .
# The base image keeps /opt/apache/beam/boot as its entrypoint, as Dataflow requires, and
# its Beam version must equal the launcher's (2.77.0).
FROM apache/beam_python3.11_sdk:2.77.0
COPY requirements/lock.txt /tmp/lock.txt
COPY dist/ /tmp/dist/
RUN pip install --no-cache-dir -r /tmp/lock.txt \
 && pip install --no-cache-dir --no-deps /tmp/dist/delf_pipeline-*.whl \
 && rm -rf /tmp/dist /tmp/lock.txt
