#!/usr/bin/env bash
# The paper preset on Beauty, several seeds at once on one GPU (the model is small, so parallel runs
# share the card well). Expects run directories prepared on any machine with
#   sidrec tokenize preset=paper seed=S run_dir=$BASE/seed-S        (embeddings + RK-Means SIDs)
# and writes $BASE/summary.json (mean ± std) plus each seed's metrics.json.
# Usage: benchmarks/paper_beauty_gpu.sh BASE SEEDS MAX_MINUTES [extra overrides...]
set -uo pipefail
base=${1:-runs/gpu}; seeds=${2:-0,1,2}; minutes=${3:-6.5}; shift 3 || true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
for d in "$base"/seed-*; do [ -f "$d/embeddings.npy" ] || cp "$base/seed-0/embeddings.npy" "$d/"; done
start=$(date +%s)
python -m sidrec.cli run preset=paper seeds="$seeds" parallel=$(( $(tr -cd , <<<"$seeds" | wc -c) + 1 )) \
  run_dir="$base" train.max_minutes="$minutes" train.loggers=csv decode.batch_size=1024 "$@"
echo "wall_seconds=$(( $(date +%s) - start ))"
