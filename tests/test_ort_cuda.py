"""ONNX Runtime on a GPU: the fp16 variant, the CUDA execution provider with IO binding in
``bench``, and serving on CUDA. Skipped unless onnxruntime-gpu sees a GPU; the CPU half of
each path is covered in test_export.py. ``benchmarks/gpu_export_check.sh`` runs these on the
lent GPU."""

from pathlib import Path

import numpy as np
import pytest
from conftest import finished_search
from moohead.export.bench import OrtRunner, bench
from moohead.export.config import BenchConfig, ExportConfig
from moohead.export.pipeline import export_run
from moohead.export.runtime import OnnxClassifier, cuda_available, make_session

from moohead.batching import dummy_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA GPU"),
]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ort-cuda")
    run = finished_search(root)
    out = root / "model"
    # The fp16 variant's gate runs on the CUDA provider here (the near-chance tiny encoder
    # may flip a few of 64 answers, as in test_export).
    export_run(ExportConfig(run, out, optimize=True, fp16=True, max_metric_drop=0.2), log=print)
    return out


@pytest.mark.parametrize("variant", ["model.onnx", "model_fp16.onnx"])
def test_cuda_io_binding_matches_cpu(model_dir: Path, variant: str) -> None:
    runner = OrtRunner(model_dir / variant, CUDA, threads=None)
    assert runner.session.get_providers()[0] == "CUDAExecutionProvider"
    feeds = dummy_inputs(runner.names, batch=4, length=16, vocab=50)
    run = runner.prepare(feeds)
    run()
    run()  # the binding is reused by the timed loop
    got = runner.binding.copy_outputs_to_cpu()[0]
    cpu = make_session(model_dir / "model.onnx", ["CPUExecutionProvider"]).run(None, feeds)[0]
    # CUDA may use TF32 for fp32 products; fp16 rounds more: labels must agree.
    np.testing.assert_allclose(got, cpu, atol=2e-2 if "fp16" in variant else 2e-3)
    assert (got.argmax(-1) == cpu.argmax(-1)).all()


def test_bench_on_cuda_times_every_runtime(model_dir: Path) -> None:
    cfg = BenchConfig(model_dir, batch_sizes=(1, 4), seq_lens=(8, 16), device="cuda",
                      warmup=2, min_runs=5, min_seconds=0.1)  # fmt: skip
    report = bench(cfg, log=print)
    assert report["device"] == "cuda" and report["providers"][0] == "CUDAExecutionProvider"
    runtimes = {r["runtime"] for r in report["rows"]}
    assert runtimes == {"pytorch", "onnx-fp32", "onnx-optimized", "onnx-fp16"}
    assert all(r["p50_ms"] > 0 for r in report["rows"])


def test_serving_on_cuda_prefers_fp16_and_matches_cpu(model_dir: Path) -> None:
    texts = ["a gripping, funny film", "a dull and tired mess", "fine"]
    gpu = OnnxClassifier.load(model_dir, device="cuda")
    cpu = OnnxClassifier.load(model_dir, device="cpu")
    assert gpu.variant == "fp16" and cpu.variant == "optimized"
    a, b = gpu.predict(texts), cpu.predict(texts)
    assert [p.label for p in a] == [p.label for p in b]
    assert max(abs(p.score - q.score) for p, q in zip(a, b, strict=True)) < 2e-2
