"""Step two of two (as in optimum): run ONNX Runtime against PyTorch and refuse on mismatch.

The gate has two parts:

1. Logits on random token ids at batch 1, 7 and 32 and lengths from 8 to the max length,
   with padded rows in every batch: the fp32 graph must agree with PyTorch to ``atol`` and
   predict the same labels.
2. The official validation split, tokenised by the torch-free runtime: the fp32 graph must
   score the same metric as PyTorch, and the same as PyTorch on the split tokenised the way
   the search tokenised it (``transformers``' tokenizer): a difference there is train/serve
   tokenisation skew. int8/fp16 graphs may lose ``max_metric_drop`` and must agree with
   fp32's labels on at least ``min_label_agreement`` of the split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from moohead.batching import SECOND, in_original_order, length_batches, pad
from moohead.data import Split
from moohead.errors import MooheadError
from moohead.export.config import ExportConfig
from moohead.export.runtime import Encoder, text_length
from moohead.features import read_views
from moohead.fused import FusedModel
from moohead.metrics import compute_metrics
from moohead.tasks import Task
from moohead.tokens import tokenize_split

BATCHES = (1, 7, 32)
# Largest allowed gap between the fp32 graph's validation score (runtime tokenisation) and
# PyTorch's on the search's tokenisation, in metric units: one SST-2 prediction is 1.1e-3.
SKEW_TOLERANCE = 1e-3
Feeds = dict[str, np.ndarray]


class ParityError(MooheadError):
    """The ONNX graph does not compute what the PyTorch model computes."""


def gate_lengths(max_length: int) -> list[int]:
    """8, 16, 32, ... up to and including ``max_length``."""
    lengths, n = [], 8
    while n < max_length:
        lengths.append(n)
        n *= 2
    return [*lengths, max_length]


def random_feeds(model: FusedModel, batch: int, length: int, rng: np.random.Generator) -> Feeds:
    """Random ids with a padded tail on every row but the first (so padding is exercised),
    padded as the runtime pads; token types are 0 on a row's first half and 1 after, as
    in a pair."""
    vocab = int(getattr(model.encoder.config, "vocab_size", 1000))
    feeds: Feeds = {}
    for suffix in ("", SECOND) if model.siamese else ("",):
        rows = rng.integers(1, length + 1, size=batch)
        rows[0] = length
        ids = rng.integers(5, vocab, size=(batch, length))
        types = [[0] * (n // 2) + [1] * (n - n // 2) for n in rows]
        side = pad(
            [ids[i, :n].tolist() for i, n in enumerate(rows)],
            types if model.uses_token_type_ids else None,
            pad_id=0,
        )
        feeds |= {f"{name}{suffix}": array for name, array in side.items()}
    return feeds


def run_torch(model: FusedModel, feeds: Feeds) -> np.ndarray:
    device = next(model.parameters()).device
    with torch.inference_mode():
        args = [torch.from_numpy(feeds[name]).to(device) for name in model.input_names]
        return model(*args).float().cpu().numpy()


def run_ort(session: Any, feeds: Feeds) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return np.asarray(session.run(None, {n: feeds[n] for n in names})[0], dtype=np.float32)


def logit_parity(
    model: FusedModel, session: Any, max_length: int, is_regression: bool, seed: int = 0
) -> dict[str, Any]:
    """Largest |ORT - PyTorch| over the gate's batches and lengths, and label disagreements."""
    rng = np.random.default_rng(seed)
    worst, flips, cases = 0.0, 0, []
    for batch in BATCHES:
        for length in gate_lengths(max_length):
            feeds = random_feeds(model, batch, length, rng)
            ref, got = run_torch(model, feeds), run_ort(session, feeds)
            diff = float(np.abs(ref - got).max())
            worst = max(worst, diff)
            if not is_regression:
                flips += int((ref.argmax(-1) != got.argmax(-1)).sum())
            cases.append([batch, length])
    return {"max_abs_diff": worst, "label_flips": flips, "cases": cases}


def validation_feeds(
    encoder: Encoder, split: Split, batch_size: int
) -> list[tuple[np.ndarray, Feeds]]:
    """The split in length-sorted batches, tokenised by the runtime: ``(indices, feeds)``."""
    texts: list[Any] = (
        list(split.texts[0]) if len(split.texts) == 1 else list(zip(*split.texts, strict=True))
    )
    return [
        (idx, encoder([texts[i] for i in idx]))
        for idx in length_batches([text_length(t) for t in texts], batch_size)
    ]


def search_token_feeds(
    tokenizer: Any, model: FusedModel, task: Task, split: Split, max_length: int
) -> list[tuple[np.ndarray, Feeds]]:
    """The split in length-sorted batches, tokenised as the search tokenised it: by the
    ``transformers`` tokenizer of the run's encoder (``moohead.tokens``), not the runtime's."""
    tokens = tokenize_split(tokenizer, task, split, max_length, model.uses_token_type_ids)
    views = [tokens.views[v] for v in read_views(tokens.views, model.head.genome)]
    batches = []
    for idx in length_batches(views[0].lengths, 64):
        feeds: Feeds = {}
        for view, suffix in zip(views, ("", SECOND), strict=False):
            side = view.arrays(idx)
            feeds |= {f"{name}{suffix}": side[name] for name in model.side_names}
        batches.append((idx, feeds))
    return batches


def example_ids(batches: list[tuple[np.ndarray, Feeds]]) -> dict[int, tuple[bytes, ...]]:
    """Each example's unpadded token ids (each sentence's, for siamese heads), by index."""
    out = {}
    for idx, feeds in batches:
        sides = [name for name in sorted(feeds) if name.startswith("input_ids")]
        masks = [feeds[name.replace("input_ids", "attention_mask")] for name in sides]
        for row, i in enumerate(idx):
            cut = [feeds[name][row][mask[row] > 0] for name, mask in zip(sides, masks, strict=True)]
            out[int(i)] = tuple(ids.tobytes() for ids in cut)
    return out


def tokens_differ(a: list[tuple[np.ndarray, Feeds]], b: list[tuple[np.ndarray, Feeds]]) -> int:
    """How many examples two tokenisations of a split give different token ids."""
    ids_a, ids_b = example_ids(a), example_ids(b)
    return sum(ids_a[i] != ids_b[i] for i in ids_a)


def split_outputs(batches: list[tuple[np.ndarray, Feeds]], run: Any) -> np.ndarray:
    """``run`` on each batch's feeds, as float32 rows in the split's order."""
    return in_original_order([idx for idx, _ in batches], [run(feeds) for _, feeds in batches])


@dataclass
class ValidationRun:
    """The validation split, tokenised once, and PyTorch's outputs and metrics on it."""

    task: Task
    max_length: int  # the run's: random parity inputs go up to it
    splits: dict[str, Split]
    batches: dict[str, list[tuple[np.ndarray, Feeds]]]
    torch_outputs: dict[str, np.ndarray]
    torch_metrics: dict[str, float]
    search_tokens: dict[str, Any]  # PyTorch on the search's tokenisation: score, differ
    recorded: float | None  # the run's own validation score of this head (front.json)

    @classmethod
    def build(
        cls,
        model: FusedModel,
        task: Task,
        splits: dict[str, Split],
        encoder: Encoder,
        search_tokenizer: Any,
        recorded: float | None = None,
    ) -> ValidationRun:
        """Tokenise the splits both ways and score PyTorch on each.

        Args:
            search_tokenizer: The run's ``transformers`` tokenizer, as the search used it.
            recorded: The validation score the run recorded for this head, if any.
        """
        batches = {name: validation_feeds(encoder, s, 64) for name, s in splits.items()}
        outputs = {
            name: split_outputs(b, lambda f: run_torch(model, f)) for name, b in batches.items()
        }
        metrics = cls._metrics(task, splits, outputs)
        searched = {
            name: search_token_feeds(search_tokenizer, model, task, s, encoder.max_length)
            for name, s in splits.items()
        }
        differ = sum(tokens_differ(batches[n], searched[n]) for n in splits)
        search_score = metrics["score"]  # the same ids: PyTorch's score on them is known
        if differ:
            search_outputs = {
                name: split_outputs(b, lambda f: run_torch(model, f))
                for name, b in searched.items()
            }
            search_score = cls._metrics(task, splits, search_outputs)["score"]
        search_tokens = {"score": search_score, "examples_tokenised_differently": differ}
        return cls(
            task, encoder.max_length, splits, batches, outputs, metrics, search_tokens, recorded
        )

    @property
    def examples(self) -> int:
        return sum(len(s.labels) for s in self.splits.values())

    @staticmethod
    def _metrics(
        task: Task, splits: dict[str, Split], outputs: dict[str, np.ndarray]
    ) -> dict[str, float]:
        scores = [compute_metrics(task, outputs[n], s.labels)["score"] for n, s in splits.items()]
        return {"score": float(np.mean(scores))}

    def score_session(self, session: Any) -> tuple[float, int]:
        """The session's validation score and how many predictions differ from PyTorch's."""
        outputs = {
            name: split_outputs(b, lambda f: run_ort(session, f))
            for name, b in self.batches.items()
        }
        differ = 0
        if not self.task.is_regression:
            differ = sum(
                int((outputs[n].argmax(-1) != self.torch_outputs[n].argmax(-1)).sum())
                for n in outputs
            )
        return self._metrics(self.task, self.splits, outputs)["score"], differ


def validate_onnx(
    model: FusedModel, session: Any, variant: str, validation: ValidationRun, gate: ExportConfig
) -> dict[str, Any]:
    """Check one ONNX variant against PyTorch; return the numbers, or raise ParityError.

    The fp32 graph must match logits (``gate.atol``, identical labels) and PyTorch's
    validation score, and score within ``SKEW_TOLERANCE`` of both PyTorch on the search's
    tokenisation and the score the run recorded for the head. Derived variants (optimized,
    int8, fp16) are held to ``gate.max_metric_drop`` and ``gate.min_label_agreement``, and
    ``optimized`` (still fp32) to ``100 * atol`` on logits. The result names the execution
    provider that ran the variant.
    """
    task, atol, max_metric_drop = validation.task, gate.atol, gate.max_metric_drop
    parity = logit_parity(model, session, validation.max_length, task.is_regression)
    score, differ = validation.score_session(session)
    ref = validation.torch_metrics["score"]
    agreement = None if task.is_regression else 1 - differ / validation.examples
    result = {
        "variant": variant,
        "provider": session.get_providers()[0],
        **parity,
        "validation": score,
        "validation_torch": ref,
        "metric_drop": ref - score,
        "validation_predictions_differ": differ,
        "label_agreement": agreement,
    }
    problems = []
    if variant == "fp32":
        searched = validation.search_tokens
        result["validation_search_tokenisation"] = searched["score"]
        result["examples_tokenised_differently"] = searched["examples_tokenised_differently"]
        if parity["max_abs_diff"] > atol:
            problems.append(f"max |logit diff| {parity['max_abs_diff']:.2e} > {atol:g}")
        if parity["label_flips"]:
            problems.append(f"{parity['label_flips']} predicted labels differ on random inputs")
        if abs(ref - score) > 1e-4:
            problems.append(f"validation score {score:.4f} vs PyTorch {ref:.4f}")
        skew = f"{searched['examples_tokenised_differently']} examples tokenise differently"
        if abs(searched["score"] - score) > SKEW_TOLERANCE:
            problems.append(
                f"tokenisation skew: validation {score:.4f} with the runtime's tokenizer vs "
                f"{searched['score']:.4f} tokenised as the search did ({skew})"
            )
        recorded = validation.recorded
        if recorded is not None and abs(recorded - score) > SKEW_TOLERANCE:
            problems.append(
                f"validation {score:.4f} differs from the {recorded:.4f} the run recorded for "
                f"this head (PyTorch on the search's tokenisation: {searched['score']:.4f}; "
                f"{skew}): the encoder's tokenizer or the data changed since the search"
            )
    else:
        tol = 100 * atol if variant == "optimized" else None
        if tol is not None and parity["max_abs_diff"] > tol:
            problems.append(f"max |logit diff| {parity['max_abs_diff']:.2e} > {tol:g}")
        if ref - score > max_metric_drop:
            problems.append(
                f"validation score {score:.4f} is {100 * (ref - score):.2f} points below "
                f"PyTorch's {ref:.4f} (allowed {100 * max_metric_drop:g})"
            )
        if agreement is not None and agreement < gate.min_label_agreement:
            problems.append(
                f"only {100 * agreement:.2f}% of validation labels agree with PyTorch's "
                f"(at least {100 * gate.min_label_agreement:g}% required)"
            )
    if problems:
        raise ParityError(
            f"the {variant} ONNX model fails the parity gate: {'; '.join(problems)}; "
            "nothing was written"
        )
    return result
