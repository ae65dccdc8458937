"""Derived ONNX variants: ORT's transformer optimisation, dynamic int8, float16.

Each writes a new file from an existing one and never touches its source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def quiet_ort_tools() -> Iterator[None]:
    """Silence the optimiser's and quantiser's logging (every fusion at INFO, advice at WARNING
    on the root logger) for the duration; what matters is checked by the parity gate."""
    names = ("", "onnxruntime", "onnxruntime.transformers", "onnxruntime.quantization")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def optimize_graph(
    src: Path, dst: Path, num_heads: int, hidden_size: int, fp16: bool = False
) -> dict[str, int]:
    """ORT's BERT optimiser: fuse attention, LayerNorm, GELU, skip-connections and bias-adds.

    ``fp16`` converts the optimised graph to float16 with float32 inputs and outputs (for
    GPUs; ``keep_io_types`` means callers feed and read the same arrays as for fp32).

    Returns:
        How many of each fused operator the optimiser produced.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    with quiet_ort_tools():
        model = optimize_model(
            str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1
        )
        if fp16:
            model.convert_float_to_float16(keep_io_types=True)
        model.save_model_to_file(str(dst))
    return {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the weight matrix products (CPU).

    Weights are quantised per output channel ahead of time, activations per batch at run
    time; embeddings and the attention score products stay float32, which is where
    quantisation costs most accuracy for the least speed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_ort_tools():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Attention"],
            # Fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference;
            # every tensor in these graphs is float32 before quantisation.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
