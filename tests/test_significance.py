"""The paired bootstrap that decides whether the best head's lead over the reference on
search-val is more than noise (significance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from moohead.significance import paired_bootstrap
from moohead.tasks import GLUE_TASKS

SST2, STSB = GLUE_TASKS["sst2"], GLUE_TASKS["stsb"]


def logits(pred: np.ndarray) -> np.ndarray:
    """Two-class outputs whose argmax is ``pred``."""
    return np.eye(2)[pred]


def test_a_head_against_itself_has_no_lead() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 300)
    a = logits(rng.integers(0, 2, 300))
    lead = paired_bootstrap(SST2, a, a.copy(), gold, resamples=200)
    assert lead.lead == 0 and lead.p_value == 1.0 and not lead.significant


def test_a_clearly_better_head_leads_significantly() -> None:
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.9, gold, 1 - gold)
    coin = rng.integers(0, 2, 400)
    lead = paired_bootstrap(SST2, logits(good), logits(coin), gold, resamples=500)
    assert lead.significant and lead.p_value == 0.0 and lead.low > 0.2
    assert lead.lead == pytest.approx(np.mean(good == gold) - np.mean(coin == gold))
    assert lead.examples == 400 and lead.resamples == 500


def test_a_small_lead_of_independent_heads_is_noise() -> None:
    """Two heads of the same accuracy up to a point, wrong on different examples."""
    rng = np.random.default_rng(2)
    gold = rng.integers(0, 2, 300)
    a = np.where(rng.random(300) < 0.62, gold, 1 - gold)
    b = np.where(rng.random(300) < 0.60, gold, 1 - gold)
    lead = paired_bootstrap(SST2, logits(a), logits(b), gold, resamples=500)
    assert 0 < lead.lead < 0.06 and not lead.significant and lead.low < 0 < lead.high


def test_the_pairing_counts_only_the_examples_where_the_heads_differ() -> None:
    """Heads equal on all but 10 of 200 examples, where the first is right: a 5-point lead
    that every resample keeps (resampled independently, each accuracy's spread of about
    3.5 points would hide it)."""
    rng = np.random.default_rng(3)
    gold = rng.integers(0, 2, 200)
    b = rng.integers(0, 2, 200)
    wrong = np.flatnonzero(b != gold)[:10]
    a = b.copy()
    a[wrong] = gold[wrong]
    lead = paired_bootstrap(SST2, logits(a), logits(b), gold, resamples=1000)
    assert lead.lead == pytest.approx(0.05) and lead.significant and lead.p_value < 0.01


def test_regression_scores_and_a_fixed_resampling() -> None:
    rng = np.random.default_rng(4)
    gold = rng.random(250) * 5
    a = gold + rng.normal(0, 0.5, 250)
    b = gold + rng.normal(0, 3.0, 250)
    first = paired_bootstrap(STSB, a, b, gold, resamples=300)
    assert first.significant and first.low > 0
    assert paired_bootstrap(STSB, a, b, gold, resamples=300) == first  # the same every time
    assert paired_bootstrap(STSB, a, b, gold, resamples=300, seed=1) != first


def test_outputs_for_other_examples_are_refused() -> None:
    gold = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="outputs for 10 and 9 examples, labels for 10"):
        paired_bootstrap(SST2, logits(gold), logits(gold[:9]), gold)
