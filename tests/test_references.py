"""The references: which are defined for a task, and the coordinate search that tunes them,
on a fake evaluator (no model)."""

from __future__ import annotations

from moohead.evaluation import Cost, Evaluation
from moohead.genome import DROPOUTS, LEARNING_RATES, WEIGHT_DECAYS, Genome, baseline
from moohead.pooling import NativePooling
from moohead.references import define, tune

MINILM = NativePooling("mean", True, "modules.json")


class FakeEvaluator:
    """Scores a genome by a formula; records every batch asked for; caches by key."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.batches: list[list[Genome]] = []
        self.seen: dict[str, Evaluation] = {}
        self.fail = fail or set()

    def score(self, g: Genome) -> float:
        # best at lr 3e-3, dropout 0.2, weight decay 0.1; deeper and normalised is better
        return (
            0.1 * g.depth
            + (0.05 if g.normalize else 0.0)
            - abs(g.lr - 3e-3)
            - abs(g.dropout - 0.2) / 10
            - abs(g.weight_decay - 0.1) / 100
        )

    def __call__(self, genomes: list[Genome]) -> list[Evaluation]:
        self.batches.append(list(genomes))
        out = []
        for g in genomes:
            if g.key() not in self.seen:
                i = len(self.seen)
                if g.pair in self.fail:
                    ev = Evaluation(id=i, genome=g, status="failed", reason="boom")
                else:
                    cost = Cost(flops=g.depth, params=1, head_params=1, latency_ms=None)
                    ev = Evaluation(i, g, "ok", {"score": self.score(g)}, cost)
                self.seen[g.key()] = ev
            out.append(self.seen[g.key()])
        return out


def test_single_sentence_references_skip_cosine() -> None:
    refs = define(3, False, MINILM)
    names = [r.name for r in refs.defined]
    assert names == ["hf-head", "native", "probe@3", "probe@1", "probe@2"]
    assert "single-sentence" in refs.skipped["cosine"]
    by = {r.name: r.genome for r in refs.defined}
    assert by["hf-head"] == baseline(3)
    assert by["native"] == Genome(depth=3, pool="mean", normalize=True)
    assert by["probe@1"] == Genome(depth=1, pool="mean")


def test_pair_references_are_siamese_and_cosine() -> None:
    refs = define(4, True, NativePooling("cls", False, "x"))
    by = {r.name: r.genome for r in refs.defined}
    assert by["native"].pair == "siamese" and by["native"].pool == "cls"
    assert by["cosine"].pair == "cosine" and by["cosine"].mlp_layers == 0
    assert by["probe@4"].pair == "joint" and not refs.skipped


def test_coordinate_search_tunes_each_gene_in_turn_in_shared_batches() -> None:
    fake = FakeEvaluator()
    refs = tune(define(3, False, MINILM), fake)
    hf = refs.best["hf-head"].genome
    assert (hf.lr, hf.dropout, hf.weight_decay) == (3e-3, 0.2, 0.1)
    # the start, then one batch per gene for every reference, then the followers
    assert len(fake.batches) == 5
    asked = [g for g in fake.seen.values() if g.genome.arch_key() == baseline(3).arch_key()]
    assert len(asked) == 1 + (len(LEARNING_RATES) - 1) + (len(DROPOUTS) - 1) + (
        len(WEIGHT_DECAYS) - 1
    )
    # probes tune the learning rate only; the lower ones take probe@3's training genes
    top = refs.best["probe@3"].genome
    assert top.lr == 3e-3 and top.dropout == Genome(depth=1).dropout
    for d in (1, 2):
        g = refs.best[f"probe@{d}"].genome
        assert (g.lr, g.dropout, g.weight_decay) == (top.lr, top.dropout, top.weight_decay)
    # ranked by search-val: the normalised native embedding wins here
    assert refs.ranked()[0][0] == "native" and not refs.failed()


def test_a_reference_whose_every_evaluation_failed_is_reported_not_fatal() -> None:
    refs = tune(define(2, True, MINILM), FakeEvaluator(fail={"cosine"}))
    assert "cosine" not in refs.best and "failed" in refs.failed()["cosine"]
    assert {"hf-head", "native", "probe@1", "probe@2"} <= set(refs.best)
