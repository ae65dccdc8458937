"""Search quality: baseline head vs the front's best and cheapest-within-1-point heads.

For each task: a frozen-fidelity search with the packaged encoder on up to 8,000 training
examples (score and FLOPs objectives). From the front, chosen on search-val only:

- best: the highest search-val score;
- cheapest: the fewest FLOPs among heads within 1 point of the baseline on search-val.

Each of the three (baseline at its best learning rate, best, cheapest) is retrained with 3
seeds and scored on the official validation split; mean and std are reported.

    python benchmarks/search_quality.py [--tasks sst2,cola,stsb] [--population 12] [--generations 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, glue_dir, write_result

from moohead.config import SearchConfig
from moohead.fidelity import score_model
from moohead.fused import ModelFactory
from moohead.genome import Genome
from moohead.search import run_search
from moohead.workspace import prepare

SEEDS = (11, 22, 33)


def pick(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    base = doc["baseline"]
    best = max(doc["front"], key=lambda e: e["score"])
    near = [e for e in doc["front"] if e["score"] >= base["score"] - 0.01]
    cheapest = min(near, key=lambda e: e["flops"]) if near else None
    return {"baseline": base, "best": best} | ({"cheapest": cheapest} if cheapest else {})


def retrain(cfg: SearchConfig, chosen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ws = prepare(cfg)
    tcfg = ws.train_config()
    models = ModelFactory(ws.data.encoder, ws.data.info, ws.data.task.num_labels, ws.device)
    out: dict[str, Any] = {}
    for name, entry in chosen.items():
        genome = Genome.from_dict(entry["genome"])
        scores = []
        for seed in SEEDS:
            result = ws.fidelity.train(genome, ws.data, tcfg, seed)
            model = models.fused(genome, result.head)
            scored = score_model(ws.fidelity, ws.data.task, model, genome, ws.validation, tcfg)
            scores.append(scored["score"])
        out[name] = {
            "id": entry["id"],
            "summary": entry["summary"],
            "flops": entry["flops"],
            "search_val": entry["score"],
            "validation_seeds": scores,
            "validation_mean": float(np.mean(scores)),
            "validation_std": float(np.std(scores)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,cola,stsb")
    parser.add_argument("--population", type=int, default=12)
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-quality"))
    args = parser.parse_args()
    # Tasks run separately add to one results file.
    previous = RESULTS / "search_quality.json"
    results: dict[str, Any] = json.loads(previous.read_text())["tasks"] if previous.exists() else {}
    for task in args.tasks.split(","):
        out = args.runs / task
        shutil.rmtree(out, ignore_errors=True)
        cfg = SearchConfig(
            task=task,
            data_dir=glue_dir(),
            out=out,
            population=args.population,
            generations=args.generations,
            max_train=args.max_train,
            objectives=("score", "flops"),
            seed=0,
        )
        t0 = time.perf_counter()
        doc = run_search(cfg)
        search_seconds = time.perf_counter() - t0
        heads = retrain(cfg, pick(doc))
        base = heads["baseline"]
        results[task] = {
            "metric": doc["metric"],
            "evaluations": doc["evaluations"],
            "search_seconds": round(search_seconds, 1),
            "front_size": len(doc["front"]),
            "heads": heads,
            "best_gain_points": 100 * (heads["best"]["validation_mean"] - base["validation_mean"]),
            "cheapest_flops_ratio": heads["cheapest"]["flops"] / base["flops"]
            if "cheapest" in heads
            else None,
            "cheapest_gap_points": 100
            * (heads["cheapest"]["validation_mean"] - base["validation_mean"])
            if "cheapest" in heads
            else None,
        }
        write_result(
            "search_quality", {"config": vars(args) | {"runs": str(args.runs)}, "tasks": results}
        )
    print(f"results in {RESULTS / 'search_quality.json'}")


if __name__ == "__main__":
    main()
