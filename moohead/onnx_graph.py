"""The fused PyTorch model as an ONNX graph: what ``moohead export`` writes (step one of two,
as in optimum) and what the search times latency on with ONNX Runtime."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from moohead.fused import FusedModel, reference_inputs

OPSET = 17  # LayerNormalization is a single op from 17; ORT's transformer fusions know it
OUTPUT = "logits"


def dynamic_axes(model: FusedModel) -> dict[str, dict[int, str]]:
    """``batch_size`` and ``sequence_length`` (``sequence_length_b`` for a siamese second side)."""
    axes: dict[str, dict[int, str]] = {OUTPUT: {0: "batch_size"}}
    for name in model.input_names:
        seq = "sequence_length_b" if name.endswith("_b") else "sequence_length"
        axes[name] = {0: "batch_size", 1: seq}
    return axes


def export_onnx(model: FusedModel, path: Path | IO[bytes], opset: int = OPSET) -> None:
    """Write ``model`` as ONNX with named inputs and dynamic batch and sequence axes, to a
    file or a binary buffer (the search builds graphs in memory to time them).

    The TorchScript-based exporter is used: its graphs carry the operator patterns that
    ONNX Runtime's transformer optimiser fuses (attention, LayerNorm, GELU). The model is
    traced at batch 2 and length 16, which hides nothing: every shape is marked dynamic and
    the parity gate runs other batch sizes and lengths.
    """
    model = model.eval()
    device = str(next(model.parameters()).device)
    inputs = reference_inputs(model, batch=2, length=16, device=device)
    with warnings.catch_warnings(), torch.no_grad(), eager_attention(model.encoder):
        warnings.simplefilter("ignore")  # tracer and deprecation chatter
        torch.onnx.export(
            model,
            inputs,
            # the TorchScript exporter writes to file objects too (its annotation says path)
            path if not isinstance(path, Path) else str(path),  # type: ignore[arg-type]
            input_names=model.input_names,
            output_names=[OUTPUT],
            dynamic_axes=dynamic_axes(model),
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


@contextmanager
def eager_attention(encoder: Any) -> Iterator[None]:
    """Trace the encoder's attention as explicit MatMul/Softmax, then restore its setting.

    The same computation as scaled-dot-product attention, but the pattern that ORT fuses
    into its ``Attention`` kernel (all-MiniLM-L6-v2: 6 fused attentions and an
    EmbedLayerNormalization, against none from the SDPA trace). The parity gate compares
    the graph with the model as searched (its own attention setting).
    """
    config = encoder.config
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(encoder, "set_attn_implementation", None)
    if setter is not None:
        setter("eager")
    else:  # older transformers
        config._attn_implementation = "eager"
    try:
        yield
    finally:
        if before is not None:
            if setter is not None:
                setter(before)
            else:
                config._attn_implementation = before
