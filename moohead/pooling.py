"""The encoder's own sentence embedding: the pooling a sentence-transformers model folder
declares (``modules.json`` and its pooling module's ``config.json``), else mean pooling.

all-MiniLM-L6-v2, the default encoder, is trained for an L2-normalised mean of its last
layer's tokens; a head that reads anything else competes with that standard use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

# sentence-transformers' pooling flags -> moohead pools (cls and mean together: cls+mean)
FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
}


@dataclass(frozen=True)
class NativePooling:
    """Attributes:
    pool: A moohead pool (``mean``, ``cls``, ``max`` or ``cls+mean``).
    normalize: Whether the embedding is L2-normalised.
    source: Where this came from: the pooling config's path, or why the default applies.
    """

    pool: str
    normalize: bool
    source: str


DEFAULT = NativePooling("mean", False, "no sentence-transformers modules.json: mean pooling")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = type(exc).__name__ if not isinstance(exc, json.JSONDecodeError) else exc.msg
        raise MooheadError(
            f"cannot read {path} ({reason}); fix or remove it (without modules.json the "
            "encoder's native embedding is mean pooling)"
        ) from None


def _fetch(model: str, name: str) -> Path | None:
    """A file of a local folder, or of a hub repository (None where it has none)."""
    folder = Path(model)
    if folder.is_dir():
        path = folder / name
        return path if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model, name))
    except Exception:  # not on the hub, no network, no such file: the default applies
        return None


def _pool_of(config: Any, path: Path, normalize: bool) -> NativePooling:
    if not isinstance(config, dict):
        raise MooheadError(f"cannot read {path}: expected a JSON object of pooling_mode_* flags")
    flags = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v is True)
    chosen = [pool for key, pool in FLAGS.items() if key in flags]
    if len(chosen) == len(flags) and chosen in (["cls"], ["mean"], ["max"], ["cls", "mean"]):
        return NativePooling("+".join(chosen), normalize, str(path))
    # weighted mean, last token, ...: the nearest pool moohead builds, and the reason
    why = f"{path} asks for {', '.join(flags) or 'no pooling'}, not built here: mean pooling"
    return NativePooling("mean", normalize, why)


def native_pooling(model: str) -> NativePooling:
    """The pooling ``model`` (a folder or hub id, as ``encoder.resolve_model`` gives it)
    declares for its sentence embedding.

    Raises:
        MooheadError: naming the file, when modules.json or the pooling config does not parse.
    """
    modules_path = _fetch(model, "modules.json")
    if modules_path is None:
        return DEFAULT
    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise MooheadError(f"cannot read {modules_path}: expected a JSON list of modules")
    types = [str(m.get("type", "")) for m in modules]
    pooling = [m for m, t in zip(modules, types, strict=True) if t.endswith("models.Pooling")]
    normalize = any(t.endswith("models.Normalize") for t in types)
    if not pooling:
        return NativePooling("mean", normalize, f"{modules_path} has no Pooling module: mean")
    config_path = _fetch(model, f"{pooling[0].get('path', '')}/config.json".lstrip("/"))
    if config_path is None:
        raise MooheadError(
            f"{modules_path} names a Pooling module at {pooling[0].get('path')!r}, "
            "which has no config.json"
        )
    return _pool_of(_read_json(config_path), config_path, normalize)
