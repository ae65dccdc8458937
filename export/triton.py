"""``moohead export --triton REPO_DIR``: the exported graph as a Triton model repository entry.

Triton Inference Server serves ``REPO_DIR/<name>/config.pbtxt`` with
``REPO_DIR/<name>/1/model.onnx`` on its ONNX Runtime backend. The config's inputs and
outputs (names, data types, shapes) are read from the ONNX graph itself, the batch axis is
Triton's (``max_batch_size``, ``dynamic_batching``) and every other symbolic axis, the
sequence length, is ``-1``. Triton does not tokenise: clients send the token ids that the
exported ``tokenizer.json`` gives, truncated to the model's max length.

The entry is written under a temporary hidden name in ``REPO_DIR`` and renamed into place,
so a failure leaves nothing under ``<name>``; an existing entry is replaced only when asked.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

PLATFORM = "onnxruntime_onnx"
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
MODEL_FILE = "model.onnx"  # the ONNX Runtime backend's default file name
MAX_BATCH_SIZE = 64

# A directory name Triton accepts as a model name, and that is safe in a URL path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# ONNX TensorProto element types (onnx.TensorProto.INT64 = 7, ...) -> Triton's data types.
_TRITON_TYPES = {
    1: "TYPE_FP32",
    2: "TYPE_UINT8",
    3: "TYPE_INT8",
    5: "TYPE_INT16",
    6: "TYPE_INT32",
    7: "TYPE_INT64",
    9: "TYPE_BOOL",
    10: "TYPE_FP16",
    11: "TYPE_FP64",
    16: "TYPE_BF16",
}


def check_name(name: str) -> None:
    """Refuse a Triton model name that is not a plain directory name.

    Raises:
        MooheadError: the name is empty, hidden, or has characters other than letters,
            digits, ``_``, ``.`` and ``-``.
    """
    if not _NAME.fullmatch(name):
        raise MooheadError(
            f"{name!r} is not a valid Triton model name (letters, digits, _ . - only, not "
            "starting with . or -); choose one with --triton-name"
        )


def tensor_specs(values: Any) -> list[tuple[str, str, list[int]]]:
    """(name, Triton data type, dims without the batch axis) of ONNX graph inputs/outputs.

    Raises:
        MooheadError: a tensor has no dynamic batch axis or a type Triton cannot carry.
    """
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dims = list(tensor.shape.dim)
        if not dims or not dims[0].dim_param:
            raise MooheadError(
                f"ONNX tensor {value.name} has no dynamic batch axis; Triton's batching needs one"
            )
        if tensor.elem_type not in _TRITON_TYPES:
            raise MooheadError(
                f"ONNX tensor {value.name} has element type {tensor.elem_type}, which the "
                "Triton config cannot carry"
            )
        shape = [d.dim_value if d.dim_value > 0 else -1 for d in dims[1:]]
        specs.append((value.name, _TRITON_TYPES[tensor.elem_type], shape))
    return specs


def _tensors(kind: str, specs: list[tuple[str, str, list[int]]]) -> str:
    blocks = [
        f'  {{\n    name: "{name}"\n    data_type: {dtype}\n    dims: [ {", ".join(map(str, dims))} ]\n  }}'
        for name, dtype, dims in specs
    ]
    return f"{kind} [\n" + ",\n".join(blocks) + "\n]\n"


def model_config(name: str, model_file: Path, max_batch_size: int) -> str:
    """``config.pbtxt`` for ``model_file`` served as ``name`` (protobuf text format)."""
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]
    return (
        f'name: "{name}"\n'
        f'platform: "{PLATFORM}"\n'
        f"max_batch_size: {max_batch_size}\n"
        + _tensors("input", tensor_specs(inputs))
        + _tensors("output", tensor_specs(graph.output))
        + "dynamic_batching { }\n"
    )


def write_triton_model(model_file: Path, dest: Path, max_batch_size: int, overwrite: bool) -> Path:
    """Write ``dest/config.pbtxt`` and ``dest/1/model.onnx`` (a copy of ``model_file``).

    Args:
        model_file: The exported ONNX graph to serve.
        dest: ``REPO_DIR/<name>``: the model's folder in the Triton repository.
        max_batch_size: The largest batch Triton's dynamic batcher forms.
        overwrite: Replace an existing ``dest``; without it an existing one is refused.

    Returns:
        ``dest``.

    Raises:
        MooheadError: ``dest`` exists (without ``overwrite``), or the graph's inputs or
            outputs cannot be described to Triton.
    """
    check_name(dest.name)
    if dest.exists() and not overwrite:  # checked up front too; it may have appeared since
        raise MooheadError(
            f"Triton model {dest} already exists; choose another --triton-name or pass --overwrite"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        (tmp / CONFIG_FILE).write_text(
            model_config(dest.name, model_file, max_batch_size), encoding="utf-8"
        )
        (tmp / VERSION).mkdir()
        shutil.copyfile(model_file, tmp / VERSION / MODEL_FILE)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
