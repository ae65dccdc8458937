"""Frozen-fidelity features: one encoder pass per source row, cached on disk and shared.

The cache (``cache_store.py``) is kept per *source split* (the train or a validation
split as read) and grows with what runs read: a split a run reads (``--max-train``'s
sample, the search splits of any seed) is a list of source rows, and only rows no run
has encoded before are encoded. It stores what a genome can read and nothing else:

- hidden states 1..L (a genome reads the last ``k`` of its first ``depth`` layers with
  ``k <= depth``, so never the embeddings, state 0);
- the joint view of a pair task, and each side (``a``, ``b``) only while two-sided heads
  (siamese, cosine) are in the search space (``CacheConfig.siamese``);
- per state, the cls, mean and max vectors, written once with the token states, so that
  heads that pool with no token mixer never read tokens (``feature_store.PooledStore``);
- token states in fp16, or int8 with one scale per token (``CacheConfig.storage``).

Files are memory-mapped, so a genome pages in only the layers it reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moohead.batching import length_batches, pad
from moohead.cache_store import (
    FORMAT_VERSION,
    POOLS,
    STORAGES,
    ChunkMeta,
    SourceCache,
    cache_error,
    pooled_file,
    quantize,
)
from moohead.data import Origin, Split
from moohead.encoder import EncoderInfo
from moohead.errors import MooheadError
from moohead.feature_store import FeatureStore, PooledStore, SplitFeatures
from moohead.genome import Genome
from moohead.recompute import EncodedStore, LiveEncoder
from moohead.tasks import Task
from moohead.token_ids import TokenIds

__all__ = [
    "CacheConfig",
    "FeatureStore",
    "PooledStore",
    "PrepareContext",
    "SplitFeatures",
    "cache_size_bytes",
    "cached_split",
    "read_views",
    "view_rows",
    "views_for",
]

log = logging.getLogger(__name__)


def views_for(task: Task) -> dict[str, tuple[int, ...]]:
    """View name -> indices of the text columns it encodes."""
    if task.is_pair:
        return {"joint": (0, 1), "a": (0,), "b": (1,)}
    return {"text": (0,)}


def read_views(views: Any, genome: Genome) -> list[str]:
    """The views a genome reads: the sentence, the joint pair, or both sides (siamese)."""
    if "text" in views:
        return ["text"]
    if genome.two_sided and "a" not in views:
        raise MooheadError("a two-sided head needs each sentence cached (CacheConfig.siamese)")
    return ["a", "b"] if genome.two_sided else ["joint"]


def source_key(info: EncoderInfo, task: Task, origin: Origin, max_length: int, storage: str) -> str:
    """The cache of a source split: encoder, task, the split's name and content, length and
    storage; not the subset a run reads."""
    fields = [FORMAT_VERSION, info.fingerprint, task.name, origin.name, origin.fingerprint]
    payload = json.dumps([*fields, max_length, storage])
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheConfig:
    """How features are computed and where they live."""

    cache_dir: Path
    max_length: int = 128
    batch_size: int = 64
    device: str = "cpu"
    storage: str = "fp16"  # token states: fp16, or int8 with one scale per token
    siamese: bool = True  # cache each side of a pair (two-sided heads are in the space)

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise MooheadError(f"unknown cache storage {self.storage!r}; choose from {STORAGES}")


ProgressFn = Callable[[int], None]


@dataclass
class PrepareContext:
    """What preparing a split at any fidelity needs: the encoder, its tokenizer, the task,
    the cache settings (``max_length`` applies to every fidelity) and progress reports.

    Attributes:
        progress: Called as ``progress(description, total)`` before a view is encoded;
            returns a callback that is given the number of examples done per batch.
        token_rows: Split name -> the source rows whose token states are cached (the
            disk budget's subset, ``cache_plan.py``); a split not named gets all.
        recompute: When set, no token state is cached: the cache holds pooled vectors
            and this encoder recomputes token states batch by batch (``recompute.py``).
    """

    encoder: Any
    tokenizer: Any
    info: EncoderInfo
    task: Task
    cache: CacheConfig
    progress: Callable[[str, int], ProgressFn] | None = None
    token_rows: dict[str, np.ndarray] = field(default_factory=dict)
    recompute: LiveEncoder | None = None
    _tokens: dict[tuple[str, str, int, str], TokenIds] = field(default_factory=dict, repr=False)

    def view_tokens(
        self, source: Path, view: str, texts: list[list[str]], rows: np.ndarray
    ) -> TokenIds:
        """Token ids of a view's examples (``texts``, one list per column, at source
        ``rows``), tokenised once: the cache plan, the encoder pass and recomputed token
        states all read these."""
        key = (str(source), view, self.cache.max_length, _rows_key(rows))
        if key not in self._tokens:
            self._tokens[key] = TokenIds.of(
                self.tokenizer, texts, self.cache.max_length, self.info.uses_token_type_ids
            )
        return self._tokens[key]

    def release_tokens(self, source: Path, rows: np.ndarray) -> None:
        """Forget the token ids of every view of these examples (once they are cached)."""
        which = (str(source), self.cache.max_length, _rows_key(rows))
        for key in [k for k in self._tokens if (k[0], k[2], k[3]) == which]:
            del self._tokens[key]


def _rows_key(rows: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(rows, np.int64).tobytes()).hexdigest()


def encode_chunk(
    ctx: PrepareContext,
    tokens: TokenIds,
    rows: np.ndarray,
    out_dir: Path,
    progress: ProgressFn | None,
    with_tokens: bool = True,
) -> ChunkMeta:
    """Run the encoder once over ``tokens`` (the examples at source ``rows``) and write
    their pooled vectors and (``with_tokens``) token states of hidden states 1..L to
    ``out_dir``."""
    encoder, tokenizer, cfg = ctx.encoder, ctx.tokenizer, ctx.cache
    lengths = tokens.lengths
    batches = length_batches(lengths, cfg.batch_size)  # little compute is spent on padding
    # Examples are written batch after batch: the chunk lists them in this order.
    order = np.concatenate([np.zeros(0, dtype=np.int64), *batches])
    states = tuple(range(1, encoder.config.num_hidden_layers + 1))
    int8 = cfg.storage == "int8"
    names = []
    for s in states:
        if with_tokens:
            names += [f"tokens_{s:02d}.{x}" for x in (("i8", "scale") if int8 else ("f16",))]
        for how in POOLS:
            names.append(pooled_file(s, how, cfg.storage)[0])
            names += [pooled_file(s, how, cfg.storage)[0] + ".scale"] if int8 else []
    files = {n: open(out_dir / n, "wb") for n in names}  # noqa: SIM115
    pad_id = tokenizer.pad_token_id or 0
    try:
        with torch.inference_mode():
            for batch in batches:
                arrays = pad(*tokens.take(batch), pad_id)
                kwargs = {k: torch.from_numpy(v).to(cfg.device) for k, v in arrays.items()}
                hidden = encoder(**kwargs, output_hidden_states=True).hidden_states
                keep = kwargs["attention_mask"].bool()
                for s in states:
                    write_state(files, s, hidden[s], keep, cfg.storage, with_tokens)
                if progress is not None:
                    progress(len(batch))
    finally:
        for f in files.values():
            f.close()
    written = lengths[order]
    np.save(out_dir / "rows.npy", rows[order].astype(np.int64))
    np.save(out_dir / "lengths.npy", written)
    if with_tokens:
        offsets = np.concatenate([[0], np.cumsum(written)[:-1]]).astype(np.int64)
        np.save(out_dir / "offsets.npy", offsets)
    return ChunkMeta(
        rows=len(rows),
        tokens=int(lengths.sum()) if with_tokens else 0,
        has_tokens=with_tokens,
        states=states,
        hidden=ctx.info.hidden_size,
        storage=cfg.storage,
    )


def write_state(
    files: dict[str, Any],
    s: int,
    state: torch.Tensor,
    keep: torch.Tensor,
    storage: str,
    with_tokens: bool = True,
) -> None:
    """Append one batch of hidden state ``s`` (``[B, T, H]``, ``keep`` its mask) to the files."""

    def put(name: str, x: torch.Tensor) -> None:
        files[name].write(x.contiguous().cpu().numpy().tobytes())

    # fp16 storage pools the fp16 states a token head reads, so both paths see one number.
    src = state.float() if storage == "int8" else state.to(torch.float16).float()
    m = keep.unsqueeze(-1)
    pooled = {
        "cls": src[:, 0],
        "mean": (src * m).sum(1) / m.sum(1).to(src.dtype),
        "max": src.masked_fill(~m, float("-inf")).amax(1),
    }
    if storage == "int8":
        if with_tokens:
            q, scale = quantize(state[keep])
            put(f"tokens_{s:02d}.i8", q)
            put(f"tokens_{s:02d}.scale", scale)
        for how, x in pooled.items():
            name = pooled_file(s, how, storage)[0]
            q, scale = quantize(x)
            put(name, q)
            put(name + ".scale", scale)
    else:
        if with_tokens:
            put(f"tokens_{s:02d}.f16", state[keep].to(torch.float16))
        for how, x in pooled.items():
            name, dtype = pooled_file(s, how, storage)
            put(name, x.to(torch.float32 if dtype == "float32" else torch.float16))


SHARED_SIDES = ("a", "b")  # views whose identical texts share one cache row


def view_rows(view: str, texts: list[list[str]], rows: np.ndarray) -> np.ndarray:
    """The cache row of each example of a view: its source row, except in a side of a pair
    (``SHARED_SIDES``), where examples with the same sentence share the smallest source
    row among them. Sides repeat: MNLI gives each premise three hypotheses, QQP's
    questions recur, and a sentence is encoded alone the same way wherever it occurs."""
    if view not in SHARED_SIDES:
        return rows
    out = rows.copy()
    first: dict[str, int] = {}
    for i in np.argsort(rows, kind="stable"):
        out[i] = first.setdefault(texts[0][i], int(rows[i]))
    return out


def cache_views(task: Task, cfg: CacheConfig) -> dict[str, tuple[int, ...]]:
    """The views cached for a task: each side of a pair only when ``cfg.siamese``."""
    views = views_for(task)
    return {k: v for k, v in views.items() if cfg.siamese or k not in ("a", "b")}


def source_cache(ctx: PrepareContext, origin: Origin) -> SourceCache:
    """The cache folder of a source split."""
    cfg = ctx.cache
    key = source_key(ctx.info, ctx.task, origin, cfg.max_length, cfg.storage)
    describe = {
        "encoder": ctx.info.name,
        "encoder_fingerprint": ctx.info.fingerprint,
        "task": ctx.task.name,
        "split": origin.name,
        "split_fingerprint": origin.fingerprint,
        "max_length": cfg.max_length,
        "storage": cfg.storage,
    }
    return SourceCache(cfg.cache_dir / f"{ctx.task.name}-{origin.name}-{key}", describe)


def _missing(chunks: list[Any], need: np.ndarray) -> np.ndarray:
    """The rows of ``need`` (sorted, unique) that no chunk holds."""
    have = [np.load(c.path / "rows.npy") for c in chunks]
    return need[~np.isin(need, np.concatenate([np.zeros(0, np.int64), *have]))]


def _checked_chunks(source: SourceCache, view: str) -> list[Any]:
    """The complete chunks of a view; damaged ones are dropped first (one line each)."""
    chunks, bad = source.chunks(view)
    if bad:
        with source.lock():
            source.repair(view)
        for line in source.repairs:
            log.warning("%s (its rows are encoded again)", line)
        source.repairs.clear()
        chunks, bad = source.chunks(view)
        if bad:
            raise MooheadError(f"feature cache {source.root} is damaged: {bad[0]}")
    return chunks


def _todo(chunks: list[Any], need: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows to encode with token states, rows to encode as pooled vectors only)."""
    with_tokens = _missing([c for c in chunks if c.meta.has_tokens], tokens)
    return with_tokens, np.setdiff1d(_missing(chunks, need), with_tokens)


def grow_view(
    ctx: PrepareContext,
    source: SourceCache,
    view: str,
    ids: Callable[[], TokenIds],
    rows: np.ndarray,
    label: str,
    token_rows: np.ndarray | None = None,
) -> FeatureStore:
    """The store of ``rows`` (source rows; ``ids()`` their examples' tokens in this view,
    asked for only when some rows must be encoded), encoding the rows the cache does not
    hold yet under the folder's lock.

    Args:
        token_rows: Source rows whose token states are needed; None: all of ``rows``. The
            others get pooled vectors only.
    """
    need = np.unique(rows)
    tokens = need if token_rows is None else np.intersect1d(need, token_rows)
    chunks = _checked_chunks(source, view)
    if any(len(t) for t in _todo(chunks, need, tokens)):
        with source.lock():  # another run may have grown it meanwhile: look again
            chunks = _checked_chunks(source, view)
            order = np.argsort(rows, kind="stable")
            for missing, with_tokens in zip(
                _todo(chunks, need, tokens), (True, False), strict=True
            ):
                if not len(missing):
                    continue
                pos = order[np.searchsorted(rows[order], missing)]
                what = label if with_tokens else f"{label} (pooled)"
                tick = ctx.progress(what, len(missing)) if ctx.progress else None
                tmp = source.temp_chunk(view)
                try:
                    meta = encode_chunk(ctx, ids().subset(pos), missing, tmp, tick, with_tokens)
                    chunks.append(source.commit(view, tmp, meta))
                except OSError as exc:
                    raise cache_error(source.root, exc) from exc
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
    return FeatureStore.open(source.root, view, rows, chunks)


def cached_split(ctx: PrepareContext, split_name: str, data: Split) -> SplitFeatures:
    """Features of every cached view of a split: read from its source split's cache, the
    rows no run has encoded yet encoded once and added to it."""
    origin = data.origin or data.with_origin(split_name).origin
    assert origin is not None
    try:
        ctx.cache.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cache_error(ctx.cache.cache_dir, exc) from exc
    source = source_cache(ctx, origin)
    live = ctx.recompute
    token_rows = np.zeros(0, np.int64) if live else ctx.token_rows.get(split_name)
    views: dict[str, FeatureStore] = {}
    for view, columns in cache_views(ctx.task, ctx.cache).items():
        texts = [data.texts[c] for c in columns]
        rows = view_rows(view, texts, origin.rows)
        # the examples' own rows name the token subset: the rows they read in this view
        tokens = None if token_rows is None else rows[np.isin(origin.rows, token_rows)]
        label = f"{split_name}/{view}"
        # tokenised when rows must be encoded or recomputed, not for a warm cache
        ids = functools.partial(ctx.view_tokens, source.root, view, texts, origin.rows)
        views[view] = grow_view(ctx, source, view, ids, rows, label, tokens)
        if live is not None:
            views[view] = EncodedStore(views[view], ids(), live)
    ctx.release_tokens(source.root, origin.rows)  # a recomputing store keeps its own
    return SplitFeatures(views, data.labels)


def cache_size_bytes(features: list[SplitFeatures]) -> int:
    """Bytes on disk of the source caches the given splits read (each counted once)."""
    roots = {store.root for sf in features for store in sf.views.values()}
    return sum(SourceCache(root).nbytes() for root in roots)
