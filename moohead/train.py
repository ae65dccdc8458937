"""Train heads: one loop (AdamW, length-bucketed batches, early stopping on search-stop) for
both fidelities; the frozen job reads cached features, the fine-tune job (finetune.py) tokens."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moohead import batching
from moohead.heads import Head
from moohead.metrics import compute_metrics
from moohead.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget, batching and optimiser of one head's training (the same for every genome).

    The defaults are the frozen-fidelity recipe (constant learning rate, no clipping, fp32);
    ``finetune.finetune_config`` gives the fine-tuning one.

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


@dataclass
class TrainResult:
    """A trained head and how it scored on search-val (its fitness).

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

    def predict_stop(self) -> np.ndarray: ...


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


def _loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


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
    stop_labels: np.ndarray,
    cfg: TrainConfig,
    rng: np.random.Generator,
) -> int:
    """The one training loop of both fidelities: AdamW, optional warm-up/decay, clipping and
    mixed precision, early stopping on search-stop; the best epoch's weights are restored.
    The fitness is measured afterwards, once, on other data (search-val): the best of a
    dozen noisy epochs on the stopping data would flatter every head.

    Returns:
        Epochs run.

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
    shift, scale = target_scale(task, train_labels)
    labels = (labels - shift) / scale
    lengths = job.lengths()
    scheduler = None
    if cfg.schedule == "linear":
        steps = cfg.max_epochs * math.ceil(len(lengths) / cfg.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps))
    best_score, best_state = -math.inf, None
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
        score = compute_metrics(task, job.predict_stop(), stop_labels)["score"]
        if score > best_score:
            best_score, stale = score, 0
            best_state = copy.deepcopy(job.module.state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        job.module.load_state_dict(best_state)
    fold_scale(job.head, shift, scale)
    job.module.eval()
    return epoch


def target_scale(task: Task, train_labels: np.ndarray) -> tuple[float, float]:
    """``(shift, scale)`` of the targets training fits: the labels' mean and standard
    deviation for regression, ``(0, 1)`` (no change) for classification."""
    if not task.is_regression:
        return 0.0, 1.0
    labels = torch.from_numpy(train_labels)
    return float(labels.mean()), float(labels.std()) or 1.0


def fold_scale(head: Head, shift: float, scale: float) -> None:
    """Fold the target scale into the last layer: outputs go from standardised to label
    units. A saved head is in label units."""
    with torch.no_grad():
        head.mlp.classifier.weight.mul_(scale)
        head.mlp.classifier.bias.mul_(scale).add_(shift)


def unfold_scale(head: Head, shift: float, scale: float) -> None:
    """The inverse of ``fold_scale``: a saved head back in the standardised units training
    fits, so training that starts from it starts where it left off."""
    with torch.no_grad():
        head.mlp.classifier.bias.sub_(shift).div_(scale)
        head.mlp.classifier.weight.div_(scale)
