"""One writer per run, and resuming a run from its archive.

Every finished evaluation is in ``archive.jsonl`` (fsync'd as it finishes). A resume
replays the search from the start with the same seed: NSGA-II asks for the same genomes,
the evaluator answers the archived ones from the archive and trains only the rest, so the
resumed run ends with the front of an uninterrupted one, and nothing is trained twice.

A resume must be the same search: its *identity* (task, data, encoder, search space and
every setting that changes results) is stored in ``config.json`` and compared.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError
from moohead.files import atomic_write_text

LOCK_FILE = ".lock"
# Settings that change which genomes are evaluated or how they score. ``generations`` is
# not among them: a resume may run longer (or shorter) than the interrupted run.
IDENTITY_SETTINGS = (
    "task", "max_train", "val_fraction", "max_length", "seed", "objectives", "population",
    "batch_size", "max_epochs", "patience", "reference_length", "fidelity", "lr_encoder",
)  # fmt: skip


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold ``RUN_DIR/.lock`` for the duration: a second writer is refused.

    An ``flock`` belongs to the open file, so the kernel releases it when the process
    ends, however it ends: a crashed run never leaves the run locked.
    """
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise MooheadError(
                f"{out} is in use by a running moohead evolve (pid {holder}); wait for it to "
                "finish or pass another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def is_locked(out: Path) -> bool:
    path = out / LOCK_FILE
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


def move_aside(out: Path) -> Path:
    """``--force-new``: keep the old run under a new name (never deleted), free ``out``."""
    if is_locked(out):
        raise MooheadError(f"{out} is in use by a running moohead evolve; wait for it to finish")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = out.with_name(f"{out.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = out.with_name(f"{out.name}.old-{stamp}-{n}")
        n += 1
    out.rename(target)
    return target


def identity(settings: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The search's identity: the result-changing settings plus data, encoder and space."""
    ident = {k: settings[k] for k in IDENTITY_SETTINGS} | extra
    return dict(json.loads(json.dumps(ident)))  # as config.json stores it: lists, not tuples


def check_identity(out: Path, stored: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse a resume that would not continue the same search, naming the difference."""
    if stored is None:
        raise MooheadError(
            f"{out} holds an archive but no search identity in config.json, so it cannot be "
            "resumed safely; pass --force-new to start over (the old run is kept beside it)"
        )
    # Settings first: a different seed also cuts different data, and the seed is the cause.
    others = sorted((set(stored) | set(current)) - set(IDENTITY_SETTINGS))
    for key in [*IDENTITY_SETTINGS, *others]:
        if stored.get(key) != current.get(key):
            was, now = _show(stored.get(key)), _show(current.get(key))
            raise MooheadError(
                f"cannot resume {out}: {key} differs (run: {was}, now: {now}); use the run's "
                "settings, or pass --force-new to start over (the old run is kept beside it)"
            )


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def read_archive(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The archive's records; a final line cut short by a crash is dropped (and the file
    repaired). A damaged line anywhere else is refused.

    Returns:
        (records, whether a torn final line was dropped).
    """
    if not path.exists():
        return [], False
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    records: list[dict[str, Any]] = []
    torn = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "genome" not in record or "id" not in record:
                raise ValueError("not an evaluation record")
        except (json.JSONDecodeError, ValueError) as exc:
            is_last = all(not rest.strip() for rest in lines[number:])
            if is_last and not text.endswith("\n"):
                torn = True  # killed mid-write: that evaluation was never finished
                break
            raise MooheadError(
                f"{path} line {number} is corrupted ({exc}); restore the file, or pass "
                "--force-new to start over (the old run is kept beside it)"
            ) from exc
        if record["id"] != len(records):
            raise MooheadError(
                f"{path} line {number} has id {record['id']}, expected {len(records)}: the "
                "archive was edited; restore it or pass --force-new"
            )
        records.append(record)
    if torn:
        kept = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        atomic_write_text(path, kept)
    return records, torn
