"""Fine-tune fidelity: each genome trains with its encoder (cut to the genome's depth) end to end.

The training loop is ``train.fit``, shared with the frozen fidelity; this module supplies
the job: the fused model, its parameter groups (encoder and head learning rates) and
batches of token ids.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from moohead.encoder import EncoderInfo, truncate
from moohead.features import SplitFeatures
from moohead.fused import FusedModel
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.metrics import compute_metrics
from moohead.tasks import Task
from moohead.tokens import TokenSplit, TokenView
from moohead.train import TrainConfig, TrainResult, fit, in_length_order, predict


def token_views(split: TokenSplit, genome: Genome) -> list[TokenView]:
    """The views a genome's fused model reads: the sentence, the joint pair, or both sides."""
    if "text" in split.views:
        return [split.views["text"]]
    names = ["a", "b"] if genome.pair == "siamese" else ["joint"]
    return [split.views[n] for n in names]


class FinetuneJob:
    """The fused model (truncated encoder + head), trained on token ids."""

    def __init__(
        self,
        genome: Genome,
        model: FusedModel,
        train: TokenSplit,
        val: TokenSplit,
        cfg: TrainConfig,
    ) -> None:
        self.genome, self.model, self.cfg = genome, model, cfg
        self.module: nn.Module = model
        self.head: Head = model.head
        self.train_views, self.val_views = token_views(train, genome), token_views(val, genome)

    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"params": list(self.model.encoder.parameters()), "lr": self.cfg.lr_encoder},
            {"params": list(self.head.parameters()), "lr": self.genome.lr},
        ]

    def lengths(self) -> np.ndarray:
        return np.sum([v.lengths for v in self.train_views], axis=0)

    def _inputs(self, views: list[TokenView], batch: np.ndarray) -> list[torch.Tensor]:
        return [t for v in views for t in v.batch(batch, self.cfg.device)]

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        out: torch.Tensor = self.model(*self._inputs(self.train_views, batch))
        return out

    def predict_val(self) -> np.ndarray:
        return predict_tokens(self.model, self.val_views, self.cfg)


def predict_tokens(model: FusedModel, views: list[TokenView], cfg: TrainConfig) -> np.ndarray:
    """Model outputs for every example, in the split's order (length-sorted batches)."""
    model.eval()
    amp, device = cfg.amp_dtype, torch.device(cfg.device).type
    with torch.inference_mode(), torch.autocast(device, dtype=amp, enabled=amp is not None):
        return in_length_order(
            np.sum([v.lengths for v in views], axis=0),
            cfg.eval_batch_size,
            lambda batch: model(*[t for v in views for t in v.batch(batch, cfg.device)]),
        )


def score_model(
    task: Task,
    model: FusedModel,
    genome: Genome,
    splits: Mapping[str, SplitFeatures | TokenSplit],
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Metrics of a trained model on each split, and ``score``, their main scores' mean.

    Cached features are read by the head alone; token ids run the whole fused model (a
    fine-tuned encoder's features are not in any cache).
    """
    per_split = {}
    for name, split in splits.items():
        if isinstance(split, TokenSplit):
            outputs = predict_tokens(model, token_views(split, genome), cfg)
        else:
            outputs = predict(model.head, split, genome, cfg)
        per_split[name] = compute_metrics(task, outputs, split.labels)
    return {"score": float(np.mean([m["score"] for m in per_split.values()])), "splits": per_split}


def finetune_head(
    genome: Genome,
    task: Task,
    encoder: Any,
    info: EncoderInfo,
    train: TokenSplit,
    val: TokenSplit,
    cfg: TrainConfig,
    seed: int,
    head_init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``encoder[:depth]`` + the genome's head end to end; ``encoder`` is not modified.

    ``head_init`` starts the head from trained weights (``moohead refine`` starts from the
    head the frozen search trained) instead of a fresh initialisation.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)  # head init and dropout
    rng = np.random.default_rng(seed)  # batch order
    head = build_head(genome, info.hidden_size, task.num_labels)
    if head_init is not None:
        head.load_state_dict(head_init)
    model = FusedModel(truncate(encoder, genome.depth), head, info.uses_token_type_ids)
    model.to(cfg.device)
    job = FinetuneJob(genome, model, train, val, cfg)
    metrics, epochs = fit(job, task, train.labels, val.labels, cfg, rng)
    return TrainResult(model.head, metrics, epochs, time.perf_counter() - start, model.encoder)
