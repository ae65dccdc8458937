"""A run directory's layout: every file name, and every reader and writer of those files.

::

    RUN_DIR/
        config.json     the search config, its identity, encoder, task and versions
        archive.jsonl   every evaluation, appended as it finishes (see archive.py)
        front.json      the Pareto front, re-scored on validation (written last)
        front.png       the front plotted
        heads/<id>.pt   weights of the front's heads and the baseline
        pick.json       the head ``moohead pick`` chose
        refined.json    ``moohead refine``'s fine-tuned heads; refined/<id>.pt their weights
        .lock           held by the one process writing the run

No other module spells one of these names.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moohead.archive import Archive
from moohead.errors import MooheadError
from moohead.files import atomic_torch_save, atomic_write_json
from moohead.tasks import Task

CONFIG, ARCHIVE, FRONT, PLOT = "config.json", "archive.jsonl", "front.json", "front.png"
PICK, REFINED, LOCK = "pick.json", "refined.json", ".lock"
HEADS_DIR, REFINED_DIR = "heads", "refined"
FRONT_KEYS = ("task", "metric", "baseline", "front")


def _read_json(path: Path, fix: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MooheadError(f"{path} is corrupted ({exc}); {fix}") from exc


def first_line(exc: BaseException) -> str:
    """An error's first line: one-line messages must not lose what follows it."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def load_state(path: Path) -> dict[str, Any]:
    """Saved weights (a state dict of tensors), on the CPU."""
    import torch

    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


class WeightStore:
    """Saved weights, one file per evaluation id, in a folder of the run."""

    def __init__(self, folder: Path, relative: str) -> None:
        self.folder, self.relative = folder, relative

    def path(self, eval_id: int) -> Path:
        return self.folder / f"{eval_id}.pt"

    def name(self, eval_id: int) -> str:
        """The path ``front.json`` records: relative to the run directory."""
        return f"{self.relative}/{eval_id}.pt"

    def save(self, eval_id: int, state: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(self.path(eval_id), state)

    def load(self, eval_id: int) -> dict[str, Any]:
        return load_state(self.path(eval_id))

    def has(self, eval_id: int) -> bool:
        return self.path(eval_id).is_file()

    def prune(self, keep: set[int]) -> None:
        """Delete every saved weight file whose id is not in ``keep``."""
        for path in self.folder.glob("*.pt"):
            if int(path.stem) not in keep:
                path.unlink()


@dataclass(frozen=True)
class RunDir:
    """One run directory."""

    path: Path

    @property
    def archive(self) -> Archive:
        return Archive(self.path / ARCHIVE)

    @property
    def heads(self) -> WeightStore:
        return WeightStore(self.path / HEADS_DIR, HEADS_DIR)

    @property
    def refined_heads(self) -> WeightStore:
        return WeightStore(self.path / REFINED_DIR, REFINED_DIR)

    @property
    def front_path(self) -> Path:
        return self.path / FRONT

    @property
    def plot_path(self) -> Path:
        return self.path / PLOT

    @property
    def pick_path(self) -> Path:
        return self.path / PICK

    @property
    def refined_path(self) -> Path:
        return self.path / REFINED

    def describe(self) -> str:
        """What a finished run holds, for the end-of-search message."""
        return f"{FRONT}, {PLOT}, {ARCHIVE}, {HEADS_DIR}/"

    def check_usable(self) -> None:
        """Refuse an --out that cannot hold a run, before any work starts."""
        if self.path.exists() and not self.path.is_dir():
            raise MooheadError(f"--out {self.path} is a file; pass a folder")

    def _require_dir(self) -> None:
        if not self.path.is_dir():
            raise MooheadError(
                f"run directory {self.path} does not exist; run moohead evolve --out {self.path}"
            )

    # config.json
    def read_config(self) -> dict[str, Any]:
        """The search config, encoder, task and versions."""
        path = self.path / CONFIG
        if not path.is_file():
            raise MooheadError(f"{self.path} has no {CONFIG}; it is not a moohead run directory")
        fix = "the run cannot be read back"
        doc = _read_json(path, fix)
        try:
            doc["config"], doc["encoder"], doc["task"]
        except (KeyError, TypeError) as exc:
            raise MooheadError(f"{path} is corrupted ({exc}); {fix}") from exc
        return dict(doc)

    def stored(self, key: str) -> dict[str, Any] | None:
        """A section of the run's config.json: ``identity`` (what a resume must match),
        ``timing`` (where latencies were measured), ``cache`` (the feature cache's budget
        and token subset). None when the run recorded none, or config.json is missing or
        damaged: a resume then refuses, and ``moohead front`` shows the front all the same.
        """
        try:
            return self.read_config().get(key)
        except MooheadError:
            return None

    def write_config(self, doc: dict[str, Any]) -> None:
        atomic_write_json(self.path / CONFIG, doc)

    # front.json and refined.json
    def read_front(self) -> dict[str, Any]:
        """The front document, checked."""
        self._require_dir()
        path = self.path / FRONT
        if not path.is_file():
            raise MooheadError(
                f"{self.path} has no {FRONT}: the run has not finished; resume it with "
                f"moohead evolve --out {self.path}"
            )
        doc = _read_json(path, "re-run moohead evolve to rebuild it")
        missing = [k for k in FRONT_KEYS if not isinstance(doc, dict) or k not in doc]
        if missing:
            raise MooheadError(
                f"{path} lacks {', '.join(missing)}; re-run moohead evolve to rebuild it"
            )
        return dict(doc)

    def write_front(self, doc: dict[str, Any]) -> None:
        atomic_write_json(self.path / FRONT, doc)

    def read_front_refined(self) -> dict[str, Any]:
        """The front ``pick`` and ``export`` choose from, every entry marked with the
        fidelity its scores were measured at.

        After ``moohead refine`` that is the refined front alone (its fine-tuned heads and
        baseline): refined scores are never ranked against frozen ones. Otherwise it is the
        search's front, at the search's fidelity.
        """
        doc = self.read_front()
        path = self.path / REFINED
        if not path.is_file():
            fidelity = doc.get("fidelity", "frozen")
            return doc | {
                "fidelity": fidelity,
                "front": [e | {"fidelity": fidelity} for e in doc["front"]],
                "baseline": doc["baseline"] | {"fidelity": fidelity},
            }
        fix = "run moohead refine again"
        refined = _read_json(path, fix)
        try:
            front, baseline = refined["front"], refined["baseline"]
            fidelity = refined["fidelity"]
            marked = [e | {"fidelity": fidelity} for e in front]
        except (KeyError, TypeError) as exc:
            raise MooheadError(f"{path} is corrupted ({exc}); {fix}") from exc
        return doc | {
            "fidelity": fidelity,
            "refined": True,
            "front": marked,
            "baseline": baseline | {"fidelity": fidelity},
        }

    def write_refined(self, doc: dict[str, Any]) -> None:
        atomic_write_json(self.refined_path, doc)

    # pick.json
    def read_pick(self) -> dict[str, Any]:
        path = self.path / PICK
        if not path.is_file():
            raise MooheadError(
                f"{self.path} has no recorded pick; run moohead pick {self.path} --knee, "
                "or pass --id N or --knee"
            )
        pick = _read_json(path, "run moohead pick again")
        if not isinstance(pick, dict) or "id" not in pick or "rule" not in pick:
            raise MooheadError(f"{path} is corrupted (no id or rule); run moohead pick again")
        return pick

    def write_pick(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.pick_path, record)

    # weights
    def read_weights(self, entry: dict[str, Any]) -> dict[str, Any]:
        """The saved weights of a front (or refined) entry: a head, or a whole fused model.

        Raises:
            MooheadError: the file is missing or damaged.
        """
        weights = self.path / entry.get("weights", self.heads.name(entry["id"]))
        if not weights.is_file():
            raise MooheadError(
                f"{weights} is missing: the run kept no weights for head {entry['id']}; "
                "pick a head on the front (moohead front RUN_DIR)"
            )
        try:
            return load_state(weights)
        except Exception as exc:  # torch.load raises unpickling, runtime and OS errors
            raise MooheadError(
                f"cannot load head weights {weights} ({first_line(exc)}); the file is damaged"
            ) from exc

    # one writer at a time
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` for the duration: a second writer is refused.

        An ``flock`` belongs to the open file, so the kernel releases it when the process
        ends, however it ends: a crashed run never leaves the run locked. A run folder this
        call created and nothing else wrote to (a run refused at start-up) is removed.
        """
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                raise MooheadError(
                    f"{self.path} is in use by a running moohead evolve (pid {holder}); wait "
                    "for it to finish or pass another --out"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            if created and self.path.is_dir() and [p.name for p in self.path.iterdir()] == [LOCK]:
                (self.path / LOCK).unlink()  # still held: no other writer is inside
                self.path.rmdir()
            os.close(fd)  # releases the lock

    def is_locked(self) -> bool:
        path = self.path / LOCK
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def move_aside(self) -> Path:
        """``--force-new``: keep the old run under a new name (never deleted)."""
        if self.is_locked():
            raise MooheadError(
                f"{self.path} is in use by a running moohead evolve; wait for it to finish"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.old-{stamp}-{n}")
            n += 1
        self.path.rename(target)
        return target


def run_data_dir(config: dict[str, Any], override: Path | None = None) -> Path | None:
    """Where the run's task data is: ``override``, else the run's ``--data-dir`` (None: hub)."""
    if override is not None:
        return override
    recorded = config["config"].get("data_dir")
    return Path(recorded) if recorded else None


def task_from_config(doc: dict[str, Any]) -> Task:
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in doc["task"].items()
    }
    return Task(**fields)
