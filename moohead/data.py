"""Task data: read GLUE splits from a folder or the hub, check them, and cut search splits.

A data folder is laid out as ``DIR/<task>/<split>.{tsv,csv,parquet,jsonl}`` with the hub's
column names. A task name that is not GLUE is a custom task read from such a folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moohead.errors import MooheadError
from moohead.tasks import GLUE_TASKS, Task

EXTENSIONS = ("tsv", "csv", "parquet", "jsonl")
HUB_DATASET = "nyu-mll/glue"


@dataclass(frozen=True)
class Origin:
    """Where the examples of a split come from: a split as read, and their rows in it.

    The feature cache is kept per source split (by name and content), so every subset of
    it (``--max-train``, the search splits of any seed) reads the same cached rows.
    """

    name: str
    fingerprint: str
    rows: np.ndarray


@dataclass(frozen=True)
class Split:
    """Texts and labels of one split.

    Attributes:
        texts: One list of strings per text column of the task.
        labels: int64 class ids, or float32 scores for regression.
        origin: The split it was read as and each example's row there; None for a split
            built in memory (it is then its own source).
    """

    texts: tuple[list[str], ...]
    labels: np.ndarray
    origin: Origin | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> Split:
        indices = np.asarray(indices, dtype=np.int64)
        origin = self.origin
        if origin is not None:
            origin = Origin(origin.name, origin.fingerprint, origin.rows[indices])
        texts = tuple([col[i] for i in indices] for col in self.texts)
        return Split(texts, self.labels[indices], origin)

    def with_origin(self, name: str) -> Split:
        """This split as the source ``name``: every row its own, keyed by its content."""
        rows = np.arange(len(self), dtype=np.int64)
        return Split(self.texts, self.labels, Origin(name, self.fingerprint(), rows))

    def fingerprint(self) -> str:
        """A content hash of the texts, so caches follow the data, not the file name."""
        h = hashlib.sha1()
        for col in self.texts:
            for text in col:
                h.update(text.encode("utf-8", "surrogatepass"))
                h.update(b"\x00")
            h.update(b"\x01")
        return h.hexdigest()[:16]


def split_file(data_dir: Path, task_name: str, split: str) -> Path:
    """Find ``data_dir/task/split.<ext>``, or raise a MooheadError that names the fix."""
    folder = data_dir / task_name
    if not folder.is_dir():
        raise MooheadError(
            f"data folder {folder} does not exist; lay out the data as "
            f"{data_dir}/{task_name}/{{train,validation}}.tsv or pass another --data-dir"
        )
    for ext in EXTENSIONS:
        path = folder / f"{split}.{ext}"
        if path.is_file():
            return path
    raise MooheadError(
        f"no {split} split in {folder}: expected {split}.tsv, .csv, .parquet or .jsonl"
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read one split file; 'null' and 'NA' stay text (keep_default_na=False)."""
    if path.stat().st_size == 0:
        raise MooheadError(
            f"{path} is empty; it needs a header row with the task's columns and examples"
        )
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix == ".jsonl":  # utf-8-sig: a byte-order mark is not part of the data
            with open(path, encoding="utf-8-sig") as f:
                return pd.read_json(f, lines=True, dtype=False)
        sep = "\t" if path.suffix == ".tsv" else ","
        # pandas' C parser takes CRLF line ends as they are
        return pd.read_csv(path, sep=sep, keep_default_na=False, dtype=str, encoding="utf-8-sig")
    except Exception as exc:  # pandas raises many types for malformed files
        raise MooheadError(f"cannot read {path}: {exc}".splitlines()[0]) from exc


def infer_custom_task(name: str, data_dir: Path | None) -> Task:
    """Describe a non-GLUE task from the columns and labels of its train file."""
    known = ", ".join(sorted(GLUE_TASKS))
    if data_dir is None:
        raise MooheadError(
            f"unknown task {name!r}: use a GLUE task ({known}) or pass --data-dir DIR "
            f"with DIR/{name}/train.tsv for a custom task"
        )
    if not (data_dir / name).is_dir():
        raise MooheadError(
            f"unknown task {name!r}: not a GLUE task ({known}) and no custom task folder "
            f"{data_dir / name} with train.tsv and validation.tsv"
        )
    path = split_file(data_dir, name, "train")
    frame = read_table(path)
    if {"sentence1", "sentence2", "label"} <= set(frame.columns):
        text_columns: tuple[str, ...] = ("sentence1", "sentence2")
    elif {"sentence", "label"} <= set(frame.columns):
        text_columns = ("sentence",)
    else:
        raise MooheadError(
            f"{path} has columns {list(frame.columns)}; a custom task needs "
            "sentence,label or sentence1,sentence2,label"
        )
    raw = frame["label"].astype(str).str.strip()
    try:
        values = raw.astype(np.float64).to_numpy()
    except ValueError as exc:
        raise MooheadError(f"{path}: labels must be numbers ({exc})") from exc
    if len(values) == 0:
        raise MooheadError(f"{path} has no rows")
    if np.all(raw.str.fullmatch(r"-?\d+")):
        if values.min() < 0:
            raise MooheadError(f"{path}: class labels must be 0..K-1, found {int(values.min())}")
        if values.max() == 0:
            raise MooheadError(
                f"{path}: every label is 0; a classification task needs at least two classes"
            )
        return Task(name, text_columns, int(values.max()) + 1, ("accuracy",))
    return Task(name, text_columns, 1, ("pearson",))


def resolve_task(name: str, data_dir: Path | None) -> Task:
    """A GLUE task by name, or a custom task described by ``data_dir/name``."""
    if name in GLUE_TASKS:
        return GLUE_TASKS[name]
    return infer_custom_task(name, data_dir)


def _labels(task: Task, raw: pd.Series, where: str) -> np.ndarray:
    text = raw.astype(str).str.strip()
    try:
        values = text.astype(np.float64).to_numpy()
    except ValueError as exc:
        raise MooheadError(f"{where}: unparsable label ({exc}); labels must be numbers") from exc
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise MooheadError(f"{where}: label in row {bad + 1} is not a finite number")
    if task.is_regression:
        return values.astype(np.float32)
    if not np.all(values == np.round(values)):
        raise MooheadError(
            f"{where}: class labels must be integers, found {values[values != np.round(values)][0]}"
        )
    out = values.astype(np.int64)
    bad_rows = np.flatnonzero((out < 0) | (out >= task.num_labels))
    if len(bad_rows):
        raise MooheadError(
            f"{where}: label {out[bad_rows[0]]} in row {bad_rows[0] + 1} is outside "
            f"0..{task.num_labels - 1}"
        )
    return out


def check_classes(task: Task, train: Split, where: str) -> None:
    """Refuse training labels a classifier cannot learn from: fewer than two classes, or
    class ids with gaps (a class of ``0..K-1`` with no example)."""
    if task.is_regression:
        return
    present = sorted({int(v) for v in train.labels})
    if len(present) < 2:
        raise MooheadError(
            f"{where}: every label is {present[0]}; a classification task needs at least "
            "two classes in its training split"
        )
    gaps = sorted(set(range(task.num_labels)) - set(present))
    if gaps:
        raise MooheadError(
            f"{where}: class label(s) {', '.join(map(str, gaps))} of 0..{task.num_labels - 1} "
            f"have no training example (labels found: {', '.join(map(str, present))}); "
            "renumber the classes 0..K-1 without gaps"
        )


def frame_to_split(task: Task, frame: pd.DataFrame, where: str) -> Split:
    """Check columns and labels of a split and convert it."""
    missing = [c for c in task.columns if c not in frame.columns]
    if missing:
        raise MooheadError(
            f"{where} is missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(task.columns)} (the hub's column names)"
        )
    if len(frame) == 0:
        raise MooheadError(f"{where} has no rows")
    texts = tuple(frame[c].astype(str).tolist() for c in task.text_columns)
    return Split(texts, _labels(task, frame[task.label_column], where))


def _load_hub(task: Task, split: str) -> pd.DataFrame:
    import datasets

    try:
        ds = datasets.load_dataset(HUB_DATASET, task.name, split=split)
    except Exception as exc:
        raise MooheadError(
            f"could not load {HUB_DATASET}/{task.name} [{split}] from the hub "
            f"({type(exc).__name__}); pass --data-dir DIR with DIR/{task.name}/{split}.tsv"
        ) from exc
    return ds.to_pandas()


def load_split(task: Task, split: str, data_dir: Path | None) -> Split:
    """Load and check one split, from ``data_dir`` or else from the hub."""
    if data_dir is None:
        where = f"{HUB_DATASET}/{task.name}/{split}"
        data = frame_to_split(task, _load_hub(task, split), where)
    else:
        path = split_file(data_dir, task.name, split)
        where = str(path)
        data = frame_to_split(task, read_table(path), where)
    if split == "train":
        check_classes(task, data, where)
    return data.with_origin(split)
