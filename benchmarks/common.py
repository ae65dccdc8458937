"""Helpers shared by the benchmark scripts: where data lives and how results are written."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from moohead.files import atomic_write_json, package_versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def glue_dir() -> Path:
    """``$GLUE_DIR``, else ``../shared/glue`` beside the repository."""
    path = Path(os.environ.get("GLUE_DIR", ROOT.parent / "shared" / "glue"))
    if not path.is_dir():
        raise SystemExit(f"GLUE data not found at {path}; set GLUE_DIR")
    return path


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": package_versions(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"machine": machine(), **data})
    print(json.dumps(data, indent=1)[:4000])
    return path
