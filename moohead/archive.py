"""The run's archive: every evaluation, appended and fsync'd the moment it finishes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError


class Archive:
    """Append-only JSON-lines log of evaluations (one object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise MooheadError(
                        f"{self.path} line {number} is corrupted ({exc.msg}); "
                        "restore the file or start a new run with another --out"
                    ) from exc

    def records(self) -> list[dict[str, Any]]:
        return list(self)
