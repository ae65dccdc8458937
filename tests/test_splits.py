"""The search splits: sizes, a fixed sample, stratification, and no leaks between sides."""

import re

import numpy as np
import pytest
from conftest import require_shared_glue

from moohead.data import Split, load_split
from moohead.errors import MooheadError
from moohead.splits import (
    MIN_VAL,
    NGRAM,
    leak_groups,
    sample_rows,
    search_splits,
    split_sizes,
)
from moohead.tasks import GLUE_TASKS

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
WORDS += ["golf", "hotel", "india", "juliet", "kilo", "lima"]


def _sentences(n: int, seed: int = 0) -> list[str]:
    """Distinct sentences of 7 to 11 words that share no 6-gram by chance."""
    rng = np.random.default_rng(seed)
    return [f"s{i} " + " ".join(rng.choice(WORDS, rng.integers(6, 11))) for i in range(n)]


def _split(texts: list[str], labels: np.ndarray | None = None) -> Split:
    labels = np.arange(len(texts)) % 2 if labels is None else labels
    return Split((texts,), np.asarray(labels, dtype=np.int64))


def _norm(text: str) -> str:
    return " " + " ".join(re.findall(r"\w+", text.lower())) + " "


def _side(cut, text: str) -> str:
    sides = [k for k in ("train", "stop", "val") if text in getattr(cut, k).texts[0]]
    assert len(sides) == 1, sides
    return sides[0]


def test_sizes_reach_2000_search_val_examples_where_the_data_allows() -> None:
    assert split_sizes(8000, 0.15, 0.1) == (MIN_VAL, 800)
    assert split_sizes(67349, 0.15, 0.1) == (10102, 6735)  # the share is already more
    assert split_sizes(2490, 0.15, 0.1) == (747, 249)  # RTE: search-val takes at most 30%
    assert split_sizes(20, 0.15, 0.1) == (6, 2)
    with pytest.raises(MooheadError, match="need at least"):
        split_sizes(3, 0.15, 0.1)


def test_the_sample_is_fixed_whatever_the_seed_and_grows_by_adding_rows() -> None:
    small, large = sample_rows(1000, 100), sample_rows(1000, 300)
    assert len(small) == 100 and set(small) <= set(large)
    assert np.array_equal(sample_rows(50, None), np.arange(50))
    split = _split(_sentences(400))
    a = search_splits(split, False, 200, 0.15, 0.1, seed=1)
    b = search_splits(split, False, 200, 0.15, 0.1, seed=2)
    rows = {k: set(getattr(a, k).texts[0]) for k in ("train", "stop", "val")}
    assert not rows["train"] & rows["val"] and not rows["stop"] & (rows["train"] | rows["val"])
    assert set().union(*rows.values()) == set(b.train.texts[0] + b.stop.texts[0] + b.val.texts[0])
    assert a.val.texts != b.val.texts  # the seed moves the cut, not the sample
    again = search_splits(split, False, 200, 0.15, 0.1, seed=1)
    assert again.val.texts == a.val.texts and again.train.texts == a.train.texts


def test_classification_splits_are_stratified() -> None:
    labels = (np.arange(1000) % 10 < 3).astype(np.int64)  # 30% positive
    cut = search_splits(_split(_sentences(1000), labels), False, None, 0.15, 0.1, seed=0)
    for part in (cut.train, cut.stop, cut.val):
        assert abs(part.labels.mean() - 0.3) < 0.01


def test_identical_texts_and_shared_ngrams_stay_on_one_side() -> None:
    texts = _sentences(300)
    texts[10] = "A gripping, funny and moving film about love."
    texts[11] = "a gripping funny and moving film about love"  # same words
    texts[12] = "the cast makes a gripping funny and moving film work"  # shares a 6-gram
    texts[13] = "a gripping funny"  # found inside 10-12: kept in search-train
    groups, pinned = leak_groups((texts,))
    assert groups[10] == groups[11] == groups[12] != groups[14]
    assert pinned[13] and not pinned[10] and pinned.sum() == 1
    for seed in range(8):
        cut = search_splits(_split(texts), False, None, 0.3, 0.1, seed=seed)
        assert _side(cut, texts[10]) == _side(cut, texts[11]) == _side(cut, texts[12])
        assert _side(cut, texts[13]) == "train"


def test_a_short_text_inside_its_own_pair_is_no_leak() -> None:
    first = _sentences(40, seed=1)
    second = [f"{s.split()[0]} alpha" for s in first]  # inside its own first sentence only
    second[5] = "bravo"  # a word most other sentences hold
    groups, pinned = leak_groups((first, second))
    assert len(set(groups)) == 40
    assert pinned.tolist() == [i == 5 for i in range(40)]


def test_ngram_length_joins_only_long_shared_spans() -> None:
    shared = " ".join(WORDS[: NGRAM - 1])
    groups, _ = leak_groups(([f"x {shared} y", f"z {shared} w"],))
    assert groups[0] != groups[1]  # a shared span one word short of NGRAM joins nothing


def test_too_little_data_is_refused() -> None:
    with pytest.raises(MooheadError, match="need at least 4"):
        search_splits(_split(_sentences(3)), False, None, 0.15, 0.1, seed=0)
    same = ["the same sentence again and again, with no end"] * 30
    with pytest.raises(MooheadError, match="too few distinct texts"):
        search_splits(_split(same), False, None, 0.15, 0.1, seed=0)


@pytest.mark.integration
def test_no_search_val_text_of_sst2_is_inside_a_search_train_text() -> None:
    root = require_shared_glue()
    train = load_split(GLUE_TASKS["sst2"], "train", root)
    cut = search_splits(train, False, 8000, 0.15, 0.1, seed=0)
    assert len(cut.val) >= MIN_VAL
    haystack = "|".join(_norm(t) for t in cut.train.texts[0])
    inside = [t for t in cut.val.texts[0] if _norm(t) in haystack]
    assert inside == []
    # a plain random cut of the same sample leaks (what this guards against)
    rng = np.random.default_rng(0)
    texts = [train.texts[0][i] for i in sample_rows(len(train), 8000)]
    order = rng.permutation(len(texts))
    plain_train = "|".join(_norm(texts[i]) for i in order[2000:])
    leaked = sum(_norm(texts[i]) in plain_train for i in order[:2000])
    assert leaked > 500  # 638 of 2,000


def test_each_part_keeps_the_file_order_and_together_they_are_the_sample() -> None:
    split = Split(([f"s{i}" for i in range(40)],), np.arange(40) % 2)
    cut = search_splits(split, False, None, 0.3, 0.1, seed=0)
    assert (len(cut.train), len(cut.stop), len(cut.val)) == (24, 4, 12)
    for part in (cut.train, cut.stop, cut.val):
        idx = [int(t[1:]) for t in part.texts[0]]
        assert idx == sorted(idx)
        assert part.labels.tolist() == [i % 2 for i in idx]
    assert sorted(cut.train.texts[0] + cut.stop.texts[0] + cut.val.texts[0]) == sorted(
        split.texts[0]
    )
    capped = search_splits(split, False, 400, 0.3, 0.1, seed=0)  # a cap above the size
    assert capped.val.texts == cut.val.texts


def test_too_few_examples_name_the_fix() -> None:
    with pytest.raises(MooheadError) as exc:
        search_splits(_split(["a b", "c d", "e f"]), False, None, 0.2, 0.1, seed=0)
    assert str(exc.value) == (
        "only 3 training examples: need at least 4 for a search (raise --max-train or add data)"
    )
    with pytest.raises(MooheadError, match="only 3 training examples: need at least 4"):
        search_splits(_split(_sentences(100)), False, 3, 0.2, 0.1, seed=0)  # the cap counts
