"""Does switching on deterministic kernels change measured GPU latency?

The search switches on deterministic CUDA kernels (moohead.config.deterministic_cuda) so
that the same seed gives the same front. Latency is measured in the same process. This
times the all-MiniLM-L6-v2 encoder (PyTorch eager, CUDA events, median of 50 after 10
warm-ups) at batch 1 and 32, length 16 and 128, in a fresh process for each setting:
none, each part of deterministic_cuda alone, and all of it. Writes
OUT/gpu_latency_modes.json.

    python benchmarks/gpu_latency_modes.py --model DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModel

from moohead.config import deterministic_cuda
from moohead.files import atomic_write_json
from moohead.measure import measure_latency


def times(model: torch.nn.Module) -> dict[str, float]:
    out = {}
    for batch in (1, 32):
        for length in (16, 128):
            ids = torch.randint(1000, 2000, (batch, length), device="cuda")
            mask = torch.ones_like(ids)
            ms = measure_latency(model, (ids, mask), warmup=10, runs=50)
            out[f"batch{batch}_len{length}_ms"] = round(ms, 3)
    return out


MODES = ("none", "cublas_workspace", "deterministic_algorithms", "deterministic_cuda")


def one(model_dir: str, mode: str) -> dict[str, float]:
    if mode == "cublas_workspace":
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    elif mode == "deterministic_algorithms":
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif mode == "deterministic_cuda":
        deterministic_cuda()
    model = AutoModel.from_pretrained(model_dir).cuda().eval()
    return times(model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mode", choices=MODES, help="(internal) time one setting, print JSON")
    args = p.parse_args()
    if args.mode:
        print(json.dumps(one(args.model, args.mode)))
        return
    result: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--model", args.model, "--out", str(args.out)]
        done = subprocess.run([*cmd, "--mode", mode], env=env, capture_output=True, text=True)
        result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "gpu_latency_modes.json", result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
