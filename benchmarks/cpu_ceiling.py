"""CPU ceiling: the largest speed-up over PyTorch eager that any ORT graph can reach here.

The export targets (ORT optimised 2x, int8 3x faster than PyTorch eager at batch 1 and
128 tokens) are checked against what this CPU can do at all. Every matrix product the
6-layer MiniLM encoder runs at that shape is timed alone, as a one-node ONNX Runtime
graph: per layer, Q, K and V as the one 384x1152 product ORT's fused attention runs, the
attention output (384x384), the FFN (384x1536, 1536x384), all on 128 rows, and the
per-head attention products QK^T and PV. The Linear products are timed in fp32 and after
the dynamic int8 quantisation the export uses; the attention products stay fp32 in ORT's
quantised attention, so they count at their fp32 time in both. The fixed cost of a
bare ``session.run`` is measured and taken off each.

Their sum over the layers is time every graph of this model needs, however it is fused:
a runtime that made softmax, LayerNorm, GELU, embeddings and all per-op overhead free
would still need it. ``ceiling = eager time / that sum`` therefore bounds the speed-up,
and ``rest_budget_ms`` says how much time a target leaves for all the other work.
The 2048x2048 products (PyTorch fp32, ORT fp32, ORT int8) give the machine's peak rates.
Everything runs in one process on every core.

    python benchmarks/cpu_ceiling.py [--min-seconds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from common import write_result
from onnx import TensorProto, helper, numpy_helper

from moohead.batching import dummy_inputs
from moohead.encoder import load_encoder
from moohead.export.bench import cpu_timer, time_runs
from moohead.export.config import BenchConfig
from moohead.export.model_dir import read_manifest
from moohead.export.optimize import quantize_int8
from moohead.ort_session import make_session

TOKENS = 128  # batch 1 at length 128: the shape the targets are set at
OPSET = [helper.make_opsetid("", 17)]
TARGETS = {"ort-fp32": 2.0, "ort-int8": 3.0}


def median_ms(fn: Callable[[], Any], min_seconds: float) -> float:
    """Median wall time of ``fn`` in milliseconds, timed as ``moohead bench`` times: 5
    untimed runs, then at least 20 runs and ``min_seconds``."""
    cfg = BenchConfig(Path(), warmup=5, min_runs=20, min_seconds=min_seconds)
    return float(np.median(time_runs(fn, cfg, cpu_timer)))


def save(graph: onnx.GraphProto, path: Path, opsets: list[Any] = OPSET) -> None:
    onnx.save(helper.make_model(graph, opset_imports=opsets, ir_version=9), str(path))


def value(name: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def linear_graph(path: Path, m: int, k: int, n: int) -> None:
    """``Y = X @ W + b`` with constant ``W`` and ``b``, as the exporter writes a Linear."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((k, n)) * 0.05).astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(n, dtype=np.float32), "b")
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"]),
        helper.make_node("Add", ["XW", "b"], ["Y"]),
    ]
    save(
        helper.make_graph(nodes, "linear", [value("X", [m, k])], [value("Y", [m, n])], [w, b]), path
    )


def scores_graph(path: Path, heads: int, m: int, k: int, n: int) -> None:
    """``Y = X @ Z`` per head with both sides computed: attention's QK^T and PV."""
    inputs = [value("X", [heads, m, k]), value("Z", [heads, k, n])]
    nodes = [helper.make_node("MatMul", ["X", "Z"], ["Y"])]
    save(helper.make_graph(nodes, "scores", inputs, [value("Y", [heads, m, n])]), path)


def ort_ms(path: Path, shapes: list[list[int]], threads: int, min_seconds: float) -> float:
    session = make_session(path, ["CPUExecutionProvider"], threads)
    rng = np.random.default_rng(1)
    feeds = {
        i.name: rng.standard_normal(sh).astype(np.float32)
        for i, sh in zip(session.get_inputs(), shapes, strict=True)
    }
    return median_ms(lambda: session.run(None, feeds), min_seconds)


def call_ms(work: Path, threads: int, min_seconds: float) -> float:
    """The fixed cost of a ``session.run`` call, from a one-element Identity graph."""
    path = work / "call.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["X"], ["Y"])], "call", [value("X", [1])], [value("Y", [1])]
    )
    save(graph, path)
    return ort_ms(path, [[1]], threads, min_seconds)


def product(
    heads: int, m: int, k: int, n: int, work: Path, threads: int, min_seconds: float, call: float
) -> dict[str, Any]:
    """One product's median time in each runtime, and the rate it reaches.

    ``heads == 0`` is a Linear (constant weights, which int8 quantises); otherwise a
    per-head product of two computed tensors, which ORT's quantised attention runs in fp32.
    ``call``, the fixed cost of a run call, is not the product's and is taken off, so that
    the sum over the encoder stays a lower bound on any graph's time.
    """
    name = f"mm{heads}x{m}x{k}x{n}"
    fp32 = work / f"{name}.onnx"
    shapes = [[heads, m, k], [heads, k, n]] if heads else [[m, k]]
    if heads:
        scores_graph(fp32, heads, m, k, n)
        x, z = torch.randn(heads, m, k), torch.randn(heads, k, n)
        with torch.inference_mode():
            eager = median_ms(lambda: torch.bmm(x, z), min_seconds)
    else:
        linear_graph(fp32, m, k, n)
        x, w, b = torch.randn(m, k), torch.randn(k, n), torch.zeros(n)
        with torch.inference_mode():
            eager = median_ms(lambda: torch.addmm(b, x, w), min_seconds)
    ort32 = ort_ms(fp32, shapes, threads, min_seconds) - call
    ort8 = ort32
    if not heads:
        int8 = work / f"{name}.int8.onnx"
        quantize_int8(fp32, int8)
        ort8 = ort_ms(int8, shapes, threads, min_seconds) - call
    times = {"pytorch": eager, "ort-fp32": ort32, "ort-int8": ort8}
    flops = 2 * max(heads, 1) * m * k * n
    return {
        "shape": [heads, m, k, n] if heads else [m, k, n],
        "ort_call_ms": round(call, 4),
        "ms": {r: round(t, 4) for r, t in times.items()},
        "gflops_per_s": {r: round(flops / (t * 1e-3) / 1e9, 1) for r, t in times.items()},
    }


def eager_ms(model: Any, min_seconds: float) -> float:
    """PyTorch eager's median time for the whole encoder at batch 1 and ``TOKENS`` tokens."""
    ids = torch.randint(5, model.config.vocab_size, (1, TOKENS))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        return median_ms(lambda: model(input_ids=ids, attention_mask=mask), min_seconds)


def layer_norm(
    rows: int, width: int, work: Path, threads: int, min_seconds: float, call: float
) -> dict[str, Any]:
    """Residual add plus LayerNorm of one ``rows x width`` activation: PyTorch against ORT's
    fused SkipLayerNormalization, which the optimised graphs use after every sub-layer."""
    path = work / "skip_layer_norm.onnx"
    shape = [1, rows, width]
    gamma = numpy_helper.from_array(np.ones(width, dtype=np.float32), "g")
    beta = numpy_helper.from_array(np.zeros(width, dtype=np.float32), "b")
    node = helper.make_node(
        "SkipLayerNormalization", ["X", "R", "g", "b"], ["Y"], domain="com.microsoft", epsilon=1e-12
    )
    graph = helper.make_graph(
        [node], "sln", [value("X", shape), value("R", shape)], [value("Y", shape)], [gamma, beta]
    )
    save(graph, path, [*OPSET, helper.make_opsetid("com.microsoft", 1)])
    x, r = torch.randn(*shape), torch.randn(*shape)
    norm = torch.nn.LayerNorm(width)
    with torch.inference_mode():
        eager = median_ms(lambda: norm(x + r), min_seconds)
    return {
        "shape": shape,
        "pytorch_ms": round(eager, 4),
        "ort_ms": round(ort_ms(path, [shape, shape], threads, min_seconds) - call, 4),
    }


def op_profile(path: Path, threads: int, runs: int = 50) -> dict[str, float]:
    """Milliseconds per run spent in each operator type of an exported model at batch 1
    and ``TOKENS`` tokens, from ONNX Runtime's own profiler."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.parent / "ceiling-profile")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = dummy_inputs([i.name for i in session.get_inputs()], 1, TOKENS, 30000)
    for _ in range(runs):
        session.run(None, feeds)
    trace = Path(session.end_profiling())
    per_op: dict[str, float] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            per_op[op] = per_op.get(op, 0.0) + event["dur"] / 1e3 / runs
    trace.unlink()
    return {op: round(ms, 3) for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument(
        "--profile",
        type=Path,
        help="an exported MODEL_DIR of a 6-layer head: also break its variants' time down by "
        "operator",
    )
    args = p.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="moohead-ceiling-"))

    model = load_encoder(None)[0]
    eager_first = eager_ms(model, args.min_seconds)
    cfg = model.config
    h, f, layers = int(cfg.hidden_size), int(cfg.intermediate_size), int(cfg.num_hidden_layers)
    nh = int(cfg.num_attention_heads)
    # One layer's products as (heads, m, k, n), 0 heads for a Linear: the fused QKV, the
    # attention output and the FFN's two; then QK^T and PV for every head.
    shapes = [
        (0, TOKENS, h, 3 * h),
        (0, TOKENS, h, h),
        (0, TOKENS, h, f),
        (0, TOKENS, f, h),
        (nh, TOKENS, h // nh, TOKENS),
        (nh, TOKENS, TOKENS, h // nh),
    ]
    call = call_ms(work, threads, args.min_seconds)
    products = []
    products_ms = dict.fromkeys(("pytorch", "ort-fp32", "ort-int8"), 0.0)
    for shape in shapes:
        row = product(*shape, work, threads, args.min_seconds, call)
        products.append(row)
        for r in products_ms:
            products_ms[r] += layers * row["ms"][r]
        print(f"{row['shape']}: {row['ms']} ms, {row['gflops_per_s']} GFLOP/s")
    peak = product(0, 2048, 2048, 2048, work, threads, args.min_seconds, call)
    print(f"2048^3: {peak['gflops_per_s']} GFLOP/s")
    eager_last = eager_ms(model, args.min_seconds)
    # Eager is timed before and after the products; the slower of the two gives the more
    # generous ceiling, so a target called unreachable is unreachable either way.
    eager = max(eager_first, eager_last)
    ceiling = {r: round(eager / products_ms[r], 2) for r in ("ort-fp32", "ort-int8")}
    result = {
        "threads": threads,
        "tokens": TOKENS,
        "layers": layers,
        "pytorch_eager_encoder_ms": [round(eager_first, 3), round(eager_last, 3)],
        "products_ms": {r: round(t, 3) for r, t in products_ms.items()},
        # What a target leaves for everything else (softmax, LayerNorm, GELU, embeddings,
        # activation quantisation, per-op overhead) once the products are done.
        "rest_budget_ms": {
            r: round(eager / TARGETS[r] - products_ms[r], 3) for r in ("ort-fp32", "ort-int8")
        },
        "ceiling_vs_eager": ceiling,
        "targets_vs_eager": TARGETS,
        "target_reachable": {r: ceiling[r] >= TARGETS[r] for r in ceiling},
        "products": products,
        "peak_2048": peak,
        "skip_layer_norm": layer_norm(TOKENS, h, work, threads, args.min_seconds, call),
    }
    if args.profile:
        doc = read_manifest(args.profile)
        result["profile"] = {
            "model_dir": args.profile.name,
            "head": doc.get("summary"),
            "ms_by_op": {
                v: op_profile(args.profile / doc["variants"][v]["file"], threads)
                for v in doc["variants"]
                if v != "fp16"
            },
        }
    write_result("cpu_ceiling", result)


if __name__ == "__main__":
    main()
