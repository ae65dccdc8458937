"""NSGA-II against random sampling at an equal number of evaluations (issue 11 item 3).

For each task and seed, one workspace (frozen fidelity, packaged encoder, ``--max-train``
training examples) and one evaluator:

1. the references are tuned, as every search does, and shared by both methods;
2. ``nsga``: moohead's search (NSGA-II seeded with the references, ``--population`` x
   ``--generations``);
3. ``random``: genomes drawn by the first population's sampler (pymoo's mixed-variable
   sampling, canonicalised, without duplicates) until it has evaluated as many genomes
   beyond the references as NSGA-II did.

The two share the evaluator's cache: a genome's training seed depends only on the run seed
and the genome, so a genome both methods ask for has the same result either way.

Reported per search: the hypervolume over (search-val score, FLOPs) of the references
and the method's evaluations, with the reference point at the best reference's score and
FLOPs (so only heads that beat the best reference on both count); the hypervolume the
method adds to the references' own front in moohead's search hypervolume (score above
chance, FLOPs relative to ``hf-head``), which also credits heads that beat the references
at a cost none of them has; and the official validation score of the method's best
search-val head (never chosen on validation). Per task and seed: the Spearman rank
correlation between search-val and validation scores over every evaluation.

    python benchmarks/search_vs_random.py [--tasks sst2,cola,stsb,mrpc,rte] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import add_initial_random, glue_dir, run_task_seeds

from moohead.config import SearchConfig
from moohead.evaluation import Evaluation
from moohead.fidelity import score_model
from moohead.front import best_baseline, hypervolume, search_hypervolume
from moohead.genome import Genome, decode, search_space
from moohead.metrics import chance_score
from moohead.progress import Reporter
from moohead.references import define, tune
from moohead.rundir import RunDir
from moohead.search import evolve, make_evaluator
from moohead.stop import StopFlag
from moohead.workspace import Workspace, prepare

NAME = "search_vs_random"


def hv_over_reference(evals: list[Evaluation], ref: Evaluation) -> float:
    """Hypervolume of (-score, FLOPs / reference FLOPs) against the best reference's
    point (-score, 1): the area its evaluations add beyond the best reference."""
    ok = [e for e in evals if e.ok and e.cost is not None]
    assert ref.cost is not None
    F = np.array([[-e.score, e.cost.flops / ref.cost.flops] for e in ok])  # type: ignore[union-attr]
    return hypervolume(F.reshape(len(ok), 2), np.array([-ref.score, 1.0]))


def random_genomes(ws: Workspace, seed: int, exclude: set[str], count: int) -> list[Genome]:
    """``count`` distinct canonical genomes from the first population's sampler, none of
    whose keys is in ``exclude``."""
    from pymoo.core.mixed import MixedVariableSampling
    from pymoo.core.problem import Problem

    layers, pair = ws.data.info.num_layers, ws.data.task.is_pair
    problem = Problem(vars=search_space(layers, pair))
    rng = np.random.default_rng(seed)
    out: dict[str, Genome] = {}
    while len(out) < count:
        for x in MixedVariableSampling()._do(problem, 64, random_state=rng):
            g = decode(x, layers, pair)
            if g.key() not in exclude and len(out) < count:
                out.setdefault(g.key(), g)
    return list(out.values())


def one_search(task: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cfg = SearchConfig(
        task=task,
        data_dir=glue_dir(),
        out=work / f"{task}-{seed}",
        population=args.population,
        initial_random=args.initial_random,
        generations=args.generations,
        max_train=args.max_train,
        max_length=args.max_length,
        objectives=("score", "flops"),
        cache_dir=args.cache_dir,
        seed=seed,
    )
    t0 = time.perf_counter()
    ws = prepare(cfg)
    run = RunDir(cfg.out)
    evaluator, models = make_evaluator(ws, run, StopFlag())
    layers, pair = ws.data.info.num_layers, ws.data.task.is_pair
    refs = tune(define(layers, pair, ws.native), evaluator)
    reference_evals = list(evaluator.evaluations)
    best_name, best_ref = refs.ranked()[0]
    # evolve tunes the references again: every one is answered from the evaluator's cache
    evolve(cfg, evaluator, refs, ws.data, Reporter())
    nsga = evaluator.evaluations[len(reference_evals) :]
    known = {e.genome.key() for e in reference_evals}
    rand = evaluator(random_genomes(ws, seed, known, len(nsga)))

    tcfg = ws.train_config()
    validated: dict[int, float] = {}

    def validation(e: Evaluation) -> float:
        if e.id not in validated:
            model = models.trained(e.genome, run.heads.load(e.id))
            scored = score_model(ws.fidelity, ws.data.task, model, e.genome, ws.validation, tcfg)
            validated[e.id] = float(scored["score"])
        return validated[e.id]

    chance = chance_score(ws.data.task, ws.data.val.labels)
    hf_head = best_baseline(reference_evals, layers)

    def hv_gain(evals: list[Evaluation]) -> float:
        """What ``evals`` add to the references' front's search hypervolume."""
        objectives = ("score", "flops")
        with_refs = search_hypervolume([*reference_evals, *evals], objectives, hf_head, chance)
        return with_refs - search_hypervolume(reference_evals, objectives, hf_head, chance)

    def method(evals: list[Evaluation]) -> dict[str, Any]:
        pool = [e for e in [*reference_evals, *evals] if e.ok]
        best = max(pool, key=lambda e: (e.score, -e.id))
        return {
            "evaluations": len(evals),
            "failed": sum(1 for e in evals if not e.ok),
            "hypervolume": hv_over_reference([*reference_evals, *evals], best_ref),
            "hypervolume_gain_over_references": hv_gain(evals),
            "best_head": best.genome.describe(),
            "best_search_val": best.score,
            "best_validation": validation(best),
            "best_is_reference": best.id in {e.id for e in reference_evals},
        }

    everything = [e for e in evaluator.evaluations if e.ok]
    pairs = np.array([[e.score, validation(e)] for e in everything])
    from scipy.stats import spearmanr

    rho = float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic)
    out = {
        "reference": best_name,
        "reference_search_val": best_ref.score,
        "reference_validation": validation(best_ref),
        "reference_evaluations": len(reference_evals),
        "nsga": method(nsga),
        "random": method(rand),
        "spearman_search_val_validation": rho,
        "spearman_evaluations": len(everything),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    shutil.rmtree(cfg.out, ignore_errors=True)
    return out


def summarise(seeds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hv = {m: [s[m]["hypervolume"] for s in seeds.values()] for m in ("nsga", "random")}
    val = {m: [s[m]["best_validation"] for s in seeds.values()] for m in ("nsga", "random")}
    med = {m: float(np.median(v)) for m, v in hv.items()}
    key = "hypervolume_gain_over_references"  # not recorded by runs before 2026-11-30
    recorded = all(key in s[m] for s in seeds.values() for m in ("nsga", "random"))
    median_gain = (
        {m: float(np.median([s[m][key] for s in seeds.values()])) for m in ("nsga", "random")}
        if recorded
        else None
    )
    return {
        "median_hypervolume_gain_over_references": median_gain,
        "median_hypervolume": med,
        "hypervolume_ratio": med["nsga"] / med["random"] if med["random"] > 0 else None,
        "nsga_at_least_random": med["nsga"] >= med["random"],
        "best_validation_mean": {m: float(np.mean(v)) for m, v in val.items()},
        "best_validation_std": {
            m: float(np.std(v, ddof=1)) if len(v) > 1 else None for m, v in val.items()
        },
        "spearman_median": float(
            np.median([s["spearman_search_val_validation"] for s in seeds.values()])
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,cola,stsb,mrpc,rte")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--population", type=int, default=10)
    add_initial_random(parser)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: moohead's")
    parser.add_argument("--name", default=NAME, help="results file name (a smoke run: other)")
    args = parser.parse_args()
    run_task_seeds(args, args.name, one_search, summarise)


if __name__ == "__main__":
    main()
