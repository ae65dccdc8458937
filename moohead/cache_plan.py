"""The feature cache's disk budget: what a run will add to the cache, planned before any
encoder pass, and the bounded token subset of search-train when token states do not fit.

Pooled vectors of every row and the token states of the splits a head is scored or
stopped on (search-stop, search-val, the validation splits) are required: a budget that
cannot hold them, with what the source caches hold already, is refused before any work
starts. Token states of search-train come next; when they do not all fit, token-level
heads (those that ``frozen.reads_pooled`` does not cover) train on a stratified subset
of search-train that does, and pooled heads still train on all of it.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moohead.cache_store import bytes_per_row
from moohead.data import Split
from moohead.errors import MooheadError
from moohead.features import (
    PrepareContext,
    _checked_chunks,
    cache_views,
    source_cache,
)
from moohead.splits import strata

log = logging.getLogger(__name__)
TRAIN = "search-train"
CHUNK_OVERHEAD = 64 * 1024  # metadata, index and lock files, rounded up generously
DEFAULT_SHARE = 0.5  # of the free disk, when no budget is given
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as ``20G``, ``512M``, ``1.5T`` or ``1000000`` (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise MooheadError(f"--cache-budget {text!r} is not a size: give e.g. 20G, 512M or 1.5T")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** "_KMGT".index(unit or "_"))


def default_budget(cache_dir: Path) -> int:
    """Half the free disk where the cache lives."""
    folder = cache_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return int(shutil.disk_usage(folder).free * DEFAULT_SHARE)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


@dataclass
class CachePlan:
    """What a run adds to the cache and which rows of search-train get token states.

    Attributes:
        budget: Bytes the run's source caches may take.
        cached: Bytes they take already.
        pooled: Bytes of the pooled vectors to add (every row of every split).
        scoring_tokens: Bytes of the token states to add for the splits heads are stopped
            and scored on.
        train_tokens: Bytes of the token states of all of search-train still to add.
        token_rows: Split name -> source rows to store token states for (absent: all).
        train_subset: (rows with token states, rows) of search-train when bounded.
    """

    budget: int
    cached: int
    pooled: int
    scoring_tokens: int
    train_tokens: int
    token_rows: dict[str, np.ndarray] = field(default_factory=dict)
    train_subset: tuple[int, int] | None = None

    def describe(self) -> dict[str, Any]:
        """What config.json records."""
        return {
            "budget_bytes": self.budget,
            "cached_bytes": self.cached,
            "added_bytes": self.pooled + self.scoring_tokens + self.train_tokens,
            "token_subset": None
            if self.train_subset is None
            else {"split": TRAIN, "rows": self.train_subset[0], "of": self.train_subset[1]},
        }


def _missing_bytes(
    ctx: PrepareContext, data: Split, name: str
) -> tuple[int, np.ndarray, np.ndarray]:
    """(pooled bytes to add, token bytes to add per example, and the examples' source rows)."""
    origin = data.origin or data.with_origin(name).origin
    assert origin is not None
    source = source_cache(ctx, origin)
    states = ctx.encoder.config.num_hidden_layers
    hidden = ctx.info.hidden_size
    pooled = 0
    tokens = np.zeros(len(data), dtype=np.float64)
    for view, columns in cache_views(ctx.task, ctx.cache).items():
        chunks = _checked_chunks(source, view) if source.root.is_dir() else []
        have = np.concatenate(
            [np.zeros(0, np.int64)] + [np.load(c.path / "rows.npy") for c in chunks]
        )
        with_tokens = [np.load(c.path / "rows.npy") for c in chunks if c.meta.has_tokens]
        have_tokens = np.concatenate([np.zeros(0, np.int64), *with_tokens])
        new = ~np.isin(origin.rows, have)
        row_pooled = bytes_per_row(states, hidden, ctx.cache.storage, 0)[0]
        pooled += int(new.sum() * row_pooled)
        todo = np.flatnonzero(~np.isin(origin.rows, have_tokens))
        if len(todo):
            texts = [[data.texts[c][i] for i in todo] for c in columns]
            enc = ctx.tokenizer(*texts, truncation=True, max_length=ctx.cache.max_length)
            lengths = np.array([len(x) for x in enc["input_ids"]], dtype=np.float64)
            per = bytes_per_row(states, hidden, ctx.cache.storage, 1.0)[1] - 8
            # a row with pooled vectors only gets them again in its token chunk
            tokens[todo] += lengths * per + 8 + np.where(new[todo], 0, row_pooled)
    return pooled, tokens, origin.rows


def plan_cache(
    ctx: PrepareContext,
    splits: dict[str, Split],
    budget: int,
    regression: bool,
    seed: int,
) -> CachePlan:
    """Plan what the run adds to the cache within ``budget`` bytes (see the module
    docstring); raises MooheadError, naming the size needed, when it cannot fit.

    Args:
        splits: Every split the run prepares, search-train under ``TRAIN``.
    """
    roots = {
        source_cache(ctx, s.origin or s.with_origin(n).origin).root  # type: ignore[arg-type]
        for n, s in splits.items()
    }
    cached = sum(f.stat().st_size for r in roots if r.is_dir() for f in r.rglob("*") if f.is_file())
    pooled = scoring = 0
    train_tokens = np.zeros(0)
    train_rows = np.zeros(0, np.int64)
    for name, data in splits.items():
        p, tokens, rows = _missing_bytes(ctx, data, name)
        pooled += p
        if name == TRAIN:
            train_tokens, train_rows = tokens, rows
        else:
            scoring += int(tokens.sum())
    plan = CachePlan(budget, cached, pooled, scoring, int(train_tokens.sum()))
    views = len(cache_views(ctx.task, ctx.cache))
    need = cached + pooled + scoring + CHUNK_OVERHEAD * 2 * views * len(splits)
    if need > budget:
        raise MooheadError(
            f"--cache-budget {gib(budget)} is too small: the cache needs at least {gib(need)} "
            f"(pooled vectors {gib(pooled)}, token states of the splits heads are scored on "
            f"{gib(scoring)}, already cached {gib(cached)}); raise --cache-budget or free disk"
        )
    room = budget - need
    if plan.train_tokens <= room:
        return plan
    # A stratified subset of search-train whose token states fit: each stratum in its
    # share, taken in a random order of the run's seed (a smaller budget: a prefix).
    train = splits[TRAIN]
    stratum = strata(train.labels, regression)
    order = np.random.default_rng(seed).permutation(len(train))
    share = np.bincount(stratum) / len(train)
    m = int(room // max(float(train_tokens.mean()), 1.0))
    while True:
        quota = np.floor(share * m).astype(np.int64)
        taken = np.zeros_like(quota)
        keep = []
        for i in order:
            if taken[stratum[i]] < quota[stratum[i]]:
                taken[stratum[i]] += 1
                keep.append(i)
        cost = float(train_tokens[keep].sum())
        if cost <= room or m <= 1:
            break
        m = min(m - 1, int(m * room / cost))
    keep_arr = np.sort(np.asarray(keep, dtype=np.int64))
    plan.train_tokens = int(cost)
    plan.token_rows[TRAIN] = train_rows[keep_arr]
    plan.train_subset = (len(keep_arr), len(train))
    log.warning(
        "cache budget %s: token states of %d of %d search-train examples fit (stratified); "
        "token-level heads train on those, pooled heads on all",
        gib(budget),
        len(keep_arr),
        len(train),
    )
    return plan
