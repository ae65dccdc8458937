"""Whole-generation training: heads trained side by side on shared batch reads equal heads
trained alone, a paused head continued to a higher budget equals one trained there at
once, and the shared read stays under its memory bound."""

from pathlib import Path

import numpy as np
import pytest
import torch

from moohead import frozen
from moohead.data import load_split
from moohead.encoder import EncoderInfo, load_encoder
from moohead.feature_store import FeatureStore
from moohead.features import CacheConfig, PrepareContext, cached_split
from moohead.fidelity import SearchData
from moohead.frozen import FrozenFidelity, plan_groups, train_head
from moohead.genome import Genome
from moohead.tasks import GLUE_TASKS
from moohead.train import TrainConfig, TrainResult, drive
from moohead.trainer import LocalTrainer, genome_seed, train_to

GENOMES = [
    Genome(depth=2, pool="mean", mlp_layers=1, dropout=0.1),  # pre-pooled vectors
    Genome(depth=2, pool="attention", mlp_layers=1, dropout=0.1),  # token states
    Genome(depth=2, layers="mix", k=2, pool="max", dropout=0.1),
    Genome(depth=1, pool="mean", mixer="conv3", dropout=0.1, lr=1e-3),
    Genome(depth=2, layers="concat", k=2, pool="cls", mlp_layers=2, width=0.5),
]
CFG = TrainConfig(batch_size=16, max_epochs=3, patience=2, order_seed=7)


@pytest.fixture()
def data(tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path) -> SearchData:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    ctx = PrepareContext(model, tok, info, task, CacheConfig(tmp_path / "cache"))
    train = cached_split(ctx, "train", load_split(task, "train", glue_dir))
    val = cached_split(ctx, "validation", load_split(task, "validation", glue_dir))
    info = EncoderInfo("tiny", "tiny", 2, 32, True, "0")
    return SearchData(task, None, info, train, val, val)


def assert_same(a: TrainResult, b: TrainResult) -> None:
    assert a.metrics == pytest.approx(b.metrics, abs=1e-6)
    assert a.epochs == b.epochs
    for (name, x), (_, y) in zip(
        a.head.state_dict().items(), b.head.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=name)


def count_gathers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    gather = FeatureStore.gather

    def counted(self: FeatureStore, indices: np.ndarray, states: list[int]) -> object:
        calls.append(len(indices))
        return gather(self, indices, states)

    monkeypatch.setattr(FeatureStore, "gather", counted)
    return calls


def test_heads_trained_together_equal_heads_trained_alone(
    data: SearchData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same weights, scores and epochs as one by one, with each head's own initialisation,
    dropout stream, learning rate and early stopping; each batch's token states are read
    once for the group instead of once per head."""
    seeds = [genome_seed(3, g) for g in GENOMES]
    reads = count_gathers(monkeypatch)
    alone = [train_head(g, data, CFG, s) for g, s in zip(GENOMES, seeds, strict=True)]
    read_alone = len(reads)
    reads.clear()
    fidelity = FrozenFidelity()
    fits, start_batch = fidelity.start(GENOMES, data, CFG, seeds)
    drive(fits, 1.0, start_batch)  # type: ignore[arg-type]
    together = [fidelity.result(f, data) for f in fits]  # type: ignore[arg-type]
    for a, b in zip(alone, together, strict=True):
        assert_same(a, b)
    assert len({a.epochs for a in alone}) > 1 or len({a.metrics["score"] for a in alone}) > 1
    # Training reads: alone, 4 token-level heads gather every batch; together, the group
    # gathers each batch once (checks on search-stop read per head either way).
    train_batches = sum(f.step for f in fits if f.job.reads is not None)  # type: ignore[union-attr, misc]
    assert train_batches and len(reads) < read_alone


def test_a_failing_head_leaves_the_others_untouched(data: SearchData) -> None:
    seeds = [genome_seed(3, g) for g in GENOMES[:3]]
    fidelity = FrozenFidelity()
    fits, start_batch = fidelity.start(GENOMES[:3], data, CFG, seeds)
    calls = {"n": 0}
    forward = fits[1].job.forward  # type: ignore[union-attr]

    def breaks(batch: np.ndarray) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA out of memory")
        return forward(batch)

    fits[1].job.forward = breaks  # type: ignore[union-attr, method-assign]
    drive(fits, 1.0, start_batch)  # type: ignore[arg-type]
    assert isinstance(fits[1].error, RuntimeError)  # type: ignore[union-attr]
    for i in (0, 2):
        assert_same(fidelity.result(fits[i], data), train_head(GENOMES[i], data, CFG, seeds[i]))  # type: ignore[arg-type]


def test_a_paused_head_continued_equals_one_trained_at_once(data: SearchData) -> None:
    """Budgets 1/9, 1/3, 1: a head trained to 1/3, scored, then continued to 1 is the head
    trained to 1 straight away; its 1/3 score is that of a head trained to 1/3 afresh."""
    cfg = TrainConfig(batch_size=16, max_epochs=4, patience=9, order_seed=7,
                      budgets=(1 / 9, 1 / 3, 1.0))  # fmt: skip
    genome, fidelity = GENOMES[1], FrozenFidelity()
    fits, start_batch = fidelity.start([genome], data, cfg, [5])
    fit = fits[0]
    drive([fit], 1 / 3, start_batch)  # type: ignore[list-item]
    third = fidelity.result(fit, data)  # type: ignore[arg-type]
    assert fit.live and fit.step == fit.schedule.end(1 / 3) < fit.schedule.total  # type: ignore[union-attr]
    assert_same(third, train_to(fidelity, genome, data, cfg, 5, 1 / 3))
    drive([fit], 1.0, start_batch)  # type: ignore[list-item]
    assert_same(fidelity.result(fit, data), train_to(fidelity, genome, data, cfg, 5, 1.0))  # type: ignore[arg-type]


def test_the_shared_read_is_split_by_heads_past_its_bound(data: SearchData) -> None:
    """Past the byte bound the group is cut in two or more; results do not change."""
    token_heads = [g for g in GENOMES if not frozen.reads_pooled(g)]
    one = frozen.read_bytes(token_heads[:1], data, CFG)
    assert plan_groups(GENOMES, data, CFG) == [list(range(len(GENOMES)))]
    small = plan_groups(GENOMES, data, CFG, limit=one)
    assert len(small) > 1 and sorted(i for g in small for i in g) == list(range(len(GENOMES)))
    for group in small:
        assert frozen.read_bytes([GENOMES[i] for i in group], data, CFG) <= one or len(group) == 1


def test_local_trainer_groups_a_generation(
    data: SearchData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search's trainer: outcomes in the order asked, equal to training alone, also
    when the memory bound cuts the generation into several groups."""
    monkeypatch.setattr(frozen, "READ_LIMIT", 1)
    trainer = LocalTrainer(FrozenFidelity(), data, CFG, seed=3)
    outcomes = list(trainer.train(GENOMES))
    for genome, out in zip(GENOMES, outcomes, strict=True):
        assert isinstance(out, TrainResult)
        assert_same(out, train_head(genome, data, CFG, genome_seed(3, genome)))
