"""Search speed: genome evaluations per hour and feature-cache cost.

1. Cache cost: one plain encoder pass over SST-2's search splits (8,000
   examples, same tokenisation, length-sorted batches of 64) against the cache pass,
   which also keeps every hidden state and writes them to disk.
2. Throughput: a search on those cached features (default objectives: score, FLOPs,
   latency); evaluations per hour of search time, cache time excluded; once with each
   generation's heads trained one by one (``alone``) and once together (whole-generation
   training, the default). With latency an objective the two archives differ (timing
   noise steers NSGA-II); ``equal`` runs both modes on a smaller search with objectives
   score and FLOPs and checks that they give the same archive.

Peak memory and cache size of full-size searches: ``scale_search.py``.

    python benchmarks/search_speed.py [--population 12] [--generations 4] [--parts cache,search,memory]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import RESULTS, glue_dir, write_result

from moohead import frozen
from moohead.config import SearchConfig
from moohead.data import load_split
from moohead.encoder import load_encoder
from moohead.features import CacheConfig, PrepareContext, cache_size_bytes, cached_split
from moohead.search import run_search
from moohead.splits import search_splits
from moohead.tasks import GLUE_TASKS

PLAN_GROUPS = frozen.plan_groups


def plain_pass(
    encoder: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 64
) -> float:
    """Seconds for the encoder alone over ``texts``, batched exactly as the cache pass is."""
    t0 = time.perf_counter()
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = [ids[i] for i in order[start : start + batch_size]]
            enc = tokenizer.pad({"input_ids": batch}, return_tensors="pt")
            encoder(**enc)
    return time.perf_counter() - t0


def cache_cost(max_train: int, max_length: int, cache_dir: Path) -> dict[str, Any]:
    task = GLUE_TASKS["sst2"]
    train = load_split(task, "train", glue_dir())
    cut = search_splits(train, False, max_train, 0.15, 0.1, seed=0)
    parts = cut.named()
    encoder, tokenizer, info = load_encoder(None)
    texts = [t for split in parts.values() for t in split.texts[0]]
    plain_pass(encoder, tokenizer, texts[:256], max_length)  # warm-up
    plain = plain_pass(encoder, tokenizer, texts, max_length)
    cfg = CacheConfig(cache_dir, max_length)
    t0 = time.perf_counter()
    feats = [
        cached_split(PrepareContext(encoder, tokenizer, info, task, cfg), name, split)
        for name, split in parts.items()
    ]
    cached = time.perf_counter() - t0
    return {
        "examples": len(texts),
        "plain_pass_seconds": round(plain, 2),
        "cache_pass_seconds": round(cached, 2),
        "cache_over_plain": round(cached / plain, 3),
        "sentences_per_second_cache": round(len(texts) / cached, 1),
        "cache_bytes": cache_size_bytes(feats),
    }


def one_by_one(
    genomes: list[Any], data: Any, cfg: Any, limit: int | None = None
) -> list[list[int]]:
    """The plan of training each genome alone (before whole-generation training)."""
    return [[i] for i in range(len(genomes))]


def throughput(
    args: argparse.Namespace,
    cache_dir: Path,
    out: Path,
    mode: str = "together",
    objectives: tuple[str, ...] = ("score", "flops", "latency"),
) -> dict[str, Any]:
    """A search's evaluations per hour, training each generation's heads together (the
    default) or ``alone``, one after another as before whole-generation training."""
    if mode == "alone":
        frozen.plan_groups = one_by_one
    cfg = SearchConfig(
        task="sst2",
        data_dir=glue_dir(),
        out=out,
        population=args.population,
        generations=args.generations,
        max_train=args.max_train,
        max_length=args.max_length,
        reference_length=args.max_length,
        cache_dir=cache_dir,
        objectives=objectives,
    )
    t0 = time.perf_counter()
    try:
        doc = run_search(cfg)
    finally:
        frozen.plan_groups = PLAN_GROUPS
    total = time.perf_counter() - t0
    records = [json.loads(x) for x in (out / "archive.jsonl").read_text().splitlines()]
    search_seconds = total - doc["cache_seconds"]
    return {
        "mode": mode,
        "scores": [r["score"] for r in records],
        "population": args.population,
        "generations": args.generations,
        "evaluations": len(records),
        "failed": doc["failed"],
        "search_seconds": round(search_seconds, 1),
        "evaluations_per_hour": round(3600 * len(records) / search_seconds, 1),
        "mean_train_seconds": round(float(np.mean([r["train_seconds"] for r in records])), 2),
        "median_train_seconds": round(float(np.median([r["train_seconds"] for r in records])), 2),
        "max_train_seconds": round(float(np.max([r["train_seconds"] for r in records])), 2),
        "mean_measure_seconds": round(float(np.mean([r["measure_seconds"] for r in records])), 2),
        "mean_epochs": round(float(np.mean([r["epochs"] for r in records])), 2),
    }


def same_results(args: argparse.Namespace, cache_dir: Path, work: Path) -> dict[str, Any]:
    """Both modes on a smaller search with objectives score and FLOPs (latency is measured,
    so its noise steers NSGA-II differently from run to run): the same archive?"""
    small = argparse.Namespace(
        **{**vars(args), "population": 8, "generations": 2, "max_train": 2000}
    )
    runs = {
        mode: throughput(small, cache_dir, work / f"equal-{mode}", mode, ("score", "flops"))
        for mode in ("alone", "together")
    }
    return {
        "config": "population 8, 2 generations, 2,000 examples, objectives score,flops",
        "evaluations": runs["together"]["evaluations"],
        "same_scores_in_order": runs["alone"]["scores"] == runs["together"]["scores"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--modes",
        default="alone,together",
        help="alone: heads train one by one; together: whole-generation training",
    )
    parser.add_argument(
        "--parts",
        default="cache,search,equal",
        help="which measurements to (re)run; others are kept",
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    work = Path(tempfile.mkdtemp(prefix="moohead-speed-"))
    previous = RESULTS / "search_speed.json"
    try:
        result: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
        result.pop("machine", None)
        result["config"] = vars(args)
        if "cache" in parts or "search" in parts:
            result["cache"] = cache_cost(args.max_train, args.max_length, work / "cache")
        if "search" in parts:
            runs = {
                m: throughput(args, work / "cache", work / f"run-{m}", m)
                for m in args.modes.split(",")
            }
            for r in runs.values():
                r.pop("scores")
            result["search_modes"] = runs
            result["search"] = runs.get("together", next(iter(runs.values())))
        if "equal" in parts:
            result["same_results"] = same_results(args, work / "cache-equal", work)
        result.pop("memory_full_sst2", None)  # now scale_search.py's, with today's cache
        write_result("search_speed", result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
