"""Writing files so that a crash never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, fsync it, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; final files get the usual mode
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` under a temporary name, then renamed: no half-written weights."""
    import torch

    def write(tmp: Path) -> None:
        torch.save(obj, tmp)

    atomic_write(path, write)


def package_versions() -> dict[str, str]:
    """Versions of the packages a run's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    import moohead

    out = {"moohead": moohead.__version__}
    for name in ("torch", "transformers", "pymoo", "fvcore", "numpy", "onnx", "onnxruntime-gpu"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
