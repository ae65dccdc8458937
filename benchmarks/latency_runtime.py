"""How the front changes when latency is timed as deployed (ONNX Runtime) instead of in
PyTorch eager, on one real SST-2 run.

.venv/bin/python benchmarks/latency_runtime.py            # searches runs/latency_runtime first
.venv/bin/python benchmarks/latency_runtime.py --table    # the README table from the JSON

The run: ``moohead evolve`` on SST-2 with the packaged all-MiniLM-L6-v2, objectives score,
FLOPs and latency, timed in PyTorch eager (``--latency-runtime torch``). Then every
architecture of its archive is timed again in one process with both runtimes, all the
eager and ORT measurements taken in one round-robin (so machine noise falls on both alike), and the front (score, FLOPs, latency; costs tied within
``front.TOLERANCES``) is chosen from the same evaluations with each runtime's latencies.
Reported: the latencies per architecture and their rank correlation, ORT over eager per
depth, the two fronts and what differs, and the time an ORT measurement costs a new
architecture (graph export and session set-up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from functools import partial
from typing import Any

import numpy as np
import torch
from common import RESULTS, ROOT, glue_dir, write_result
from scipy.stats import spearmanr

from moohead.archive import Archive
from moohead.encoder import load_encoder
from moohead.evaluation import Evaluation
from moohead.front import nondominated, objective_rows, tolerances
from moohead.fused import ModelFactory
from moohead.measure import _timer, time_interleaved
from moohead.ort_latency import ort_calls
from moohead.rundir import RunDir

RUN = ROOT / "runs" / "latency_runtime"
OBJECTIVES = ("score", "flops", "latency")


def search(args: argparse.Namespace) -> None:
    cmd = [
        sys.executable, "-m", "moohead.cli.main", "evolve", "--task", "sst2",
        "--data-dir", str(glue_dir()), "--out", str(RUN), "--population", str(args.population),
        "--generations", str(args.generations), "--max-train", str(args.max_train),
        "--max-length", "64", "--objectives", ",".join(OBJECTIVES),
        "--latency-runtime", "torch", "--seed", "0",
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def eager_call(model: torch.nn.Module, x: tuple[torch.Tensor, ...]) -> Any:
    with torch.inference_mode():
        return model(*x)


def front_ids(evals: list[Evaluation], latency: dict[str, float]) -> list[int]:
    rows = objective_rows(evals, OBJECTIVES, latency)
    keep = nondominated(rows, tolerances(OBJECTIVES))
    return sorted(e.id for e, k in zip(evals, keep, strict=True) if k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=10)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((RESULTS / "latency_runtime.json").read_text())))
        return
    if not (RUN / "front.json").is_file():
        search(args)
    run = RunDir(RUN)
    config = run.read_config()
    threads = int(config["timing"]["threads"])
    torch.set_num_threads(threads)
    records, _ = Archive(run.archive.path).read()
    evals = [e for e in map(Evaluation.from_record, records) if e.ok and e.cost]
    encoder, _, info = load_encoder(config["encoder"]["path"])
    models = ModelFactory(encoder, info, 2, "cpu")
    genomes = {e.genome.arch_key(): e.genome for e in evals}
    fused = [models.fused(g) for g in genomes.values()]
    length = int(config["config"]["reference_length"])
    inputs = [models.reference(m, length) for m in fused]

    # Both runtimes in one round-robin: machine noise falls on eager and ORT alike.
    t0 = time.perf_counter()
    ort_runs = ort_calls(fused, inputs, threads)
    setup_s = (time.perf_counter() - t0) / len(fused)
    eager_runs = [partial(eager_call, m, x) for m, x in zip(fused, inputs, strict=True)]
    times = time_interleaved([*eager_runs, *ort_runs], _timer(torch.device("cpu")), 3, args.runs)
    eager, ort = times[: len(fused)], times[len(fused) :]
    keys = list(genomes)
    lat = {"torch": dict(zip(keys, eager, strict=True)), "ort": dict(zip(keys, ort, strict=True))}
    fronts = {name: front_ids(evals, by_arch) for name, by_arch in lat.items()}
    by_id = {e.id: e for e in evals}
    depths = sorted({g.depth for g in genomes.values()})
    ratio = {
        d: float(np.median([lat["ort"][k] / lat["torch"][k] for k, g in genomes.items() if g.depth == d]))
        for d in depths
    }  # fmt: skip

    def describe(i: int) -> dict[str, Any]:
        e = by_id[i]
        key = e.genome.arch_key()
        return {
            "id": i,
            "summary": e.genome.describe(),
            "score": e.score,
            "flops": e.cost.flops if e.cost else None,
            "torch_ms": lat["torch"][key],
            "ort_ms": lat["ort"][key],
        }

    both = set(fronts["torch"]) & set(fronts["ort"])
    write_result(
        "latency_runtime",
        {
            "command": "python benchmarks/latency_runtime.py "
            f"--population {args.population} --generations {args.generations} "
            f"--max-train {args.max_train} --runs {args.runs}",
            "run": {
                "task": "sst2",
                "evaluations": len(evals),
                "architectures": len(genomes),
                "reference_length": length,
                "threads": threads,
            },
            "architectures": [
                {
                    "depth": g.depth,
                    "summary": g.describe(),
                    "torch_ms": lat["torch"][k],
                    "ort_ms": lat["ort"][k],
                }
                for k, g in genomes.items()
            ],
            "spearman": float(spearmanr(eager, ort).statistic),
            "ort_over_torch_by_depth": ratio,
            "ort_setup_seconds_per_architecture": setup_s,
            "fronts": {name: [describe(i) for i in ids] for name, ids in fronts.items()},
            "on_both": sorted(both),
            "only_torch": sorted(set(fronts["torch"]) - both),
            "only_ort": sorted(set(fronts["ort"]) - both),
        },
    )


def table(data: dict[str, Any]) -> str:
    rows = [
        f"{data['run']['evaluations']} evaluations, {data['run']['architectures']} architectures, "
        f"reference input 1 x {data['run']['reference_length']} tokens, "
        f"{data['run']['threads']} threads. Spearman (eager vs ORT latency): "
        f"**{data['spearman']:.3f}**. An ORT measurement costs a new architecture "
        f"{data['ort_setup_seconds_per_architecture']:.2f} s of graph export and session set-up.",
        "",
        "| depth | ORT / eager latency (median) |",
        "|---|---|",
        *(f"| {d} | {r:.2f} |" for d, r in data["ort_over_torch_by_depth"].items()),
        "",
        "| front | id | head | score | GFLOPs | eager ms | ORT ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("torch", "ort"):
        for e in data["fronts"][name]:
            rows.append(
                f"| {name} | {e['id']} | `{e['summary']}` | {e['score']:.4f} | "
                f"{e['flops'] / 1e9:.3f} | {e['torch_ms']:.2f} | {e['ort_ms']:.2f} |"
            )
    rows += [
        "",
        f"On both fronts: {data['on_both']}; only with eager latency: {data['only_torch']}; "
        f"only with ORT latency: {data['only_ort']}.",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    main()
