"""Is one head's lead over another on search-val more than noise? A paired bootstrap.

The best search-val head of a search is the maximum over a hundred noisy scores, so its
lead over the reference is inflated (on RTE's 747 search-val pairs a 1.1-point lead
turned into a 7-point loss on validation). ``recommend`` therefore takes the best head
over the reference only when the lead survives resampling search-val's examples: both
heads' outputs are scored on the same resampled examples (paired), and the share of
resamples where the best head does not lead is the one-sided p-value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moohead.metrics import compute_metrics
from moohead.tasks import Task

ALPHA = 0.05  # one-sided level at which a lead counts
RESAMPLES = 2000
SEED = 0  # resampling is fixed: the same run always recommends the same head


@dataclass(frozen=True)
class Lead:
    """How far head a leads head b on one split.

    Attributes:
        lead: score(a) - score(b) on every example.
        low: The 5th percentile of the lead over resamples: above 0 about when the lead is
            significant at ``ALPHA`` (a 90% interval with ``high``).
        high: The 95th percentile.
        p_value: Share of resamples where a does not lead b (one-sided).
        resamples: How many resamples.
        examples: How many examples the split holds.
    """

    lead: float
    low: float
    high: float
    p_value: float
    resamples: int
    examples: int

    @property
    def significant(self) -> bool:
        return self.lead > 0 and self.p_value < ALPHA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_bootstrap(
    task: Task,
    a: np.ndarray,
    b: np.ndarray,
    labels: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Lead:
    """Bootstrap of score(a) - score(b), both heads' outputs on the same examples.

    Args:
        task: Whose metrics score the outputs (``compute_metrics``'s ``score``).
        a: Head a's outputs (logits, or scores for regression), one row per example.
        b: Head b's outputs on the same examples in the same order.
        labels: The examples' gold labels.
    """
    n = len(labels)
    if len(a) != n or len(b) != n:
        raise ValueError(f"outputs for {len(a)} and {len(b)} examples, labels for {n}")

    def score(outputs: np.ndarray, idx: np.ndarray | slice) -> float:
        return compute_metrics(task, outputs[idx], labels[idx])["score"]

    lead = score(a, slice(None)) - score(b, slice(None))
    rng = np.random.default_rng(seed)
    leads = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        leads[i] = score(a, idx) - score(b, idx)
    leads = np.nan_to_num(leads, nan=0.0)  # a constant resample has no correlation: no lead
    low, high = np.percentile(leads, [100 * ALPHA, 100 * (1 - ALPHA)])
    return Lead(
        lead=float(lead),
        low=float(low),
        high=float(high),
        p_value=float(np.mean(leads <= 0)),
        resamples=resamples,
        examples=n,
    )
