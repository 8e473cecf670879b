#!/usr/bin/env bash
# The device check for a session that is lent a GPU: run from the repository root on that machine.
# Uses the CUDA torch already there; installs the package without touching torch. Results land in $OUT.
set -euo pipefail
OUT="${OUT:-benchmarks/results}"
python -m pip install --quiet --no-deps -e . && python -m pip install --quiet accelerate safetensors rich
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python benchmarks/cuda_stream_check.py
python benchmarks/generator.py --seconds 1 --output "$OUT/generator-gpu.json"
cp benchmarks/results/cuda-stream-check.json "$OUT/" 2>/dev/null || true
