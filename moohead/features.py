"""Frozen-fidelity feature cache: one encoder pass, every layer's token states on disk.

Layout of one cached *view* (a split encoded one way: the sentence, the joint pair, or
one side of a pair for siamese heads)::

    <cache_dir>/<task>-<split>-<view>-<key>/
        meta.json          written last: its presence marks a complete cache
        offsets.npy        int64 [n]: first token row of example i
        lengths.npy        int32 [n]: tokens of example i (no padding is stored)
        state_XX.f16       float16 [total_tokens, hidden]: hidden state XX (0 = embeddings)

Files are memory-mapped, so a genome pages in only the layers it reads. The key hashes the
encoder, task, split, view, max length and the texts themselves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moohead.batching import length_batches, pad
from moohead.data import Split
from moohead.encoder import EncoderInfo
from moohead.genome import Genome
from moohead.tasks import Task

FORMAT_VERSION = 1


@dataclass
class FeatureStore:
    """One cached view of a split."""

    path: Path
    offsets: np.ndarray
    lengths: np.ndarray
    num_states: int
    hidden: int
    _states: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _pooled: dict[tuple[int, str], np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, path: Path) -> FeatureStore:
        meta = json.loads((path / "meta.json").read_text())
        return cls(
            path=path,
            offsets=np.load(path / "offsets.npy"),
            lengths=np.load(path / "lengths.npy"),
            num_states=int(meta["num_states"]),
            hidden=int(meta["hidden"]),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    def state(self, index: int) -> np.ndarray:
        """Memory-mapped rows of hidden state ``index`` (0 = embeddings, L = last layer)."""
        if index not in self._states:
            total = int(self.lengths.sum())
            self._states[index] = np.memmap(
                self.path / f"state_{index:02d}.f16",
                dtype=np.float16,
                mode="r",
                shape=(total, self.hidden),
            )
        return self._states[index]

    def release(self) -> None:
        """Unmap the states and drop pooled vectors, so memory follows what one genome reads."""
        self._states.clear()
        self._pooled.clear()

    def pooled(self, index: int, how: str) -> np.ndarray:
        """``[n, hidden]`` float32 CLS vector or token mean of hidden state ``index``.

        Computed on first use and kept until ``release``: heads that pool CLS or mean with
        no token mixer train on these instead of on tokens (see ``frozen.inputs_for``).
        """
        key = (index, how)
        if key not in self._pooled:
            rows = self.state(index)
            if how == "cls":
                out = np.asarray(rows[self.offsets], dtype=np.float32)
            elif how == "mean":
                # Examples lie on disk in length order; reduceat needs ascending starts.
                order = np.argsort(self.offsets)
                sums = np.add.reduceat(rows, self.offsets[order], axis=0, dtype=np.float32)
                out = np.empty_like(sums)
                out[order] = sums / self.lengths[order, None].astype(np.float32)
            else:
                raise ValueError(f"no pooled fast path for {how!r}")
            self._pooled[key] = out
        return self._pooled[key]

    def gather(self, indices: np.ndarray, states: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded batch of the given examples.

        Returns:
            ``([len(states), B, T, hidden] float32, [B, T] bool mask)``.
        """
        lengths = self.lengths[indices].astype(np.int64)
        t_max = int(lengths.max())
        pos = np.arange(t_max)
        # One padded [B, T] row index per batch (padding repeats a real row, then is zeroed):
        # a single fancy index per layer, several times faster than scattering by mask.
        rows = self.offsets[indices][:, None] + np.minimum(pos[None, :], lengths[:, None] - 1)
        mask = torch.from_numpy(pos[None, :] < lengths[:, None])
        out = torch.stack(
            [torch.from_numpy(np.asarray(self.state(s)[rows])).float() for s in states]
        )
        return out.masked_fill_(~mask.unsqueeze(-1), 0.0), mask


class PooledStore:
    """A view of a FeatureStore in which every example is one pooled "token".

    For a head with no token mixer that pools CLS or mean, reading layers, mixing or
    concatenating them and then pooling equals pooling each layer first (both are linear
    per layer), so such a head trains on ``[k, B, 1, H]`` instead of all tokens.
    """

    def __init__(self, store: FeatureStore, how: str) -> None:
        self.store = store
        self.how = how
        self.lengths = np.ones(len(store), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.store)

    def gather(self, indices: np.ndarray, states: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = np.stack([self.store.pooled(s, self.how)[indices] for s in states])
        return torch.from_numpy(pooled[:, :, None, :]), torch.ones(
            len(indices), 1, dtype=torch.bool
        )


@dataclass
class SplitFeatures:
    """The cached views of one split plus its labels."""

    views: dict[str, FeatureStore]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def release(self) -> None:
        for store in self.views.values():
            store.release()


def views_for(task: Task) -> dict[str, tuple[int, ...]]:
    """View name -> indices of the text columns it encodes."""
    if task.is_pair:
        return {"joint": (0, 1), "a": (0,), "b": (1,)}
    return {"text": (0,)}


def read_views(views: Any, genome: Genome) -> list[str]:
    """The views a genome reads: the sentence, the joint pair, or both sides (siamese)."""
    if "text" in views:
        return ["text"]
    return ["a", "b"] if genome.two_sided else ["joint"]


def cache_key(
    info: EncoderInfo, task: Task, split_name: str, view: str, max_length: int, data: Split
) -> str:
    payload = json.dumps(
        [
            FORMAT_VERSION,
            info.fingerprint,
            task.name,
            split_name,
            view,
            max_length,
            data.fingerprint(),
        ]
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheConfig:
    """How features are computed and where they live."""

    cache_dir: Path
    max_length: int = 128
    batch_size: int = 64
    device: str = "cpu"


ProgressFn = Callable[[int], None]


@dataclass
class PrepareContext:
    """What preparing a split at any fidelity needs: the encoder, its tokenizer, the task,
    the cache settings (``max_length`` applies to every fidelity) and progress reports.

    Attributes:
        progress: Called as ``progress(description, total)`` before a view is encoded;
            returns a callback that is given the number of examples done per batch.
    """

    encoder: Any
    tokenizer: Any
    info: EncoderInfo
    task: Task
    cache: CacheConfig
    progress: Callable[[str, int], ProgressFn] | None = None


def encode_view(
    ctx: PrepareContext, texts: list[list[str]], out_dir: Path, progress: ProgressFn | None
) -> None:
    """Run the encoder once over ``texts`` and write every hidden state to ``out_dir``."""
    encoder, tokenizer, cfg = ctx.encoder, ctx.tokenizer, ctx.cache
    use_token_types = ctx.info.uses_token_type_ids
    enc = tokenizer(*texts, truncation=True, max_length=cfg.max_length)
    ids: list[list[int]] = enc["input_ids"]
    types: list[list[int]] | None = enc.get("token_type_ids") if use_token_types else None
    n = len(ids)
    lengths = np.array([len(x) for x in ids], dtype=np.int32)
    batches = length_batches(lengths, cfg.batch_size)  # little compute is spent on padding
    # Examples are written batch after batch, so their rows lie on disk in this order.
    order = np.concatenate([np.zeros(0, dtype=np.int64), *batches])
    offsets = np.zeros(n, dtype=np.int64)
    offsets[order] = np.concatenate([[0], np.cumsum(lengths[order])[:-1]])
    num_states = encoder.config.num_hidden_layers + 1
    files = [open(out_dir / f"state_{s:02d}.f16", "wb") for s in range(num_states)]  # noqa: SIM115
    pad_id = tokenizer.pad_token_id or 0
    try:
        with torch.inference_mode():
            for batch in batches:
                arrays = pad(
                    [ids[i] for i in batch],
                    None if types is None else [types[i] for i in batch],
                    pad_id,
                )
                kwargs = {k: torch.from_numpy(v).to(cfg.device) for k, v in arrays.items()}
                hidden = encoder(**kwargs, output_hidden_states=True).hidden_states
                keep = kwargs["attention_mask"].bool()
                for s, state in enumerate(hidden):
                    files[s].write(state[keep].to(torch.float16).cpu().numpy().tobytes())
                if progress is not None:
                    progress(len(batch))
    finally:
        for f in files:
            f.close()
    np.save(out_dir / "offsets.npy", offsets)
    np.save(out_dir / "lengths.npy", lengths)


def cached_split(ctx: PrepareContext, split_name: str, data: Split) -> SplitFeatures:
    """Features of every view of a split: from the cache, or computed once and cached."""
    info, task, cfg, progress = ctx.info, ctx.task, ctx.cache, ctx.progress
    views: dict[str, FeatureStore] = {}
    cfg.cache_dir.mkdir(parents=True, exist_ok=True)
    for view, columns in views_for(task).items():
        key = cache_key(info, task, split_name, view, cfg.max_length, data)
        path = cfg.cache_dir / f"{task.name}-{split_name}-{view}-{key}"
        if not (path / "meta.json").is_file():
            # Build in a temporary sibling and rename: a crash never leaves a half cache.
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=cfg.cache_dir))
            try:
                tick = progress(f"{split_name}/{view}", len(data)) if progress else None
                texts = [data.texts[c] for c in columns]
                encode_view(ctx, texts, tmp, tick)
                meta = {
                    "format": FORMAT_VERSION,
                    "encoder": info.name,
                    "task": task.name,
                    "split": split_name,
                    "view": view,
                    "max_length": cfg.max_length,
                    "examples": len(data),
                    "num_states": ctx.encoder.config.num_hidden_layers + 1,
                    "hidden": info.hidden_size,
                }
                (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
                if path.exists():  # an incomplete leftover with no meta.json
                    shutil.rmtree(path)
                os.replace(tmp, path)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        views[view] = FeatureStore.open(path)
    return SplitFeatures(views, data.labels)


def cache_size_bytes(features: list[SplitFeatures]) -> int:
    """Bytes on disk of the given cached splits."""
    total = 0
    for sf in features:
        for store in sf.views.values():
            total += sum(f.stat().st_size for f in store.path.iterdir())
    return total
