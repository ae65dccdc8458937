"""Run preparation: load and check the task data and encoder, cut the search splits, and
prepare every split at the search's fidelity (for frozen fidelity, the feature cache)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from moohead.cache_plan import CachePlan, PlanRequest, default_budget, plan_cache
from moohead.config import SearchConfig, deterministic_cuda, parse_size, resolve_device
from moohead.data import load_split, resolve_task
from moohead.encoder import check_max_length, load_encoder, resolve_model
from moohead.features import CacheConfig, PrepareContext
from moohead.fidelity import Fidelity, SearchData, get_fidelity, prepare_search_data
from moohead.files import package_versions
from moohead.genome import search_space, space_revision
from moohead.machine import timing_context
from moohead.pooling import NativePooling, native_pooling
from moohead.recompute import LiveEncoder
from moohead.resume import identity
from moohead.splits import search_splits
from moohead.train import TrainConfig

ProgressFn = Callable[[str, int], Callable[[int], None]]


@dataclass
class Workspace:
    """Task, encoder and prepared splits of a search: what evaluations and reports read."""

    cfg: SearchConfig
    device: str
    fidelity: Fidelity
    data: SearchData
    validation: dict[str, Any]
    cache_seconds: float
    cache_bytes: int
    identity: dict[str, Any]
    native: NativePooling
    timing: dict[str, Any]  # machine, device and threads latencies are measured with
    cache_plan: dict[str, Any] | None = None  # the cache's budget and token subset (frozen)

    def summary(self) -> dict[str, Any]:
        """What the run's config records besides the config itself."""
        return {
            "identity": self.identity,
            "device": self.device,
            "timing": self.timing,
            "encoder": asdict(self.data.info),
            "task": asdict(self.data.task),
            "native_pooling": asdict(self.native),
            "examples": {
                "search-train": len(self.data.train),
                "search-stop": len(self.data.stop),
                "search-val": len(self.data.val),
            }
            | {k: len(v) for k, v in self.validation.items()},
            "versions": package_versions(),
            "cache_seconds": round(self.cache_seconds, 2),
            "cache_bytes": self.cache_bytes,
            "cache": self.cache_plan,
        }

    def train_config(self) -> TrainConfig:
        """The one place a search's training recipe is derived: its budget, at its
        fidelity's recipe, on its device."""
        cfg = self.cfg
        base = TrainConfig(
            batch_size=cfg.batch_size,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            device=self.device,
            lr_encoder=cfg.lr_encoder,
            order_seed=cfg.seed,
            budgets=cfg.budgets,
        )
        return self.fidelity.train_config(base)


def space_signature(num_layers: int, is_pair: bool) -> dict[str, Any]:
    """The search space as plain data: a resume must search the same space."""
    return {
        name: [type(var).__name__, getattr(var, "bounds", None), getattr(var, "options", None)]
        for name, var in search_space(num_layers, is_pair).items()
    }


def validation_context(ctx: PrepareContext) -> PrepareContext:
    """How the validation splits are cached: in fp16 whatever ``--cache-storage`` says. They
    score the front as it is deployed (the export gate holds the fp32 graph to the recorded
    validation score, to 1e-3), and they are small beside the training split."""
    return replace(ctx, cache=replace(ctx.cache, storage="fp16"))


def plan_frozen_cache(
    cfg: SearchConfig,
    ctx: PrepareContext,
    cut: dict[str, Any],
    validation: dict[str, Any],
    subset: int | None,
) -> CachePlan:
    """The feature cache's plan within ``--cache-budget`` (default: half the free disk);
    ``subset``: the token subset's size a resumed run recorded."""
    budget = parse_size(cfg.cache_budget) if cfg.cache_budget else default_budget(cfg.features_dir)
    request = PlanRequest(budget, cfg.seed, cfg.token_states, subset)
    contexts = dict.fromkeys(validation, validation_context(ctx))
    return plan_cache(ctx, cut | validation, request, contexts)


def cache_identity(cfg: SearchConfig, plan: CachePlan | None) -> dict[str, Any]:
    """What of the frozen fidelity's cache (``plan``; None: another fidelity) changes
    scores: its storage, the token subset of a bounded budget (a resume must train on the
    same rows) and recomputed token states."""
    if plan is None:
        return {}
    out: dict[str, Any] = {"cache_storage": cfg.cache_storage}
    if plan.train_subset is not None:
        out["token_subset"] = list(plan.train_subset)
    if plan.token_states == "recompute":
        out["token_states"] = "recompute"
    return out


def prepare(
    cfg: SearchConfig,
    progress: ProgressFn | None = None,
    check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    subset: int | None = None,
) -> Workspace:
    """Load and check data and encoder, cut the search splits, and prepare every split.

    Args:
        progress: Feature-cache progress (``progress(description, total)`` returns a
            callback given the examples done per batch).
        check: Called with the search's identity and timing context once data and encoder
            are loaded and before the (possibly long) feature pass; a resume refuses there.
        subset: The token subset's size a resumed run recorded (``cache_plan.plan_cache``).
    """
    import torch

    cfg.validate()
    device = resolve_device(cfg.device)
    if device == "cuda":
        deterministic_cuda()
    torch.set_num_threads(cfg.cpu_threads)  # fixed for training and timing alike
    timing = timing_context(device, cfg.cpu_threads, cfg.latency_runtime)
    task = resolve_task(cfg.task, cfg.data_dir)
    train = load_split(task, "train", cfg.data_dir)
    validation = {s: load_split(task, s, cfg.data_dir) for s in task.validation_splits}
    cut = search_splits(
        train, task.is_regression, cfg.max_train, cfg.val_fraction, cfg.stop_fraction, cfg.seed
    )
    encoder, tokenizer, info = load_encoder(cfg.model)
    check_max_length(cfg.max_length, encoder.config)
    native = native_pooling(resolve_model(cfg.model))
    fidelity = get_fidelity(cfg.fidelity)
    cache = CacheConfig(cfg.features_dir, cfg.max_length, device=device, storage=cfg.cache_storage)
    ctx = PrepareContext(encoder, tokenizer, info, task, cache, progress)
    # The disk budget is planned before any encoder pass; a budget too small is refused.
    splits = cut.named() | validation
    plan = None
    if fidelity.name == "frozen":
        plan = plan_frozen_cache(cfg, ctx, cut.named(), validation, subset)
    if plan is not None:
        ctx.token_rows = plan.token_rows
        if plan.token_states == "recompute":
            ctx.recompute = LiveEncoder(encoder, tokenizer.pad_token_id or 0, device, info.path)
    ident = identity(
        cfg.to_dict(),
        {
            "encoder": info.fingerprint,
            "data": {name: split.fingerprint() for name, split in splits.items()},
            "space": space_signature(info.num_layers, task.is_pair),
            "space_revision": space_revision(task.is_pair),
            "native_pooling": [native.pool, native.normalize],
        }
        | cache_identity(cfg, plan),
    )
    if check is not None:
        check(ident, timing)
    encoder.to(device)

    t0 = time.perf_counter()
    data = prepare_search_data(fidelity, ctx, cut)
    vctx = validation_context(ctx)
    valid_s = {name: fidelity.prepare(vctx, name, split) for name, split in validation.items()}
    seconds = time.perf_counter() - t0
    return Workspace(
        cfg=cfg,
        device=device,
        fidelity=fidelity,
        data=data,
        validation=valid_s,
        cache_seconds=seconds,
        cache_bytes=fidelity.disk_bytes([*data.splits(), *valid_s.values()]),
        cache_plan=None if plan is None else plan.describe(),
        identity=ident,
        native=native,
        timing=timing,
    )
