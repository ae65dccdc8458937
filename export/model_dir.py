"""The exported model folder: ``model*.onnx``, tokenizer files and ``moohead.json``.

``moohead.json`` is the folder's manifest: what the model computes (task, labels, genome,
inputs, max length), how it scored, and every ONNX variant with its size and SHA-256, so
that a folder whose files do not match (a missing, truncated or swapped model) is refused.
The folder also holds the Hugging Face layout (``config.json``, ``onnx/model*.onnx``) that
``hf_layout.py`` writes for standard tools; its ONNX copies are listed and checked as
``aliases``.
This module imports nothing heavy: the torch-free runtime reads folders through it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

MANIFEST = "moohead.json"
FORMAT = 1
TOKENIZER_FILE = "tokenizer.json"

# Variant name -> file name. ``fp32`` is the plain export; the others are derived from it.
VARIANT_FILES = {
    "fp32": "model.onnx",
    "optimized": "model_optimized.onnx",
    "int8": "model_int8.onnx",
    "fp16": "model_fp16.onnx",
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest keeps about a file, to check it later."""
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256(path)}


def read_manifest(model_dir: Path, check_files: bool = True) -> dict[str, Any]:
    """Load ``MODEL_DIR/moohead.json`` and check that the folder's files match it.

    Raises:
        MooheadError: the folder or manifest is missing or corrupted, or a listed file is
            missing or differs from the size and hash recorded at export.
    """
    if not model_dir.is_dir():
        raise MooheadError(
            f"model directory {model_dir} does not exist; create it with moohead export RUN_DIR --out {model_dir}"
        )
    path = model_dir / MANIFEST
    if not path.is_file():
        raise MooheadError(
            f"{model_dir} has no {MANIFEST}: it is not a moohead export; create one with moohead export"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MooheadError(f"{path} is corrupted ({exc}); export the model again") from exc
    required = ("format", "task", "max_length", "inputs", "variants")
    missing = [k for k in required if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise MooheadError(f"{path} lacks {', '.join(missing)}; export the model again")
    if doc["format"] != FORMAT:
        raise MooheadError(
            f"{path} has format {doc['format']}, this moohead reads format {FORMAT}; export again"
        )
    if not (model_dir / TOKENIZER_FILE).is_file():
        raise MooheadError(f"{model_dir} has no {TOKENIZER_FILE}; export the model again")
    if check_files:
        for name, record in doc["variants"].items():
            check_file(model_dir, name, record)
        for name, record in doc.get("aliases", {}).items():  # transformers.js's names
            check_file(model_dir, name, record, role="model's transformers.js copy")
    return dict(doc)


def check_file(model_dir: Path, variant: str, record: dict[str, Any], role: str = "model") -> None:
    """Refuse a variant (or its ``role``, e.g. an alias) whose file is missing or not the
    one that was exported."""
    path = model_dir / record["file"]
    if not path.is_file():
        raise MooheadError(
            f"{path} is missing but {MANIFEST} lists it as the {variant} {role}; export the model again"
        )
    size = path.stat().st_size
    if size != record["bytes"]:
        raise MooheadError(
            f"{path} has {size} bytes, {MANIFEST} recorded {record['bytes']} (truncated or replaced); "
            "export the model again"
        )
    if sha256(path) != record["sha256"]:
        raise MooheadError(
            f"{path} does not match the SHA-256 in {MANIFEST} (modified after export); export the model again"
        )


def variant_path(model_dir: Path, doc: dict[str, Any], variant: str | None) -> tuple[str, Path]:
    """The variant to run (default: the fastest exported one on CPU) and its path."""
    variants = doc["variants"]
    if variant is None:
        variant = next(v for v in ("int8", "optimized", "fp32") if v in variants)
    if variant not in variants:
        raise MooheadError(f"{model_dir} has no {variant} variant; it has: {', '.join(variants)}")
    return variant, model_dir / variants[variant]["file"]
