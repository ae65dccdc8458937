"""Request checking and response building of ``moohead serve``: plain functions, no HTTP.

Two request forms reach the same model:

- Open Inference Protocol (KServe v2), JSON tensor form: BYTES input ``text`` of shape
  ``[n]`` (or ``[n, 1]``), and for sentence-pair tasks a second input ``text_pair`` of the
  same shape; outputs ``label`` (BYTES ``[n]``) and ``probabilities`` (FP32
  ``[n, num_labels]``, in ``labels`` order), or ``score`` (FP32 ``[n]``) for regression.
- ``POST /predict`` with ``{"texts": [...]}`` (pairs: ``[[a, b], ...]``), answered with one
  ``{"label", "score", "probabilities"}`` object per input, as ``moohead predict --json``.

Every problem with a request raises ``RequestError`` with a 4xx status and a one-line
message that names the offending field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from moohead.export.runtime import softmax

Item = str | tuple[str, str]
PLATFORM = "onnxruntime_onnx"
TEXT, TEXT_PAIR = "text", "text_pair"
LABEL, PROBABILITIES, SCORE = "label", "probabilities", "score"


class RequestError(Exception):
    """A request the server cannot use: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ModelSpec:
    """What the protocol needs to know of the served model.

    Attributes:
        name: The model's name in URLs.
        variant: The ONNX variant served.
        task: The GLUE task it was trained on.
        text_columns: The task's text columns (two for sentence-pair tasks).
        labels: Class names (empty for regression).
        max_texts: Inputs in one request at most.
    """

    name: str
    variant: str
    task: str
    text_columns: tuple[str, ...]
    labels: tuple[str, ...]
    max_texts: int

    @classmethod
    def from_manifest(
        cls, name: str, variant: str, doc: dict[str, Any], max_texts: int
    ) -> ModelSpec:
        task = doc["task"]
        num_labels = int(task["num_labels"])
        labels = tuple(doc.get("labels") or [str(i) for i in range(num_labels)])
        return cls(
            name=name,
            variant=variant,
            task=str(task["name"]),
            text_columns=tuple(task["text_columns"]),
            labels=() if num_labels == 1 else labels,
            max_texts=max_texts,
        )

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def input_names(self) -> tuple[str, ...]:
        return (TEXT, TEXT_PAIR) if self.is_pair else (TEXT,)

    @property
    def output_names(self) -> tuple[str, ...]:
        return (SCORE,) if self.is_regression else (LABEL, PROBABILITIES)


def parse_json(body: bytes) -> Any:
    """The JSON document of a request body (UTF-8)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body's JSON is nested too deeply") from None


def check_text(value: Any, where: str) -> str:
    """``value`` if it is a non-blank string of valid Unicode, else a 400 naming ``where``."""
    if not isinstance(value, str):
        raise RequestError(400, f"{where} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise RequestError(400, f"{where} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        raise RequestError(400, f"{where} is not valid Unicode (lone surrogate)") from None
    return value


def check_count(n: int, spec: ModelSpec) -> None:
    if n == 0:
        raise RequestError(400, "the request has no texts; send at least one")
    if n > spec.max_texts:
        raise RequestError(
            413,
            f"the request has {n} texts; this server takes at most {spec.max_texts} per request",
        )


def predict_items(doc: Any, spec: ModelSpec) -> list[Item]:
    """The inputs of a ``/predict`` body ``{"texts": [...]}``."""
    shape = "[[a, b], ...]" if spec.is_pair else '["...", ...]'
    if not isinstance(doc, dict) or "texts" not in doc:
        raise RequestError(400, f'/predict takes a JSON object {{"texts": {shape}}}')
    extra = sorted(set(doc) - {"texts"})
    if extra:
        raise RequestError(400, f'unknown field {extra[0]!r}; /predict takes {{"texts": {shape}}}')
    texts = doc["texts"]
    if not isinstance(texts, list):
        raise RequestError(400, f"texts must be a list, not {type(texts).__name__}")
    check_count(len(texts), spec)
    if not spec.is_pair:
        return [check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]
    items: list[Item] = []
    for i, t in enumerate(texts):
        if not (isinstance(t, list) and len(t) == 2):
            raise RequestError(
                400,
                f"texts[{i}] must be a pair [{spec.text_columns[0]}, {spec.text_columns[1]}]: "
                "this model classifies sentence pairs",
            )
        items.append((check_text(t[0], f"texts[{i}][0]"), check_text(t[1], f"texts[{i}][1]")))
    return items


def _tensor_strings(tensor: Any, index: int, spec: ModelSpec) -> tuple[str, list[str]]:
    """The name and strings of one v2 input tensor."""
    if not isinstance(tensor, dict):
        raise RequestError(
            400, f"inputs[{index}] must be an object with name, shape, datatype, data"
        )
    missing = [k for k in ("name", "shape", "datatype", "data") if k not in tensor]
    if missing:
        raise RequestError(400, f"inputs[{index}] lacks {', '.join(missing)}")
    name = tensor["name"]
    if name not in spec.input_names:
        raise RequestError(
            400, f"unknown input {name!r}; this model takes {', '.join(spec.input_names)}"
        )
    if tensor["datatype"] != "BYTES":
        raise RequestError(
            400, f"input {name!r} has datatype {tensor['datatype']!r}; texts are BYTES tensors"
        )
    shape, data = tensor["shape"], tensor["data"]
    if not (
        isinstance(shape, list)
        and len(shape) in (1, 2)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        and (len(shape) == 1 or shape[1] == 1)
    ):
        raise RequestError(
            400, f"input {name!r} has shape {shape!r}; texts take shape [n] or [n, 1]"
        )
    if not isinstance(data, list):
        raise RequestError(400, f"input {name!r}: data must be a list of strings")
    if len(shape) == 2 and all(isinstance(d, list) and len(d) == 1 for d in data):
        data = [d[0] for d in data]  # the nested row-major form of [n, 1]
    if len(data) != shape[0]:
        raise RequestError(400, f"input {name!r} has shape {shape!r} but {len(data)} data elements")
    check_count(len(data), spec)
    return name, [check_text(t, f"input {name!r} element {i}") for i, t in enumerate(data)]


def v2_items(doc: Any, spec: ModelSpec) -> tuple[list[Item], list[str]]:
    """The inputs of a v2 infer request and the outputs it asks for (default: all)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise RequestError(400, "an infer request needs a non-empty list 'inputs'")
    tensors: dict[str, list[str]] = {}
    for i, tensor in enumerate(doc["inputs"]):
        name, strings = _tensor_strings(tensor, i, spec)
        if name in tensors:
            raise RequestError(400, f"input {name!r} is given twice")
        tensors[name] = strings
    missing = [n for n in spec.input_names if n not in tensors]
    if missing:
        raise RequestError(
            400, f"missing input {missing[0]!r}; this model takes {', '.join(spec.input_names)}"
        )
    items: list[Item] = list(tensors[TEXT])
    if spec.is_pair:
        if len(tensors[TEXT_PAIR]) != len(tensors[TEXT]):
            raise RequestError(400, f"inputs {TEXT!r} and {TEXT_PAIR!r} differ in length")
        items = list(zip(tensors[TEXT], tensors[TEXT_PAIR], strict=True))
    return items, _requested_outputs(doc.get("outputs"), spec)


def _requested_outputs(outputs: Any, spec: ModelSpec) -> list[str]:
    if outputs is None:
        return list(spec.output_names)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise RequestError(400, "outputs must be a list of objects with a name")
    names = [o.get("name") for o in outputs]
    for name in names:
        if name not in spec.output_names:
            raise RequestError(
                400, f"unknown output {name!r}; this model gives {', '.join(spec.output_names)}"
            )
    return [str(n) for n in names] or list(spec.output_names)


def predictions(logits: np.ndarray, spec: ModelSpec) -> list[dict[str, Any]]:
    """``/predict``'s answer per input: label, score and probabilities, as ``predict --json``."""
    if spec.is_regression:
        return [{"label": None, "score": float(v), "probabilities": {}} for v in logits[:, 0]]
    probs = softmax(logits)
    return [
        {
            "label": spec.labels[int(p.argmax())],
            "score": float(p.max()),
            "probabilities": {name: float(x) for name, x in zip(spec.labels, p, strict=True)},
        }
        for p in probs
    ]


def v2_outputs(logits: np.ndarray, spec: ModelSpec, names: list[str]) -> list[dict[str, Any]]:
    """The v2 output tensors ``names`` for a request's logits ``[n, num_labels]``."""
    n = len(logits)
    tensors: dict[str, dict[str, Any]] = {}
    if spec.is_regression:
        tensors[SCORE] = {"datatype": "FP32", "shape": [n], "data": logits[:, 0].tolist()}
    else:
        probs = softmax(logits)
        tensors[LABEL] = {
            "datatype": "BYTES",
            "shape": [n],
            "data": [spec.labels[i] for i in probs.argmax(axis=1)],
        }
        tensors[PROBABILITIES] = {
            "datatype": "FP32",
            "shape": [n, len(spec.labels)],
            "data": probs.reshape(-1).tolist(),
        }
    return [{"name": name, **tensors[name]} for name in names]


def model_metadata(spec: ModelSpec) -> dict[str, Any]:
    """The v2 model metadata document (``GET /v2/models/{name}``)."""
    outputs = (
        [{"name": SCORE, "datatype": "FP32", "shape": [-1]}]
        if spec.is_regression
        else [
            {"name": LABEL, "datatype": "BYTES", "shape": [-1]},
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(spec.labels)]},
        ]
    )
    return {
        "name": spec.name,
        "platform": PLATFORM,
        "inputs": [{"name": n, "datatype": "BYTES", "shape": [-1]} for n in spec.input_names],
        "outputs": outputs,
        "parameters": {
            "task": spec.task,
            "variant": spec.variant,
            "text_columns": list(spec.text_columns),
            "labels": list(spec.labels),
            "max_texts": spec.max_texts,
        },
    }
