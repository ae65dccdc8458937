"""Frozen fidelity: heads alone on cached encoder features (token states or pre-pooled
vectors); the training loop is ``train.fit``, shared with the fine-tune fidelity."""

from __future__ import annotations

import time
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
from moohead.train import TrainConfig, TrainResult, fit, in_length_order


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
    head: Head, stores: list[Store], genome: Genome, indices: np.ndarray, device: str
) -> torch.Tensor:
    """The head's outputs for a batch, on token states or on pre-pooled vectors."""
    pooled = bool(stores) and isinstance(stores[0], PooledStore)
    out: torch.Tensor = head(*head_inputs(stores, genome, indices, device), pooled=pooled)
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


class FrozenJob:
    """Frozen fidelity: the head alone, on cached token states (or pre-pooled vectors)."""

    def __init__(
        self,
        genome: Genome,
        head: Head,
        train: SplitFeatures,
        stop: SplitFeatures,
        cfg: TrainConfig,
    ) -> None:
        self.genome, self.head = genome, head
        self.module: nn.Module = head
        self.train, self.stop, self.cfg = train, stop, cfg
        self.stores = inputs_for(train, genome)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": self.genome.lr}]

    def lengths(self) -> np.ndarray:
        return example_lengths(self.stores)

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        return run_head(self.head, self.stores, self.genome, batch, self.cfg.device)

    def predict_stop(self) -> np.ndarray:
        return predict(self.head, self.stop, self.genome, self.cfg)


def training_rows(train: SplitFeatures, genome: Genome) -> SplitFeatures:
    """The examples a head trains on: all of them, except for a token-level head when the
    cache budget kept token states of a subset only (``cache_plan.py``)."""
    if reads_pooled(genome):
        return train
    have = train.token_positions()
    return train if len(have) == len(train) else train.subset(have)


def train_head(genome: Genome, data: SearchData, cfg: TrainConfig, seed: int) -> TrainResult:
    """Train the genome's head on cached features (frozen fidelity), early-stopped on the
    main score of ``data.stop``, and score it on ``data.val``.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)  # head init and dropout
    rng = np.random.default_rng(seed)  # batch order
    head = build_head(genome, data.info.hidden_size, data.task.num_labels).to(cfg.device)
    train = training_rows(data.train, genome)
    job = FrozenJob(genome, head, train, data.stop, cfg)
    epochs = fit(job, data.task, train.labels, data.stop.labels, cfg, rng)
    metrics = compute_metrics(data.task, predict(head, data.val, genome, cfg), data.val.labels)
    return TrainResult(head, metrics, epochs, time.perf_counter() - start)


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

    def train(self, genome: Genome, data: SearchData, cfg: TrainConfig, seed: int) -> TrainResult:
        return train_head(genome, data, cfg, seed)

    def predict(
        self, model: FusedModel, genome: Genome, split: SplitFeatures, cfg: TrainConfig
    ) -> np.ndarray:
        return predict(model.head, split, genome, cfg)

    def release(self, split: SplitFeatures) -> None:
        split.release()  # the next genome may read other layers: map only what it reads

    def ship(self, split: SplitFeatures, put: Callable[[Any], Any]) -> dict[str, Any]:
        # Workers open the cache's files (a shared filesystem on a multi-node cluster).
        return {"views": {k: s.spec() for k, s in split.views.items()}, "labels": split.labels}

    def receive(self, spec: dict[str, Any]) -> SplitFeatures:
        views = {k: FeatureStore.from_spec(v) for k, v in spec["views"].items()}
        return SplitFeatures(views, np.asarray(spec["labels"]))
