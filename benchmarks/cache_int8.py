"""int8 token states: their effect on scores (issue 13, item 3).

For each task, the feature cache is built twice from the same data, once with fp16 token
states (the default) and once with int8 (one absmax/127 scale per token and per pooled
vector), and the same heads are trained on each with the same seeds and scored on the
official validation split. The heads are the best front head of the search-quality run
(``benchmarks/README.md``, rebuilt from its description; dropout and weight decay at
their defaults), which reads token states, and two heads that read pooled vectors (the
Hugging Face baseline, last-layer CLS, and a mean-pooled linear probe). Paired by seed:
the difference is what storage alone changes.

    python benchmarks/cache_int8.py [--tasks sst2,cola,stsb] [--seeds 11,22,33]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS, glue_dir, write_result

from moohead.data import load_split
from moohead.encoder import load_encoder
from moohead.features import CacheConfig, PrepareContext, cache_size_bytes, cached_split
from moohead.fidelity import SearchData
from moohead.frozen import predict, train_head
from moohead.genome import Genome, baseline
from moohead.metrics import compute_metrics
from moohead.splits import search_splits
from moohead.tasks import GLUE_TASKS
from moohead.train import TrainConfig

NAME = "cache_int8"
# Best front heads of an earlier search_quality.py run (their summaries), kept fixed so that
# the fp16 and int8 comparisons train the same heads.
BEST = {
    "sst2": Genome(depth=4, pool="attention", mlp_layers=3, width=0.25, activation="gelu", lr=3e-3),
    "cola": Genome(
        depth=2, pool="mean", mixer="attention", mlp_layers=3, activation="gelu", lr=1e-3
    ),
    "stsb": Genome(
        depth=5,
        layers="mix",
        k=3,
        pair="siamese",
        pool="attention",
        mixer="attention",
        mlp_layers=3,
        activation="gelu",
        norm=True,
        lr=3e-4,
    ),
}


def heads(task: str, layers: int) -> dict[str, Genome]:
    return {
        "best": BEST[task],
        "baseline": baseline(layers, lr=3e-3),
        "mean_probe": Genome(depth=layers, pool="mean", mlp_layers=0, lr=3e-3),
    }


def run_task(name: str, args: argparse.Namespace, cache_root: Path) -> dict[str, Any]:
    task = GLUE_TASKS[name]
    train = load_split(task, "train", glue_dir())
    validation = load_split(task, "validation", glue_dir())
    cut = search_splits(train, task.is_regression, args.max_train, 0.15, 0.1, 0)
    encoder, tokenizer, info = load_encoder(None)
    cfg = TrainConfig(batch_size=64, max_epochs=args.max_epochs, patience=3)
    out: dict[str, Any] = {
        "metric": task.metric_name,
        "seeds": args.seeds,
        "heads": {},
        "cache": {},
    }
    scores: dict[str, dict[str, list[float]]] = {}
    for storage in ("fp16", "int8"):
        ctx = PrepareContext(
            encoder, tokenizer, info, task, CacheConfig(cache_root / storage, storage=storage)
        )
        t0 = time.perf_counter()
        feats = {n: cached_split(ctx, n, s) for n, s in cut.named().items()}
        valid = cached_split(ctx, "validation", validation)
        out["cache"][storage] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "bytes": cache_size_bytes([*feats.values(), valid]),
        }
        data = SearchData(
            task, encoder, info, feats["search-train"], feats["search-stop"], feats["search-val"]
        )
        for head, genome in heads(name, info.num_layers).items():
            got = scores.setdefault(head, {}).setdefault(storage, [])
            for seed in args.seeds:
                result = train_head(genome, data, cfg, seed)
                pred = predict(result.head, valid, genome, cfg)
                got.append(float(compute_metrics(task, pred, valid.labels)["score"]))
                print(name, storage, head, seed, round(got[-1] * 100, 2), flush=True)
                valid.release()
    for head, genome in heads(name, info.num_layers).items():
        fp16, int8 = (np.asarray(scores[head][s]) * 100 for s in ("fp16", "int8"))
        out["heads"][head] = {
            "genome": genome.describe(),
            "fp16": fp16.round(2).tolist(),
            "int8": int8.round(2).tolist(),
            "fp16_mean": round(float(fp16.mean()), 2),
            "int8_mean": round(float(int8.mean()), 2),
            "difference": round(float(int8.mean() - fp16.mean()), 2),
            # spread of the paired (same seed) differences, and its standard error
            "difference_sd": round(float(np.std(int8 - fp16, ddof=1)), 2),
            "difference_se": round(float(np.std(int8 - fp16, ddof=1) / np.sqrt(len(fp16))), 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", default="sst2,cola,stsb")
    parser.add_argument(
        "--seeds", default="11,22,33", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--name", default=NAME, help="results file name (a smoke run: other)")
    parser.add_argument("--max-epochs", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # Tasks run before (another --tasks) are kept; the ones run now replace theirs.
    done = RESULTS / f"{args.name}.json"
    results: dict[str, Any] = json.loads(done.read_text())["tasks"] if done.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="cache-int8-") as tmp:
        for name in args.tasks.split(","):
            results[name] = run_task(name, args, Path(tmp) / name)
    write_result(
        args.name,
        {
            "config": {k: v for k, v in vars(args).items() if k not in ("tasks", "seeds", "name")},
            "target": "|int8 - fp16| <= 0.3 points on the best front head of every task",
            "tasks": results,
        },
    )


if __name__ == "__main__":
    main()


NAMES = {"best": "best", "baseline": "HF head", "mean_probe": "mean probe"}


def table(data: dict[str, Any]) -> str:
    """benchmarks/README.md's table of a result."""
    rows = [
        "| task | head | seeds | fp16 | int8 | int8 - fp16: mean ± sd (standard error) |",
        "|---|---|---|---|---|---|",
    ]
    for task, t in data["tasks"].items():
        for head, h in t["heads"].items():
            name = f"{NAMES[head]}: `{h['genome']}`" if head == "best" else NAMES[head]
            sd = h.get("difference_sd")
            spread = "" if sd is None else f" ± {sd} ({h['difference_se']})"
            rows.append(
                f"| {task} ({t['metric']}) | {name} | {len(t['seeds'])} | {h['fp16_mean']} "
                f"| {h['int8_mean']} | {h['difference']:+.2f}{spread} |"
            )
    return "\n".join(rows)
