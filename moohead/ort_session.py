"""ONNX Runtime sessions as moohead runs them: the execution providers for a device, all
graph optimisations, a fixed CPU thread count.

One home for the search (latency as deployed, ``measure.py``) and for serving (the
torch-free runtime, ``export/runtime.py``): both time and run the same kind of session.
This module imports nothing heavy at import time (onnxruntime is imported on use).
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Any

from moohead.config import DEVICES
from moohead.errors import MooheadError


def cuda_available() -> bool:
    """Whether ORT can run on a GPU here (asked only so that CPU hosts log no CUDA errors)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    # onnxruntime-gpu lists CUDA even on machines without a GPU; a driver must exist too.
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/dev/nvidiactl"))


def providers_for(device: str) -> list[str]:
    """ORT execution providers for ``auto``, ``cpu`` or ``cuda``."""
    if device not in DEVICES:
        raise MooheadError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    gpu = cuda_available()
    if device == "cuda" and not gpu:
        raise MooheadError("--device cuda, but ONNX Runtime finds no usable GPU; use --device cpu")
    if device == "cuda" or (device == "auto" and gpu):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


@functools.cache
def load_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` pip packages where nothing loaded them yet
    (once per process).

    A torch-free deployment (``pip install onnxruntime-gpu[cuda,cudnn]``) has them only
    there, off the loader's path; with torch imported first they are loaded already and
    this does nothing. ORT's helper reports problems on stdout, which would corrupt
    ``predict --json``, so its messages go to stderr.
    """
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):  # onnxruntime-gpu < 1.21: the loader path only
        return
    # A library that fails to load is named again when the session is created.
    with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(OSError):
        ort.preload_dlls()


def make_session(
    path: Path | bytes, providers: list[str], threads: int | None = None, spin: bool = True
) -> Any:
    """An ORT session with all graph optimisations and, on CPU, a fixed thread count, of
    an ONNX file or of a serialised graph in memory.

    Args:
        spin: Let idle intra-op threads spin-wait for the next run (ORT's default; fastest
            for one model). Sessions timed round-robin must not: each one's spinning
            threads steal the cores of the next (measured 4x slower latencies).
    """
    import onnxruntime as ort

    if providers[0] == "CUDAExecutionProvider":
        load_cuda_libraries()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # warnings about unused initialisers are noise to users
    if threads:
        opts.intra_op_num_threads = threads
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        model = path if isinstance(path, bytes) else str(path)
        return ort.InferenceSession(model, sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise MooheadError(
            f"ONNX Runtime cannot load {_name(path)}: {str(exc).splitlines()[0]}; "
            "export the model again"
        ) from exc


def _name(model: Path | bytes) -> str:
    return "the in-memory graph" if isinstance(model, bytes) else str(model)
