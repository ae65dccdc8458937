"""Train a head on cached features: AdamW, length-bucketed batches, early stopping on search-val."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moohead.features import FeatureStore, PooledStore, SplitFeatures
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.metrics import compute_metrics
from moohead.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget and batching of one head's training (the same for every genome)."""

    batch_size: int = 64
    max_epochs: int = 12
    patience: int = 3
    eval_batch_size: int = 512
    device: str = "cpu"


@dataclass
class TrainResult:
    """A trained head and how it scored on search-val."""

    head: Head
    metrics: dict[str, float]
    epochs: int
    seconds: float


def read_states(genome: Genome) -> list[int]:
    """Hidden-state indices a genome reads: the last ``k`` of the first ``depth`` layers."""
    return list(range(genome.depth - genome.k + 1, genome.depth + 1))


Store = FeatureStore | PooledStore
POOLED_FAST_PATH = ("cls", "mean")


def inputs_for(features: SplitFeatures, genome: Genome) -> list[Store]:
    """The stores a genome's head reads: the sentence (or joint pair), or both sides.

    Heads with no mixer that pool CLS or mean read pre-pooled per-layer vectors: the same
    numbers, a small fraction of the work.
    """
    if "text" in features.views:
        names = ["text"]
    else:
        names = ["a", "b"] if genome.pair == "siamese" else ["joint"]
    stores: list[Store] = [features.views[n] for n in names]
    if genome.mixer == "none" and genome.pool in POOLED_FAST_PATH:
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


def example_lengths(stores: list[Store]) -> np.ndarray:
    return np.sum([s.lengths.astype(np.int64) for s in stores], axis=0)


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar length: little padding, still random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def predict(head: Head, features: SplitFeatures, genome: Genome, cfg: TrainConfig) -> np.ndarray:
    """Head outputs for every example of a split, in the split's order."""
    head.eval()
    stores = inputs_for(features, genome)
    order = np.argsort(example_lengths(stores), kind="stable")
    outputs: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(order), cfg.eval_batch_size):
            batch = order[start : start + cfg.eval_batch_size]
            outputs.append(
                head(*head_inputs(stores, genome, batch, cfg.device)).float().cpu().numpy()
            )
    result = np.empty((len(order), outputs[0].shape[1]), dtype=np.float32)
    result[order] = np.concatenate(outputs)
    return result


def _loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


def train_head(
    genome: Genome,
    task: Task,
    hidden_size: int,
    train: SplitFeatures,
    val: SplitFeatures,
    cfg: TrainConfig,
    seed: int,
) -> TrainResult:
    """Train the genome's head on ``train``, early-stopped on the main score of ``val``.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)  # head init and dropout
    rng = np.random.default_rng(seed)  # batch order
    head = build_head(genome, hidden_size, task.num_labels).to(cfg.device)
    optimizer = torch.optim.AdamW(
        head.parameters(),
        lr=genome.lr,
        weight_decay=genome.weight_decay,
        fused=torch.device(cfg.device).type in ("cpu", "cuda"),  # one kernel: 4x faster step
    )
    labels = torch.from_numpy(train.labels)
    # Regression trains on standardised targets (one scale for every task and learning
    # rate); the scale is folded into the last layer afterwards, so outputs are in label units.
    shift, scale = 0.0, 1.0
    if task.is_regression:
        shift, scale = float(labels.mean()), float(labels.std()) or 1.0
        labels = (labels - shift) / scale
    stores = inputs_for(train, genome)
    lengths = example_lengths(stores)
    best_score, best_state, best_metrics = -math.inf, None, {}
    stale, epoch = 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        head.train()
        for batch in bucketed_batches(lengths, cfg.batch_size, rng):
            loss = _loss(
                task,
                head(*head_inputs(stores, genome, batch, cfg.device)),
                labels[batch].to(cfg.device),
            )
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        metrics = compute_metrics(task, predict(head, val, genome, cfg), val.labels)
        if metrics["score"] > best_score:
            best_score, best_metrics, stale = metrics["score"], metrics, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        head.load_state_dict(best_state)
    if task.is_regression:
        with torch.no_grad():
            head.mlp.classifier.weight.mul_(scale)
            head.mlp.classifier.bias.mul_(scale).add_(shift)
    head.eval()
    return TrainResult(head, best_metrics, epoch, time.perf_counter() - start)


def score_splits(
    task: Task, head: Head, genome: Genome, splits: dict[str, SplitFeatures], cfg: TrainConfig
) -> dict[str, Any]:
    """Metrics of a trained head on each split, and ``score``, their main scores' mean."""
    per_split = {
        name: compute_metrics(task, predict(head, f, genome, cfg), f.labels)
        for name, f in splits.items()
    }
    return {"score": float(np.mean([m["score"] for m in per_split.values()])), "splits": per_split}


def state_dict_cpu(head: Head) -> dict[str, Any]:
    return {k: v.detach().cpu() for k, v in head.state_dict().items()}
