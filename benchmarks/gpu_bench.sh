#!/usr/bin/env bash
# Run `vlm bench` on the lent GPU machine (vLLM 0.26, see ../shared/gpu/README.md) against
# real-size models with dummy weights, and keep the report under $OUT.
#   source /tmp/vlm-install.sh && bash benchmarks/gpu_bench.sh NAME [vlm bench arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export VLM_BENCH_MODELS_DIR=${VLM_BENCH_MODELS_DIR:-/tmp/bench-models} VLM_LOG_DIR=${OUT:-/tmp}/logs
[ -d "$VLM_BENCH_MODELS_DIR/qwen2_5_vl_7b" ] || python3 benchmarks/dummy_models.py "$VLM_BENCH_MODELS_DIR" >/dev/null 2>&1
name=$1; shift
mkdir -p "${OUT:-/tmp}"
python3 -m vlmcli bench "$@" --output "${OUT:-/tmp}/$name.json" | tee "${OUT:-/tmp}/$name.txt"
