#!/usr/bin/env bash
# Runs a command while CPU-bound busy loops load every core, to show that it passes on a
# busy machine; the loops stop when it ends (or is interrupted). Not part of CI.
#
#   bash .ci/busy.sh [-n LOOPS] [-r TIMES] -- COMMAND...
#
# LOOPS defaults to the number of cores; TIMES (default 1) runs COMMAND that many times
# in a row and stops at the first failure. Each run's exit status and time are printed.
set -euo pipefail
loops=$(nproc)
times=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n) loops=$2; shift 2 ;;
    -r) times=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: bash .ci/busy.sh [-n LOOPS] [-r TIMES] -- COMMAND..." >&2; exit 2; }

pids=()
stop_loops() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop_loops EXIT
for _ in $(seq "$loops"); do
  ( while :; do :; done ) &
  pids+=($!)
done
echo "busy: $loops busy loops running (pids ${pids[*]})"

for run in $(seq "$times"); do
  started=$(date +%s)
  status=0
  "$@" || status=$?
  echo "busy: run $run/$times of '$*': exit $status in $(( $(date +%s) - started )) s" \
    "with $loops busy loops"
  [ "$status" -eq 0 ] || exit "$status"
done
