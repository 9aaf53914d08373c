#!/usr/bin/env bash
# `make deploy`: the work pool, the deployments, the gpu task limit and the automations,
# on the server of PREFECT_API_URL. Each step may be repeated: it updates what is there.
# Usage: deployments/deploy.sh BIN_DIR [GPU_LIMIT]   (BIN_DIR holds prefect and python)
set -euo pipefail
bin=$1
gpu_limit=${2:-1}
"$bin/prefect" work-pool create gldv2-process --type process --overwrite
"$bin/prefect" --no-prompt deploy --all --prefect-file deployments/prefect.yaml
# Task runs tagged gpu (train, feature extraction) run at most this many at once.
"$bin/prefect" concurrency-limit create gpu "$gpu_limit"
"$bin/python" deployments/automations.py deployments/automations.yaml
