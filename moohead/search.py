"""``moohead evolve``: load data and encoder, cache features, run NSGA-II, write the run."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moohead.archive import Archive
from moohead.config import SearchConfig, deterministic_cuda, resolve_device
from moohead.data import load_split, resolve_task, search_splits
from moohead.encoder import load_encoder
from moohead.errors import MooheadError
from moohead.evaluate import Evaluation, Evaluator, SearchData
from moohead.features import CacheConfig, SplitFeatures, cache_size_bytes, cached_split
from moohead.files import atomic_write_json, package_versions
from moohead.finetune import score_model
from moohead.front import (
    FRONT_FILE,
    HV_REFERENCE,
    hypervolume,
    nondominated,
    normalised_objectives,
    tolerances,
)
from moohead.genome import LEARNING_RATES, baseline, decode, encode, is_baseline_arch, search_space
from moohead.measure import measure_latency_interleaved
from moohead.plot import plot_front
from moohead.problem import CanonicalRepair, HeadSearchProblem, make_nsga2
from moohead.resume import check_identity, identity, move_aside, read_archive, run_lock
from moohead.rundir import CONFIG_FILE, HEADS_DIR, read_run_config
from moohead.tokens import TokenSplit, tokenize_split
from moohead.train import TrainConfig, finetune_config

ARCHIVE_FILE = "archive.jsonl"


@dataclass(frozen=True)
class GenerationStats:
    """Progress after one NSGA-II generation."""

    generation: int
    generations: int
    evaluations: int
    new: int
    failed: int
    best_score: float
    hypervolume: float
    seconds: float


class Reporter:
    """Progress hooks; the CLI passes a rich implementation. These defaults are silent."""

    def cache(self, description: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def evaluated(self, evaluation: Evaluation) -> None:
        pass

    def generation(self, stats: GenerationStats) -> None:
        pass

    def message(self, text: str) -> None:
        pass


def check_run_dir(out: Path) -> None:
    """Refuse an --out that cannot hold a run, before any work starts."""
    if out.exists() and not out.is_dir():
        raise MooheadError(f"--out {out} is a file; pass a folder")


def space_signature(num_layers: int, is_pair: bool) -> dict[str, Any]:
    """The search space as plain data: a resume must search the same space."""
    return {
        name: [type(var).__name__, getattr(var, "bounds", None), getattr(var, "options", None)]
        for name, var in search_space(num_layers, is_pair).items()
    }


@dataclass
class Workspace:
    """Task, encoder and cached features of a search: what evaluations and reports read."""

    cfg: SearchConfig
    device: str
    data: SearchData
    validation: dict[str, SplitFeatures] | dict[str, TokenSplit]
    cache_seconds: float
    cache_bytes: int
    identity: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """What ``config.json`` records besides the config itself."""
        return {
            "identity": self.identity,
            "device": self.device,
            "encoder": asdict(self.data.info),
            "task": asdict(self.data.task),
            "examples": {"search-train": len(self.data.train), "search-val": len(self.data.val)}
            | {k: len(v) for k, v in self.validation.items()},
            "versions": package_versions(),
            "cache_seconds": round(self.cache_seconds, 2),
            "cache_bytes": self.cache_bytes,
        }


def prepare(
    cfg: SearchConfig,
    reporter: Reporter | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> Workspace:
    """Load and check data and encoder, cut the search splits, and cache all features.

    Args:
        check: Called with the search's identity once data and encoder are loaded and
            before the (possibly long) feature pass; a resume refuses there.
    """
    rep = reporter or Reporter()
    cfg.validate()
    device = resolve_device(cfg.device)
    if device == "cuda":
        deterministic_cuda()
    task = resolve_task(cfg.task, cfg.data_dir)
    train = load_split(task, "train", cfg.data_dir)
    validation = {s: load_split(task, s, cfg.data_dir) for s in task.validation_splits}
    search_train, search_val = search_splits(train, cfg.max_train, cfg.val_fraction, cfg.seed)
    encoder, tokenizer, info = load_encoder(cfg.model)
    ident = identity(
        cfg.to_dict(),
        {
            "encoder": info.fingerprint,
            "data": {
                "search-train": search_train.fingerprint(),
                "search-val": search_val.fingerprint(),
            }
            | {name: split.fingerprint() for name, split in validation.items()},
            "space": space_signature(info.num_layers, task.is_pair),
        },
    )
    if check is not None:
        check(ident)
    encoder.to(device)

    t0 = time.perf_counter()
    if cfg.fidelity == "finetune":  # every genome runs its encoder: token ids, no feature cache

        def tokens(split: Any) -> TokenSplit:
            return tokenize_split(tokenizer, task, split, cfg.max_length, info.uses_token_type_ids)

        data = SearchData(task, encoder, info, tokens(search_train), tokens(search_val))
        valid_t = {name: tokens(split) for name, split in validation.items()}
        return Workspace(cfg, device, data, valid_t, time.perf_counter() - t0, 0, ident)
    cache_cfg = CacheConfig(cfg.features_dir, cfg.max_length, device=device)

    def cache(name: str, split: Any) -> SplitFeatures:
        return cached_split(encoder, tokenizer, info, task, name, split, cache_cfg, rep.cache)

    train_f, val_f = cache("search-train", search_train), cache("search-val", search_val)
    valid_f = {name: cache(name, split) for name, split in validation.items()}
    cache_seconds = time.perf_counter() - t0
    cache_bytes = cache_size_bytes([train_f, val_f, *valid_f.values()])
    rep.message(
        f"features ready in {cache_seconds:.1f}s ({cache_bytes / 2**20:.0f} MiB in {cache_cfg.cache_dir})"
    )
    return Workspace(
        cfg,
        device,
        SearchData(task, encoder, info, train_f, val_f),
        valid_f,
        cache_seconds,
        cache_bytes,
        ident,
    )


def train_config(ws: Workspace) -> TrainConfig:
    base = TrainConfig(
        ws.cfg.batch_size,
        ws.cfg.max_epochs,
        ws.cfg.patience,
        device=ws.device,
        lr_encoder=ws.cfg.lr_encoder,
    )
    return finetune_config(base) if ws.cfg.fidelity == "finetune" else base


@contextmanager
def stop_between_evaluations(evaluator: Evaluator) -> Iterator[None]:
    """Ctrl-C stops the search after the evaluation in progress, not inside a library.

    A KeyboardInterrupt raised at an arbitrary point can be swallowed (pymoo hashes
    genomes under a bare ``except``); instead the first Ctrl-C asks the evaluator to stop
    before its next evaluation, and a second one interrupts at once.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield  # not ours to handle (a thread, or a background job that ignores SIGINT)
        return

    def request_stop(signum: int, frame: Any) -> None:
        if evaluator.stop_requested:
            raise KeyboardInterrupt
        evaluator.stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_search(
    cfg: SearchConfig, reporter: Reporter | None = None, force_new: bool = False
) -> dict[str, Any]:
    """Run the whole search and write the run directory; continue it if it holds a run.

    A run directory with an archive is resumed (the same search, checked against its
    identity); ``force_new`` moves such a run aside and starts over. One process at a time
    may write a run directory.

    Returns:
        The ``front.json`` document.
    """
    rep = reporter or Reporter()
    cfg.validate()
    check_run_dir(cfg.out)
    if force_new and (cfg.out / ARCHIVE_FILE).exists():
        rep.message(f"--force-new: the earlier run is kept in {move_aside(cfg.out)}")
    with run_lock(cfg.out):
        return _run_locked(cfg, rep)


def _run_locked(cfg: SearchConfig, rep: Reporter) -> dict[str, Any]:
    archive_path = cfg.out / ARCHIVE_FILE
    resume = archive_path.exists()
    stored: dict[str, Any] | None = None
    if resume:
        try:
            stored = read_run_config(cfg.out).get("identity")
        except MooheadError:
            stored = None  # no or damaged config.json: check_identity refuses below

    def check(ident: dict[str, Any]) -> None:
        if resume:
            check_identity(cfg.out, stored, ident)

    ws = prepare(cfg, rep, check)  # validates cfg first
    records, torn = read_archive(archive_path) if resume else ([], False)
    (cfg.out / HEADS_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg.out / CONFIG_FILE, {"config": cfg.to_dict(), **ws.summary()})
    torch.manual_seed(cfg.seed)
    executor = None
    if cfg.executor == "ray":
        from moohead.executor import RayConfig, RayExecutor

        executor = RayExecutor(RayConfig(cfg.ray_address, cfg.gpus_per_eval))
    evaluator = Evaluator(
        ws.data,
        train_config(ws),
        Archive(cfg.out / ARCHIVE_FILE),
        cfg.out / HEADS_DIR,
        cfg.seed,
        cfg.reference_length,
        measure_latency="latency" in cfg.objectives,
        latency_runs=cfg.latency_runs,
        executor=executor,
    )
    if resume:
        evaluator.restore(records)
        note = " (dropped a final line cut short by the crash)" if torn else ""
        rep.message(f"resuming {cfg.out}: {len(records)} finished evaluations restored{note}")
    with stop_between_evaluations(evaluator):
        history = evolve(cfg, evaluator, rep)
    doc = finalize(cfg, evaluator, ws.validation, history)
    doc["cache_seconds"] = round(ws.cache_seconds, 2)
    return doc


def evolve(cfg: SearchConfig, evaluator: Evaluator, rep: Reporter) -> list[dict[str, Any]]:
    """The baseline at every learning rate, then NSGA-II; returns per-generation stats."""
    task, num_layers = evaluator.data.task, evaluator.data.info.num_layers
    evaluator.on_new = rep.evaluated
    # The baseline gets the same learning-rate choices as every genome, so a gain is the head's.
    evaluator([baseline(num_layers, lr) for lr in LEARNING_RATES])
    dec = partial(decode, num_layers=num_layers, is_pair=task.is_pair)
    enc = partial(encode, is_pair=task.is_pair)
    problem = HeadSearchProblem(
        search_space(num_layers, task.is_pair), cfg.objectives, dec, evaluator
    )
    seeds = [enc(_baseline_eval(evaluator).genome)]
    algorithm = make_nsga2(cfg.population, seeds, CanonicalRepair(dec, enc))
    algorithm.setup(problem, termination=("n_gen", cfg.generations), seed=cfg.seed, verbose=False)
    history: list[dict[str, Any]] = []
    generation, start = 0, time.perf_counter()
    while algorithm.has_next():
        before = len(evaluator.evaluations)
        pop = algorithm.ask()
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
        generation += 1
        new = len(evaluator.evaluations) - before
        stats = generation_stats(cfg, evaluator, generation, new, start)
        history.append(asdict(stats))
        rep.generation(stats)
    return history


def _baseline_eval(evaluator: Evaluator) -> Evaluation:
    num_layers = evaluator.data.info.num_layers
    candidates = [
        e for e in evaluator.evaluations if e.ok and is_baseline_arch(e.genome, num_layers)
    ]
    if not candidates:
        raise MooheadError(
            "the baseline head failed to train at every learning rate; see archive.jsonl"
        )
    return max(candidates, key=lambda e: (e.score, -e.id))


def _objective_rows(
    evals: list[Evaluation], objectives: tuple[str, ...], latency: dict[str, float] | None = None
) -> np.ndarray:
    """``[n, m]`` minimised objectives; ``latency`` (by architecture) overrides the archived one."""
    rows = [
        [e.objective(o, latency.get(e.genome.arch_key()) if latency else None) for o in objectives]
        for e in evals
    ]
    return np.array(rows, dtype=float).reshape(len(evals), len(objectives))


def generation_stats(
    cfg: SearchConfig, evaluator: Evaluator, generation: int, new: int, start: float
) -> GenerationStats:
    ok = [e for e in evaluator.evaluations if e.ok]
    base = _baseline_eval(evaluator)
    assert base.cost is not None
    rows = [
        {"score": e.score, "flops": e.cost.flops, "latency": e.cost.latency_ms or 0.0}
        for e in ok
        if e.cost
    ]
    base_row = {
        "score": base.score,
        "flops": base.cost.flops,
        "latency": base.cost.latency_ms or 1.0,
    }
    F = normalised_objectives(rows, cfg.objectives, base_row)
    ref = np.array([HV_REFERENCE[o] for o in cfg.objectives])
    return GenerationStats(
        generation=generation,
        generations=cfg.generations,
        evaluations=len(evaluator.evaluations),
        new=new,
        failed=sum(1 for e in evaluator.evaluations if not e.ok),
        best_score=max(e.score for e in ok),
        hypervolume=hypervolume(F[nondominated(F)], ref),
        seconds=time.perf_counter() - start,
    )


def validation_metrics(
    evaluator: Evaluator, ev: Evaluation, valid: dict[str, SplitFeatures] | dict[str, TokenSplit]
) -> dict[str, Any]:
    """Official validation metrics of an evaluation's saved head (and fine-tuned encoder)."""
    model = evaluator.load_trained(ev)
    return score_model(evaluator.data.task, model, ev.genome, valid, evaluator.train_cfg)


def failure_counts(evaluations: list[Evaluation]) -> dict[str, int]:
    """Why evaluations failed: reason -> how many (reasons cut to their first clause)."""
    counts: dict[str, int] = {}
    for e in evaluations:
        if not e.ok:
            reason = (e.reason or "unknown").split(" (")[0][:120]
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def finalize(
    cfg: SearchConfig,
    evaluator: Evaluator,
    valid_f: dict[str, SplitFeatures] | dict[str, TokenSplit],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """Select the front, re-measure its latency together, re-score it on validation, write it."""
    ok = [e for e in evaluator.evaluations if e.ok]
    base = _baseline_eval(evaluator)
    tol = tolerances(cfg.objectives)
    candidates = [
        ok[i] for i in np.flatnonzero(nondominated(_objective_rows(ok, cfg.objectives), tol))
    ]
    # Latency is a measurement: re-time the candidates round-robin so noise cannot pick the front.
    archs = {e.genome.arch_key(): e.genome for e in [*candidates, base]}
    models = [evaluator.fused(g) for g in archs.values()]
    latencies = measure_latency_interleaved(
        models, [evaluator.reference(m) for m in models], runs=cfg.latency_runs
    )
    latency = dict(zip(archs, latencies, strict=True))
    del models
    rows = _objective_rows(candidates, cfg.objectives, latency)
    keep = nondominated(rows, tol)
    # Identical objective vectors (same architecture and score): keep the first evaluated.
    front, seen = [], set()
    for e, k, row in zip(candidates, keep, rows, strict=True):
        if k and tuple(row) not in seen:
            seen.add(tuple(row))
            front.append(e)
    front.sort(key=lambda e: (e.cost.flops, -e.score))  # type: ignore[union-attr]

    def entry(e: Evaluation) -> dict[str, Any]:
        assert e.cost is not None
        val = validation_metrics(evaluator, e, valid_f)
        return {
            "id": e.id,
            "summary": e.genome.describe(),
            "genome": e.genome.to_dict(),
            "score": e.score,
            "validation": val["score"],
            "search_val_metrics": e.metrics,
            "validation_metrics": val["splits"],
            "flops": e.cost.flops,
            "latency_ms": latency[e.genome.arch_key()],
            "params": e.cost.params,
            "head_params": e.cost.head_params,
            "weights": f"{HEADS_DIR}/{e.id}.pt",
        }

    task = evaluator.data.task
    doc = {
        "task": task.name,
        "metric": task.metric_name,
        "objectives": list(cfg.objectives),
        "encoder": evaluator.data.info.name,
        "device": evaluator.train_cfg.device,
        "reference_input": {"batch": 1, "length": cfg.reference_length},
        "evaluations": len(evaluator.evaluations),
        "failed": len(evaluator.evaluations) - len(ok),
        "failures": failure_counts(evaluator.evaluations),
        "baseline": entry(base),
        "front": [entry(e) for e in front],
        "history": history,
    }
    atomic_write_json(cfg.out / FRONT_FILE, doc)
    plot_front(doc, [e.to_record() for e in evaluator.evaluations], cfg.out / "front.png")
    # Only now that front.json is written: drop the weights of heads off the front.
    keep_ids = {e.id for e in front} | {base.id}
    for path in (cfg.out / HEADS_DIR).glob("*.pt"):
        if int(path.stem) not in keep_ids:
            path.unlink()
    return doc
