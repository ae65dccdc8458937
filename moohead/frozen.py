"""Frozen fidelity: heads alone on cached encoder features (token states or pre-pooled
vectors); the training loop is ``train.fit``, shared with the fine-tune fidelity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from moohead.data import Split
from moohead.feature_store import FeatureStore, PooledStore, SplitFeatures
from moohead.features import PrepareContext, cache_size_bytes, cached_split, read_views
from moohead.fidelity import SearchData
from moohead.fused import FusedModel
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.metrics import compute_metrics
from moohead.recompute import open_store
from moohead.train import (
    HeadFit,
    StartBatch,
    TrainConfig,
    TrainResult,
    in_length_order,
    started,
    train_alone,
)


def read_states(genome: Genome) -> list[int]:
    """Hidden-state indices a genome reads: the last ``k`` of the first ``depth`` layers."""
    return list(range(genome.depth - genome.k + 1, genome.depth + 1))


Store = FeatureStore | PooledStore


def reads_pooled(genome: Genome) -> bool:
    """Whether a head trains on pre-pooled vectors: no token mixer, and a pool that commutes
    with reading the layers (cls, mean, cls+mean; max unless the layers are mixed)."""
    if genome.mixer != "none":
        return False
    return genome.pool in ("cls", "mean", "cls+mean") or (
        genome.pool == "max" and genome.layers != "mix"
    )


def inputs_for(features: SplitFeatures, genome: Genome) -> list[Store]:
    """The stores a genome's head reads: the sentence (or joint pair), or both sides.

    Heads that ``reads_pooled`` read pre-pooled per-layer vectors: the same numbers, a
    small fraction of the work, and no token state is read.
    """
    stores: list[Store] = [features.views[n] for n in read_views(features.views, genome)]
    if reads_pooled(genome):
        return [PooledStore(s, genome.pool) for s in stores if isinstance(s, FeatureStore)]
    return stores


def head_inputs(
    stores: list[Store], genome: Genome, indices: np.ndarray, device: str
) -> list[torch.Tensor]:
    """``[states, mask]`` (or both sentences' for siamese heads) for a batch of examples."""
    out: list[torch.Tensor] = []
    for store in stores:
        states, mask = store.gather(indices, read_states(genome))
        out += [states.to(device), mask.to(device)]
    return out


def run_head(
    head: Head,
    stores: list[Store],
    genome: Genome,
    indices: np.ndarray,
    device: str,
    reads: SharedReads | None = None,
) -> torch.Tensor:
    """The head's outputs for a batch, on token states or on pre-pooled vectors (taken
    from the group's shared ``reads`` when given)."""
    pooled = bool(stores) and isinstance(stores[0], PooledStore)
    if reads is None:
        inputs = head_inputs(stores, genome, indices, device)
    else:
        inputs = reads.inputs(stores, genome, indices)
    out: torch.Tensor = head(*inputs, pooled=pooled)
    return out


def example_lengths(stores: list[Store]) -> np.ndarray:
    return np.sum([s.lengths.astype(np.int64) for s in stores], axis=0)


def predict(head: Head, features: SplitFeatures, genome: Genome, cfg: TrainConfig) -> np.ndarray:
    """Head outputs for every example of a split, in the split's order."""
    head.eval()
    stores = inputs_for(features, genome)
    with torch.inference_mode():
        return in_length_order(
            example_lengths(stores),
            cfg.eval_batch_size,
            lambda batch: run_head(head, stores, genome, batch, cfg.device),
        )


def order_lengths(features: SplitFeatures) -> np.ndarray:
    """What a run buckets its training batches by: each example's longest view. The same
    for every head (pooled or token-level, one-sided or siamese), so heads share batches."""
    return np.max([v.lengths for v in features.views.values()], axis=0)


class SharedReads:
    """Each training batch's token states, read once for every head of a group.

    Per store, the group's heads ask for some layers; the first head to ask for a batch
    gathers the union, the others take their layers from it. Pre-pooled vectors are a few
    hundred bytes an example: each head reads its own rows of the memory-mapped files.
    """

    def __init__(self, device: str) -> None:
        self.device = device
        self.wants: dict[int, set[int]] = {}
        self.batch: np.ndarray | None = None
        self.read: dict[int, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}

    def want(self, stores: list[Store], genome: Genome) -> None:
        for store in stores:
            if isinstance(store, FeatureStore):
                self.wants.setdefault(id(store), set()).update(read_states(genome))

    def start(self, batch: np.ndarray | None) -> None:
        """A new batch is coming (None: no more; drop what was read)."""
        self.batch = batch
        self.read.clear()

    def inputs(
        self, stores: list[Store], genome: Genome, indices: np.ndarray
    ) -> list[torch.Tensor]:
        if indices is not self.batch:
            return head_inputs(stores, genome, indices, self.device)
        out: list[torch.Tensor] = []
        for store in stores:
            if isinstance(store, PooledStore):
                out += head_inputs([store], genome, indices, self.device)
                continue
            key = id(store)
            if key not in self.read:
                union = sorted(self.wants[key])
                states, mask = store.gather(indices, union)
                self.read[key] = (states.to(self.device), mask.to(self.device), union)
            states, mask, union = self.read[key]
            first = union.index(read_states(genome)[0])
            out += [states[first : first + genome.k], mask]  # a genome reads adjacent layers
        return out


class FrozenJob:
    """Frozen fidelity: the head alone, on cached token states (or pre-pooled vectors)."""

    def __init__(
        self,
        genome: Genome,
        head: Head,
        train: SplitFeatures,
        stop: SplitFeatures,
        cfg: TrainConfig,
        reads: SharedReads | None = None,
    ) -> None:
        self.genome, self.head = genome, head
        self.module: nn.Module = head
        self.train, self.stop, self.cfg, self.reads = train, stop, cfg, reads
        self.stores = inputs_for(train, genome)
        if reads is not None:
            reads.want(self.stores, genome)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": self.genome.lr}]

    def lengths(self) -> np.ndarray:
        return order_lengths(self.train)

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        return run_head(self.head, self.stores, self.genome, batch, self.cfg.device, self.reads)

    def predict_stop(self) -> np.ndarray:
        return predict(self.head, self.stop, self.genome, self.cfg)

    def predict(self, module: nn.Module, split: SplitFeatures) -> np.ndarray:
        return predict(module, split, self.genome, self.cfg)  # type: ignore[arg-type]


def training_rows(train: SplitFeatures, genome: Genome) -> SplitFeatures:
    """The examples a head trains on: all of them, except for a token-level head when the
    cache budget kept token states of a subset only (``cache_plan.py``)."""
    if reads_pooled(genome):
        return train
    have = train.token_positions()
    return train if len(have) == len(train) else train.subset(have)


def start_head(
    genome: Genome, data: SearchData, cfg: TrainConfig, seed: int, reads: SharedReads | None = None
) -> HeadFit:
    """A fresh head of ``genome`` (weights and dropout from ``seed``), ready to train."""
    torch.manual_seed(seed)  # head init and dropout
    head = build_head(genome, data.info.hidden_size, data.task.num_labels).to(cfg.device)
    train = training_rows(data.train, genome)
    job = FrozenJob(genome, head, train, data.stop, cfg, reads)
    return HeadFit(job, data.task, train.labels, data.stop.labels, cfg)


def score_head(fit: HeadFit, data: SearchData) -> TrainResult:
    """The head at its best check, scored once on search-val (its fitness)."""
    head = fit.best_module()
    outputs = fit.job.predict(head, data.val)
    metrics = compute_metrics(data.task, outputs, data.val.labels)
    return TrainResult(head, metrics, fit.epochs, fit.seconds)  # type: ignore[arg-type]


def train_head(genome: Genome, data: SearchData, cfg: TrainConfig, seed: int) -> TrainResult:
    """Train the genome's head on cached features (frozen fidelity), early-stopped on the
    main score of ``data.stop``, and score it on ``data.val``.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    return score_head(train_alone(start_head(genome, data, cfg, seed)), data)


READ_LIMIT = 1 << 30  # bytes of token states one shared batch read may take


def read_bytes(genomes: list[Genome], data: SearchData, cfg: TrainConfig) -> int:
    """Most bytes a shared read of one batch takes for ``genomes`` (token-level heads)."""
    wants: dict[str, set[int]] = {}
    for genome in genomes:
        if not reads_pooled(genome):
            for view in read_views(data.train.views, genome):
                wants.setdefault(view, set()).update(read_states(genome))
    width = data.info.hidden_size * 4 * cfg.batch_size
    return sum(
        len(states) * width * int(data.train.views[view].lengths.max(initial=1))
        for view, states in wants.items()
    )


def plan_groups(
    genomes: list[Genome], data: SearchData, cfg: TrainConfig, limit: int | None = None
) -> list[list[int]]:
    """Which genomes train together (indices into ``genomes``): those that train on the same
    examples, split so that no group's shared read exceeds ``limit`` bytes (default
    ``READ_LIMIT``)."""
    limit = READ_LIMIT if limit is None else limit
    by_rows: dict[bool, list[int]] = {}
    subset = len(data.train.token_positions()) < len(data.train)
    for i, genome in enumerate(genomes):
        by_rows.setdefault(subset and not reads_pooled(genome), []).append(i)
    groups: list[list[int]] = []
    for members in by_rows.values():
        group: list[int] = []
        for i in members:
            if group and read_bytes([genomes[j] for j in [*group, i]], data, cfg) > limit:
                groups.append(group)
                group = []
            group.append(i)
        groups.append(group)
    return groups


class FrozenFidelity:
    """Heads alone on cached encoder features: one encoder pass per split, then every
    genome trains in seconds."""

    name = "frozen"
    runs_encoder = False

    def prepare(self, ctx: PrepareContext, split_name: str, split: Split) -> SplitFeatures:
        return cached_split(ctx, split_name, split)

    def disk_bytes(self, splits: list[Any]) -> int:
        return cache_size_bytes(splits)

    def train_config(self, base: TrainConfig) -> TrainConfig:
        return base

    def plan(self, genomes: list[Genome], data: SearchData, cfg: TrainConfig) -> list[list[int]]:
        return plan_groups(genomes, data, cfg)

    def start(
        self, genomes: list[Genome], data: SearchData, cfg: TrainConfig, seeds: list[int]
    ) -> tuple[list[HeadFit | BaseException], StartBatch]:
        reads = SharedReads(cfg.device)
        return [
            started(start_head, g, data, cfg, s, reads) for g, s in zip(genomes, seeds, strict=True)
        ], reads.start

    def result(self, fit: HeadFit, data: SearchData) -> TrainResult:
        return score_head(fit, data)

    def predict(
        self, model: FusedModel, genome: Genome, split: SplitFeatures, cfg: TrainConfig
    ) -> np.ndarray:
        return predict(model.head, split, genome, cfg)

    def release(self, split: SplitFeatures) -> None:
        split.release()  # the next genome may read other layers: map only what it reads

    def ship(self, split: SplitFeatures, put: Callable[[Any], Any]) -> dict[str, Any]:
        # Workers open the cache's files (a shared filesystem on a multi-node cluster);
        # token ids to recompute states from go through the object store.
        views = {k: s.spec() for k, s in split.views.items()}
        for view in views.values():
            if "tokens" in view:
                view["tokens"] = put(view["tokens"])
        return {"views": views, "labels": split.labels}

    def receive(self, spec: dict[str, Any]) -> SplitFeatures:
        views = {}
        for name, view in spec["views"].items():
            if "tokens" in view:
                import ray

                view = view | {"tokens": ray.get(view["tokens"])}
            views[name] = open_store(view)
        return SplitFeatures(views, np.asarray(spec["labels"]))
