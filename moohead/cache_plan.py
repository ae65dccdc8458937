"""The feature cache's disk budget: what a run will add to the cache, planned before any
encoder pass, and what a run does when the token states do not fit (``--token-states``).

Pooled vectors of every row are always cached. Token states are cached (``cache``) when
they fit; otherwise a run does one of two things, and records which in config.json:

- ``subset``: the token states of the splits a head is stopped and scored on (search-stop,
  search-val, the validation splits) are cached, then those of a stratified subset of
  search-train that fits. Token-level heads (those that ``frozen.reads_pooled`` does not
  cover) train on that subset; pooled heads still train on all of search-train.
- ``recompute``: no token state is cached; the cut encoder recomputes them batch by batch
  (``recompute.py``). Every head trains on all of search-train; the cache holds pooled
  vectors only. On a GPU the encoder pass costs little beside reading from disk.

``auto`` (the default) caches when everything fits, else recomputes on a GPU and takes
the subset on a CPU. A budget that cannot hold what the choice requires, with what the
source caches hold already, is refused before any work starts, naming the size needed.
"""

from __future__ import annotations

import logging
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
    view_rows,
)
from moohead.splits import strata

log = logging.getLogger(__name__)
TRAIN = "search-train"
CHUNK_OVERHEAD = 64 * 1024  # a chunk's metadata and the index, rounded up generously
DEFAULT_SHARE = 0.5  # of the free disk, when no budget is given


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
        token_states: What the run does with token states: ``cache``, ``subset`` or
            ``recompute`` (see the module docstring).
    """

    budget: int
    cached: int
    pooled: int
    scoring_tokens: int
    train_tokens: int
    token_rows: dict[str, np.ndarray] = field(default_factory=dict)
    train_subset: tuple[int, int] | None = None
    token_states: str = "cache"

    def describe(self) -> dict[str, Any]:
        """What config.json records."""
        return {
            "budget_bytes": self.budget,
            "cached_bytes": self.cached,
            "added_bytes": self.pooled + self.scoring_tokens + self.train_tokens,
            "token_states": self.token_states,
            "token_subset": None
            if self.train_subset is None
            else {"split": TRAIN, "rows": self.train_subset[0], "of": self.train_subset[1]},
        }


def _missing_bytes(
    ctx: PrepareContext, data: Split, name: str
) -> tuple[int, np.ndarray, int, np.ndarray]:
    """(pooled bytes to add with the metadata of the chunks to write, token bytes to add
    per example, token bytes to add in all, and the examples' source rows). The total
    counts a shared side once; per example, it is counted in full for each of its
    examples, so that a subset's sum never falls short."""
    origin = data.origin or data.with_origin(name).origin
    assert origin is not None
    source = source_cache(ctx, origin)
    states = ctx.encoder.config.num_hidden_layers
    hidden = ctx.info.hidden_size
    pooled = exact = writes = 0
    tokens = np.zeros(len(data), dtype=np.float64)
    for view, columns in cache_views(ctx.task, ctx.cache).items():
        chunks = _checked_chunks(source, view) if source.root.is_dir() else []
        have = np.concatenate(
            [np.zeros(0, np.int64)] + [np.load(c.path / "rows.npy") for c in chunks]
        )
        with_tokens = [np.load(c.path / "rows.npy") for c in chunks if c.meta.has_tokens]
        have_tokens = np.concatenate([np.zeros(0, np.int64), *with_tokens])
        rows = view_rows(view, [data.texts[c] for c in columns], origin.rows)
        new = ~np.isin(rows, have)
        row_pooled = bytes_per_row(states, hidden, ctx.cache.storage, 0)[0]
        pooled += int(len(np.unique(rows[new])) * row_pooled)
        todo = np.flatnonzero(~np.isin(rows, have_tokens))
        writes += int(new.any()) + int(len(todo) > 0)
        if len(todo):
            texts = [data.texts[c] for c in columns]
            ids = ctx.view_tokens(source.root, view, texts, origin.rows)
            lengths = ids.lengths[todo]
            per = bytes_per_row(states, hidden, ctx.cache.storage, 1.0)[1] - 8
            # a row with pooled vectors only gets them again in its token chunk
            cost = lengths * per + 8 + np.where(new[todo], 0, row_pooled)
            tokens[todo] += cost
            exact += int(cost[np.unique(rows[todo], return_index=True)[1]].sum())
    return pooled + CHUNK_OVERHEAD * writes, tokens, exact, origin.rows


@dataclass(frozen=True)
class PlanRequest:
    """What a run asks of the cache plan.

    Attributes:
        budget: Bytes the run's source caches may take.
        seed: The run's seed (the token subset's order).
        mode: ``--token-states``: auto, cache, subset or recompute.
        subset: The size of the token subset a resumed run recorded: the same rows again,
            whatever the cache holds by now.
    """

    budget: int
    seed: int = 0
    mode: str = "auto"
    subset: int | None = None


def plan_cache(
    ctx: PrepareContext,
    splits: dict[str, Split],
    request: PlanRequest,
    contexts: dict[str, PrepareContext] | None = None,
) -> CachePlan:
    """Plan what the run adds to the cache within the request's budget (see the module
    docstring); raises MooheadError, naming the size needed, when it cannot fit.

    Args:
        splits: Every split the run prepares, search-train under ``TRAIN``.
        contexts: Splits cached otherwise than ``ctx`` says (the validation splits, in
            fp16) -> their context.
    """
    budget, mode, subset = request.budget, request.mode, request.subset
    regression, seed = ctx.task.is_regression, request.seed
    contexts = contexts or {}
    roots = {
        source_cache(contexts.get(n, ctx), s.origin or s.with_origin(n).origin).root  # type: ignore[arg-type]
        for n, s in splits.items()
    }
    cached = sum(f.stat().st_size for r in roots if r.is_dir() for f in r.rglob("*") if f.is_file())
    pooled = scoring = 0
    train_tokens = np.zeros(0)
    train_rows = np.zeros(0, np.int64)
    train_total = 0
    for name, data in splits.items():
        p, tokens, total, rows = _missing_bytes(contexts.get(name, ctx), data, name)
        pooled += p
        if name == TRAIN:
            train_tokens, train_total, train_rows = tokens, total, rows
        else:
            scoring += total
    plan = CachePlan(budget, cached, pooled, scoring, train_total)
    floor = cached + pooled
    everything = floor + scoring + plan.train_tokens
    gpu = ctx.cache.device.startswith("cuda")
    if mode == "recompute" or (mode == "auto" and gpu and everything > budget):
        _require(budget, floor, f"pooled vectors {gib(pooled)}, already cached {gib(cached)}")
        plan.scoring_tokens = plan.train_tokens = 0
        plan.token_states = "recompute"
        if everything > budget:
            log.warning(
                "cache budget %s: token states (%s) do not fit; the cut encoder recomputes "
                "them batch by batch and the cache holds pooled vectors only",
                gib(budget),
                gib(everything - floor),
            )
        return plan
    if mode == "cache" and everything > budget:
        _require(budget, everything, "every token state, as --token-states cache asks")
    need = floor + scoring
    _require(
        budget,
        need,
        f"pooled vectors {gib(pooled)}, token states of the splits heads are scored on "
        f"{gib(scoring)}, already cached {gib(cached)}",
    )
    room = budget - need
    if plan.train_tokens <= room and subset is None:
        return plan
    plan.token_states = "subset"
    if subset is None:
        keep = _stratified_fit(splits[TRAIN], train_tokens, room, regression, seed)
    else:
        keep = _stratified_rows(splits[TRAIN], regression, seed, subset)
        _require(budget, need + int(train_tokens[keep].sum()), "the run's token subset")
    plan.train_tokens = int(train_tokens[keep].sum())
    plan.token_rows[TRAIN] = train_rows[keep]
    plan.train_subset = (len(keep), len(train_tokens))
    log.warning(
        "cache budget %s: token states of %d of %d search-train examples fit (stratified); "
        "token-level heads train on those, pooled heads on all",
        gib(budget),
        len(keep),
        len(train_tokens),
    )
    return plan


def _require(budget: int, need: int, parts: str) -> None:
    if need > budget:
        raise MooheadError(
            f"--cache-budget {gib(budget)} is too small: the cache needs at least {gib(need)} "
            f"({parts}); raise --cache-budget, free disk, or choose other --token-states"
        )


def _stratified(train: Split, regression: bool, seed: int, m: int) -> np.ndarray:
    """Sorted positions of the stratified subset of about ``m`` examples of ``train``: each
    stratum's share of ``m`` (rounded down), the first of a random order of the run's seed."""
    stratum = strata(train.labels, regression)
    order = np.random.default_rng(seed).permutation(len(train))
    quota = np.floor(np.bincount(stratum) / len(train) * m).astype(np.int64)
    by_stratum = stratum[order]
    keep = [order[by_stratum == s][:q] for s, q in enumerate(quota)]
    return np.sort(np.concatenate([np.zeros(0, np.int64), *keep]))


def _stratified_fit(
    train: Split, tokens: np.ndarray, room: float, regression: bool, seed: int
) -> np.ndarray:
    """The largest stratified subset (``_stratified``) whose token bytes fit ``room``; a
    smaller budget takes a prefix of each stratum's order."""
    m = int(room // max(float(tokens.mean()), 1.0))
    while True:
        keep = _stratified(train, regression, seed, m)
        cost = float(tokens[keep].sum())
        if cost <= room or m <= 1:
            return keep
        m = min(m - 1, int(m * room / cost))


def _stratified_rows(train: Split, regression: bool, seed: int, rows: int) -> np.ndarray:
    """The stratified subset of exactly ``rows`` examples a run recorded: the quotas of
    the smallest ``m`` that gives that many (each stratum's quota grows with ``m``, so any
    ``m`` that gives as many gives the same quotas)."""
    for m in range(rows, rows + len(np.unique(strata(train.labels, regression))) + 1):
        keep = _stratified(train, regression, seed, m)
        if len(keep) >= rows:
            return keep
    raise AssertionError("unreachable: the quotas of m sum to more than m - strata")
