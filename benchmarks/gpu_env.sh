# Sourced by the GPU check scripts: makes what benchmarks/gpu_pack.sh carried usable.
#   .whl/             installed into /tmp/site unless pymoo, fvcore and moohead import already (from outside the checkout)
#   /tmp/ortgpu/part* onnxruntime-gpu, collected there by earlier calls, unpacked to /tmp/ortsite
#   .gpu/minilm16/    the encoder's fp16 weights, unpacked to fp32 in /tmp/minilm
# Sets PY, MODEL (empty: the packaged encoder, or $MOOHEAD_GPU_MODEL) and DATA (GLUE folder).
PY=${PYTHON:-python3}
if [ -d .whl ] && ! $PY -P -c "import pymoo, fvcore, moohead.export" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
if ls /tmp/ortgpu/part* >/dev/null 2>&1; then
  mkdir -p /tmp/ortsite
  cat /tmp/ortgpu/part* | xz -dc | tar -x -C /tmp/ortsite # xz checks its own CRC
  export PYTHONPATH=/tmp/ortsite${PYTHONPATH:+:$PYTHONPATH}
fi
MODEL=${MOOHEAD_GPU_MODEL:-}
DATA=${GLUE_DIR:-../shared/glue}
if [ -f .gpu/minilm16/model.safetensors ]; then
  $PY benchmarks/gpu_check.py --unpack-fp16 .gpu/minilm16 /tmp/minilm
  MODEL=/tmp/minilm
  DATA=.gpu/glue
fi
