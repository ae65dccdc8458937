"""The references every search trains first, tunes, reports beside its front, and seeds
into its first population, so that a run never ends worse than its best reference.

- ``hf-head``: Hugging Face's ``BertForSequenceClassification`` head (the baseline).
- ``native``: the encoder's own sentence embedding (the pooling its model folder declares,
  L2-normalised where it says so) and a linear classifier; for pairs SBERT's classifier on
  [u, v, |u-v|, u*v].
- ``cosine`` (pair tasks): cos(u, v) of the native embeddings, with a scale and bias fitted
  (regression) or a threshold (classes).
- ``probe@d``: a linear probe on the mean-pooled layer d, for each depth: the cheapest
  reference at each cost.

Each is tuned by coordinate search over its training genes on the genome grids (learning
rate, then dropout, then weight decay; the best search-val score at each step), all
references in step so that each step is one batch of evaluations. ``probe@d`` below the
full depth takes the training genes tuned for ``probe@L``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from moohead.evaluation import Evaluation
from moohead.genome import (
    DROPOUTS,
    LEARNING_RATES,
    TRAINING_GENES,
    WEIGHT_DECAYS,
    Genome,
    baseline,
    canonical,
)
from moohead.pooling import NativePooling

GRIDS: dict[str, tuple[float, ...]] = {
    "lr": LEARNING_RATES,
    "dropout": DROPOUTS,
    "weight_decay": WEIGHT_DECAYS,
}
ALL_GENES = tuple(GRIDS)  # in coordinate order


@dataclass(frozen=True)
class Reference:
    """Attributes:
    name: ``hf-head``, ``native``, ``cosine`` or ``probe@d``.
    genome: The architecture, at its starting training genes.
    tune: Training genes tuned, in coordinate order.
    follow: Another reference whose tuned training genes this one takes instead.
    """

    name: str
    genome: Genome
    tune: tuple[str, ...] = ALL_GENES
    follow: str | None = None


@dataclass
class References:
    """The references of one search: the definitions, why any were skipped, and (once
    tuned) each one's best evaluation."""

    defined: list[Reference]
    skipped: dict[str, str] = field(default_factory=dict)
    best: dict[str, Evaluation] = field(default_factory=dict)

    def failed(self) -> dict[str, str]:
        """References none of whose evaluations trained, with why."""
        return {
            r.name: "every evaluation failed; see the run's archive"
            for r in self.defined
            if r.name not in self.best
        }

    def ranked(self) -> list[tuple[str, Evaluation]]:
        """Tuned references, best search-val score first (earlier evaluation on ties)."""
        return sorted(self.best.items(), key=lambda kv: (-kv[1].score, kv[1].id))


def define(num_layers: int, is_pair: bool, native: NativePooling) -> References:
    """The references of a search on an encoder of ``num_layers`` layers."""
    two_sided = "siamese" if is_pair else "joint"
    native_genome = Genome(
        depth=num_layers, pair=two_sided, pool=native.pool, normalize=native.normalize
    )
    defined = [
        Reference("hf-head", baseline(num_layers)),
        Reference("native", native_genome),
    ]
    skipped: dict[str, str] = {}
    if is_pair:
        cosine = replace(native_genome, pair="cosine")
        defined.append(Reference("cosine", cosine, tune=("lr", "weight_decay")))
    else:
        skipped["cosine"] = "a single-sentence task has no pair of embeddings to compare"
    top = f"probe@{num_layers}"
    defined.append(Reference(top, Genome(depth=num_layers, pool="mean"), tune=("lr",)))
    defined += [
        Reference(f"probe@{d}", Genome(depth=d, pool="mean"), tune=(), follow=top)
        for d in range(1, num_layers)
    ]
    return References(
        [replace(r, genome=canonical(r.genome, num_layers, is_pair)) for r in defined], skipped
    )


def with_genes(genome: Genome, genes: dict[str, Any]) -> Genome:
    return Genome.from_dict(genome.to_dict() | genes)


def _better(a: Evaluation | None, b: Evaluation) -> Evaluation:
    """The better of two evaluations: trained over failed, then score, then the earlier."""
    if a is None or (b.ok and (not a.ok or (b.score, -b.id) > (a.score, -a.id))):
        return b
    return a


def tune(refs: References, evaluate: Callable[[list[Genome]], list[Evaluation]]) -> References:
    """Coordinate search of every reference's training genes; fills ``refs.best``.

    ``evaluate`` answers genomes with their evaluations (the search's evaluator: each
    genome trains once, and a resumed search answers from its archive).
    """
    current: dict[str, Evaluation | None] = {r.name: None for r in refs.defined}
    own = [r for r in refs.defined if r.follow is None]
    first = evaluate([r.genome for r in own])
    for r, ev in zip(own, first, strict=True):
        current[r.name] = ev
    for gene in ALL_GENES:
        asks: list[tuple[str, Genome]] = []
        for r in own:
            start = current[r.name]
            assert start is not None
            if gene in r.tune:
                values = [v for v in GRIDS[gene] if v != getattr(start.genome, gene)]
                asks += [(r.name, with_genes(start.genome, {gene: v})) for v in values]
        for (name, _), ev in zip(asks, evaluate([g for _, g in asks]), strict=True):
            current[name] = _better(current[name], ev)
    followers = []
    for r in refs.defined:
        if r.follow is not None:
            leader = current[r.follow]
            assert leader is not None
            genes = {g: getattr(leader.genome, g) for g in TRAINING_GENES}
            followers.append((r.name, with_genes(r.genome, genes)))
    for (name, _), ev in zip(followers, evaluate([g for _, g in followers]), strict=True):
        current[name] = ev
    refs.best = {name: ev for name, ev in current.items() if ev is not None and ev.ok}
    return refs


def summary(refs: References, entry: Callable[[Evaluation], dict[str, Any]]) -> dict[str, Any]:
    """``front.json``'s reference fields: each tuned reference as a front entry with its
    name, the best one's name, and the skipped or failed ones with why."""
    ranked = refs.ranked()
    return {
        "references": [{"name": name, **entry(ev)} for name, ev in ranked],
        "reference": ranked[0][0] if ranked else None,
        "skipped_references": refs.skipped | refs.failed(),
    }
