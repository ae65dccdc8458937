"""Model inputs, built one way for the search, the parity gate, the benchmark and serving.

Padding token ids, ordering examples into length-sorted batches and making stand-in
inputs for an encoder's input names live here only, so what a head was measured on during
the search is what the exported model is checked and served on. This module imports numpy
alone: the ONNX runtime imports it and must stay free of torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SIDE_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
"""Every input one encoded sentence can take, in the order models take them."""

SECOND = "_b"
"""Suffix of the inputs of a siamese head's second sentence."""

# torch.randint(low, high) takes ``low + next32 % (high - low)`` of its Mersenne Twister
# for ranges below 2**28 (a different draw above), which RandomState reproduces exactly.
_TORCH_RANGE_LIMIT = 1 << 28


def input_names(side_names: Sequence[str], siamese: bool) -> list[str]:
    """A model's input names: one sentence's, then the second sentence's for siamese heads."""
    names = list(side_names)
    return names + [f"{n}{SECOND}" for n in names] if siamese else names


def pad(
    ids: Sequence[Sequence[int] | np.ndarray],
    types: Sequence[Sequence[int] | np.ndarray] | None,
    pad_id: int,
) -> dict[str, np.ndarray]:
    """Right-pad examples to the longest of them.

    Args:
        ids: Token ids of each example, unpadded.
        types: Segment ids of each example (same lengths as ``ids``), or None for encoders
            without token types.
        pad_id: The id put after each example's last token.

    Returns:
        int64 ``[len(ids), longest]`` arrays: ``input_ids``, ``attention_mask`` (1 on real
        tokens) and, when ``types`` is given, ``token_type_ids`` (0 on padding).
    """
    width = max(len(x) for x in ids)
    out = {
        "input_ids": np.full((len(ids), width), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((len(ids), width), dtype=np.int64),
    }
    if types is not None:
        out["token_type_ids"] = np.zeros((len(ids), width), dtype=np.int64)
    for row, example in enumerate(ids):
        n = len(example)
        out["input_ids"][row, :n] = example
        out["attention_mask"][row, :n] = 1
        if types is not None:
            out["token_type_ids"][row, :n] = types[row]
    return out


def length_batches(lengths: Sequence[int] | np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Example indices in batches of ``batch_size``, shortest examples first.

    The sort is stable, so equal lengths keep their order; batches of similar lengths
    waste little compute on padding.
    """
    order = np.argsort(lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def padding_groups(lengths: np.ndarray, call_tokens: float) -> list[np.ndarray]:
    """Split one batch into model calls that waste the least compute on padding.

    A call costs its padded tokens (rows x the longest row, summed over the sides a
    siamese head reads) plus ``call_tokens``, the fixed cost of one call in tokens. The
    rows are sorted by their total length and cut into contiguous groups where the
    padding a cut saves is worth more than the call it adds (an exact dynamic programme
    over the cuts, ``O(n^2)`` for ``n`` rows).

    Args:
        lengths: ``[n]`` or ``[n, sides]`` token counts of the batch's rows.
        call_tokens: A call's fixed cost in tokens; ``inf`` keeps the batch whole (on a
            GPU a call costs more than the padding it would save).

    Returns:
        Row indices of each group, shortest rows first; together ``0..n-1`` once.
    """
    n = len(lengths)
    if n == 0:
        return []
    lens = np.asarray(lengths, dtype=np.int64).reshape(n, -1)
    order = np.argsort(lens.sum(axis=1), kind="stable")
    if n == 1 or not np.isfinite(call_tokens):
        return [order]
    lens = lens[order]
    best = np.zeros(n + 1)  # best[j]: least cost of the first j rows
    cut = np.zeros(n + 1, dtype=np.int64)  # where the last group of best[j] starts
    for j in range(1, n + 1):
        # widest[i]: the longest row of rows i..j-1, side by side, for every start i < j
        widest = np.maximum.accumulate(lens[:j][::-1], axis=0)[::-1].sum(axis=1)
        cost = best[:j] + (j - np.arange(j)) * widest + call_tokens
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = int(cut[end])
    return groups[::-1]


def in_original_order(batches: Sequence[np.ndarray], outputs: Sequence[Any]) -> np.ndarray:
    """Stack per-batch outputs ``[len(batch), d]`` into float32 rows in the examples' order.

    Args:
        batches: Example indices of each batch, together covering ``0..n-1`` once.
        outputs: Array-likes (numpy, or anything ``np.concatenate`` takes) per batch.
    """
    order = np.concatenate(batches)
    result = np.empty((len(order), np.shape(outputs[0])[1]), dtype=np.float32)
    result[order] = np.concatenate(outputs)
    return result


def in_length_order(
    lengths: Sequence[int] | np.ndarray, batch_size: int, run: Callable[[np.ndarray], Any]
) -> np.ndarray:
    """``run`` over length-sorted batches of example indices; its ``[len(batch), d]``
    outputs come back as float32 rows in the examples' own order.

    ``run`` returns numpy (or what ``np.concatenate`` takes): torch callers end it with
    ``.float().cpu().numpy()``.
    """
    batches = length_batches(lengths, batch_size)
    return in_original_order(batches, [run(batch) for batch in batches])


def dummy_inputs(
    names: Sequence[str], batch: int, length: int, vocab: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """A fixed, padding-free int64 input ``[batch, side]`` for each name, for FLOPs and timing.

    Ids are drawn uniformly from ``[5, vocab)`` (clear of the usual special tokens), in
    ``names`` order, from the stream ``torch.randint`` draws with a generator seeded with
    ``seed``; masks are ones and token types zeros. When ``names`` holds a siamese head's
    second sentence, each sentence gets half the tokens (at least 2) of the joint
    reference: the same text, measured the way each head reads it.

    Raises:
        ValueError: For a name that is not an encoder input, or a vocabulary too small
            to draw from or too large to reproduce torch's draws.
    """
    if not 0 < vocab - 5 < _TORCH_RANGE_LIMIT:
        raise ValueError(f"vocab_size {vocab} is outside 6..2**28+4, where ids can be drawn")
    siamese = any(n.endswith(SECOND) for n in names)
    side = max(2, length // 2) if siamese else length
    rng = np.random.RandomState(seed)  # MT19937 seeded as torch.Generator.manual_seed seeds it
    out: dict[str, np.ndarray] = {}
    for name in names:
        base = name.removesuffix(SECOND)
        if base == "input_ids":
            raw = rng.randint(0, 1 << 32, size=(batch, side), dtype=np.uint32)
            out[name] = raw.astype(np.int64) % (vocab - 5) + 5
        elif base == "attention_mask":
            out[name] = np.ones((batch, side), dtype=np.int64)
        elif base == "token_type_ids":
            out[name] = np.zeros((batch, side), dtype=np.int64)
        else:
            raise ValueError(f"{name!r} is not an encoder input ({', '.join(SIDE_INPUTS)})")
    return out
