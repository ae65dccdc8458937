#!/usr/bin/env bash
# GPU check, under 8 minutes on one H100: the CUDA tests (tests/test_gpu.py), then a frozen
# and a fine-tune-fidelity search on sst2 with CUDA-event latency, summarised in
# OUT_DIR/gpu_check.json.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# On a machine with moohead installed it needs nothing else ($MOOHEAD_GPU_MODEL and $GLUE_DIR
# choose encoder and data). On a machine without network (the lent GPU here) carry:
#   .whl/   wheels of moohead and what the machine lacks (pymoo, fvcore and their deps),
#   .gpu/   minilm16/ (all-MiniLM-L6-v2 with fp16 weights: the fp32 file exceeds the
#           transfer limit; unpacked back to fp32 here) and glue/sst2/.
set -euo pipefail
OUT=${1:-${OUT:-runs/gpu-check}}
PY=${PYTHON:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
MODEL=${MOOHEAD_GPU_MODEL:-}
DATA=${GLUE_DIR:-../shared/glue}
if [ -f .gpu/minilm16/model.safetensors ]; then
  $PY benchmarks/gpu_check.py --unpack-fp16 .gpu/minilm16 /tmp/minilm
  MODEL=/tmp/minilm
  DATA=.gpu/glue
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
mkdir -p "$OUT"
$PY -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
$PY benchmarks/gpu_check.py --out "$OUT" --data-dir "$DATA" ${MODEL:+--model "$MODEL"}
