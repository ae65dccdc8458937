"""``moohead bench``: PyTorch eager against each ONNX variant, per batch size and length.

Every measurement warms up, then times single runs until it has ``min_runs`` of them and
has spent ``min_seconds``, and reports p50/p95/p99 latency and throughput (sequences/s at
the median). On a GPU, ORT runs on the CUDA execution provider with IO binding (inputs
and outputs stay on the device, so no host copy is timed) and PyTorch is timed with CUDA
events. The thread count is fixed and recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from moohead.batching import dummy_inputs, input_names
from moohead.errors import MooheadError
from moohead.export.config import BenchConfig
from moohead.export.model_dir import read_manifest
from moohead.ort_session import make_session, providers_for

Feeds = dict[str, np.ndarray]


def time_runs(
    run: Callable[[], Any], cfg: BenchConfig, timer: Callable[[Callable[[], Any]], float]
) -> list[float]:
    """Milliseconds per run: ``warmup`` untimed, then at least ``min_runs`` and ``min_seconds``."""
    for _ in range(cfg.warmup):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < cfg.min_runs or time.perf_counter() - start < cfg.min_seconds:
        times.append(timer(run))
        if len(times) >= 10_000:
            break
    return times


def cpu_timer(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def summarize(times: list[float], batch: int) -> dict[str, float]:
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "runs": len(times),
        "throughput": batch / float(p50) * 1e3,
    }


def io_binding(session: Any, feeds: Feeds, device: str) -> Any:
    """Bind ``session``'s inputs, copied to ``device`` once, and its output on ``device``.

    A timed ``session.run_with_iobinding(binding)`` then copies nothing between host and
    device. ORT synchronises the device at the end of every run (the default run options),
    so wall-clock time around it covers the GPU work. ``device`` is ``cuda`` for the GPU
    benchmark; ``cpu`` binds the same way on any machine.
    """
    import onnxruntime as ort

    binding = session.io_binding()
    for i in session.get_inputs():
        binding.bind_ortvalue_input(
            i.name, ort.OrtValue.ortvalue_from_numpy(feeds[i.name], device, 0)
        )
    binding.bind_output(session.get_outputs()[0].name, device)
    return binding


class OrtRunner:
    """One ONNX variant on the chosen execution provider (IO-bound on CUDA)."""

    def __init__(self, path: Path, providers: list[str], threads: int | None) -> None:
        self.session = make_session(path, providers, threads)
        self.cuda = providers[0] == "CUDAExecutionProvider"
        self.names = [i.name for i in self.session.get_inputs()]
        self.binding: Any = None  # the last CUDA binding, whose outputs a caller may read

    def prepare(self, feeds: Feeds) -> Callable[[], Any]:
        if not self.cuda:
            inputs = {n: feeds[n] for n in self.names}
            return lambda: self.session.run(None, inputs)
        binding = self.binding = io_binding(self.session, feeds, "cuda")
        return lambda: self.session.run_with_iobinding(binding)


class TorchRunner:
    """The fused PyTorch model the export came from, run eagerly."""

    def __init__(self, model_dir: Path, doc: dict[str, Any], cuda: bool) -> None:
        import torch

        from moohead.pick import PickConfig, choose
        from moohead.rundir import RunDir
        from moohead.runhead import load_run_head

        source = doc.get("source") or {}
        run_dir = Path(source.get("run_dir", ""))
        front = RunDir(run_dir).read_front_refined()
        if source.get("id") is None:
            raise MooheadError(f"{model_dir}/moohead.json names no source head; export again")
        entry = choose(front, PickConfig(id=int(source["id"])))
        self.device = "cuda" if cuda else "cpu"
        self.model = load_run_head(run_dir, entry).model.to(self.device)
        self.torch = torch

    def prepare(self, feeds: Feeds) -> Callable[[], Any]:
        torch = self.torch
        args = [torch.from_numpy(feeds[n]).to(self.device) for n in self.model.input_names]

        def run() -> Any:
            with torch.inference_mode():
                return self.model(*args)

        return run

    def timer(self) -> Callable[[Callable[[], Any]], float]:
        if self.device == "cpu":
            return cpu_timer
        torch = self.torch

        def cuda_timer(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return float(start.elapsed_time(end))

        return cuda_timer

    def flops(self, feeds: Feeds) -> int:
        from moohead.measure import count_flops

        args = tuple(self.torch.from_numpy(feeds[n]) for n in self.model.input_names)
        return count_flops(self.model, args)


def bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Time every runner at every (batch size, length); return the report document."""
    cfg.validate()
    doc = read_manifest(cfg.model_dir)
    providers = providers_for(cfg.device)
    cuda = providers[0] == "CUDAExecutionProvider"
    threads = cfg.threads or (os.cpu_count() or 1)
    variants = list(cfg.variants or doc["variants"])
    unknown = [v for v in variants if v not in doc["variants"]]
    if unknown:
        raise MooheadError(
            f"{cfg.model_dir} has no {', '.join(unknown)} variant; it has {', '.join(doc['variants'])}"
        )
    notes: list[str] = []
    if not cuda and "fp16" in variants and cfg.variants is None:
        variants.remove("fp16")
        notes.append("fp16 skipped: it is a GPU variant and no GPU is in use")
    runners: dict[str, Any] = {}
    torch_runner: TorchRunner | None = None
    if cfg.torch:
        try:
            import torch

            torch.set_num_threads(threads)
            torch_runner = TorchRunner(cfg.model_dir, doc, cuda)
            runners["pytorch"] = torch_runner
        except MooheadError as exc:
            notes.append(f"PyTorch eager skipped: {exc}")
    for v in variants:
        runners[f"onnx-{v}"] = OrtRunner(
            cfg.model_dir / doc["variants"][v]["file"], providers, threads
        )
    vocab = int((doc.get("encoder") or {}).get("vocab_size", 1000))
    names = input_names(doc["inputs"], bool(doc.get("siamese")))
    rows: list[dict[str, Any]] = []
    max_length = int(doc["max_length"])
    for length in sorted({min(n, max_length) for n in cfg.seq_lens}):
        for batch in cfg.batch_sizes:
            feeds = dummy_inputs(names, batch, length, vocab)
            flops = torch_runner.flops(feeds) if torch_runner and not cuda else 0
            for name, runner in runners.items():
                timer = runner.timer() if isinstance(runner, TorchRunner) else cpu_timer
                stats = summarize(time_runs(runner.prepare(feeds), cfg, timer), batch)
                if flops:
                    stats["gflops_per_s"] = flops / (stats["p50_ms"] * 1e-3) / 1e9
                rows.append({"runtime": name, "batch": batch, "length": length, **stats})
                log(
                    f"  {name:<16} batch {batch:>3} length {length:>4}: p50 {stats['p50_ms']:8.2f} ms"
                )
    return {
        "model_dir": str(cfg.model_dir),
        "device": "cuda" if cuda else "cpu",
        "providers": providers,
        "threads": threads,
        "warmup": cfg.warmup,
        "min_runs": cfg.min_runs,
        "min_seconds": cfg.min_seconds,
        "notes": notes,
        "rows": rows,
    }
