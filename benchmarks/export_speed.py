"""Export speed: PyTorch eager against ORT fp32, ORT optimised and ORT int8 on this CPU.

For the knee head and the baseline head of an sst2 run (default: the search-quality run,
max length 128), this exports each with ``--optimize --quantize int8`` (parity gate on),
then times batch 1 and 32 at lengths 16/64/128 with ``moohead bench`` on all cores.
It also reports the int8 metric loss (from the gate), the peak RSS of ``moohead predict``
(ORT only) beside PyTorch predicting the same sentences, and the achieved GFLOP/s
against this machine's fp32 matmul rate.

    python benchmarks/export_speed.py [--run runs/bench-quality/sst2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, glue_dir, write_result

from moohead.export.bench import bench
from moohead.export.config import BenchConfig, ExportConfig
from moohead.export.pipeline import export_run
from moohead.pick import knee_point
from moohead.rundir import RunDir

RSS_SCRIPT_ORT = """
import sys
from moohead.cli.main import main
main(["predict", sys.argv[1], "--input", sys.argv[2], "--json", "--variant", sys.argv[3]])
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM")][0].split()[1]
print("RSS", hwm, file=sys.stderr)
"""
RSS_SCRIPT_TORCH = """
import sys, csv
from pathlib import Path
import torch
from moohead.rundir import RunDir
from moohead.runhead import load_run_head
run, head_id, path = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
doc = RunDir(run).read_front()
entry = next(e for e in [*doc["front"], doc["baseline"]] if e["id"] == head_id)
rh = load_run_head(run, entry)
texts = [r["sentence"] for r in csv.DictReader(open(path), delimiter="\\t")]
with torch.inference_mode():
    for i in range(0, len(texts), 32):
        enc = rh.tokenizer(texts[i:i + 32], truncation=True, max_length=rh.max_length,
                           padding=True, return_tensors="pt")
        rh.model(*[enc[n] for n in rh.model.input_names]).softmax(-1)
hwm = [x for x in open("/proc/self/status") if x.startswith("VmHWM")][0].split()[1]
print("RSS", hwm, file=sys.stderr)
"""


def peak_rss_mib(script: str, *args: str) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("RSS "))
    # VmHWM, the process's own peak RSS in KiB (ru_maxrss would carry this process's peak
    # over into the child, since Linux keeps it across fork and exec).
    return int(line.split()[1]) / 1024


def matmul_gflops(n: int = 2048, runs: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(runs):
        a @ b
    return 2 * n**3 * runs / (time.perf_counter() - start) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-quality" / "sst2")
    p.add_argument("--min-seconds", type=float, default=2.0)
    args = p.parse_args()
    front = RunDir(args.run).read_front()
    heads = {"knee": knee_point(front["front"]), "baseline": front["baseline"]}
    work = Path(tempfile.mkdtemp(prefix="moohead-export-"))
    validation = glue_dir() / "sst2" / "validation.tsv"
    threads = os.cpu_count() or 1
    result: dict[str, Any] = {
        "run": str(args.run.relative_to(ROOT) if args.run.is_relative_to(ROOT) else args.run),
        "threads": threads,
        "matmul_gflops": round(matmul_gflops(), 1),
        "heads": {},
    }
    for name, entry in heads.items():
        out = work / name
        t0 = time.perf_counter()
        manifest = export_run(
            ExportConfig(args.run, out, id=entry["id"], optimize=True, quantize="int8")
        )
        export_seconds = time.perf_counter() - t0
        cfg = BenchConfig(
            out, batch_sizes=(1, 32), seq_lens=(16, 64, 128), min_seconds=args.min_seconds
        )
        report = bench(cfg)
        rows = report["rows"]
        p50 = {(r["runtime"], r["batch"], r["length"]): r["p50_ms"] for r in rows}
        longest = max(r["length"] for r in rows)  # 128 unless the run's max length is shorter
        speedup = {
            rt: round(p50[("pytorch", 1, longest)] / p50[(rt, 1, longest)], 2)
            for rt in ("onnx-fp32", "onnx-optimized", "onnx-int8")
        }
        gate = {g["variant"]: g for g in manifest["parity"]}
        result["heads"][name] = {
            "id": entry["id"],
            "summary": entry["summary"],
            "export_seconds": round(export_seconds, 1),
            "fused_ops": manifest["variants"]["optimized"].get("fused_ops"),
            "validation": {v: round(g["validation"], 4) for v, g in gate.items()},
            "validation_torch": round(gate["fp32"]["validation_torch"], 4),
            "int8_metric_drop_points": round(100 * gate["int8"]["metric_drop"], 2),
            "fp32_max_abs_diff": gate["fp32"]["max_abs_diff"],
            "speedup_batch1_longest": speedup,
            "longest": longest,
            "rss_mib": {
                "predict_ort_int8": round(peak_rss_mib(RSS_SCRIPT_ORT, str(out), str(validation), "int8"), 1),
                "predict_ort_fp32": round(peak_rss_mib(RSS_SCRIPT_ORT, str(out), str(validation), "fp32"), 1),
                "pytorch": round(peak_rss_mib(RSS_SCRIPT_TORCH, str(args.run), str(entry["id"]), str(validation)), 1),
            },
            "rows": rows,
        }  # fmt: skip
        print(name, json.dumps(speedup), flush=True)
    write_result("export_speed", result)


if __name__ == "__main__":
    main()
