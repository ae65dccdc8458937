"""Reading cached features: a split's examples as rows of its source split's cache
(``cache_store.py``), as padded token states or as pre-pooled per-layer vectors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moohead.cache_store import Chunk, SourceCache, pooled_file
from moohead.errors import MooheadError

PAGE = 4096  # a read of a row touches at least one page
MAP_WINDOW = 64 << 20  # bytes of pages a store may touch through its maps before dropping them


class FeatureStore:
    """One view of a split: where each of its examples lies in the source cache's chunks.

    Examples are addressed by their position in the split; ``rows`` are their rows in the
    source split. Each example's pooled vectors come from the first chunk that holds it,
    its token states from the first chunk that holds its tokens (-1: none cached).
    """

    def __init__(
        self,
        root: Path,
        view: str,
        chunks: list[Chunk],
        rows: np.ndarray,
        where: dict[str, np.ndarray],
    ) -> None:
        self.root, self.view, self.chunks, self.rows = root, view, chunks, rows
        self.lengths: np.ndarray = where["lengths"]
        self._where = where
        meta = chunks[0].meta
        self.states: tuple[int, ...] = meta.states
        self.hidden, self.storage = meta.hidden, meta.storage
        self._maps: dict[tuple[int, str], np.ndarray] = {}
        self._touched = 0  # bytes of pages touched through the maps since they were made

    @classmethod
    def open(cls, root: Path, view: str, rows: np.ndarray, chunks: list[Chunk]) -> FeatureStore:
        """The examples at source ``rows`` in ``chunks`` (every row must be in one)."""
        if not chunks:
            raise MooheadError(f"feature cache {root} holds no {view!r} features")
        loaded = [(np.load(c.path / "rows.npy"), np.load(c.path / "lengths.npy")) for c in chunks]
        top = max([int(rows.max(initial=-1)) + 1] + [int(r.max(initial=-1)) + 1 for r, _ in loaded])
        pchunk = np.full(top, -1, np.int32)
        ppos = np.zeros(top, np.int64)
        tchunk = np.full(top, -1, np.int32)
        toff = np.zeros(top, np.int64)
        lengths = np.zeros(top, np.int32)
        for ci, (chunk, (r, ln)) in enumerate(zip(chunks, loaded, strict=True)):
            new = pchunk[r] < 0
            pchunk[r[new]], ppos[r[new]], lengths[r[new]] = ci, np.flatnonzero(new), ln[new]
            if chunk.meta.has_tokens:
                off = np.load(chunk.path / "offsets.npy")
                new = tchunk[r] < 0
                tchunk[r[new]], toff[r[new]] = ci, off[new]
        if np.any(pchunk[rows] < 0):
            raise MooheadError(f"feature cache {root} lacks rows of {view!r}")
        where = {
            "lengths": lengths[rows],
            "pchunk": pchunk[rows],
            "ppos": ppos[rows],
            "tchunk": tchunk[rows],
            "toff": toff[rows],
        }
        return cls(root, view, chunks, rows, where)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, positions: np.ndarray) -> FeatureStore:
        """The store of the examples at ``positions`` of this split."""
        where = {k: v[positions] for k, v in self._where.items()}
        return FeatureStore(self.root, self.view, self.chunks, self.rows[positions], where)

    def has_tokens(self) -> np.ndarray:
        """Per example, whether its token states are cached."""
        return np.asarray(self._where["tchunk"] >= 0)

    def _map(self, chunk: int, name: str, dtype: str, width: int) -> np.ndarray:
        key = (chunk, name)
        if key not in self._maps:
            path = self.chunks[chunk].path / name
            n = path.stat().st_size // (np.dtype(dtype).itemsize * width)
            shape = (n, width) if width > 1 else (n,)
            self._maps[key] = np.memmap(path, dtype=dtype, mode="r", shape=shape)
        return self._maps[key]

    def _read(self, chunk: int, name: str, dtype: str, width: int, rows: Any) -> np.ndarray:
        """``rows`` of a file, copied out of its memory map. The pages a read touches stay
        mapped, and so count in the process's RSS, until the map is dropped: the maps are
        dropped after every ``MAP_WINDOW`` bytes of pages touched (the data stays in the
        page cache), so memory does not grow with the split however long a head trains."""
        out = np.asarray(self._map(chunk, name, dtype, width)[rows])
        row_bytes = np.dtype(dtype).itemsize * width
        self._touched += (out.size * out.itemsize // row_bytes) * max(row_bytes, PAGE)
        if self._touched > MAP_WINDOW:
            self._maps.clear()
            self._touched = 0
        return out

    def release(self) -> None:
        """Unmap the files, so memory follows what one genome reads."""
        self._maps.clear()

    def _token_rows(self, chunk: int, state: int, rows: np.ndarray) -> torch.Tensor:
        if self.storage == "int8":
            q = self._read(chunk, f"tokens_{state:02d}.i8", "int8", self.hidden, rows)
            scale = self._read(chunk, f"tokens_{state:02d}.scale", "float32", 1, rows)
            return torch.from_numpy(np.asarray(q)).float() * torch.from_numpy(scale)[..., None]
        x = self._read(chunk, f"tokens_{state:02d}.f16", "float16", self.hidden, rows)
        return torch.from_numpy(np.asarray(x)).float()

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
        rows = self._where["toff"][indices][:, None] + np.minimum(
            pos[None, :], lengths[:, None] - 1
        )
        mask = torch.from_numpy(pos[None, :] < lengths[:, None])
        chunk = self._where["tchunk"][indices]
        first = int(chunk[0])
        if first < 0 or np.any(chunk < 0):
            raise MooheadError(f"feature cache {self.root}: token states of a row are not cached")
        if np.all(chunk == first):  # the usual case: one chunk
            out = torch.stack([self._token_rows(first, s, rows) for s in states])
        else:
            out = torch.empty(len(states), len(indices), t_max, self.hidden)
            for c in np.unique(chunk):
                sel = torch.from_numpy(np.flatnonzero(chunk == c))
                for j, s in enumerate(states):
                    out[j, sel] = self._token_rows(int(c), s, rows[sel.numpy()])
        return out.masked_fill_(~mask.unsqueeze(-1), 0.0), mask

    def pooled(self, index: int, how: str, positions: np.ndarray | None = None) -> np.ndarray:
        """``[n, hidden]`` float32 ``how`` (cls, mean or max) vectors of hidden state ``index``
        for the examples at ``positions`` (None: all).

        Read from the cache's pooled files (written once, with the token states), memory-
        mapped: a training batch pages in its rows only, so memory does not grow with the
        split (a 400k-pair split's fp32 vectors would take 0.6 GB per state and pool).
        """
        name, dtype = pooled_file(index, how, self.storage)
        chunk, ppos = self._where["pchunk"], self._where["ppos"]
        if positions is not None:
            chunk, ppos = chunk[positions], ppos[positions]
        out = np.empty((len(chunk), self.hidden), dtype=np.float32)
        present = np.unique(chunk)
        for c in present:
            sel = slice(None) if len(present) == 1 else np.flatnonzero(chunk == c)
            out[sel] = self._read(int(c), name, dtype, self.hidden, ppos[sel])
            if self.storage == "int8":
                out[sel] *= self._read(int(c), name + ".scale", "float32", 1, ppos[sel])[:, None]
        return out

    def spec(self) -> dict[str, Any]:
        """What a worker needs to open this store again (``from_spec``)."""
        return {"root": str(self.root), "view": self.view, "rows": self.rows}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureStore:
        root = Path(spec["root"])
        chunks, bad = SourceCache(root).chunks(spec["view"])
        if bad:
            raise MooheadError(f"feature cache {root} is damaged: {bad[0]}")
        return cls.open(root, spec["view"], np.asarray(spec["rows"]), chunks)


POOL_PIECES = {"cls": ("cls",), "mean": ("mean",), "max": ("max",), "cls+mean": ("cls", "mean")}


class PooledStore:
    """A view of a FeatureStore in which every example is its pre-pooled vectors.

    For a head with no token mixer, reading layers (last, concat or scalar mix: per token,
    linear or a concatenation) and then pooling CLS or mean equals pooling each layer
    first; so does max pooling for the last layer or a concatenation (max is per channel),
    not for a mix. Such a head trains on ``[k, B, pieces, H]`` (``pieces``: the pool's
    parts, two for cls+mean) instead of on every token, and never reads token states.
    """

    def __init__(self, store: FeatureStore, pool: str) -> None:
        self.store = store
        self.pieces = POOL_PIECES[pool]
        self.lengths = np.ones(len(store), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.store)

    def gather(self, indices: np.ndarray, states: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = np.stack(
            [
                np.stack([self.store.pooled(s, how, indices) for how in self.pieces], axis=1)
                for s in states
            ]
        )
        mask = torch.ones(len(indices), len(self.pieces), dtype=torch.bool)
        return torch.from_numpy(pooled), mask


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

    def subset(self, positions: np.ndarray) -> SplitFeatures:
        """The examples at ``positions``."""
        views = {k: v.subset(positions) for k, v in self.views.items()}
        return SplitFeatures(views, self.labels[positions])

    def token_positions(self) -> np.ndarray:
        """Positions of the examples whose token states are cached in every view."""
        return np.flatnonzero(np.logical_and.reduce([v.has_tokens() for v in self.views.values()]))
