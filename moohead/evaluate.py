"""Evaluate genomes: train (through an injected trainer), measure cost, save, archive.

Results are cached by genome, so nothing is trained twice; costs are cached by
architecture in the cost measurer. Every part is injected (DESIGN.md convention 4): a
trainer, a cost measurer, a weight store and the archive, so tests can pass fakes.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

import torch

from moohead.archive import Archive
from moohead.evaluation import Cost, Evaluation, budget_key
from moohead.fused import trained_state
from moohead.genome import Genome
from moohead.heads import Head
from moohead.rundir import WeightStore
from moohead.stop import StopFlag
from moohead.train import TRAINING_FAILURES, TrainingDiverged, TrainResult
from moohead.trainer import Outcome, Trainer


class MeasuresCost(Protocol):
    def __call__(self, genome: Genome, head: Head) -> Cost: ...

    def restore(self, genome: Genome, cost: Cost) -> None: ...


class Evaluator:
    """Callable that turns genomes into Evaluations, caching and archiving them.

    Args:
        trainer: Trains the genomes not evaluated yet.
        costs: FLOPs, parameters and latency of a trained genome (cached per architecture).
        weights: Where each successful evaluation's weights are saved, by id.
        archive: Where each finished evaluation is appended, the moment it finishes.
        stop: Set by Ctrl-C; checked before new genomes are trained.
    """

    def __init__(
        self,
        trainer: Trainer,
        costs: MeasuresCost,
        weights: WeightStore,
        archive: Archive,
        stop: StopFlag | None = None,
    ) -> None:
        self.trainer, self.costs, self.weights, self.archive = trainer, costs, weights, archive
        self.stop = stop or StopFlag()
        self.by_key: dict[str, Evaluation] = {}
        self.evaluations: list[Evaluation] = []  # in the order the search asked for them
        self.archived: dict[str, Evaluation] = {}  # restored, not yet asked for again
        self.next_id = 0
        self.on_new: Callable[[Evaluation], None] | None = None  # progress hook

    def __call__(self, genomes: list[Genome], budget: float = 1.0) -> list[Evaluation]:
        """Each genome's evaluation at ``budget`` (a share of the full training budget);
        only those not evaluated there yet are trained."""
        new: dict[str, Genome] = {}
        for g in genomes:
            key = budget_key(g, budget)
            if key not in self.by_key and key not in self.archived:
                new.setdefault(key, g)
        if new:
            self.stop.check()
        outcomes = self.trainer.train(list(new.values()), budget)
        results = []
        for g in genomes:
            known = self.known(g, budget)
            results.append(known if known is not None else self._record(g, budget, next(outcomes)))
        return results

    def asked(self, genome: Genome, budget: float = 1.0) -> Evaluation | None:
        """The genome's evaluation at ``budget`` if this run asked for it already; one
        only restored from the archive of a resumed run does not count until it is asked
        for again, so a resumed search decides as the interrupted one did at this point."""
        return self.by_key.get(budget_key(genome, budget))

    def known(self, genome: Genome, budget: float = 1.0) -> Evaluation | None:
        """The genome's evaluation at ``budget`` if it has one: asked for before, or
        restored from the archive of a resumed run (then it joins this run's evaluations)."""
        key = budget_key(genome, budget)
        cached = self.by_key.get(key)
        if cached is not None:
            return cached
        restored = self.archived.pop(key, None)
        if restored is not None:
            self.by_key[key] = restored
            self.evaluations.append(restored)
        return restored

    def _record(self, genome: Genome, budget: float, outcome: Outcome) -> Evaluation:
        """A new evaluation from its training outcome: measured, saved, archived."""
        ev = Evaluation(id=self.next_id, genome=genome, status="failed", budget=budget)
        self.next_id += 1
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            self._measure(ev, outcome)
        except TrainingDiverged as exc:
            ev.reason = f"diverged: {exc}"
        except TRAINING_FAILURES as exc:
            # A genome that cannot be trained (or does not fit in memory) is a result, not
            # the end of the search; CUDA's OutOfMemoryError is a RuntimeError.
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            ev.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            ev.reason += f" ({traceback.extract_tb(exc.__traceback__)[-1].name})"
        self.archive.append(ev.to_record())
        self.by_key[ev.key] = ev
        self.evaluations.append(ev)
        if self.on_new is not None:
            self.on_new(ev)
        return ev

    def _measure(self, ev: Evaluation, result: TrainResult) -> None:
        ev.metrics, ev.epochs, ev.train_seconds = result.metrics, result.epochs, result.seconds
        t0 = time.perf_counter()
        ev.cost = self.costs(ev.genome, result.head)
        ev.measure_seconds = time.perf_counter() - t0
        if ev.full:  # heads below the full budget never enter a front: no weights kept
            self.weights.save(ev.id, trained_state(result.head, result.encoder))
        ev.status = "ok"

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Take finished evaluations from an archive: they are answered, never retrained."""
        for record in records:
            ev = Evaluation.from_record(record)
            self.archived[ev.key] = ev
            self.next_id = max(self.next_id, ev.id + 1)
            if ev.ok and ev.cost is not None:
                self.costs.restore(ev.genome, ev.cost)
