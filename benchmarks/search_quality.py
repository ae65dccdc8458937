"""Search quality: the best reference against the front's best head, the recommended head
and the cheapest head within 1 point of the reference, over 3 search seeds (issue 11 item 4).

For each task, a frozen-fidelity search with the packaged encoder on up to 8,000 training
examples (objectives score and FLOPs) runs once per search seed: each seed runs the whole
search again (its split, references, NSGA-II), not only the retraining. From each run,
chosen on search-val only:

- reference: the best search-val reference (``front.json``'s ``reference``);
- best: the front head with the highest search-val score;
- recommended: ``front.json``'s ``recommended`` (``moohead pick --recommended``): the best
  head if a paired bootstrap on search-val says its lead over the reference is
  significant, else the reference;
- cheapest: the front head with the fewest FLOPs whose search-val score is at most 1
  point below the reference's.

Each is reported on the official validation split (never used to choose): mean and sample
standard deviation over the search seeds, and the gain of each over the reference. Every
full-budget evaluation of each run is also scored on validation (before the front's
finalisation drops the weights of heads off it) for the rank correlation (Spearman)
between search-val and validation, the fitness's agreement with held-out data.

    python benchmarks/search_quality.py [--tasks sst2,cola,mrpc,rte,stsb] [--seeds 0,1,2]

``--recommend`` runs no search: it takes the finished runs under ``--runs`` (searched
before front.json had a recommendation), computes the recommendation with the code
``moohead evolve`` finalises with (``front.recommend`` with the search's own
``compare``), writes it into each run's front.json and the heads into the results file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import RESULTS, add_initial_random, glue_dir, write_result

from moohead.config import SearchConfig
from moohead.front import finalize
from moohead.pick import PickConfig, choose
from moohead.progress import Reporter
from moohead.references import define
from moohead.rundir import RunDir
from moohead.search import evolve, front_spec, make_evaluator
from moohead.stop import StopFlag
from moohead.workspace import prepare

NAME = "search_quality"


def chosen(doc: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    """The four heads of one run, chosen on search-val."""
    ref = doc["references"][0]
    best = max(doc["front"], key=lambda e: (e["score"], -e["id"]))
    recommended = choose(doc, PickConfig(recommended=True))  # moohead pick --recommended
    near = [e for e in doc["front"] if e["score"] >= ref["score"] - 0.01]
    cheapest = min(near, key=lambda e: (e["flops"], -e["score"])) if near else None
    return {"reference": ref, "best": best, "recommended": recommended, "cheapest": cheapest}


def heads(doc: dict[str, Any]) -> dict[str, Any]:
    """A run's chosen heads in brief, with why the recommended one was."""
    rec = doc["recommended"]
    why = {"why": rec["why"], "lead": rec["lead"]}
    return {name: brief(e) for name, e in chosen(doc).items()} | {"recommendation": why}


def brief(e: dict[str, Any] | None) -> dict[str, Any] | None:
    if e is None:
        return None
    keys = ("id", "summary", "score", "validation", "flops")
    return {k: e[k] for k in keys} | ({"name": e["name"]} if "name" in e else {})


def search(cfg: SearchConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``moohead evolve``'s search (as ``search.run_search`` wires it, without resume),
    and the Spearman correlation between search-val and validation over every
    full-budget evaluation, scored before the front's finalisation prunes weights."""
    import torch
    from scipy.stats import spearmanr

    ws = prepare(cfg)
    run = RunDir(cfg.out)
    torch.manual_seed(cfg.seed)
    evaluator, models = make_evaluator(ws, run, StopFlag())
    refs = define(ws.data.info.num_layers, ws.data.task.is_pair, ws.native)
    history = evolve(cfg, evaluator, refs, ws.data, Reporter())
    spec = front_spec(ws, models, run, refs)
    scored = [e for e in evaluator.evaluations if e.ok and e.full]
    pairs = np.array([[e.score, float(spec.validate(e)["score"])] for e in scored])
    rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)
    doc = finalize(evaluator.evaluations, history, spec, run)
    return doc, {"spearman_search_val_validation": rho, "spearman_evaluations": len(scored)}


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "spearman_median": float(
            np.median([r["spearman_search_val_validation"] for r in runs.values()])
        )
    }
    for head in ("reference", "best", "recommended", "cheapest"):
        vals = [r[head]["validation"] for r in runs.values() if r.get(head) is not None]
        gains = [
            r[head]["validation"] - r["reference"]["validation"]
            for r in runs.values()
            if r.get(head) is not None
        ]
        flops = [
            r[head]["flops"] / r["reference"]["flops"]
            for r in runs.values()
            if r.get(head) is not None
        ]
        out[head] = {
            "runs": len(vals),
            "validation_mean": float(np.mean(vals)) if vals else None,
            "validation_std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
            "gain_points_mean": 100 * float(np.mean(gains)) if gains else None,
            "flops_vs_reference": float(np.mean(flops)) if flops else None,
        }
    return out


def recommend_run(cfg: SearchConfig) -> dict[str, Any]:
    """Add the recommendation to a finished run's front.json (searched before finalising
    wrote one), with the search's own comparison of heads on search-val."""
    from moohead.evaluation import Evaluation
    from moohead.front import gains, recommend
    from moohead.references import References

    ws = prepare(cfg)
    run = RunDir(cfg.out)
    _, models = make_evaluator(ws, run, StopFlag())
    spec = front_spec(ws, models, run, References([]))
    evals = {r["id"]: Evaluation.from_record(r) for r in run.archive.read()[0]}
    doc = run.read_front()
    front = [evals[e["id"]] for e in doc["front"]]
    ranked = [(r["name"], evals[r["id"]]) for r in doc["references"]]
    doc["recommended"] = rec = recommend(front, ranked, spec.compare)
    doc["gains"] = gains(doc["front"], doc["references"], doc["baseline"], rec["id"])
    run.write_front(doc)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,cola,mrpc,rte,stsb")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--population", type=int, default=12)
    add_initial_random(parser)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--max-train", type=int, default=8000)
    parser.add_argument("--runs", type=Path, default=Path("runs/bench-quality"))
    parser.add_argument("--name", default=NAME, help="results file name (a smoke run: other)")
    parser.add_argument(
        "--recommend",
        action="store_true",
        help="no search: add the recommendation to the finished runs under --runs",
    )
    args = parser.parse_args()
    # Tasks and seeds run separately add to one results file.
    previous = RESULTS / f"{args.name}.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    tasks: dict[str, Any] = old.get("tasks", {}) if old.get("version") == 2 else {}
    config = old.get("config", {}) if args.recommend else vars(args) | {"runs": str(args.runs)}
    for task in args.tasks.split(","):
        entry = tasks.setdefault(task, {"runs": {}})
        for seed in (int(s) for s in args.seeds.split(",")):
            out = args.runs / f"{task}-{seed}"
            cfg = SearchConfig(
                task=task,
                data_dir=glue_dir(),
                out=out,
                population=args.population,
                initial_random=args.initial_random,
                generations=args.generations,
                max_train=args.max_train,
                objectives=("score", "flops"),
                seed=seed,
            )
            if args.recommend:
                if str(seed) not in entry["runs"]:
                    raise SystemExit(f"{previous} has no {task} seed {seed} to add to")
                entry["runs"][str(seed)] |= heads(recommend_run(cfg))
            else:
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                doc, agreement = search(cfg)
                entry["metric"] = doc["metric"]
                entry["runs"][str(seed)] = heads(doc) | {
                    "evaluations": doc["evaluations"],
                    "front_size": len(doc["front"]),
                    "hf_head": brief(doc["baseline"]),
                    **agreement,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            entry["summary"] = summarise(entry["runs"])
            write_result(args.name, {"version": 2, "config": config, "tasks": tasks})
    print(f"results in {previous}")


if __name__ == "__main__":
    main()
