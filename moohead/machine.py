"""Where latencies are measured: the machine, device and thread count a run times on.

Latency is a measurement of one machine. A run records its timing context in
``config.json``; a resume on another CPU, GPU, device, thread count or latency runtime
would mix two kinds of latencies in one front, so it refuses, naming the difference, unless it is told to
re-time every archived architecture (``--retime``).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def gpu_name(device: str) -> str | None:
    """The GPU's name when the run times on CUDA."""
    if device != "cuda":
        return None
    import torch

    return str(torch.cuda.get_device_name(torch.cuda.current_device()))


def timing_context(device: str, threads: int, runtime: str) -> dict[str, Any]:
    """What a latency depends on besides the model: device, CPU, GPU, thread count and the
    runtime that runs the model (ONNX Runtime or PyTorch eager)."""
    return {
        "device": device,
        "cpu": cpu_model(),
        "gpu": gpu_name(device),
        "threads": threads,
        "runtime": runtime,
    }


def check_timing(out: Path, stored: dict[str, Any] | None, current: dict[str, Any]) -> None:
    """Refuse to resume a run whose latencies were measured elsewhere, naming the difference.

    Raises:
        MooheadError: the stored timing context is missing or differs from ``current``.
    """
    advice = (
        "pass --retime to re-time every archived architecture here, or --force-new to start "
        "over (the old run is kept beside it)"
    )
    if stored is None:
        raise MooheadError(
            f"cannot resume {out}: it does not record the machine its latencies were "
            f"measured on; {advice}"
        )
    for key in current:
        if stored.get(key) != current[key]:
            raise MooheadError(
                f"cannot resume {out}: its latencies were measured with {key} "
                f"{stored.get(key)!r}, this machine has {current[key]!r}; {advice}"
            )
