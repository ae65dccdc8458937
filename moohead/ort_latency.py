"""Latency as deployed: the fused model as the ONNX graph ``moohead export`` writes, built
in memory and run by ONNX Runtime on the CPU or CUDA execution provider.

Users deploy the ONNX graph, not PyTorch eager: its fused kernels (attention, LayerNorm,
GELU) can rank two architectures differently from eager mode. Sessions do not spin-wait
between runs, so latencies are ORT's with ``session.intra_op.allow_spinning`` off: a little
slower than one model served alone with spinning on, the same for every architecture. ``measure.py`` times the
calls built here exactly as it times PyTorch models.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from moohead.fused import FusedModel
from moohead.onnx_graph import export_onnx
from moohead.ort_session import make_session, providers_for


def ort_session(model: FusedModel, threads: int | None) -> Any:
    """An ORT session of ``model``'s graph on the model's device (CUDA or CPU)."""
    buffer = io.BytesIO()
    export_onnx(model, buffer)
    device = next(model.parameters()).device.type
    # No spin-waiting: several sessions are timed round-robin (see ``make_session``), and a
    # model timed alone must measure like one timed among others.
    return make_session(buffer.getvalue(), providers_for(device), threads, spin=False)


def ort_calls(
    models: Sequence[FusedModel], inputs: Sequence[tuple[torch.Tensor, ...]], threads: int | None
) -> list[Callable[[], Any]]:
    """One zero-argument call per model: its ORT session run on its input. ``session.run``
    returns host arrays, so a call ends when its outputs are back, on either provider."""
    calls: list[Callable[[], Any]] = []
    for model, x in zip(models, inputs, strict=True):
        feeds = {name: t.cpu().numpy() for name, t in zip(model.input_names, x, strict=True)}
        calls.append(partial(ort_session(model, threads).run, None, feeds))
    return calls
