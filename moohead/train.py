"""Train heads: one loop (AdamW, length-bucketed batches, early stopping on search-val) for
both fidelities; the frozen job reads cached features, the fine-tune job (finetune.py) tokens."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moohead import batching
from moohead.features import FeatureStore, PooledStore, SplitFeatures
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.metrics import compute_metrics
from moohead.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget, batching and optimiser of one head's training (the same for every genome).

    The defaults are the frozen-fidelity recipe (constant learning rate, no clipping, fp32);
    ``finetune_config`` gives the fine-tuning one.

    Attributes:
        lr_encoder: Learning rate of the encoder's weights when fine-tuning.
        schedule: ``constant``, or ``linear`` (warm-up over ``warmup_ratio`` of the step
            budget, then linear decay to zero at the end of ``max_epochs``).
        clip_norm: Largest gradient norm (None: no clipping).
        amp: Mixed precision on CUDA: ``bf16``, ``fp16`` (with loss scaling) or None.
    """

    batch_size: int = 64
    max_epochs: int = 12
    patience: int = 3
    eval_batch_size: int = 512
    device: str = "cpu"
    lr_encoder: float = 2e-5
    schedule: str = "constant"
    warmup_ratio: float = 0.1
    clip_norm: float | None = None
    amp: str | None = None

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``amp`` (None: full precision)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "")


def finetune_config(base: TrainConfig) -> TrainConfig:
    """The fine-tuning recipe on top of ``base``'s budget: warm-up/decay, clipping, and on a
    GPU bf16 autocast (fp16 with loss scaling where bf16 is not supported)."""
    amp = None
    if torch.device(base.device).type == "cuda":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return replace(
        base, schedule="linear", clip_norm=1.0, amp=amp, eval_batch_size=base.batch_size * 2
    )


@dataclass
class TrainResult:
    """A trained head and how it scored on search-val.

    Attributes:
        encoder: The fine-tuned (truncated) encoder; None for frozen fidelity.
    """

    head: Head
    metrics: dict[str, float]
    epochs: int
    seconds: float
    encoder: Any = None


class TrainingJob(Protocol):
    """What the one training loop needs from a fidelity: parameters, batches, predictions."""

    module: nn.Module  # everything that is trained (and checkpointed at the best epoch)
    head: Head

    def param_groups(self) -> list[dict[str, Any]]: ...

    def lengths(self) -> np.ndarray: ...

    def forward(self, batch: np.ndarray) -> torch.Tensor: ...

    def predict_val(self) -> np.ndarray: ...


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


def in_length_order(
    lengths: np.ndarray, batch_size: int, run: Callable[[np.ndarray], torch.Tensor]
) -> np.ndarray:
    """``batching.in_length_order`` for a ``run`` returning tensors: the outputs come back
    as float32 rows in the examples' own order."""
    return batching.in_length_order(lengths, batch_size, lambda b: run(b).float().cpu().numpy())


def predict(head: Head, features: SplitFeatures, genome: Genome, cfg: TrainConfig) -> np.ndarray:
    """Head outputs for every example of a split, in the split's order."""
    head.eval()
    stores = inputs_for(features, genome)
    with torch.inference_mode():
        return in_length_order(
            example_lengths(stores),
            cfg.eval_batch_size,
            lambda batch: head(*head_inputs(stores, genome, batch, cfg.device)),
        )


def _loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


class FrozenJob:
    """Frozen fidelity: the head alone, on cached token states (or pre-pooled vectors)."""

    def __init__(
        self, genome: Genome, head: Head, train: SplitFeatures, val: SplitFeatures, cfg: TrainConfig
    ) -> None:
        self.genome, self.head = genome, head
        self.module: nn.Module = head
        self.train, self.val, self.cfg = train, val, cfg
        self.stores = inputs_for(train, genome)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.head.parameters()), "lr": self.genome.lr}]

    def lengths(self) -> np.ndarray:
        return example_lengths(self.stores)

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        out: torch.Tensor = self.head(
            *head_inputs(self.stores, self.genome, batch, self.cfg.device)
        )
        return out

    def predict_val(self) -> np.ndarray:
        return predict(self.head, self.val, self.genome, self.cfg)


def _lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = max(1, math.ceil(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def fit(
    job: TrainingJob,
    task: Task,
    train_labels: np.ndarray,
    val_labels: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> tuple[dict[str, float], int]:
    """The one training loop of both fidelities: AdamW, optional warm-up/decay, clipping and
    mixed precision, early stopping on search-val; the best epoch's weights are restored.

    Returns:
        (search-val metrics of the best epoch, epochs run).

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    device = torch.device(cfg.device)
    optimizer = torch.optim.AdamW(
        job.param_groups(),
        weight_decay=job.head.genome.weight_decay,
        fused=device.type in ("cpu", "cuda"),  # one kernel: 4x faster step
    )
    amp_dtype = cfg.amp_dtype
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    labels = torch.from_numpy(train_labels)
    # Regression trains on standardised targets (one scale for every task and learning
    # rate); the scale is folded into the last layer afterwards, so outputs are in label units.
    shift, scale = 0.0, 1.0
    if task.is_regression:
        shift, scale = float(labels.mean()), float(labels.std()) or 1.0
        labels = (labels - shift) / scale
    lengths = job.lengths()
    scheduler = None
    if cfg.schedule == "linear":
        steps = cfg.max_epochs * math.ceil(len(lengths) / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    best_score, best_state, best_metrics = -math.inf, None, {}
    stale, epoch = 0, 0
    for epoch in range(1, cfg.max_epochs + 1):
        job.module.train()
        for batch in bucketed_batches(lengths, cfg.batch_size, rng):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = job.forward(batch)
            loss = _loss(task, logits.float(), labels[batch].to(cfg.device))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} in epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_norm is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(job.module.parameters(), cfg.clip_norm)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
        metrics = compute_metrics(task, job.predict_val(), val_labels)
        if metrics["score"] > best_score:
            best_score, best_metrics, stale = metrics["score"], metrics, 0
            best_state = copy.deepcopy(job.module.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        job.module.load_state_dict(best_state)
    if task.is_regression:
        with torch.no_grad():
            job.head.mlp.classifier.weight.mul_(scale)
            job.head.mlp.classifier.bias.mul_(scale).add_(shift)
    job.module.eval()
    return best_metrics, epoch


def train_head(
    genome: Genome,
    task: Task,
    hidden_size: int,
    train: SplitFeatures,
    val: SplitFeatures,
    cfg: TrainConfig,
    seed: int,
) -> TrainResult:
    """Train the genome's head on cached features (frozen fidelity), early-stopped on the
    main score of ``val``.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)  # head init and dropout
    rng = np.random.default_rng(seed)  # batch order
    head = build_head(genome, hidden_size, task.num_labels).to(cfg.device)
    job = FrozenJob(genome, head, train, val, cfg)
    metrics, epochs = fit(job, task, train.labels, val.labels, cfg, rng)
    return TrainResult(head, metrics, epochs, time.perf_counter() - start)


def score_splits(
    task: Task, head: Head, genome: Genome, splits: dict[str, SplitFeatures], cfg: TrainConfig
) -> dict[str, Any]:
    """Metrics of a trained head on each split, and ``score``, their main scores' mean."""
    per_split = {
        name: compute_metrics(task, predict(head, f, genome, cfg), f.labels)
        for name, f in splits.items()
    }
    return {"score": float(np.mean([m["score"] for m in per_split.values()])), "splits": per_split}


def state_dict_cpu(module: nn.Module) -> dict[str, Any]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}
