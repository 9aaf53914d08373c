#!/usr/bin/env bash
# make demo: the whole gldv2 flow on the mini dataset (deployment gldv2-mini's parameters),
# with Prefect's embedded server: the flow makes the mini dataset, serves it on 127.0.0.1,
# downloads it, builds the TFRecords, trains DELG briefly, exports, matches a pair and
# evaluates retrieval. Then the same run again, which finds every step done.
set -euo pipefail
delf=$(realpath "${1:-$(command -v delf)}")
demo_dir=${2:-.demo}
output_root="$demo_dir/gldv2_mini"

rm -rf "$demo_dir"
mkdir -p "$demo_dir"
started=$(date +%s)
"$delf" gldv2 --deployment=gldv2-mini --param "output_root=$output_root"
first=$(( $(date +%s) - started ))

echo "the same run again: every step is Cached (log in $demo_dir/rerun.log)"
started=$(date +%s)
"$delf" gldv2 --deployment=gldv2-mini --param "output_root=$output_root" >"$demo_dir/rerun.log" 2>&1
again=$(( $(date +%s) - started ))

echo "demo: metrics of the mini retrieval benchmark ($output_root/results/gldv2/metrics.txt):"
cat "$output_root/results/gldv2/metrics.txt"
echo "demo: the whole flow took ${first} s; the cached rerun ${again} s"
