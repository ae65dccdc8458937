"""GPU check: a frozen and a fine-tune-fidelity search on sst2 with CUDA-event latency.

Run through ``benchmarks/gpu_check.sh`` on a machine with a CUDA GPU. Writes
``OUT/gpu_check.json`` after each part, so a run cut short still reports what it did.

    python benchmarks/gpu_check.py --out runs/gpu-check [--model DIR] [--data-dir DIR]
    python benchmarks/gpu_check.py --pack-fp16 SRC DST     # model folder -> fp16 copy to carry
    python benchmarks/gpu_check.py --unpack-fp16 SRC DST   # carried fp16 weights -> fp32 folder
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from moohead.config import SearchConfig
from moohead.files import atomic_write_json, package_versions
from moohead.measure import measure_latency
from moohead.rundir import RunDir
from moohead.runhead import load_run_head
from moohead.search import run_search


def convert_weights(src: Path, dst: Path, dtype: torch.dtype) -> None:
    """A copy of a model folder with its floating-point weights in ``dtype``: fp16 halves
    the bytes to fit a transfer, and fp32 turns a carried copy back."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.safetensors"))
    state = load_file(src / "model.safetensors")
    save_file(
        {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()},
        dst / "model.safetensors",
        metadata={"format": "pt"},
    )


def summary(doc: dict[str, Any], out: Path, seconds: float) -> dict[str, Any]:
    records = [json.loads(x) for x in (out / "archive.jsonl").read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok"]
    train = sum(r["train_seconds"] for r in ok)
    config = json.loads((out / "config.json").read_text())
    n_train = config["examples"]["search-train"]
    epochs = sum(r["epochs"] for r in ok)

    def row(e: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "summary", "score", "validation", "flops", "latency_ms")
        return {k: e[k] for k in keys}

    return {
        "seconds": round(seconds, 1),
        "cache_seconds": doc.get("cache_seconds"),
        "evaluations": len(records),
        "failed": len(records) - len(ok),
        "failures": sorted({r["reason"] for r in records if r["status"] != "ok"}),
        "evaluations_per_hour": round(len(records) / seconds * 3600, 1),
        "mean_train_seconds": round(train / max(1, len(ok)), 2),
        "seconds_per_1000_examples_epoch": round(train / max(1, epochs) / (n_train / 1000), 3),
        "search_train_examples": n_train,
        "baseline": row(doc["baseline"]),
        "front": [row(e) for e in doc["front"]],
    }


def eager_latency(run_dir: Path, lengths: tuple[int, ...] = (16, 128)) -> dict[str, float]:
    """PyTorch eager latency of the run's baseline fused model, CUDA events, batch 1 and 32."""
    doc = RunDir(run_dir).read_front()
    model = load_run_head(run_dir, doc["baseline"]).model.cuda()
    from moohead.fused import reference_inputs

    out = {}
    for batch in (1, 32):
        for length in lengths:
            inputs = reference_inputs(model, batch, length, "cuda")
            out[f"batch{batch}_len{length}_ms"] = measure_latency(model, inputs, warmup=10, runs=50)
    return out


def determinism(args: argparse.Namespace) -> None:
    """Run one small frozen search twice with the same seed; the archives must agree."""
    runs = []
    for name in ("a", "b"):
        cfg = SearchConfig(
            task="sst2", model=args.model, data_dir=args.data_dir, device="cuda",
            out=args.out / f"det-{name}", cache_dir=args.out / f"cache-{name}",
            population=6, generations=2, max_train=4000, objectives=("score", "flops"),
        )  # fmt: skip
        run_search(cfg)
        lines = (cfg.out / "archive.jsonl").read_text().splitlines()
        runs.append([(json.loads(x)["genome"], json.loads(x)["score"]) for x in lines])
    same = runs[0] == runs[1]
    result = {"evaluations": [len(r) for r in runs], "identical_archives": same}
    atomic_write_json(args.out / "gpu_determinism.json", result)
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    p.add_argument("--model", default=None)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--pack-fp16", nargs=2, type=Path, metavar=("SRC", "DST"))
    p.add_argument("--unpack-fp16", nargs=2, type=Path, metavar=("SRC", "DST"))
    p.add_argument(
        "--determinism", action="store_true", help="only: the same small search twice, compared"
    )
    args = p.parse_args()
    if args.pack_fp16 or args.unpack_fp16:
        src, dst = args.pack_fp16 or args.unpack_fp16
        convert_weights(src, dst, torch.float16 if args.pack_fp16 else torch.float32)
        return
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.determinism:
        determinism(args)
        return
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "bf16": torch.cuda.is_bf16_supported(),
        "versions": package_versions(),
        "model": args.model or "packaged all-MiniLM-L6-v2",
    }
    path = args.out / "gpu_check.json"
    common = dict(
        task="sst2", model=args.model, data_dir=args.data_dir, device="cuda", max_length=128,
        cache_dir=args.out / "cache", seed=0,
    )  # fmt: skip
    parts = {
        "frozen": SearchConfig(
            **common, out=args.out / "frozen", population=8, generations=3, max_train=8000
        ),
        "finetune": SearchConfig(
            **common,
            out=args.out / "finetune",
            population=6,
            generations=2,
            max_train=4000,
            max_epochs=3,
            patience=1,
            fidelity="finetune",
        ),
    }
    for name, cfg in parts.items():
        start = time.perf_counter()
        doc = run_search(cfg)
        result[name] = summary(doc, cfg.out, time.perf_counter() - start)
        atomic_write_json(path, result)
        print(name, json.dumps(result[name], indent=1), flush=True)
    result["eager_latency_baseline"] = eager_latency(args.out / "frozen")
    atomic_write_json(path, result)
    print(json.dumps(result["eager_latency_baseline"], indent=1))


if __name__ == "__main__":
    main()
