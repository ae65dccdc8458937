"""Serve an exported model with ONNX Runtime alone: no torch, no transformers.

This module imports only numpy, ``tokenizers`` and ``onnxruntime``, so a deployment needs
neither PyTorch nor transformers::

    from moohead.export.runtime import OnnxClassifier

    model = OnnxClassifier.load("model_dir")            # fastest variant for this machine
    preds = model.predict(["a gripping film", "a dull mess"])
    preds[0].label, preds[0].probabilities            # "positive", {"negative": .., ...}
    model.predict([("A man plays.", "Someone plays.")])  # pair tasks take (a, b) tuples

``predict`` tokenises exactly as the search did (truncation to the exported max length,
pairs encoded jointly, or each side on its own for siamese heads), runs in batches, and
returns labels with probabilities, or a score for regression tasks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moohead.batching import SECOND, in_length_order, in_original_order, pad, padding_groups
from moohead.errors import MooheadError
from moohead.export.model_dir import TOKENIZER_FILE, read_manifest, variant_path
from moohead.ort_session import make_session, providers_for

Text = str | tuple[str, str]

CPU_CALL_TOKENS = 8.0
"""The fixed cost of one ORT call on CPU, in padded tokens' worth of compute.

Measured on the SST-2 knee model (one MiniLM layer; ``benchmarks/serve_load.py``'s): a
call of one token takes as long as 3 (int8) to 4 (fp32) tokens of a full batch; doubled
for feed building. Bigger encoders cost more a token, so fewer tokens a call: 8 errs
towards fewer, larger calls.
"""


@dataclass(frozen=True)
class Prediction:
    """One input's result.

    Attributes:
        label: Class name (classification) or None (regression).
        score: Probability of ``label``, or the predicted value for regression.
        probabilities: Class name -> probability (empty for regression).
    """

    label: str | None
    score: float
    probabilities: dict[str, float]


class Encoder:
    """Turns texts into the model's named input arrays, as the search tokenised them."""

    def __init__(
        self,
        tokenizer_path: Path,
        max_length: int,
        side_inputs: Sequence[str],
        is_pair: bool,
        siamese: bool = False,
    ) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length)
        self.max_length = max_length
        self.side_inputs = list(side_inputs)
        self.is_pair = is_pair
        self.siamese = siamese
        self.truncated = 0  # inputs cut to the max length so far

    @classmethod
    def from_manifest(cls, model_dir: Path, doc: dict[str, Any]) -> Encoder:
        return cls(
            model_dir / TOKENIZER_FILE,
            int(doc["max_length"]),
            doc["inputs"],
            len(doc["task"]["text_columns"]) == 2,
            bool(doc.get("siamese", False)),
        )

    def tokenize(self, texts: Sequence[Text]) -> Tokenized:
        """Each input's tokens, unpadded: one side, or two for a siamese head."""
        if not self.is_pair:
            if any(not isinstance(t, str) for t in texts):
                raise MooheadError("this model takes one sentence per input, not a pair")
            sides = [self.tokenizer.encode_batch(list(texts))]
        else:
            if any(not (isinstance(t, tuple | list) and len(t) == 2) for t in texts):
                raise MooheadError("this model classifies sentence pairs: give two texts per input")
            first = [str(t[0]) for t in texts]
            second = [str(t[1]) for t in texts]
            if self.siamese:
                sides = [self.tokenizer.encode_batch(first), self.tokenizer.encode_batch(second)]
            else:
                sides = [self.tokenizer.encode_batch(list(zip(first, second, strict=True)))]
        self.truncated += sum(bool(e.overflowing) for side in sides for e in side)
        return Tokenized(sides)

    def feeds(self, tokens: Tokenized, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The named input arrays of ``rows``, padded to the longest of them on each side."""
        out: dict[str, np.ndarray] = {}
        for side, suffix in zip(tokens.sides, ("", SECOND), strict=False):
            picked = [side[i] for i in rows]
            arrays = pad([e.ids for e in picked], [e.type_ids for e in picked], pad_id=0)
            out |= {f"{name}{suffix}": arrays[name] for name in self.side_inputs}
        return out

    def __call__(self, texts: Sequence[Text]) -> dict[str, np.ndarray]:
        """The named input arrays of ``texts``, padded to the longest of them."""
        tokens = self.tokenize(texts)
        return self.feeds(tokens, range(len(texts)))


@dataclass(frozen=True)
class Tokenized:
    """A batch's encodings (``tokenizers`` ``Encoding``), one list per side."""

    sides: list[list[Any]]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens of each input on each side, ``[n, sides]``."""
        return np.array([[len(e.ids) for e in side] for side in self.sides], dtype=np.int64).T


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


class OnnxClassifier:
    """An exported moohead model served by ONNX Runtime."""

    def __init__(self, model_dir: Path, doc: dict[str, Any], variant: str, session: Any) -> None:
        self.model_dir = model_dir
        self.doc = doc
        self.variant = variant
        self.session = session
        self.encoder = Encoder.from_manifest(model_dir, doc)
        self.labels: list[str] = list(doc.get("labels") or [])
        self.input_names = [i.name for i in session.get_inputs()]
        # On CPU a call costs little beyond its tokens, so a batch runs as length groups
        # (``padding_groups``); on a GPU one call per batch is cheaper than any padding.
        on_cpu = session.get_providers()[0] == "CPUExecutionProvider"
        self.call_tokens = CPU_CALL_TOKENS if on_cpu else float("inf")

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str],
        variant: str | None = None,
        device: str = "auto",
        threads: int | None = None,
    ) -> OnnxClassifier:
        """Open an exported folder, checking its files against ``moohead.json``.

        Args:
            model_dir: A folder written by ``moohead export``.
            variant: ``fp32``, ``optimized``, ``int8`` or ``fp16``; default the fastest
                exported for the device (int8, then optimized, on CPU; fp16 first on GPU).
            device: ``auto`` (GPU when ORT has one), ``cpu`` or ``cuda``.
            threads: ORT intra-op threads on CPU (default: ORT's choice, all cores).
        """
        path = Path(model_dir)
        doc = read_manifest(path)
        providers = providers_for(device)
        if variant is None and providers[0] == "CUDAExecutionProvider":
            variant = next((v for v in ("fp16", "optimized", "fp32") if v in doc["variants"]), None)
        name, onnx_path = variant_path(path, doc, variant)
        return cls(path, doc, name, make_session(onnx_path, providers, threads))

    @property
    def is_regression(self) -> bool:
        return int(self.doc["task"]["num_labels"]) == 1

    def logits(self, texts: Sequence[Text], batch_size: int = 32) -> np.ndarray:
        """Raw outputs ``[n, num_labels]`` (float32).

        Texts run in length-sorted batches of ``batch_size``. On CPU each batch is cut
        further by token count where padding would cost more than another call
        (``padding_groups``): a server's batch of texts in arrival order then computes
        about what a sorted one does. Masked padding changes no fp32 output, so the
        groups change speed only.
        """
        if batch_size < 1:
            raise MooheadError(f"batch size must be at least 1, not {batch_size}")
        if not texts:
            return np.zeros((0, int(self.doc["task"]["num_labels"])), dtype=np.float32)

        def run(batch: np.ndarray) -> np.ndarray:
            tokens = self.encoder.tokenize([texts[i] for i in batch])
            groups = padding_groups(tokens.lengths, self.call_tokens)
            outputs = []
            for rows in groups:
                feeds = self.encoder.feeds(tokens, rows)
                outputs.append(self.session.run(None, {k: feeds[k] for k in self.input_names})[0])
            return in_original_order(groups, outputs)

        return in_length_order([text_length(t) for t in texts], batch_size, run)

    def predict(self, texts: Sequence[Text], batch_size: int = 32) -> list[Prediction]:
        """Labels and probabilities (or regression scores) for ``texts``."""
        logits = self.logits(texts, batch_size)
        if self.is_regression:
            return [Prediction(None, float(v), {}) for v in logits[:, 0]]
        probs = softmax(logits)
        labels = self.labels or [str(i) for i in range(probs.shape[1])]
        return [
            Prediction(
                labels[int(p.argmax())],
                float(p.max()),
                {name: float(x) for name, x in zip(labels, p, strict=True)},
            )
            for p in probs
        ]


def text_length(text: Text) -> int:
    """Characters of a text or pair: what batches are sorted by."""
    return len(text) if isinstance(text, str) else len(text[0]) + len(text[1])
