"""Cost objectives: FLOPs (fvcore, attention counted) and latency (median after warm-up).

FLOPs are reported as 2 x fvcore's count, since fvcore counts one multiply-add as one
FLOP; so a matmul of (m, k) by (k, n) costs 2mkn, as in ``torch.utils.flop_counter``.
fvcore skips ``aten::scaled_dot_product_attention``, softmax and GELU; the handles below
count attention as its two batched matmuls (QK^T and AV) and softmax, GELU and the other
activations as one operation per element.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from math import prod
from typing import Any

import torch
from torch import nn


def _shape(value: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return [int(d) for d in get_shape(value)]


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Multiply-adds of scaled-dot-product attention: QK^T plus AV."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])
    lq, d = q[-2], q[-1]
    lk, dv = k[-2], v[-1]
    return batch * lq * lk * d + batch * lq * lk * dv


def elementwise_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """One operation per output element (softmax, GELU, tanh, ...)."""
    return prod(_shape(outputs[0]))


EXTRA_HANDLES: dict[str, Callable[[list[Any], list[Any]], int]] = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::softmax": elementwise_flop_jit,
    "aten::_softmax": elementwise_flop_jit,
    "aten::gelu": elementwise_flop_jit,
    "aten::tanh": elementwise_flop_jit,
    "aten::silu": elementwise_flop_jit,
    "aten::relu": elementwise_flop_jit,
}


def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (see module docstring)."""
    from fvcore.nn import FlopCountAnalysis

    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # jit tracer warnings about HF's python control flow
        analysis = FlopCountAnalysis(model, inputs).set_op_handle(**EXTRA_HANDLES)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        return 2 * int(analysis.total())


def _timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    """A function that times one call in milliseconds, the right way for the device."""
    if device.type == "cuda":

        def cuda_time(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return float(start.elapsed_time(end))

        return cuda_time

    def cpu_time(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3

    return cpu_time


def _device_of(inputs: Sequence[torch.Tensor]) -> torch.device:
    return inputs[0].device


def measure_latency(
    model: nn.Module, inputs: tuple[torch.Tensor, ...], warmup: int = 3, runs: int = 20
) -> float:
    """Median latency in ms of ``model(*inputs)``: CUDA events on a GPU, perf_counter on CPU."""
    return measure_latency_interleaved([model], [inputs], warmup, runs)[0]


def measure_latency_interleaved(
    models: Sequence[nn.Module],
    inputs: Sequence[tuple[torch.Tensor, ...]],
    warmup: int = 3,
    runs: int = 20,
) -> list[float]:
    """Median latency of several models, timed round-robin.

    Interleaving spreads machine noise (other processes, frequency changes) over all
    models alike, so it does not decide which of them looks faster.
    """
    timer = _timer(_device_of(inputs[0]))
    samples: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for m in models:
            m.eval()
        for _ in range(warmup):
            for m, x in zip(models, inputs, strict=True):
                m(*x)
        for _ in range(runs):
            for i, (m, x) in enumerate(zip(models, inputs, strict=True)):
                samples[i].append(timer(partial(m, *x)))
    return [statistics.median(s) for s in samples]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
