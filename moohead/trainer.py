"""Trainers turn the new genomes of a generation into training results, in order.

``LocalTrainer`` trains them in this process, a planned group at a time (whole-generation
training: a group's heads share each batch); ``RayTrainer`` (executor.py) starts them all
as Ray tasks at once. A genome that cannot be trained yields its exception, which the
evaluator records as a failed evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

from moohead.fidelity import Fidelity, SearchData
from moohead.genome import Genome
from moohead.stop import StopFlag
from moohead.train import TRAINING_FAILURES, HeadFit, StartBatch, TrainConfig, TrainResult, drive

Outcome = TrainResult | BaseException


class Trainer(Protocol):
    """Trains genomes; the evaluator measures, saves and archives what comes back."""

    data: SearchData

    def train(self, genomes: list[Genome], budget: float = 1.0) -> Iterator[Outcome]:
        """One outcome per genome, in order, each trained to ``budget``."""
        ...

    def keep_paused(self, keys: set[str]) -> None:
        """Forget heads paused at a lower budget, except those of genome ``keys``."""
        ...


def genome_seed(run_seed: int, genome: Genome) -> int:
    """Training seed of a genome: independent of evaluation order, so results are too."""
    digest = hashlib.sha256(f"{run_seed}:{genome.key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def train_to(
    fidelity: Fidelity, genome: Genome, data: SearchData, cfg: TrainConfig, seed: int,
    budget: float = 1.0,
) -> TrainResult:  # fmt: skip
    """Train one genome from scratch to ``budget`` and score it; raise what training raised.

    Continuing a paused head and training afresh to the higher budget give the same head
    (``train.Schedule``), so a worker or a resumed search that lost the paused head loses
    time only.
    """
    fits, start_batch = fidelity.start([genome], data, cfg, [seed])
    fit = fits[0]
    if isinstance(fit, BaseException):
        raise fit
    drive([fit], budget, start_batch)
    if fit.error is not None:
        raise fit.error
    return fidelity.result(fit, data)


class LocalTrainer:
    """Train genomes in this process, a group at a time, when their outcomes are asked for.

    The fidelity plans which genomes train side by side (frozen heads share each batch's
    reads; fine-tuned ones train alone). A stop request lands between two batches: the
    group in progress is dropped, nothing of it archived. Heads trained to a budget below
    1 are paused, with their optimiser state, until ``keep_paused`` drops them, so that a
    promoted head continues where it stopped.
    """

    def __init__(
        self,
        fidelity: Fidelity,
        data: SearchData,
        cfg: TrainConfig,
        seed: int,
        stop: StopFlag | None = None,
    ) -> None:
        self.fidelity, self.data, self.cfg, self.seed = fidelity, data, cfg, seed
        self.stop = stop or StopFlag()
        self.paused: dict[str, tuple[HeadFit, StartBatch]] = {}

    def train(self, genomes: list[Genome], budget: float = 1.0) -> Iterator[Outcome]:
        outcomes: dict[int, Outcome] = {}
        groups = iter(self._groups(genomes))
        for i in range(len(genomes)):
            while i not in outcomes:
                self.stop.check()  # every finished evaluation is already archived
                outcomes.update(self._train_group(genomes, next(groups), budget))
            yield outcomes.pop(i)

    def keep_paused(self, keys: set[str]) -> None:
        self.paused = {k: v for k, v in self.paused.items() if k in keys}

    def _groups(self, genomes: list[Genome]) -> list[list[int]]:
        """Fresh genomes as the fidelity plans them; paused ones with the heads they trained
        beside, at the step they stopped at; groups in the order they are first asked for."""
        fresh = [i for i, g in enumerate(genomes) if g.key() not in self.paused]
        plan = self.fidelity.plan([genomes[i] for i in fresh], self.data, self.cfg)
        groups = [[fresh[j] for j in group] for group in plan]
        resumed: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(genomes):
            if g.key() in self.paused:
                fit, start_batch = self.paused[g.key()]
                resumed.setdefault((fit.step, id(start_batch)), []).append(i)
        return sorted(groups + list(resumed.values()), key=min)

    def _train_group(
        self, genomes: list[Genome], group: list[int], budget: float
    ) -> dict[int, Outcome]:
        chosen = [genomes[i] for i in group]
        try:
            if chosen[0].key() in self.paused:
                paused = [self.paused.pop(g.key()) for g in chosen]
                started: list[HeadFit | BaseException] = [f for f, _ in paused]
                start_batch = paused[0][1]
            else:
                seeds = [genome_seed(self.seed, g) for g in chosen]
                started, start_batch = self.fidelity.start(chosen, self.data, self.cfg, seeds)
            fits = [f for f in started if not isinstance(f, BaseException)]
            drive(fits, budget, start_batch, self.stop.check)
            out: dict[int, Outcome] = {}
            for i, fit in zip(group, started, strict=True):
                out[i] = self._outcome(fit)
                if not isinstance(fit, BaseException) and fit.error is None and fit.live:
                    self.paused[genomes[i].key()] = (fit, start_batch)
            return out
        finally:
            for split in self.data.splits():
                self.fidelity.release(split)

    def _outcome(self, fit: HeadFit | BaseException) -> Outcome:
        if isinstance(fit, BaseException):
            return fit
        if fit.error is not None:
            return fit.error
        try:
            return self.fidelity.result(fit, self.data)
        except TRAINING_FAILURES as exc:
            return exc
