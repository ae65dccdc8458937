"""What an architecture costs: FLOPs, parameters and latency, measured once per
architecture (training genes do not change the computation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from moohead.evaluation import Cost
from moohead.fused import FusedModel, ModelFactory
from moohead.genome import Genome
from moohead.heads import Head
from moohead.measure import count_flops, count_params, measure_latency_interleaved


@dataclass(frozen=True)
class CostConfig:
    """Attributes:
    reference_length: Tokens of the batch-1 reference input.
    latency_runs: Timed runs per latency measurement; None: latency is not measured.
    runtime: What latency is measured in: ``ort`` (the exported graph in ONNX Runtime, as
        deployed) or ``torch`` (PyTorch eager).
    threads: ONNX Runtime's CPU threads (the run's fixed count).
    """

    reference_length: int
    latency_runs: int | None
    runtime: str = "torch"
    threads: int | None = None

    def time(self, models: list[FusedModel], inputs: list[tuple[torch.Tensor, ...]]) -> list[float]:
        """Median latencies (ms) of ``models``, timed together in this config's runtime."""
        return measure_latency_interleaved(
            models, inputs, runs=self.latency_runs or 20, runtime=self.runtime, threads=self.threads
        )


class CostMeasurer:
    """Costs of genomes' fused models, cached per architecture."""

    def __init__(self, models: ModelFactory, cfg: CostConfig) -> None:
        self.models, self.cfg = models, cfg
        self.by_arch: dict[str, Cost] = {}

    def restore(self, genome: Genome, cost: Cost) -> None:
        """Take an archived cost: that architecture is never measured again."""
        self.by_arch.setdefault(genome.arch_key(), cost)

    def __call__(self, genome: Genome, head: Head) -> Cost:
        key = genome.arch_key()
        if key not in self.by_arch:
            model = self.models.fused(genome, head)
            inputs = self.models.reference(model, self.cfg.reference_length)
            runs = self.cfg.latency_runs
            self.by_arch[key] = Cost(
                flops=count_flops(model, inputs),
                params=count_params(model),
                head_params=count_params(head),
                latency_ms=None if runs is None else self.cfg.time([model], [inputs])[0],
            )
        return self.by_arch[key]


def retime_records(
    records: list[dict[str, Any]], models: ModelFactory, cfg: CostConfig
) -> list[dict[str, Any]]:
    """The archive's records with every architecture's latency measured again here, all
    architectures timed together (round-robin) as finalisation times a front."""
    genomes: dict[str, Genome] = {}
    for r in records:
        if r.get("latency_ms") is not None:
            genome = Genome.from_dict(r["genome"])
            genomes.setdefault(genome.arch_key(), genome)
    fused = [models.fused(g) for g in genomes.values()]
    inputs = [models.reference(m, cfg.reference_length) for m in fused]
    latency = dict(zip(genomes, cfg.time(fused, inputs), strict=True))
    return [
        r | {"latency_ms": latency[Genome.from_dict(r["genome"]).arch_key()]}
        if r.get("latency_ms") is not None
        else r
        for r in records
    ]
