"""Padding, length-ordered batching and dummy inputs: the one module every caller shares."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from moohead.batching import (
    dummy_inputs,
    in_length_order,
    in_original_order,
    input_names,
    length_batches,
    pad,
    padding_groups,
)

PLAIN = ["input_ids", "attention_mask"]
TYPED = [*PLAIN, "token_type_ids"]


def test_pad_right_pads_to_the_longest_with_the_pad_id() -> None:
    out = pad([[5, 6], [7, 8, 9, 10], [11]], None, pad_id=3)
    assert list(out) == PLAIN
    np.testing.assert_array_equal(out["input_ids"], [[5, 6, 3, 3], [7, 8, 9, 10], [11, 3, 3, 3]])
    np.testing.assert_array_equal(out["attention_mask"], [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert all(a.dtype == np.int64 for a in out.values())


def test_pad_token_types_are_kept_and_zero_on_padding() -> None:
    out = pad([[5, 6, 7], [8]], [[0, 1, 1], [1]], pad_id=0)
    assert list(out) == TYPED
    np.testing.assert_array_equal(out["token_type_ids"], [[0, 1, 1], [1, 0, 0]])
    np.testing.assert_array_equal(out["input_ids"], [[5, 6, 7], [8, 0, 0]])
    assert out["token_type_ids"].dtype == np.int64


def test_length_batches_sort_stably_and_cut_at_the_batch_size() -> None:
    lengths = [5, 2, 9, 2, 1, 5, 3]
    batches = length_batches(lengths, 3)
    assert [b.tolist() for b in batches] == [[4, 1, 3], [6, 0, 5], [2]]


def test_in_length_order_restores_the_examples_order() -> None:
    lengths = np.array([7, 1, 4, 4, 9, 2, 6])
    values = np.arange(len(lengths) * 2, dtype=np.float64).reshape(-1, 2) * 1.5
    seen: list[list[int]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.tolist())
        assert lengths[batch].max() - lengths[batch].min() <= 3  # neighbours in length
        return values[batch]

    out = in_length_order(lengths, 2, run)
    assert seen == [[1, 5], [2, 3], [6, 0], [4]]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, values.astype(np.float32))


def test_in_original_order_places_each_batch_at_its_indices() -> None:
    out = in_original_order([np.array([2, 0]), np.array([1])], [[[20.0], [0.0]], np.array([[10]])])
    np.testing.assert_array_equal(out, [[0.0], [10.0], [20.0]])
    assert out.dtype == np.float32


def test_input_names_add_the_second_sentence_for_siamese_heads() -> None:
    assert input_names(PLAIN, siamese=False) == PLAIN
    assert input_names(TYPED, siamese=True) == [*TYPED, *(f"{n}_b" for n in TYPED)]


@pytest.mark.parametrize(
    ("names", "side"),
    [(PLAIN, 16), (TYPED, 16), (input_names(TYPED, siamese=True), 8)],
    ids=["plain", "token-types", "siamese"],
)
def test_dummy_inputs_names_shapes_and_values(names: list[str], side: int) -> None:
    feeds = dummy_inputs(names, batch=3, length=16, vocab=99)
    assert list(feeds) == names
    for name, array in feeds.items():
        assert array.shape == (3, side) and array.dtype == np.int64
        if name.startswith("input_ids"):
            assert array.min() >= 5 and array.max() < 99
        else:
            assert (array == (1 if name.startswith("attention_mask") else 0)).all()
    if "input_ids_b" in feeds:  # the two sentences are different text
        assert not np.array_equal(feeds["input_ids"], feeds["input_ids_b"])


def test_dummy_inputs_siamese_sides_keep_at_least_two_tokens() -> None:
    feeds = dummy_inputs(input_names(PLAIN, siamese=True), batch=1, length=3, vocab=99)
    assert {a.shape for a in feeds.values()} == {(1, 2)}


def test_dummy_inputs_draw_what_torch_randint_draws() -> None:
    """The search measured FLOPs and latency on torch.randint ids; the same ids, bit for bit,
    keep its results reproducible (the shapes cross the Mersenne Twister's 624-word refill)."""
    for vocab in (99, 30522, 250002):
        names = input_names(TYPED, siamese=True)
        feeds = dummy_inputs(names, batch=7, length=260, vocab=vocab, seed=4)
        gen = torch.Generator().manual_seed(4)
        for name in ("input_ids", "input_ids_b"):
            expected = torch.randint(5, vocab, (7, 130), generator=gen).numpy()
            np.testing.assert_array_equal(feeds[name], expected)


def test_dummy_inputs_are_seeded() -> None:
    a, b = (dummy_inputs(PLAIN, 2, 8, 1000, seed=s)["input_ids"] for s in (0, 1))
    np.testing.assert_array_equal(a, dummy_inputs(PLAIN, 2, 8, 1000)["input_ids"])
    assert not np.array_equal(a, b)


def test_dummy_inputs_refuse_unknown_names_and_vocabularies() -> None:
    with pytest.raises(ValueError, match="pixel_values"):
        dummy_inputs(["pixel_values"], 1, 8, 99)
    for vocab in (5, 2**28 + 5):
        with pytest.raises(ValueError, match="vocab_size"):
            dummy_inputs(PLAIN, 1, 8, vocab)


def test_batching_imports_no_torch() -> None:
    """The torch-free ONNX runtime imports this module."""
    code = "import moohead.batching, sys; assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def partitions(n: int) -> list[list[tuple[int, int]]]:
    """Every split of ``0..n-1`` into contiguous groups, as (start, end) pairs."""
    if n == 0:
        return [[]]
    return [[*rest, (i, n)] for i in range(n) for rest in partitions(i)]


@pytest.mark.parametrize("call_tokens", [0.0, 3.0, 20.0, 1e9])
@pytest.mark.parametrize("sides", [1, 2])
def test_padding_groups_are_the_cheapest_cuts(call_tokens: float, sides: int) -> None:
    """The groups cost what the best contiguous split of the length-sorted rows costs
    (checked against every split), and cover each row once."""
    rng = np.random.default_rng(sides)
    for _ in range(20):
        lengths = rng.integers(1, 60, size=(int(rng.integers(1, 8)), sides))
        groups = padding_groups(lengths, call_tokens)
        assert sorted(np.concatenate(groups).tolist()) == list(range(len(lengths)))

        def cost(rows: np.ndarray, lengths: np.ndarray = lengths) -> float:
            return float(len(rows) * lengths[rows].max(axis=0).sum() + call_tokens)

        order = np.argsort(lengths.sum(axis=1), kind="stable")
        best = min(sum(cost(order[a:b]) for a, b in p) for p in partitions(len(order)))
        assert sum(cost(g) for g in groups) == pytest.approx(best)


def test_padding_groups_keep_a_batch_whole_at_infinite_call_cost() -> None:
    lengths = np.array([50, 2, 49, 3])
    (group,) = padding_groups(lengths, float("inf"))
    np.testing.assert_array_equal(group, [1, 3, 2, 0])  # shortest first
    assert [g.tolist() for g in padding_groups(lengths, 0.0)] == [[1], [3], [2], [0]]
    assert padding_groups(np.zeros((0,), dtype=np.int64), 8.0) == []
