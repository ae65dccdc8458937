"""Successive halving against full-budget training at equal wall-clock time (issue 14).

For each task and seed (frozen fidelity, packaged encoder, ``--max-train`` training
examples, objectives score and FLOPs), two searches run at the same time, each in its own
process on one of the two cores (one thread each, so they share the machine evenly), for
``--minutes`` each, timed from the end of reference tuning (the same work in both; the
two wait for each other there):

1. ``full``: every head trains to the full budget (``--budgets 1``);
2. ``halving``: ``--budgets 1/9,1/3,1`` (successive halving inside NSGA-II; the arm's
   budgets and ``--offspring`` are options of this script).

Each search runs whole generations until its time is up (the generation under way when
time runs out is finished, and what it adds after the deadline does not count). Reported:

- the hypervolume over (search-val score, FLOPs / the best reference's FLOPs) of the
  full-budget heads (references included) finished by each quarter of the time, with the
  reference point at the best reference's (score, 1), as in search_vs_random.py; also
  over (score above chance, FLOPs / the baseline's), moohead's own search hypervolume,
  which also credits heads that beat the references on one objective only;
- the time ``halving`` takes to reach ``full``'s final hypervolume (as a share of the
  time), and the ratio of their final hypervolumes;
- dropped heads: up to ``--dropped-sample`` heads that halving stopped below the full
  budget are trained to it afterwards (not timed); the share of them that would have
  entered the full-budget front of the halving search.

    python benchmarks/multifidelity.py [--tasks sst2,cola,stsb] [--seeds 0,1,2] [--minutes 4]
        [--budgets 1/9,1/3,1] [--offspring N] [--name multifidelity]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from common import add_initial_random, glue_dir, run_task_seeds
from search_vs_random import hv_over_reference

from moohead.config import SearchConfig, parse_budgets, show_budgets
from moohead.evaluation import Evaluation
from moohead.front import best_baseline, nondominated, search_hypervolume, tolerances
from moohead.metrics import chance_score
from moohead.progress import GenerationStats, Reporter
from moohead.references import define, tune
from moohead.rundir import RunDir
from moohead.search import evolve, make_evaluator
from moohead.stop import StopFlag
from moohead.workspace import prepare

NAME = "multifidelity"
QUARTERS = (0.25, 0.5, 0.75, 1.0)


class Clock(Reporter):
    """Stamps each evaluation with the time it finished; asks the search to stop after
    the first generation that ends past the deadline."""

    def __init__(self, stop: StopFlag, seconds: float) -> None:
        self.stop, self.seconds = stop, seconds
        self.start = time.perf_counter()
        self.stamps: dict[int, float] = {}

    def evaluated(self, evaluation: Evaluation) -> None:
        self.stamps[evaluation.id] = time.perf_counter() - self.start

    def generation(self, stats: GenerationStats) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            self.stop.request()


def one_arm(cfg: SearchConfig, seconds: float, barrier: Any, dropped_sample: int) -> dict[str, Any]:
    """One timed search (in its own process, one thread): what the report needs of it."""
    import torch

    torch.set_num_threads(1)
    cfg = replace(cfg, threads=1)
    ws = prepare(cfg)
    stop = StopFlag()
    run = RunDir(cfg.out)
    evaluator, _ = make_evaluator(ws, run, stop)
    layers, pair = ws.data.info.num_layers, ws.data.task.is_pair
    t0 = time.perf_counter()
    refs = tune(define(layers, pair, ws.native), evaluator)
    tuning = time.perf_counter() - t0
    barrier.wait()  # both arms start their clocks together
    clock = Clock(stop, seconds)
    evaluator.on_new = clock.evaluated
    references = list(evaluator.evaluations)
    with contextlib.suppress(KeyboardInterrupt):  # time is up
        evolve(cfg, evaluator, refs, ws.data, clock)  # the references come from the cache
    arm: dict[str, Any] = {
        "ws": ws,
        "evaluator": evaluator,
        "references": references,
        "best_reference": refs.ranked()[0][1],
        "stamps": clock.stamps,
        "evaluations": list(evaluator.evaluations),
    }
    evals = [e for e in arm["evaluations"] if e.id in clock.stamps]
    in_time = [e for e in evals if clock.stamps[e.id] <= seconds]
    out = {
        "budgets": show_budgets(cfg.budgets),
        "offspring": cfg.offspring or cfg.population,
        "reference_tuning_seconds": round(tuning, 1),
        "evaluations_in_time": len(in_time),
        "full_budget_in_time": sum(1 for e in in_time if e.full),
        "hypervolume": {str(q): hypervolumes(arm, q * seconds) for q in QUARTERS},
        "curve": {
            key: [
                [t, hypervolumes(arm, t)[key]]
                for t in sorted(set(clock.stamps.values()))
                if t <= seconds
            ]
            for key in ("over_best_reference", "over_chance")
        },
    }
    if len(cfg.budgets) > 1:
        out["dropped"] = dropped_heads(arm, dropped_sample, cfg.seed)
    shutil.rmtree(cfg.out, ignore_errors=True)
    return out


def _arm_process(
    name: str, cfg: SearchConfig, seconds: float, barrier: Any, sample: int, queue: Any
) -> None:
    queue.put((name, one_arm(cfg, seconds, barrier, sample)))


def finished_by(arm: dict[str, Any], t: float) -> list[Evaluation]:
    """The references plus the full-budget evaluations finished by ``t`` seconds."""
    stamps = arm["stamps"]
    later = [e for e in arm["evaluations"] if e.id in stamps and stamps[e.id] <= t and e.full]
    return [*arm["references"], *later]


def hypervolumes(arm: dict[str, Any], t: float) -> dict[str, float]:
    evals = finished_by(arm, t)
    data = arm["ws"].data
    base = best_baseline(evals, data.info.num_layers)
    chance = chance_score(data.task, data.val.labels)
    return {
        "over_best_reference": hv_over_reference(evals, arm["best_reference"]),
        "over_chance": search_hypervolume(evals, ("score", "flops"), base, chance),
    }


def time_to_reach(curve: list[list[float]], target: float) -> float | None:
    """The first finishing time at which a hypervolume curve reaches ``target``."""
    if target <= 0:
        return 0.0
    return next((t for t, hv in curve if hv >= target), None)


def dropped_heads(arm: dict[str, Any], sample: int, seed: int) -> dict[str, Any]:
    """Heads halving stopped below the full budget, trained to it now (untimed): how many
    would have entered the full-budget front of the search."""
    evaluator = arm["evaluator"]
    evals = [e for e in arm["evaluations"] if e.id in arm["stamps"]]
    full_keys = {e.genome.key() for e in evals if e.full}
    dropped = {e.genome.key(): e.genome for e in evals if not e.full and e.ok}
    dropped = {k: g for k, g in dropped.items() if k not in full_keys}
    rng = np.random.default_rng(seed)
    keys = sorted(dropped)
    chosen = [dropped[k] for k in rng.permutation(keys)[:sample]] if keys else []
    evaluator.stop.requested = False
    trained = evaluator(chosen)
    pool = [*arm["references"], *[e for e in evals if e.full], *trained]
    ok = [e for e in pool if e.ok and e.cost is not None]
    F = np.array([[-e.score, float(e.cost.flops)] for e in ok])
    on_front = {ok[i].id for i in np.flatnonzero(nondominated(F, tolerances(("score", "flops"))))}
    entered = [e for e in trained if e.id in on_front]
    return {
        "dropped": len(dropped),
        "trained_to_full": len(trained),
        "would_enter_front": len(entered),
        "share": len(entered) / len(trained) if trained else None,
        "entered": [e.genome.describe() for e in entered],
    }


def one_seed(task: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import multiprocessing as mp

    seconds = args.minutes * 60
    base = SearchConfig(
        task=task,
        data_dir=glue_dir(),
        population=args.population,
        initial_random=args.initial_random,
        generations=1000,  # time decides
        max_train=args.max_train,
        max_length=args.max_length,
        objectives=("score", "flops"),
        cache_dir=args.cache_dir,
        seed=seed,
        out=work / f"{task}-{seed}-cache",
    )
    prepare(base)  # the feature cache, once, before the two arms share it
    arms = {
        "full": replace(base, budgets=(1.0,)),
        "halving": replace(base, budgets=parse_budgets(args.budgets), offspring=args.offspring),
    }
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(len(arms)), ctx.Queue()
    procs = []
    for name, cfg in arms.items():
        cfg = replace(cfg, out=work / f"{task}-{seed}-{name}")
        proc = ctx.Process(
            target=_arm_process, args=(name, cfg, seconds, barrier, args.dropped_sample, queue)
        )
        proc.start()
        procs.append(proc)
    results = dict(queue.get() for _ in procs)
    for proc in procs:
        proc.join()
    out: dict[str, Any] = {"seconds": seconds} | {name: results[name] for name in arms}
    for key in ("over_best_reference", "over_chance"):
        target = out["full"]["hypervolume"]["1.0"][key]
        reached = time_to_reach(out["halving"]["curve"][key], target)
        final = out["halving"]["hypervolume"]["1.0"][key]
        out[f"compare_{key}"] = {
            "full": target,
            "halving": final,
            "ratio": final / target if target > 0 else None,
            "halving_time_to_full_share": None if reached is None else reached / seconds,
        }
    return out


def summarise(seeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("over_best_reference", "over_chance"):
        cmp = [s[f"compare_{key}"] for s in seeds.values()]
        shares = [c["halving_time_to_full_share"] for c in cmp]
        out[key] = {
            "median_full": float(np.median([c["full"] for c in cmp])),
            "median_halving": float(np.median([c["halving"] for c in cmp])),
            "median_time_share": float(np.median([1e9 if s is None else s for s in shares])),
        }
    drops = [s["halving"]["dropped"] for s in seeds.values()]
    trained = sum(d["trained_to_full"] for d in drops)
    out["dropped_would_enter_front"] = (
        sum(d["would_enter_front"] for d in drops) / trained if trained else None
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,cola,stsb")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--population", type=int, default=10)
    add_initial_random(parser)
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--budgets", default="1/9,1/3,1", help="the halving arm's")
    parser.add_argument(
        "--offspring", type=int, default=None, help="the halving arm's [default: population]"
    )
    parser.add_argument("--dropped-sample", type=int, default=8)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: moohead's")
    parser.add_argument("--name", default=NAME, help="results file name (a smoke run: other)")
    args = parser.parse_args()
    run_task_seeds(args, args.name, one_seed, summarise)


if __name__ == "__main__":
    main()
