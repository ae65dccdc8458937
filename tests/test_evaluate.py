"""The Evaluator with injected fakes: caching per genome and per architecture, failures as
results, restore from an archive, and stopping between evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moohead.archive import Archive
from moohead.evaluate import Evaluator
from moohead.evaluation import FAILED_OBJECTIVE, Cost, Evaluation
from moohead.fidelity import SearchData
from moohead.genome import Genome
from moohead.heads import Head, build_head
from moohead.rundir import WeightStore
from moohead.stop import StopFlag
from moohead.tasks import GLUE_TASKS
from moohead.train import TrainConfig, TrainingDiverged, TrainResult
from moohead.trainer import LocalTrainer


class FakeFit:
    """A head whose training is already over."""

    live, error, step = False, None, 0

    def __init__(self, genome: Genome) -> None:
        self.genome = genome


class FakeFidelity:
    """Trains nothing: a head with the genome's shapes and a score from its learning rate;
    genomes with ``pool="max"`` diverge, ``mixer="attention"`` run out of memory."""

    name, runs_encoder = "fake", False

    def __init__(self) -> None:
        self.trained: list[Genome] = []
        self.released = 0

    def plan(self, genomes: list[Genome], data: object, cfg: object) -> list[list[int]]:
        return [[i] for i in range(len(genomes))]

    def start(
        self, genomes: list[Genome], data: object, cfg: object, seeds: list[int]
    ) -> tuple[list[object], None]:
        """A finished "training" per genome, or the failure it stands for."""
        self.trained += genomes
        fits: list[object] = []
        for genome in genomes:
            if genome.pool == "max":
                fits.append(TrainingDiverged("loss is nan in epoch 1"))
            elif genome.mixer == "attention":
                fits.append(MemoryError("cannot allocate 40 GiB"))
            else:
                fits.append(FakeFit(genome))
        return fits, None

    def result(self, fit: FakeFit, data: object) -> TrainResult:
        head = build_head(fit.genome, hidden_size=8, num_labels=2)
        return TrainResult(head, {"score": fit.genome.lr * 100}, epochs=2, seconds=0.0)

    def release(self, split: object) -> None:
        self.released += 1


class FakeCosts:
    """FLOPs from the depth; records each measurement (the real one caches per
    architecture: ``test_costs_are_measured_once_per_architecture``)."""

    def __init__(self) -> None:
        self.measured: list[str] = []
        self.restored: dict[str, Cost] = {}

    def __call__(self, genome: Genome, head: Head) -> Cost:
        key = genome.arch_key()
        if key in self.restored:
            return self.restored[key]
        self.measured.append(key)
        return Cost(flops=genome.depth * 1000, params=10, head_params=2, latency_ms=None)

    def restore(self, genome: Genome, cost: Cost) -> None:
        self.restored[genome.arch_key()] = cost


def make(tmp_path: Path, stop: StopFlag | None = None) -> tuple[Evaluator, FakeFidelity, FakeCosts]:
    fidelity, costs = FakeFidelity(), FakeCosts()
    data = SearchData(GLUE_TASKS["sst2"], None, None, "train", "stop", "val")  # type: ignore[arg-type]
    trainer = LocalTrainer(fidelity, data, TrainConfig(), seed=0, stop=stop)  # type: ignore[arg-type]
    weights = WeightStore(tmp_path / "heads", "heads")
    evaluator = Evaluator(trainer, costs, weights, Archive(tmp_path / "archive.jsonl"), stop)
    return evaluator, fidelity, costs


def archived(tmp_path: Path) -> list[dict[str, object]]:
    lines = (tmp_path / "archive.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_each_genome_is_trained_and_measured_once(tmp_path: Path) -> None:
    evaluator, trainer, costs = make(tmp_path)
    a, b = Genome(depth=1, lr=1e-3), Genome(depth=1, lr=3e-3)  # same architecture
    c = Genome(depth=2, lr=1e-3)
    first = evaluator([a, b, a])
    assert [e.id for e in first] == [0, 1, 0]  # the repeat is answered from the cache
    second = evaluator([c, b, a])
    assert [e.id for e in second] == [2, 1, 0]
    assert trainer.trained == [a, b, c]
    assert trainer.released == 3 * 3  # the three search splits, after every training
    assert costs.measured == [a.arch_key(), b.arch_key(), c.arch_key()]
    assert [r["id"] for r in archived(tmp_path)] == [0, 1, 2]
    assert second[0].cost is not None and second[0].cost.flops == 2000
    # weights saved for every successful evaluation, loadable as the head's state
    state = torch.load(tmp_path / "heads" / "2.pt", weights_only=True)
    assert set(state) == set(build_head(c, 8, 2).state_dict())


def test_failures_are_archived_results_and_the_search_goes_on(tmp_path: Path) -> None:
    evaluator, _, _ = make(tmp_path)
    good, diverges = Genome(depth=1), Genome(depth=1, pool="max")
    oom = Genome(depth=1, mixer="attention", pool="mean")
    evals = evaluator([diverges, good, oom])
    assert [e.status for e in evals] == ["failed", "ok", "failed"]
    assert evals[0].reason == "diverged: loss is nan in epoch 1"
    assert evals[2].reason is not None and evals[2].reason.startswith(
        "MemoryError: cannot allocate 40 GiB ("
    )
    assert evals[0].objective("score") == FAILED_OBJECTIVE == evals[2].objective("flops")
    records = archived(tmp_path)
    assert [r["status"] for r in records] == ["failed", "ok", "failed"]
    assert records[0]["score"] is None and records[0]["flops"] is None
    assert not (tmp_path / "heads" / "0.pt").exists() and (tmp_path / "heads" / "1.pt").exists()


def test_restored_evaluations_are_answered_without_training(tmp_path: Path) -> None:
    evaluator, _, _ = make(tmp_path)
    a, b = Genome(depth=1), Genome(depth=2)
    evaluator([a, b])
    records = archived(tmp_path)

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    resumed, trainer, costs = make(resumed_dir)
    resumed.restore(records)
    c = Genome(depth=2, lr=3e-3)  # b's architecture: its archived cost is reused
    evals = resumed([b, c, a])
    assert trainer.trained == [c]
    assert [e.id for e in evals] == [1, 2, 0]  # new ids continue after the archive's
    assert costs.measured == [] and evals[1].cost == evals[0].cost
    assert [e.id for e in resumed.evaluations] == [1, 2, 0]  # in the order asked for


def test_a_stop_request_stops_before_the_next_new_genome(tmp_path: Path) -> None:
    stop = StopFlag()
    evaluator, trainer, _ = make(tmp_path, stop)
    a, b = Genome(depth=1), Genome(depth=2)
    seen: list[Evaluation] = []

    def on_new(ev: Evaluation) -> None:
        seen.append(ev)
        stop.request()  # Ctrl-C while the first genome trains

    evaluator.on_new = on_new
    with pytest.raises(KeyboardInterrupt):
        evaluator([a, b])
    assert trainer.trained == [a] and [r["id"] for r in archived(tmp_path)] == [0]
    assert evaluator([a])[0] is seen[0]  # known genomes are still answered
    with pytest.raises(KeyboardInterrupt):
        stop.request()  # a second Ctrl-C interrupts at once


def test_costs_are_measured_once_per_architecture(tiny_encoder_dir: Path) -> None:
    from moohead.costs import CostConfig, CostMeasurer
    from moohead.encoder import load_encoder
    from moohead.fused import ModelFactory

    encoder, _, info = load_encoder(str(tiny_encoder_dir))
    costs = CostMeasurer(ModelFactory(encoder, info, 2, "cpu"), CostConfig(16, latency_runs=2))
    a, b = Genome(depth=1, lr=1e-3), Genome(depth=1, lr=3e-3, dropout=0.3)
    c = Genome(depth=2)
    cost_a = costs(a, build_head(a, info.hidden_size, 2))
    assert costs(b, build_head(b, info.hidden_size, 2)) is cost_a  # training genes only
    cost_c = costs(c, build_head(c, info.hidden_size, 2))
    assert cost_c.flops > cost_a.flops and cost_a.latency_ms is not None
    assert list(costs.by_arch) == [a.arch_key(), c.arch_key()]
    restored = Cost(flops=1, params=1, head_params=1, latency_ms=None)
    d = Genome(depth=2, pool="mean")
    costs.restore(d, restored)
    assert costs(d, build_head(d, info.hidden_size, 2)) is restored
    no_latency = CostMeasurer(costs.models, CostConfig(16, latency_runs=None))
    assert no_latency(a, build_head(a, info.hidden_size, 2)).latency_ms is None
    ort = CostMeasurer(costs.models, CostConfig(16, latency_runs=2, runtime="ort", threads=1))
    cost = ort(a, build_head(a, info.hidden_size, 2))
    assert cost.latency_ms is not None and cost.latency_ms > 0 and cost.flops == cost_a.flops
