"""Fine-tune fidelity: each genome trains with its encoder (cut to the genome's depth) end to end.

The training loop is ``train.fit``, shared with the frozen fidelity; this module supplies
the job: the fused model, its parameter groups (encoder and head learning rates) and
batches of token ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from moohead.data import Split
from moohead.encoder import truncate
from moohead.features import PrepareContext, read_views
from moohead.fidelity import SearchData
from moohead.fused import FusedModel
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.metrics import compute_metrics
from moohead.tokens import TokenSplit, TokenView, tokenize_split
from moohead.train import (
    HeadFit,
    StartBatch,
    TrainConfig,
    TrainResult,
    in_length_order,
    started,
    target_scale,
    train_alone,
    unfold_scale,
)


def token_views(split: TokenSplit, genome: Genome) -> list[TokenView]:
    """The views a genome's fused model reads: the sentence, the joint pair, or both sides."""
    return [split.views[n] for n in read_views(split.views, genome)]


class FinetuneJob:
    """The fused model (truncated encoder + head), trained on token ids."""

    def __init__(
        self,
        genome: Genome,
        model: FusedModel,
        train: TokenSplit,
        stop: TokenSplit,
        cfg: TrainConfig,
    ) -> None:
        self.genome, self.model, self.cfg = genome, model, cfg
        self.module: nn.Module = model
        self.head: Head = model.head
        self.train_views, self.stop_views = token_views(train, genome), token_views(stop, genome)

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

    def predict_stop(self) -> np.ndarray:
        return predict_tokens(self.model, self.stop_views, self.cfg)

    def predict(self, module: nn.Module, split: TokenSplit) -> np.ndarray:
        return predict_tokens(module, token_views(split, self.genome), self.cfg)  # type: ignore[arg-type]


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


def start_finetune(
    genome: Genome,
    data: SearchData,
    cfg: TrainConfig,
    seed: int,
    head_init: dict[str, torch.Tensor] | None = None,
) -> HeadFit:
    """``data.encoder[:depth]`` + a fresh head of ``genome`` (from ``seed``), ready to train
    end to end; the encoder is not modified.

    ``head_init`` starts the head from trained weights (``moohead refine`` starts from the
    head the frozen search trained) instead of a fresh initialisation.
    """
    torch.manual_seed(seed)  # head init and dropout
    info, task = data.info, data.task
    head = build_head(genome, info.hidden_size, task.num_labels)
    if head_init is not None:  # saved in label units; training fits standardised targets
        head.load_state_dict(head_init)
        unfold_scale(head, *target_scale(task, data.train.labels))
    model = FusedModel(truncate(data.encoder, genome.depth), head, info.uses_token_type_ids)
    model.to(cfg.device)
    job = FinetuneJob(genome, model, data.train, data.stop, cfg)
    return HeadFit(job, task, data.train.labels, data.stop.labels, cfg)


def score_finetuned(fit: HeadFit, data: SearchData) -> TrainResult:
    """The fused model at its best check, scored once on search-val."""
    model: FusedModel = fit.best_module()  # type: ignore[assignment]
    metrics = compute_metrics(data.task, fit.job.predict(model, data.val), data.val.labels)
    return TrainResult(model.head, metrics, fit.epochs, fit.seconds, model.encoder)


def finetune_head(
    genome: Genome,
    data: SearchData,
    cfg: TrainConfig,
    seed: int,
    head_init: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``data.encoder[:depth]`` + the genome's head end to end, scored on search-val.

    Raises:
        TrainingDiverged: when the loss is not finite.
    """
    return score_finetuned(train_alone(start_finetune(genome, data, cfg, seed, head_init)), data)


def finetune_config(base: TrainConfig) -> TrainConfig:
    """The fine-tuning recipe on top of ``base``'s budget: warm-up/decay, clipping, and on a
    GPU bf16 autocast (fp16 with loss scaling where bf16 is not supported)."""
    amp = None
    if torch.device(base.device).type == "cuda":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return replace(
        base, schedule="linear", clip_norm=1.0, amp=amp, eval_batch_size=base.batch_size * 2
    )


class FinetuneFidelity:
    """Each genome trains its encoder, cut to the genome's depth, end to end on token ids
    (the seed paper's protocol; no feature cache)."""

    name = "finetune"
    runs_encoder = True

    def prepare(self, ctx: PrepareContext, split_name: str, split: Split) -> TokenSplit:
        return tokenize_split(
            ctx.tokenizer, ctx.task, split, ctx.cache.max_length, ctx.info.uses_token_type_ids
        )

    def disk_bytes(self, splits: list[Any]) -> int:
        return 0

    def train_config(self, base: TrainConfig) -> TrainConfig:
        return finetune_config(base)

    def plan(self, genomes: list[Genome], data: SearchData, cfg: TrainConfig) -> list[list[int]]:
        return [[i] for i in range(len(genomes))]  # each holds an encoder: one at a time

    def start(
        self, genomes: list[Genome], data: SearchData, cfg: TrainConfig, seeds: list[int]
    ) -> tuple[list[HeadFit | BaseException], StartBatch]:
        return [
            started(start_finetune, g, data, cfg, s) for g, s in zip(genomes, seeds, strict=True)
        ], None

    def result(self, fit: HeadFit, data: SearchData) -> TrainResult:
        return score_finetuned(fit, data)

    def predict(
        self, model: FusedModel, genome: Genome, split: TokenSplit, cfg: TrainConfig
    ) -> np.ndarray:
        return predict_tokens(model, token_views(split, genome), cfg)

    def release(self, split: TokenSplit) -> None:
        pass  # token ids stay in memory for the whole search

    def ship(self, split: TokenSplit, put: Callable[[Any], Any]) -> dict[str, Any]:
        return {"tokens": put(split)}  # through the object store: no file to share

    def receive(self, spec: dict[str, Any]) -> TokenSplit:
        import ray

        split: TokenSplit = ray.get(spec["tokens"])
        return split
