"""The search splits: search-train (fits heads), search-stop (early stopping) and search-val
(the fitness), cut from the task's training split so that nothing leaks between them.

The official validation split is never used for selection. Leakage is real in GLUE's
training data: SST-2's training set holds the phrases of each sentence's parse tree, so a
plain random cut puts phrases of the same sentence on both sides, and search-val then
rewards memorised phrases. Examples are therefore grouped, and a group stays on one side:

- examples whose normalised texts (lower case, words only) are identical;
- examples that share a word n-gram of ``NGRAM`` words, which includes every text of at
  least ``NGRAM`` words that another one contains;
- a text of fewer words that another text of the sample contains (``funny``, ``a
  little``) is kept in search-train: grouping it with every text it occurs in would join
  most of the data into one group, and a text kept in search-train cannot be a held-out
  text found inside a training one.

Groups are assigned in a random order (the run's seed), stratified by class (or by score
quintile for regression). The sample itself (``--max-train``) is the first N rows of one
fixed shuffle: it does not depend on the seed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from moohead.data import Split
from moohead.errors import MooheadError

NGRAM = 6  # shared word n-gram that joins two examples (SST-2: phrases of one sentence)
SAMPLE_SEED = 0  # the fixed shuffle that --max-train takes its first rows from
MIN_VAL = 2000  # search-val size to reach where the data allows ...
MAX_VAL_SHARE = 0.3  # ... that is, while search-train keeps most of the sample
_WORD = re.compile(r"\w+")
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class SearchSplits:
    """Disjoint, leak-free parts of the training split (see the module docstring)."""

    train: Split
    stop: Split
    val: Split

    def named(self) -> dict[str, Split]:
        """The three parts under the names runs, caches and reports use."""
        return {"search-train": self.train, "search-stop": self.stop, "search-val": self.val}


def sample_rows(n_rows: int, max_train: int | None) -> np.ndarray:
    """The rows ``--max-train`` reads: the first N of one fixed shuffle, in file order."""
    if max_train is None or max_train >= n_rows:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(SAMPLE_SEED).permutation(n_rows)[:max_train])


def split_sizes(n: int, val_fraction: float, stop_fraction: float) -> tuple[int, int]:
    """(search-val, search-stop) sizes for a sample of ``n`` examples: search-val is
    ``val_fraction`` of it, raised towards ``MIN_VAL`` while search-train keeps at least
    ``1 - MAX_VAL_SHARE``."""
    n_val = max(1, round(n * val_fraction), min(MIN_VAL, math.floor(n * MAX_VAL_SHARE)))
    n_stop = max(1, round(n * stop_fraction))
    if n - n_val - n_stop < 2:
        raise MooheadError(
            f"only {n} training examples: need at least {n_val + n_stop + 2} for a search "
            "(raise --max-train or add data)"
        )
    return n_val, n_stop


def _span_hashes(
    ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word span of ``n`` words that lies inside one text, and the
    text each span belongs to."""
    pos = np.arange(max(0, len(ids) - n + 1))
    text = np.searchsorted(starts, pos, side="right") - 1
    inside = pos + n <= ends[text]
    pos, text = pos[inside], text[inside]
    h = np.zeros(len(pos), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _MIX + ids[pos + j].astype(np.uint64) + np.uint64(1)
    return h, text


def leak_groups(texts: tuple[list[str], ...], ngram: int = NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """Group the examples that must fall on the same side of a split.

    Each text column is one text (pairs: both sentences). Returns (group id per example,
    whether the example must stay in search-train).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n, columns = len(texts[0]), len(texts)
    words = [_WORD.findall(col[i].lower()) for i in range(n) for col in texts]
    owner = np.arange(len(words)) // columns  # text -> example
    vocab: dict[str, int] = {}
    ids = np.asarray([vocab.setdefault(w, len(vocab)) for ws in words for w in ws], np.int64)
    lengths = np.asarray([len(ws) for ws in words], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths

    # Identical normalised texts, and texts that share an n-gram, are joined.
    seen: dict[str, int] = {}
    whole = np.asarray([seen.setdefault(" ".join(ws), len(seen)) for ws in words], np.int64)
    gram, gram_text = _span_hashes(ids, starts, ends, ngram)
    _, gram_key = np.unique(gram, return_inverse=True)
    key = np.concatenate([whole, len(seen) + gram_key.ravel()])
    example = np.concatenate([owner, owner[gram_text]])
    size = n + len(seen) + len(gram)
    graph = coo_matrix((np.ones(len(key), np.int8), (example, n + key)), shape=(size, size))
    groups = connected_components(graph, directed=False)[1][:n]

    # A short text found inside a longer text of another example stays in search-train.
    pinned = np.zeros(n, dtype=bool)
    for count in np.unique(lengths[lengths < ngram]):
        short = np.flatnonzero(lengths == count)
        if count == 0:
            pinned[owner[short]] = True  # no words: found inside anything
            continue
        h, text = _span_hashes(ids, starts, ends, int(count))
        longer = lengths[text] > count
        pairs = np.unique(np.stack([h[longer], owner[text[longer]].astype(np.uint64)]), axis=1)
        values, first, hosts = np.unique(pairs[0], return_index=True, return_counts=True)
        if not len(values):
            continue  # no longer text at all
        own = h[np.isin(text, short) & ~longer]  # a short text's one span is itself
        at = np.minimum(np.searchsorted(values, own), len(values) - 1)
        found = values[at] == own
        elsewhere = found & ((hosts[at] > 1) | (pairs[1][first[at]] != owner[short]))
        pinned[owner[short[elsewhere]]] = True
    return groups, pinned


def strata(labels: np.ndarray, regression: bool) -> np.ndarray:
    """Stratum of each example: its class, or its score's quintile for regression."""
    if not regression:
        return np.unique(labels, return_inverse=True)[1].ravel()
    edges = np.quantile(labels, [0.2, 0.4, 0.6, 0.8])
    return np.searchsorted(edges, labels, side="right")


def assign_groups(
    groups: np.ndarray,
    pinned: np.ndarray,
    stratum: np.ndarray,
    sizes: tuple[int, ...],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Fill parts of the given sizes with whole groups, in a random order, each part's
    strata in the sample's proportions; the rest is the last part. Groups with a pinned
    example go to the rest, unless the parts could not be filled otherwise.

    Returns one sorted index array per part, then the rest.
    """
    n_groups = int(groups.max()) + 1
    n_strata = int(stratum.max()) + 1
    counts = np.zeros((n_groups, n_strata), dtype=np.int64)
    np.add.at(counts, (groups, stratum), 1)
    share = counts.sum(axis=0) / len(groups)
    locked = np.zeros(n_groups, dtype=bool)
    locked[groups[pinned]] = True
    owner = np.full(n_groups, len(sizes))  # part of each group; len(sizes) = the rest
    order = rng.permutation(n_groups)
    for part, size in enumerate(sizes):
        room = np.ceil(size * share).astype(np.int64)
        filled = np.zeros(n_strata, dtype=np.int64)
        # strata in proportion, then any free group, then (only if needed) pinned groups
        for stratified, allow_pinned in ((True, False), (False, False), (False, True)):
            for g in order:
                if filled.sum() >= size:
                    break
                c = counts[g]
                if owner[g] != len(sizes) or (locked[g] and not allow_pinned):
                    continue
                if filled.sum() + c.sum() > size or (stratified and np.any(filled + c > room)):
                    continue
                owner[g] = part
                filled += c
    return [np.flatnonzero(owner[groups] == part) for part in range(len(sizes) + 1)]


def search_splits(
    train: Split,
    regression: bool,
    max_train: int | None,
    val_fraction: float,
    stop_fraction: float,
    seed: int,
) -> SearchSplits:
    """Cut search-train, search-stop and search-val from the training split (see the
    module docstring); the same arguments give the same splits."""
    sample = train.subset(sample_rows(len(train), max_train))
    n_val, n_stop = split_sizes(len(sample), val_fraction, stop_fraction)
    groups, pinned = leak_groups(sample.texts)
    val, stop, rest = assign_groups(
        groups, pinned, strata(sample.labels, regression), (n_val, n_stop),
        np.random.default_rng(seed),
    )  # fmt: skip
    if len(rest) < 2 or not len(val) or not len(stop):
        raise MooheadError(
            f"the {len(sample)} training examples do not split into search-train, "
            f"search-stop and search-val ({len(rest)}, {len(stop)} and {len(val)} examples): "
            "too few distinct texts (raise --max-train or add data)"
        )
    return SearchSplits(sample.subset(rest), sample.subset(stop), sample.subset(val))
