"""Fidelity: how a search prepares its splits and trains and scores a genome.

A fidelity is a strategy object. ``frozen`` (frozen.py) trains heads alone on cached
encoder features; ``finetune`` (finetune.py) trains each genome's cut encoder with its
head on token ids. The search loop, the evaluator and the Ray executor only talk to this
protocol, so a new fidelity is a new class registered in ``FIDELITY_CLASSES`` (and its
name in ``config.FIDELITIES``), with no change to them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from moohead.data import Split
from moohead.encoder import EncoderInfo
from moohead.features import PrepareContext
from moohead.fused import FusedModel
from moohead.genome import Genome
from moohead.metrics import compute_metrics
from moohead.splits import SearchSplits
from moohead.tasks import Task
from moohead.train import HeadFit, StartBatch, TrainConfig, TrainResult

# name -> "module:class"; imported on use, so a fidelity's dependencies load only when chosen
FIDELITY_CLASSES = {
    "frozen": "moohead.frozen:FrozenFidelity",
    "finetune": "moohead.finetune:FinetuneFidelity",
}


@dataclass
class SearchData:
    """Everything an evaluation reads: task, encoder and the search splits (in the form
    the fidelity prepared them): heads fit ``train``, stop early on ``stop`` and are scored
    once on ``val``, their fitness."""

    task: Task
    encoder: Any
    info: EncoderInfo
    train: Any
    stop: Any
    val: Any

    def splits(self) -> tuple[Any, Any, Any]:
        return self.train, self.stop, self.val


class Fidelity(Protocol):
    """How genomes are trained and scored at one fidelity."""

    name: str
    runs_encoder: bool  # training runs the encoder, so it must sit on the training device

    def prepare(self, ctx: PrepareContext, split_name: str, split: Split) -> Any:
        """The split in the form ``train`` and ``predict`` read."""
        ...

    def disk_bytes(self, splits: list[Any]) -> int:
        """Bytes the prepared splits take on disk (0: held in memory)."""
        ...

    def train_config(self, base: TrainConfig) -> TrainConfig:
        """The training recipe of this fidelity on top of the search's budget."""
        ...

    def plan(self, genomes: list[Genome], data: SearchData, cfg: TrainConfig) -> list[list[int]]:
        """Which of ``genomes`` train side by side (groups of indices, every one once)."""
        ...

    def start(
        self, genomes: list[Genome], data: SearchData, cfg: TrainConfig, seeds: list[int]
    ) -> tuple[list[HeadFit | BaseException], StartBatch]:
        """Fresh heads of one planned group, and what ``drive`` tells before each batch
        (their shared reads), if anything."""
        ...

    def result(self, fit: HeadFit, data: SearchData) -> TrainResult:
        """A head at its best check so far, scored on ``data.val``."""
        ...

    def predict(
        self, model: FusedModel, genome: Genome, split: Any, cfg: TrainConfig
    ) -> np.ndarray:
        """Model outputs for every example of a prepared split, in the split's order."""
        ...

    def release(self, split: Any) -> None:
        """Drop what reading the split for one genome left in memory."""
        ...

    def ship(self, split: Any, put: Callable[[Any], Any]) -> Any:
        """What a remote worker needs to open the split (``put`` stores an object)."""
        ...

    def receive(self, spec: Any) -> Any:
        """The split a worker opens from ``ship``'s answer."""
        ...


def get_fidelity(name: str) -> Fidelity:
    """The fidelity registered under ``name``."""
    module, _, cls = FIDELITY_CLASSES[name].partition(":")
    fidelity: Fidelity = getattr(importlib.import_module(module), cls)()
    return fidelity


def prepare_search_data(fidelity: Fidelity, ctx: PrepareContext, cut: SearchSplits) -> SearchData:
    """The three search splits prepared at ``fidelity``, with the task and encoder of ``ctx``."""
    train, stop, val = (fidelity.prepare(ctx, name, split) for name, split in cut.named().items())
    return SearchData(ctx.task, ctx.encoder, ctx.info, train, stop, val)


def score_model(
    fidelity: Fidelity,
    task: Task,
    model: FusedModel,
    genome: Genome,
    splits: Mapping[str, Any],
    cfg: TrainConfig,
) -> dict[str, Any]:
    """Metrics of a trained model on each split, and ``score``, their main scores' mean."""
    per_split = {
        name: compute_metrics(task, fidelity.predict(model, genome, split, cfg), split.labels)
        for name, split in splits.items()
    }
    return {"score": float(np.mean([m["score"] for m in per_split.values()])), "splits": per_split}
