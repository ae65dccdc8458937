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
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    warmup: int = 3,
    runs: int = 20,
    runtime: str = "torch",
    threads: int | None = None,
) -> float:
    """Median latency in ms of ``model(*inputs)`` (see ``measure_latency_interleaved``)."""
    return measure_latency_interleaved([model], [inputs], warmup, runs, runtime, threads)[0]


# ORT sessions timed together at most: each holds its own copy of the weights.
ORT_GROUP = 8


def measure_latency_interleaved(
    models: Sequence[nn.Module],
    inputs: Sequence[tuple[torch.Tensor, ...]],
    warmup: int = 3,
    runs: int = 20,
    runtime: str = "torch",
    threads: int | None = None,
) -> list[float]:
    """Median latency of several models, timed round-robin.

    Interleaving spreads machine noise (other processes, frequency changes) over all
    models alike, so it does not decide which of them looks faster.

    Args:
        runtime: ``torch`` (PyTorch eager; CUDA events on a GPU, perf_counter on CPU) or
            ``ort`` (the exported graph in ONNX Runtime, as deployed; perf_counter, since
            a run returns host arrays), timed in groups of ``ORT_GROUP`` to bound memory.
        threads: ORT's intra-op threads (PyTorch's are the process's, set by the search).
    """
    if runtime == "ort":
        from moohead.ort_latency import ort_calls

        out: list[float] = []
        for start in range(0, len(models), ORT_GROUP):
            group = slice(start, start + ORT_GROUP)
            calls = ort_calls(list(models[group]), list(inputs[group]), threads)  # type: ignore[arg-type]
            out += time_interleaved(calls, _timer(torch.device("cpu")), warmup, runs)
        return out
    for m in models:
        m.eval()
    calls = [partial(m, *x) for m, x in zip(models, inputs, strict=True)]
    with torch.inference_mode():
        return time_interleaved(calls, _timer(_device_of(inputs[0])), warmup, runs)


def time_interleaved(
    calls: Sequence[Callable[[], Any]],
    timer: Callable[[Callable[[], Any]], float],
    warmup: int,
    runs: int,
) -> list[float]:
    """Median ms of each call, the calls timed round-robin after ``warmup`` rounds."""
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(warmup):
        for call in calls:
            call()
    for _ in range(runs):
        for i, call in enumerate(calls):
            samples[i].append(timer(call))
    return [statistics.median(s) for s in samples]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
