"""``moohead evolve``: the search loop. Tune the references, seed them, run NSGA-II,
finalise the front.

Preparation is workspace.py, evaluation evaluate.py, the front front.py, the run's files
rundir.py; this module wires them together and runs the generations.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from functools import partial
from typing import Any

import numpy as np
import torch

from moohead.config import SearchConfig
from moohead.costs import CostConfig, CostMeasurer, retime_records
from moohead.evaluate import Evaluator
from moohead.evaluation import Evaluation
from moohead.fidelity import SearchData, score_model
from moohead.front import TOLERANCES, FrontSpec, best_baseline, finalize, search_hypervolume
from moohead.fused import FusedModel, ModelFactory
from moohead.genome import Genome, decode, encode, search_space
from moohead.halving import Halving
from moohead.machine import check_timing
from moohead.metrics import chance_score
from moohead.problem import CanonicalRepair, HeadSearchProblem, make_nsga2
from moohead.progress import GenerationStats, Reporter
from moohead.references import References, define, tune
from moohead.resume import check_identity
from moohead.rundir import RunDir
from moohead.significance import Lead, paired_bootstrap
from moohead.stop import StopFlag, stop_on_sigint
from moohead.trainer import LocalTrainer, Trainer
from moohead.workspace import Workspace, prepare


def run_search(
    cfg: SearchConfig, reporter: Reporter | None = None, force_new: bool = False
) -> dict[str, Any]:
    """Run the whole search and write the run directory; continue it if it holds a run.

    A run directory with an archive is resumed (the same search, checked against its
    identity); ``force_new`` moves such a run aside and starts over. One process at a time
    may write a run directory.

    Returns:
        The front document.
    """
    rep = reporter or Reporter()
    cfg.validate()
    run = RunDir(cfg.out)
    run.check_usable()
    if force_new and run.archive.exists():
        rep.message(f"--force-new: the earlier run is kept in {run.move_aside()}")
    with run.lock():
        return _run_locked(cfg, run, rep)


def _run_locked(cfg: SearchConfig, run: RunDir, rep: Reporter) -> dict[str, Any]:
    resume = run.archive.exists()
    stored = run.stored("identity") if resume else None

    def check(ident: dict[str, Any], timing: dict[str, Any]) -> None:
        if resume:
            check_identity(cfg.out, stored, ident)
            if "latency" in cfg.objectives and not cfg.retime:
                check_timing(cfg.out, run.stored("timing"), timing)

    subset = (stored or {}).get("token_subset") or [None]  # (rows, of) when bounded
    ws = prepare(cfg, rep.cache, check, subset[0])  # validates cfg first
    if ws.cache_bytes:
        rep.message(
            f"features ready in {ws.cache_seconds:.1f}s "
            f"({ws.cache_bytes / 2**20:.0f} MiB in {cfg.features_dir})"
        )
    records, torn = run.archive.read() if resume else ([], False)
    torch.manual_seed(cfg.seed)
    stop = StopFlag()
    evaluator, models = make_evaluator(ws, run, stop)
    retimed = resume and cfg.retime and "latency" in cfg.objectives
    if retimed:
        records = retime_records(records, models, cost_config(cfg))
        run.archive.rewrite(records)  # before config.json names this machine
        rep.message(f"re-timed the archived architectures on {ws.timing['cpu']}")
    run.write_config({"config": cfg.to_dict(), **ws.summary()})
    if resume:
        evaluator.restore(records)
        note = " (dropped a final line cut short by the crash)" if torn else ""
        rep.message(f"resuming {cfg.out}: {len(records)} finished evaluations restored{note}")
    evaluator.on_new = rep.evaluated
    first_new_id = evaluator.next_id
    refs = define(ws.data.info.num_layers, ws.data.task.is_pair, ws.native)
    with stop_on_sigint(stop):
        history = evolve(cfg, evaluator, refs, ws.data, rep)
    trained = evaluator.next_id - first_new_id
    doc = None if retimed else written_front(run, trained, len(evaluator.evaluations), len(history))
    if doc is None:  # a re-timed run's front is chosen again on this machine's latencies
        doc = finalize(evaluator.evaluations, history, front_spec(ws, models, run, refs), run)
    doc["cache_seconds"] = round(ws.cache_seconds, 2)
    return doc


def written_front(
    run: RunDir, trained: int, evaluations: int, generations: int
) -> dict[str, Any] | None:
    """The front a finished run wrote, when resuming it trained nothing new; else None.

    Finalising again would re-time the front's latency, so noise could swap near-tied heads
    (and the first finalisation dropped the weights of heads off its front), and it would
    record generations that took no time.
    """
    if trained or not run.front_path.is_file():
        return None
    doc = run.read_front()
    if doc.get("evaluations") != evaluations or len(doc.get("history", [])) != generations:
        return None  # written by a search stopped before its last generation
    return doc


def make_evaluator(ws: Workspace, run: RunDir, stop: StopFlag) -> tuple[Evaluator, ModelFactory]:
    """The search's evaluator (saving weights and archive lines in ``run``) and the
    factory of its fused models."""
    cfg, data = ws.cfg, ws.data
    models = ModelFactory(data.encoder, data.info, data.task.num_labels, ws.device)
    evaluator = Evaluator(
        trainer=make_trainer(ws, stop),
        costs=CostMeasurer(models, cost_config(cfg)),
        weights=run.heads,
        archive=run.archive,
        stop=stop,
    )
    return evaluator, models


def cost_config(cfg: SearchConfig) -> CostConfig:
    """How the search measures costs: latency only where it is an objective, in the run's
    latency runtime, with its fixed thread count."""
    runs = cfg.latency_runs if "latency" in cfg.objectives else None
    return CostConfig(cfg.reference_length, runs, cfg.latency_runtime, cfg.cpu_threads)


def make_trainer(ws: Workspace, stop: StopFlag) -> Trainer:
    """Where genomes train: this process, or Ray tasks (``--executor ray``)."""
    cfg = ws.cfg
    if cfg.executor == "ray":
        from moohead.executor import RayConfig, RayTrainer

        ray_cfg = RayConfig(
            address=cfg.ray_address,
            gpus_per_eval=cfg.gpus_per_eval,
            quiet_timing="latency" in cfg.objectives,
        )
        return RayTrainer(ray_cfg, ws.fidelity.name, ws.data, ws.train_config(), cfg.seed)
    return LocalTrainer(ws.fidelity, ws.data, ws.train_config(), cfg.seed, stop)


def evolve(
    cfg: SearchConfig, evaluator: Evaluator, refs: References, data: SearchData, rep: Reporter
) -> list[dict[str, Any]]:
    """Tune the references (filling ``refs.best``), then NSGA-II with the tuned references
    first in its first population; returns per-generation stats."""
    num_layers, is_pair = data.info.num_layers, data.task.is_pair
    chance = chance_score(data.task, data.val.labels)  # the hypervolume's score reference
    tune(refs, evaluator)
    for name, ev in refs.ranked():
        rep.message(f"reference {name}: {ev.score:.4f} search-val  ({ev.genome.describe()})")
    dec = partial(decode, num_layers=num_layers, is_pair=is_pair)
    enc = partial(encode, is_pair=is_pair)
    space = search_space(num_layers, is_pair)
    problem = HeadSearchProblem(
        space, cfg.objectives, dec, Halving(evaluator, cfg.budgets, cfg.objectives)
    )
    seeds = [enc(ev.genome) for _, ev in refs.ranked()]
    algorithm = make_nsga2(
        cfg.population,
        seeds,
        CanonicalRepair(dec, enc),
        len(space),
        offspring=cfg.offspring,
        initial_random=cfg.first_random,
    )
    algorithm.setup(problem, termination=("n_gen", cfg.generations), seed=cfg.seed, verbose=False)
    history: list[dict[str, Any]] = []
    generation, start = 0, time.perf_counter()
    while algorithm.has_next():
        evaluator.stop.check()
        before = len(evaluator.evaluations)
        pop = algorithm.ask()
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
        generation += 1
        evals = [e for e in evaluator.evaluations if e.full]
        stats = GenerationStats(
            generation=generation,
            generations=cfg.generations,
            evaluations=len(evaluator.evaluations),
            new=len(evaluator.evaluations) - before,
            failed=sum(1 for e in evaluator.evaluations if not e.ok),
            best_score=max(e.score for e in evals if e.ok),
            hypervolume=search_hypervolume(
                evals, cfg.objectives, best_baseline(evals, num_layers), chance
            ),
            seconds=time.perf_counter() - start,
        )
        history.append(asdict(stats))
        rep.generation(stats)
    return history


def front_spec(ws: Workspace, models: ModelFactory, run: RunDir, refs: References) -> FrontSpec:
    """Finalising this search: re-time on its device, score on its validation splits,
    compare heads on search-val."""
    cfg, data, train_cfg = ws.cfg, ws.data, ws.train_config()

    def retime(genomes: list[Genome]) -> list[float]:
        fused = [models.fused(g) for g in genomes]
        inputs = [models.reference(m, cfg.reference_length) for m in fused]
        return replace(cost_config(cfg), latency_runs=cfg.latency_runs).time(fused, inputs)

    def trained(ev: Evaluation) -> FusedModel:
        return models.trained(ev.genome, run.heads.load(ev.id))

    def validate(ev: Evaluation) -> dict[str, Any]:
        return score_model(ws.fidelity, data.task, trained(ev), ev.genome, ws.validation, train_cfg)

    def compare(a: Evaluation, b: Evaluation) -> Lead:
        def outputs(ev: Evaluation) -> np.ndarray:
            return ws.fidelity.predict(trained(ev), ev.genome, data.val, train_cfg)

        return paired_bootstrap(data.task, outputs(a), outputs(b), data.val.labels)

    header = {
        "task": data.task.name,
        "metric": data.task.metric_name,
        "encoder": data.info.name,
        "device": ws.device,
        "fidelity": cfg.fidelity,
        "reference_input": {"batch": 1, "length": cfg.reference_length},
        "chance_score": chance_score(data.task, data.val.labels),  # hypervolume's reference
        "cost_tolerances": TOLERANCES,  # relative: costs closer than these are a tie
    }
    layers = data.info.num_layers
    return FrontSpec(cfg.objectives, layers, retime, validate, compare, header, refs)
