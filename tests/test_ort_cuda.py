"""ONNX Runtime on a GPU: the fp16 variant, the CUDA execution provider with IO binding in
``bench``, and serving on CUDA. Skipped unless onnxruntime-gpu sees a GPU; the CPU half of
each path is covered in test_export.py. ``benchmarks/gpu_export_check.sh`` runs these on the
lent GPU."""

from pathlib import Path

import numpy as np
import pytest
from conftest import GATE_EXAMPLES, NO_QUALITY_GATE, finished_search, gate_run

from moohead.batching import dummy_inputs
from moohead.export.bench import OrtRunner, bench
from moohead.export.config import BenchConfig, ExportConfig
from moohead.export.pipeline import export_run
from moohead.export.runtime import OnnxClassifier
from moohead.export.validate import ParityError
from moohead.ort_session import cuda_available, make_session, providers_for

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs onnxruntime-gpu and a CUDA GPU"),
]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return finished_search(tmp_path_factory.mktemp("ort-cuda"))


@pytest.fixture(scope="module")
def model_dir(run_dir: Path) -> Path:
    out = run_dir.parent / "model"
    # A model to run on CUDA, not a test of the metric gate: the near-chance tiny encoder may
    # flip a few of 64 answers in fp16. The gate on CUDA is tested at its default below.
    cfg = ExportConfig(run_dir, out, optimize=True, fp16=True, **NO_QUALITY_GATE)
    export_run(cfg, log=print)
    return out


@pytest.mark.parametrize(("positives", "passes"), [(201, True), (204, False)])
def test_fp16_gate_on_cuda_at_the_default_threshold(
    run_dir: Path, tmp_path: Path, positives: int, passes: bool
) -> None:
    """A hand-set head whose fp16 graph flips every answer (conftest.gate_run): losing 0.5
    points passes the default 1-point gate, losing 2 points is refused, on the CUDA provider."""
    assert providers_for("auto")[0] == "CUDAExecutionProvider"  # what export_run gates fp16 on
    run, head, data = gate_run(run_dir, tmp_path, "fp16", positives)
    # Every label flips: the metric bound alone is tested here (agreement: test_export.py).
    cfg = ExportConfig(
        run, tmp_path / "model", id=head, fp16=True, data_dir=data, min_label_agreement=0.0
    )
    if passes:
        doc = export_run(cfg, log=print)
        fp16 = next(g for g in doc["parity"] if g["variant"] == "fp16")
        assert fp16["metric_drop"] == pytest.approx(0.005)
        assert fp16["validation_predictions_differ"] == GATE_EXAMPLES
    else:
        with pytest.raises(ParityError, match=r"^the fp16 ONNX model fails the parity gate: "):
            export_run(cfg, log=print)
        assert not (tmp_path / "model").exists()


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
