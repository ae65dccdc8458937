#!/usr/bin/env bash
# Pack what the GPU checks need on a lent GPU machine that has no network, CPU-only
# onnxruntime, Python 3.12 with CUDA 13 torch, and takes at most 64 MiB per call:
#
#   .whl/        wheels of moohead (built from this checkout) and of what that image lacks
#   .gpu/        minilm16/ (all-MiniLM-L6-v2 with fp16 weights; unpacked to fp32 there)
#                and glue/sst2/
#   .ortgpu/N/   onnxruntime-gpu (its CUDA 13 build) as one xz tar cut into parts of
#                60 MiB: 350 MB unpacked, too big for one call, so each part travels alone
#
#   bash benchmarks/gpu_pack.sh          # run here, in the repository root
#
# benchmarks/README.md ("GPU checks") gives the calls that carry them and run the checks.
set -euo pipefail
PY=${PYTHON:-.venv/bin/python}
ORT_VERSION=${ORT_VERSION:-1.31.1}
fetch() {
  local dest=$1
  shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dest" "$@"
}
exclude=$(git rev-parse --git-dir)/info/exclude
mkdir -p "$(dirname "$exclude")"
for d in .whl .gpu .ortgpu; do
  grep -qx "/$d/" "$exclude" || echo "/$d/" >>"$exclude"
done

# pymoo and fvcore with what they need beyond the image's packages (pinned: one version each).
mkdir -p .whl
rm -f .whl/moohead-*.whl
fetch .whl pymoo==0.6.2 alive-progress==3.3.0 about-time==4.2.1 graphemeu==0.7.2 \
  autograd==1.9.1 cma==4.5.0 deprecated==3.0.1 moocore==0.3.2 cffi==2.1.1 \
  platformdirs==4.14.8 pycparser==3.12 termcolor==3.3.0 yacs==0.1.8
# Pure-Python packages published as source only: built into wheels here.
"$PY" -m pip wheel -q --no-deps fvcore==0.1.5.post20221221 iopath==0.1.9 -w .whl
"$PY" -m pip wheel -q --no-deps --no-build-isolation . -w .whl

mkdir -p .gpu/glue
encoder=$("$PY" -c 'from moohead.encoder import packaged_encoder_path as p; print(p())')
"$PY" benchmarks/gpu_check.py --pack-fp16 "$encoder" .gpu/minilm16
cp -r "${GLUE_DIR:-../shared/glue}/sst2" .gpu/glue/

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fetch "$tmp" "onnxruntime-gpu==$ORT_VERSION"
unzip -q "$tmp"/onnxruntime_gpu-*.whl -d "$tmp/site"
rm -rf .ortgpu/*
tar -C "$tmp/site" -cf - . | xz -T0 -6 | split -b 60M -d -a 1 - "$tmp/part"
for f in "$tmp"/part*; do
  n=${f##*part}
  mkdir -p ".ortgpu/$n"
  mv "$f" ".ortgpu/$n/"
done
du -sh .whl .gpu .ortgpu/*
