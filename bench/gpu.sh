#!/usr/bin/env bash
# The GPU check of issue 5, one command on a CUDA machine with the project installed (scripts/setup.sh):
#
#     bash bench/gpu.sh            # about 3-5 minutes on an H200; prints the throughput table last
#
# Seeds the full-size F5TTS_v1_Base architecture with random weights (offline, no hub) and its fp16
# copy onto a scratch volume, then runs the cold-start and throughput benchmarks on the GPU:
# 16 short jobs at 32 steps through F5-TTS's own per-job loop and through the worker (cross-job
# batching on). Expected: the worker at least 3x F5-TTS's throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
VOLUME=${VOLUME:-/tmp/f5-batch-gpu-volume}
MODEL=F5TTS_v1_Base-random
export PYTHONUNBUFFERED=1
mkdir -p "$VOLUME"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m processor seed --volume "$VOLUME" --random F5TTS_v1_Base --fp16-copy  # f5-batch seed
"$PY" -m bench.cold_start --volume "$VOLUME" --device cuda --repeat 2 || echo "cold start benchmark failed" >&2
"$PY" -m bench.throughput --volume "$VOLUME" --model "$MODEL" --device cuda --jobs 16 --steps 32 --rounds 2
