"""The Hugging Face layout of an exported folder, so that standard tools load it unchanged.

transformers.js, Optimum and ``transformers.pipeline`` find a model by ``config.json``
(``model_type``, labels, problem type), the tokenizer files and, for transformers.js,
``onnx/model{,_quantized,_fp16}.onnx``. This module writes those next to moohead's own
files: the encoder's config cut to the kept depth with the task's labels, the tokenizer
config's ``model_max_length`` set to the length the search truncated to (so standard
tools truncate as training did), and the ONNX variants again under transformers.js's
names, as hard links where the filesystem allows. moohead's runtime keeps reading the
top-level files; the manifest records the aliases with their hashes, and ``read_manifest``
refuses a folder whose alias is missing or differs (``model_dir.check_file``).

There is no PyTorch checkpoint: ``config.json`` describes the ONNX graph's interface (a
``...ForSequenceClassification`` of the kept depth), not weights that transformers could
load, and the head inside the graph is the searched one, not BERT's pooler + linear.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moohead.export.model_dir import file_record
from moohead.files import atomic_write_json

if TYPE_CHECKING:
    from moohead.runhead import RunHead

HF_CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"

# Variant -> the file transformers.js loads for ``dtype`` fp32 (its default on Node),
# ``q8`` and ``fp16``. The ``optimized`` variant has no such name.
ALIAS_FILES = {
    "fp32": "onnx/model.onnx",
    "int8": "onnx/model_quantized.onnx",
    "fp16": "onnx/model_fp16.onnx",
}

REGRESSION = "regression"
SINGLE_LABEL = "single_label_classification"


def architecture(encoder: Any) -> str:
    """``BertModel`` -> ``BertForSequenceClassification``: the class the config names."""
    name = type(encoder).__name__
    return f"{name.removesuffix('Model')}ForSequenceClassification"


def hf_config(rh: RunHead) -> dict[str, Any]:
    """The encoder's config at the kept depth, with the task's labels and problem type."""
    config = copy.deepcopy(rh.model.encoder.config)
    doc: dict[str, Any] = config.to_dict()
    doc.pop("_name_or_path", None)  # the encoder's folder on the exporting machine
    labels = rh.task.labels or ["LABEL_0"]  # regression: transformers' name of its one output
    doc.update(
        architectures=[architecture(rh.model.encoder)],
        num_hidden_layers=rh.genome.depth,
        id2label={str(i): label for i, label in enumerate(labels)},
        label2id={label: i for i, label in enumerate(labels)},
        num_labels=rh.task.num_labels,
        problem_type=REGRESSION if rh.task.is_regression else SINGLE_LABEL,
    )
    return doc


def set_model_max_length(folder: Path, max_length: int) -> None:
    """Set ``model_max_length`` in the saved tokenizer config (standard tools truncate to it)."""
    path = folder / TOKENIZER_CONFIG
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    doc["model_max_length"] = max_length
    atomic_write_json(path, doc)


def link_or_copy(src: Path, dest: Path) -> None:
    """``dest`` as a hard link to ``src``, or a copy where the filesystem has no hard links."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def write_hf_layout(folder: Path, rh: RunHead, variants: dict[str, Any]) -> dict[str, Any]:
    """Write ``config.json``, patch ``tokenizer_config.json`` and link the ONNX aliases.

    Args:
        folder: The model folder being written (the tokenizer and variants are in it).
        rh: The exported head and its run.
        variants: The manifest's variant records (variant -> file, bytes, sha256).

    Returns:
        The manifest's ``aliases`` section: variant -> record of its transformers.js file.
    """
    atomic_write_json(folder / HF_CONFIG, hf_config(rh))
    set_model_max_length(folder, rh.max_length)
    aliases: dict[str, Any] = {}
    for variant, name in ALIAS_FILES.items():
        if variant not in variants:
            continue
        dest = folder / name
        link_or_copy(folder / variants[variant]["file"], dest)
        aliases[variant] = {**file_record(dest), "file": name}
    return aliases
