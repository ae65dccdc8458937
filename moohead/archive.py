"""The run's archive: every evaluation, appended and fsync'd the moment it finishes.

A resume reads it back (``Archive.read``): a final line cut short by a crash is dropped
and the file repaired; a damaged line anywhere else is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError
from moohead.files import atomic_write_text


class Archive:
    """Append-only JSON-lines log of evaluations (one object per line, ids 0, 1, 2, ...)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Replace the archive by ``records`` in one atomic rename (re-timed latencies):
        a crash leaves the old archive or the new one, never a mix."""
        atomic_write_text(self.path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def read(self) -> tuple[list[dict[str, Any]], bool]:
        """The archive's records, repairing a final line torn by a crash.

        Returns:
            (records, whether a torn final line was dropped).

        Raises:
            MooheadError: a damaged line before the last, or ids out of sequence.
        """
        if not self.path.exists():
            return [], False
        text = self.path.read_text(encoding="utf-8", errors="replace")
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
                    f"{self.path} line {number} is corrupted ({exc}); restore the file, or "
                    "pass --force-new to start over (the old run is kept beside it)"
                ) from exc
            if record["id"] != len(records):
                raise MooheadError(
                    f"{self.path} line {number} has id {record['id']}, expected {len(records)}: "
                    "the archive was edited; restore it or pass --force-new"
                )
            records.append(record)
        if torn:
            self.rewrite(records)
        return records, torn
