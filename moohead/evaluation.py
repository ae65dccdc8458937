"""What one evaluation of a genome produced, as the archive stores it (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moohead.genome import Genome

FAILED_OBJECTIVE = 1e18  # what a failed genome scores on every (minimised) objective


def budget_key(genome: Genome, budget: float) -> str:
    """What an evaluation is cached and archived under: the genome at a budget."""
    return genome.key() if budget >= 1.0 else f"{genome.key()}@{budget:.6g}"


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
    budget: float = 1.0  # the share of the full training budget it trained to

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def full(self) -> bool:
        """Trained to the full budget (only such heads keep weights and enter a front)."""
        return self.budget >= 1.0

    @property
    def key(self) -> str:
        """The genome's key, and the budget where it is below 1."""
        return budget_key(self.genome, self.budget)

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
            budget=float(record.get("budget", 1.0)),
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
            "budget": self.budget,
        }
