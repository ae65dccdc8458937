#!/usr/bin/env bash
# GPU export check, about 5 minutes on one H100: ONNX Runtime's CUDA execution provider
# on real exports. tests/test_ort_cuda.py (fp16 gate on CUDA, IO binding, bench and serving
# on CUDA), then a small real sst2 search with all-MiniLM-L6-v2, `moohead export --knee
# --optimize --fp16`, `moohead bench --device cuda` (ORT with IO binding against PyTorch
# with CUDA events) and a torch-free `predict` on CUDA. Small results go to OUT_DIR:
# gpu_export.json (summary), bench_cuda.json, ort_cuda_tests.log, export.log.
#
#   bash benchmarks/gpu_export_check.sh [OUT_DIR]
#
# DEVICE=cpu MAX_TRAIN=500 runs the same steps on a CPU (a dry run of the script itself).
#
# Needs onnxruntime-gpu. On the lent GPU machine (see benchmarks/gpu_pack.sh) the parts of
# .ortgpu/ were copied to /tmp/ortgpu by earlier calls, and .whl/ and .gpu/ are carried.
set -euo pipefail
OUT=${1:-${OUT:-runs/gpu-export-check}}
DEVICE=${DEVICE:-cuda}
WORK=$(mktemp -d)
source benchmarks/gpu_env.sh
mkdir -p "$OUT"
$PY -P -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())'
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

$PY -P -m pytest -q -p no:cacheprovider -rs tests/test_ort_cuda.py 2>&1 | tee "$OUT/ort_cuda_tests.log"

moohead() { $PY -P -c 'from moohead.cli.main import main; main()' "$@"; }
moohead evolve --task sst2 --data-dir "$DATA" ${MODEL:+--model "$MODEL"} --out "$WORK/run" \
  --population 6 --generations 2 --max-train "${MAX_TRAIN:-4000}" --device "$DEVICE" \
  --cache-dir "$WORK/cache"
moohead export "$WORK/run" --knee --optimize --fp16 --out "$WORK/model" 2>&1 | tee "$OUT/export.log"
moohead bench "$WORK/model" --device "$DEVICE" --batch-sizes 1,8,32 --seq-lens 16,64,128 \
  --json "$OUT/bench_cuda.json"
# The deployment path: ORT, tokenizers and numpy only, on the GPU.
$PY -P - "$WORK/model" "$OUT" "$DEVICE" <<'EOF'
import json, sys
from pathlib import Path
from moohead.export.runtime import OnnxClassifier

model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
texts = ["a gripping, funny and moving film", "a dull, tired mess", "it is a film"]
gpu = OnnxClassifier.load(model_dir, device=sys.argv[3])
cpu = OnnxClassifier.load(model_dir, device="cpu", variant="fp32")
a, b = gpu.predict(texts), cpu.predict(texts)
doc = json.loads((model_dir / "moohead.json").read_text())
bench = json.loads((out / "bench_cuda.json").read_text())
summary = {
    "torch_imported_by_runtime": "torch" in sys.modules,
    "providers": gpu.session.get_providers(),
    "variant_on_gpu": gpu.variant,
    "predict_gpu": [[p.label, round(p.score, 4)] for p in a],
    "predict_cpu_fp32": [[p.label, round(p.score, 4)] for p in b],
    "labels_agree": [p.label for p in a] == [p.label for p in b],
    "head": doc.get("summary"),
    "parity": doc.get("parity"),
    "bench": {k: bench[k] for k in ("device", "providers", "notes", "rows")},
}
(out / "gpu_export.json").write_text(json.dumps(summary, indent=1))
print(json.dumps({k: v for k, v in summary.items() if k != "bench"}, indent=1))
EOF
