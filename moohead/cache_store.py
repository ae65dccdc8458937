"""The feature cache of one source split on disk: append-only chunks and an atomically
replaced index, grown by the first run that needs a row and shared by every run after it.

Layout of one source split (the train or a validation split as read, under one encoder,
maximum length and storage)::

    <cache_dir>/<task>-<split>-<key>/
        lock                    flock: one writer grows the cache at a time
        index.json              the committed chunks of each view; replaced atomically, last
        <view>/<chunk>/         one growth of one view: the rows it encoded, in written order
            meta.json           rows, tokens, states, hidden width, storage (see ChunkMeta)
            rows.npy            int64 [m]: the source row of each example
            lengths.npy         int32 [m]: tokens of each example (no padding is stored)
            offsets.npy         int64 [m]: first token row of each example (token chunks)
            tokens_XX.f16       float16 [tokens, hidden]: token states of hidden state XX,
                                or tokens_XX.i8 and tokens_XX.scale (int8, one float32
                                scale per token: absmax / 127)
            pooled_XX_<how>.*   [m, hidden]: the cls, mean and max vectors of state XX
                                (fp16 storage: cls and max float16, mean float32, all as
                                exact as pooling the stored tokens; int8: one scale each)

A chunk is written in a temporary folder and renamed into place before the index names
it, so a reader (which takes no lock) only ever sees complete chunks; chunks are never
changed, only dropped when found damaged. The key hashes the encoder fingerprint, the
task, the source split's name and content, the maximum length and the storage, not the
subset a run reads: every ``--max-train`` and seed reads the same rows.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moohead.errors import MooheadError
from moohead.files import atomic_write_json

FORMAT_VERSION = 2
STORAGES = ("fp16", "int8")
POOLS = ("cls", "mean", "max")  # the pooled vectors every chunk holds for every state
INDEX = "index.json"


@dataclass(frozen=True)
class ChunkMeta:
    """What one chunk holds.

    Attributes:
        rows: Examples in the chunk.
        tokens: Token rows stored (0 when the chunk holds pooled vectors only).
        has_tokens: Whether token states are stored.
        states: Hidden-state indices stored (1 = first layer; the embeddings are never read).
        hidden: Width of each state.
        storage: ``fp16`` or ``int8``.
    """

    rows: int
    tokens: int
    has_tokens: bool
    states: tuple[int, ...]
    hidden: int
    storage: str

    def files(self) -> dict[str, int]:
        """File name -> expected size in bytes, for every array file but the ``.npy`` ones."""
        out: dict[str, int] = {}
        h = self.hidden
        for s in self.states:
            if self.has_tokens:
                if self.storage == "int8":
                    out[f"tokens_{s:02d}.i8"] = self.tokens * h
                    out[f"tokens_{s:02d}.scale"] = self.tokens * 4
                else:
                    out[f"tokens_{s:02d}.f16"] = self.tokens * h * 2
            for how in POOLS:
                name, dtype = pooled_file(s, how, self.storage)
                out[name] = self.rows * h * np.dtype(dtype).itemsize
                if self.storage == "int8":
                    out[name + ".scale"] = self.rows * 4
        return out

    def nbytes(self) -> int:
        return sum(self.files().values()) + self.rows * (8 + 4 + (8 if self.has_tokens else 0))


def pooled_file(state: int, how: str, storage: str) -> tuple[str, str]:
    """File name and dtype of the pooled ``how`` vectors of ``state``."""
    if storage == "int8":
        return f"pooled_{state:02d}_{how}.i8", "int8"
    dtype = "float32" if how == "mean" else "float16"  # a mean of fp16 values is not fp16
    return f"pooled_{state:02d}_{how}.{'f32' if dtype == 'float32' else 'f16'}", dtype


def bytes_per_row(states: int, hidden: int, storage: str, tokens: float) -> tuple[float, float]:
    """(pooled, token) bytes one example of ``tokens`` tokens takes in one view."""
    if storage == "int8":
        pooled = len(POOLS) * states * (hidden + 4)
        per_token = states * (hidden + 4)
    else:
        pooled = states * hidden * (2 + 4 + 2)
        per_token = states * hidden * 2
    return pooled + 12, tokens * per_token + 8


@dataclass(frozen=True)
class Chunk:
    """A committed chunk: its folder and what it holds."""

    path: Path
    meta: ChunkMeta


def read_meta(path: Path) -> ChunkMeta:
    data = json.loads((path / "meta.json").read_text())
    data["states"] = tuple(data["states"])
    return ChunkMeta(**data)


def check_chunk(path: Path) -> tuple[ChunkMeta | None, str]:
    """(meta, "") for a complete chunk, else (None, what is wrong with it)."""
    try:
        meta = read_meta(path)
    except FileNotFoundError:
        return None, f"{path.name} has no meta.json"
    except (ValueError, TypeError, KeyError) as exc:
        return None, f"{path.name}/meta.json is unreadable ({exc})"
    for name, size in meta.files().items():
        f = path / name
        actual = f.stat().st_size if f.is_file() else -1
        if actual != size:
            what = "missing" if actual < 0 else f"{actual} bytes, expected {size}"
            return None, f"{path.name}/{name} is {what}"
    for name in ("rows.npy", "lengths.npy", *(("offsets.npy",) if meta.has_tokens else ())):
        try:
            arr = np.load(path / name, mmap_mode="r")
        except (OSError, ValueError) as exc:
            return None, f"{path.name}/{name} is unreadable ({exc})"
        if arr.shape != (meta.rows,):
            return None, f"{path.name}/{name} holds {arr.shape}, expected ({meta.rows},)"
    return meta, ""


class SourceCache:
    """The cache folder of one source split (see the module docstring).

    Args:
        root: The folder.
        describe: What the folder caches, written to ``index.json`` for a reader.
    """

    def __init__(self, root: Path, describe: dict[str, Any] | None = None) -> None:
        self.root = root
        self.describe = describe or {}
        self.repairs: list[str] = []  # one line per damaged part dropped (and so rebuilt)

    # ---- reading -------------------------------------------------------------------

    def _index(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.root / INDEX).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"damaged": True}
        if data.get("format") != FORMAT_VERSION or not isinstance(data.get("views"), dict):
            return {"damaged": True}
        return data

    def chunks(self, view: str) -> tuple[list[Chunk], list[str]]:
        """The committed chunks of ``view`` that are complete, and a line for each that is not."""
        index = self._index()
        if index is None:
            return [], []
        if index.get("damaged"):
            return [], [f"{self.root / INDEX} is damaged"]
        out, bad = [], []
        for name in index["views"].get(view, []):
            meta, why = check_chunk(self.root / view / name)
            if meta is None:
                bad.append(why)
            else:
                out.append(Chunk(self.root / view / name, meta))
        return out, bad

    def nbytes(self) -> int:
        """Bytes of every file under the folder."""
        if not self.root.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    # ---- writing (under the lock) --------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's writer lock (waits for another run that is growing it)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise cache_error(self.root, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def repair(self, view: str) -> None:
        """Drop what is damaged (under the lock): chunks that are cut short or unreadable
        leave the index, and an unreadable index is rebuilt from the chunks' own metadata.
        Every complete chunk is kept; the rows of the dropped ones are encoded again."""
        index = self._index()
        if index is None or index.get("damaged"):
            if index is not None:
                self.repairs.append(f"{self.root / INDEX} was damaged: rebuilt from its chunks")
            views: dict[str, list[str]] = {}
            for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
                names = sorted(c.name for c in folder.iterdir() if c.name.startswith("c"))
                views[folder.name] = [n for n in names if check_chunk(folder / n)[0] is not None]
            index = self._new_index(views)
        names = index["views"].get(view, [])
        keep = []
        for name in names:
            meta, why = check_chunk(self.root / view / name)
            if meta is None:
                self.repairs.append(f"{self.root}: dropped damaged chunk {view}/{why}")
                shutil.rmtree(self.root / view / name, ignore_errors=True)
            else:
                keep.append(name)
        index["views"][view] = keep
        self._write_index(index)

    def commit(self, view: str, tmp: Path, meta: ChunkMeta) -> Chunk:
        """Rename a finished chunk folder into place and name it in the index (under the lock)."""
        (tmp / "meta.json").write_text(json.dumps(asdict(meta)))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        index = self._index()
        if index is None or index.get("damaged"):
            index = self._new_index({})
        number = int(index.get("next", 0))
        name = f"c{number:06d}"
        final = self.root / view / name
        if final.exists():  # a chunk renamed into place whose index update was lost
            shutil.rmtree(final)
        os.replace(tmp, final)
        index["views"].setdefault(view, []).append(name)
        index["next"] = number + 1
        self._write_index(index)
        return Chunk(final, meta)

    def temp_chunk(self, view: str) -> Path:
        """An empty folder to write a chunk in, next to where it will be renamed."""
        folder = self.root / view
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".tmp-*"):  # left by a run that crashed while writing
                shutil.rmtree(stale, ignore_errors=True)
            return Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder))
        except OSError as exc:
            raise cache_error(self.root, exc) from exc

    def _new_index(self, views: dict[str, list[str]]) -> dict[str, Any]:
        numbers = [int(n[1:]) for names in views.values() for n in names if n[1:].isdigit()]
        return {
            "format": FORMAT_VERSION,
            "cache": self.describe,
            "views": views,
            "next": max(numbers, default=-1) + 1,
        }

    def _write_index(self, index: dict[str, Any]) -> None:
        try:
            atomic_write_json(self.root / INDEX, index)
        except OSError as exc:
            raise cache_error(self.root, exc) from exc


def cache_error(root: Path, exc: OSError) -> MooheadError:
    """One line that says what is wrong with a cache folder that cannot be written."""
    if exc.errno == errno.ENOSPC:
        free = shutil.disk_usage(root if root.exists() else root.parent).free
        return MooheadError(
            f"feature cache folder {root} is full ({free / 2**30:.1f} GiB free): free some "
            "space, pass a smaller --cache-budget, or point --cache-dir elsewhere"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return MooheadError(
            f"feature cache folder {root} is not writable ({exc.strerror}): "
            "pass a writable --cache-dir"
        )
    return MooheadError(f"feature cache folder {root}: {exc.strerror or exc}")


def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 rows and one float32 scale per row (absmax / 127) of a float tensor ``[n, h]``."""
    x = x.float()
    scale = x.abs().amax(dim=-1).clamp(min=1e-12) / 127.0
    q = (x / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return q, scale
