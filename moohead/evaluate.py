"""Evaluate genomes: train on cached features, measure cost, log every result.

Results are cached by genome, so nothing is trained twice; FLOPs and latency are cached
by architecture (training genes do not change the computation).
"""

from __future__ import annotations

import copy
import hashlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from moohead.archive import Archive
from moohead.encoder import EncoderInfo, truncate
from moohead.features import SplitFeatures
from moohead.files import atomic_torch_save
from moohead.finetune import finetune_head
from moohead.fused import FusedModel, holds_encoder, load_trained_state, reference_inputs
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.measure import count_flops, count_params, measure_latency
from moohead.tasks import Task
from moohead.tokens import TokenSplit
from moohead.train import TrainConfig, TrainingDiverged, TrainResult, state_dict_cpu, train_head

FAILED_OBJECTIVE = 1e18  # what a failed genome scores on every (minimised) objective


@dataclass(frozen=True)
class Cost:
    """What an architecture costs at the reference input."""

    flops: int
    params: int
    head_params: int
    latency_ms: float | None


@dataclass
class Evaluation:
    """One genome's result, as stored in the archive."""

    id: int
    genome: Genome
    status: str  # "ok" or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    cost: Cost | None = None
    epochs: int = 0
    train_seconds: float = 0.0
    measure_seconds: float = 0.0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def score(self) -> float:
        return self.metrics.get("score", float("nan"))

    def objective(self, name: str, latency_ms: float | None = None) -> float:
        """Minimised value of one objective (score is negated).

        Args:
            name: ``score``, ``flops`` or ``latency``.
            latency_ms: A newer latency measurement to use instead of the archived one.
        """
        if not self.ok or self.cost is None:
            return FAILED_OBJECTIVE
        if name == "score":
            return -self.score
        if name == "flops":
            return float(self.cost.flops)
        latency = latency_ms if latency_ms is not None else self.cost.latency_ms
        if latency is None:
            raise ValueError("latency was not measured for this evaluation")
        return latency

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Evaluation:
        """The evaluation an archive line describes (the inverse of ``to_record``)."""
        cost = None
        if record.get("flops") is not None:
            cost = Cost(
                int(record["flops"]),
                int(record["params"]),
                int(record["head_params"]),
                record.get("latency_ms"),
            )
        return cls(
            id=int(record["id"]),
            genome=Genome.from_dict(record["genome"]),
            status=record["status"],
            metrics=dict(record.get("metrics") or {}),
            cost=cost,
            epochs=int(record.get("epochs") or 0),
            train_seconds=float(record.get("train_seconds") or 0.0),
            measure_seconds=float(record.get("measure_seconds") or 0.0),
            reason=record.get("reason"),
        )

    def to_record(self) -> dict[str, Any]:
        cost = self.cost
        return {
            "id": self.id,
            "genome": self.genome.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "metrics": self.metrics,
            "score": self.metrics.get("score"),
            "flops": cost.flops if cost else None,
            "params": cost.params if cost else None,
            "head_params": cost.head_params if cost else None,
            "latency_ms": cost.latency_ms if cost else None,
            "epochs": self.epochs,
            "train_seconds": round(self.train_seconds, 3),
            "measure_seconds": round(self.measure_seconds, 3),
        }


@dataclass
class SearchData:
    """Everything an evaluation reads: task, encoder and the search splits.

    The splits are cached features (frozen fidelity) or token ids (fine-tune fidelity).
    """

    task: Task
    encoder: Any
    info: EncoderInfo
    train: SplitFeatures | TokenSplit
    val: SplitFeatures | TokenSplit


def genome_seed(run_seed: int, genome: Genome) -> int:
    """Training seed of a genome: independent of evaluation order, so results are too."""
    digest = hashlib.sha256(f"{run_seed}:{genome.key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def train_genome(
    genome: Genome,
    task: Task,
    encoder: Any,
    info: EncoderInfo,
    train: SplitFeatures | TokenSplit,
    val: SplitFeatures | TokenSplit,
    cfg: TrainConfig,
    seed: int,
) -> TrainResult:
    """Train a genome at the fidelity its splits are in: token ids fine-tune the encoder
    with the head, cached features train the head alone."""
    if isinstance(train, TokenSplit) and isinstance(val, TokenSplit):
        return finetune_head(genome, task, encoder, info, train, val, cfg, seed)
    assert isinstance(train, SplitFeatures) and isinstance(val, SplitFeatures)
    return train_head(genome, task, info.hidden_size, train, val, cfg, seed)


class Evaluator:
    """Callable that turns genomes into Evaluations, caching and archiving them."""

    def __init__(
        self,
        data: SearchData,
        train_cfg: TrainConfig,
        archive: Archive,
        weights_dir: Path,
        seed: int,
        reference_length: int,
        measure_latency: bool,
        latency_runs: int = 20,
        executor: Any = None,
    ) -> None:
        self.data = data
        self.train_cfg = train_cfg
        self.archive = archive
        self.weights_dir = weights_dir
        self.seed = seed
        self.reference_length = reference_length
        self.measure_latency = measure_latency
        self.latency_runs = latency_runs
        self.executor = executor  # None: train in this process (see executor.py)
        self.stop_requested = False  # set by Ctrl-C: stop before the next evaluation
        self.by_key: dict[str, Evaluation] = {}
        self.costs: dict[str, Cost] = {}
        self._encoders: dict[int, Any] = {}
        self.evaluations: list[Evaluation] = []  # in the order the search asked for them
        self.archived: dict[str, Evaluation] = {}  # restored, not yet asked for again
        self.next_id = 0
        self.on_new: Callable[[Evaluation], None] | None = None  # progress hook
        weights_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, genomes: list[Genome]) -> list[Evaluation]:
        if self.executor is None:
            return [self.evaluate(g) for g in genomes]
        # Train every new genome at once on the executor, then record them in order.
        if self.stop_requested:
            raise KeyboardInterrupt
        new: dict[str, Genome] = {}
        for g in genomes:
            if g.key() not in self.by_key and g.key() not in self.archived:
                new.setdefault(g.key(), g)
        handles = dict(zip(new, self.executor.submit(self, list(new.values())), strict=True))
        results = []
        for g in genomes:
            handle = handles.pop(g.key(), None)
            trained = None if handle is None else self.executor.result(self, g, handle)
            results.append(self.evaluate(g, trained))
        return results

    def evaluate(
        self, genome: Genome, trained: TrainResult | BaseException | None = None
    ) -> Evaluation:
        """Result of a genome: the cached one, or a new evaluation, archived on completion.

        Args:
            trained: The genome's training result (or failure) from an executor; None
                trains it here.
        """
        cached = self.by_key.get(genome.key())
        if cached is not None:
            return cached
        restored = self.archived.pop(genome.key(), None)
        if restored is not None:  # a resumed run asks for it again: answer from the archive
            self.by_key[genome.key()] = restored
            self.evaluations.append(restored)
            return restored
        if trained is None and self.stop_requested:
            raise KeyboardInterrupt  # every finished evaluation is already archived
        ev = Evaluation(id=self.next_id, genome=genome, status="failed")
        self.next_id += 1
        try:
            if isinstance(trained, BaseException):
                raise trained
            result = trained if trained is not None else self.train(genome)
            ev.metrics, ev.epochs, ev.train_seconds = result.metrics, result.epochs, result.seconds
            t0 = time.perf_counter()
            ev.cost = self.cost(genome, result.head)
            ev.measure_seconds = time.perf_counter() - t0
            module = result.head if result.encoder is None else self._fused(result)
            atomic_torch_save(self.weights_path(ev.id), state_dict_cpu(module))
            ev.status = "ok"
        except TrainingDiverged as exc:
            ev.reason = f"diverged: {exc}"
        except (RuntimeError, ValueError, MemoryError) as exc:
            # A genome that cannot be trained (or does not fit in memory) is a result, not
            # the end of the search; CUDA's OutOfMemoryError is a RuntimeError.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            ev.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            ev.reason += f" ({traceback.extract_tb(exc.__traceback__)[-1].name})"
        finally:
            # The next genome may read other layers: map only what it reads.
            for split in (self.data.train, self.data.val):
                if isinstance(split, SplitFeatures):
                    split.release()
        self.archive.append(ev.to_record())
        self.by_key[genome.key()] = ev
        self.evaluations.append(ev)
        if self.on_new is not None:
            self.on_new(ev)
        return ev

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Take finished evaluations from an archive: they are answered, never retrained."""
        for record in records:
            ev = Evaluation.from_record(record)
            self.archived[ev.genome.key()] = ev
            self.next_id = max(self.next_id, ev.id + 1)
            if ev.ok and ev.cost is not None:
                self.costs.setdefault(ev.genome.arch_key(), ev.cost)

    def train(self, genome: Genome) -> TrainResult:
        """Train a genome at the search's fidelity."""
        d = self.data
        return train_genome(
            genome, d.task, d.encoder, d.info, d.train, d.val, self.train_cfg,
            genome_seed(self.seed, genome),
        )  # fmt: skip

    def _fused(self, result: TrainResult) -> FusedModel:
        return FusedModel(result.encoder, result.head, self.data.info.uses_token_type_ids)

    def load_trained(self, ev: Evaluation) -> FusedModel:
        """The evaluation's trained model from its saved weights (fine-tuned encoder included)."""
        state = torch.load(self.weights_path(ev.id), map_location="cpu", weights_only=True)
        model = self.fused(ev.genome)
        if holds_encoder(state):  # not into the cut encoder the evaluator shares
            model = FusedModel(copy.deepcopy(model.encoder), model.head, model.uses_token_type_ids)
        load_trained_state(model, state)
        return model.to(self.train_cfg.device).eval()

    def weights_path(self, eval_id: int) -> Path:
        return self.weights_dir / f"{eval_id}.pt"

    def encoder_at(self, depth: int) -> Any:
        if depth not in self._encoders:
            self._encoders[depth] = truncate(self.data.encoder, depth).eval()
        return self._encoders[depth]

    def fused(self, genome: Genome, head: Head | None = None) -> FusedModel:
        """The deployable model of a genome (an untrained head when none is given)."""
        if head is None:
            head = build_head(genome, self.data.info.hidden_size, self.data.task.num_labels)
        device = self.train_cfg.device
        return FusedModel(
            self.encoder_at(genome.depth),
            head.to(device).eval(),
            self.data.info.uses_token_type_ids,
        )

    def reference(self, model: FusedModel) -> tuple[torch.Tensor, ...]:
        return reference_inputs(model, 1, self.reference_length, self.train_cfg.device)

    def cost(self, genome: Genome, head: Head) -> Cost:
        """FLOPs, parameters and (when an objective) latency, cached per architecture."""
        key = genome.arch_key()
        if key not in self.costs:
            model = self.fused(genome, head)
            inputs = self.reference(model)
            latency = (
                measure_latency(model, inputs, runs=self.latency_runs)
                if self.measure_latency
                else None
            )
            self.costs[key] = Cost(
                flops=count_flops(model, inputs),
                params=count_params(model),
                head_params=count_params(head),
                latency_ms=latency,
            )
        return self.costs[key]
