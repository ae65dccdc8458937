"""Trainers turn the new genomes of a generation into training results, in order.

``LocalTrainer`` trains them one after another in this process, each only when the
evaluator asks for it (so a stop request lands between two genomes); ``RayTrainer``
(executor.py) starts them all as Ray tasks at once. A genome that cannot be trained
yields its exception, which the evaluator records as a failed evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Protocol

from moohead.fidelity import Fidelity, SearchData
from moohead.genome import Genome
from moohead.stop import StopFlag
from moohead.train import TrainConfig, TrainResult

# What a genome that cannot be trained raises: divergence (a RuntimeError), shapes or
# values that do not work, CUDA's OutOfMemoryError (a RuntimeError), host memory.
TRAINING_FAILURES = (RuntimeError, ValueError, MemoryError)

Outcome = TrainResult | BaseException


class Trainer(Protocol):
    """Trains genomes; the evaluator measures, saves and archives what comes back."""

    data: SearchData

    def train(self, genomes: list[Genome]) -> Iterator[Outcome]:
        """One outcome per genome, in order."""
        ...


def genome_seed(run_seed: int, genome: Genome) -> int:
    """Training seed of a genome: independent of evaluation order, so results are too."""
    digest = hashlib.sha256(f"{run_seed}:{genome.key()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class LocalTrainer:
    """Train each genome in this process when its outcome is asked for."""

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

    def train(self, genomes: list[Genome]) -> Iterator[Outcome]:
        for genome in genomes:
            self.stop.check()  # every finished evaluation is already archived
            yield self.train_one(genome)

    def train_one(self, genome: Genome) -> Outcome:
        try:
            return self.fidelity.train(genome, self.data, self.cfg, genome_seed(self.seed, genome))
        except TRAINING_FAILURES as exc:
            return exc
        finally:
            for split in self.data.splits():
                self.fidelity.release(split)
