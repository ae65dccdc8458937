#!/usr/bin/env bash
# GPU check, under 8 minutes on one H100: the CUDA tests (tests/test_gpu.py), then a frozen
# and a fine-tune-fidelity search on sst2 with CUDA-event latency, summarised in
# OUT_DIR/gpu_check.json.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# On a machine with moohead installed it needs nothing else ($MOOHEAD_GPU_MODEL and $GLUE_DIR
# choose encoder and data). On a machine without network (the lent GPU here) carry .whl/
# and .gpu/ from benchmarks/gpu_pack.sh (benchmarks/gpu_env.sh puts them to use).
set -euo pipefail
OUT=${1:-${OUT:-runs/gpu-check}}
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
mkdir -p "$OUT"
$PY -P -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
$PY benchmarks/gpu_check.py --out "$OUT" --data-dir "$DATA" ${MODEL:+--model "$MODEL"}
