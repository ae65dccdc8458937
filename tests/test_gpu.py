"""CUDA paths: run on a GPU machine (benchmarks/gpu_check.sh runs them); skipped elsewhere."""

import json
from pathlib import Path

import pytest
import torch

from moohead.config import SearchConfig
from moohead.data import load_split
from moohead.encoder import load_encoder
from moohead.features import CacheConfig, PrepareContext, cached_split
from moohead.fidelity import SearchData
from moohead.finetune import finetune_config, finetune_head
from moohead.fused import FusedModel, reference_inputs
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.measure import _timer, measure_latency
from moohead.search import run_search
from moohead.tasks import GLUE_TASKS
from moohead.tokens import tokenize_split
from moohead.train import TrainConfig

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_latency_uses_cuda_events(tiny_encoder_dir: Path) -> None:
    encoder, _, _ = load_encoder(str(tiny_encoder_dir))
    model = FusedModel(encoder, build_head(Genome(depth=2), 32, 2), True).cuda()
    inputs = reference_inputs(model, 1, 16, "cuda")
    assert _timer(inputs[0].device).__name__ == "cuda_time"
    assert measure_latency(model, inputs, runs=5) > 0


def test_cuda_feature_cache_matches_cpu(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    encoder, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    split = load_split(task, "validation", glue_dir)
    cpu = cached_split(
        PrepareContext(encoder, tok, info, task, CacheConfig(tmp_path / "cpu")), "v", split
    )
    gpu = cached_split(
        PrepareContext(
            encoder.cuda(), tok, info, task, CacheConfig(tmp_path / "gpu", device="cuda")
        ),
        "v",
        split,
    )
    a, _ = cpu.views["text"].gather(torch.arange(10).numpy(), [2])
    b, _ = gpu.views["text"].gather(torch.arange(10).numpy(), [2])
    torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


def test_finetune_on_cuda_with_mixed_precision(tiny_encoder_dir: Path, glue_dir: Path) -> None:
    encoder, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    splits = {
        s: tokenize_split(tok, task, load_split(task, s, glue_dir), 32, True)
        for s in ("train", "validation")
    }
    cfg = finetune_config(TrainConfig(batch_size=16, max_epochs=2, device="cuda"))
    assert cfg.amp in ("bf16", "fp16")
    data = SearchData(
        task, encoder.cuda(), info, splits["train"], splits["validation"], splits["validation"]
    )
    result = finetune_head(Genome(depth=2, pool="mean"), data, cfg, 0)
    assert next(result.encoder.parameters()).is_cuda and 0 <= result.metrics["score"] <= 1


@pytest.mark.parametrize("fidelity", ["frozen", "finetune"])
def test_search_on_cuda(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, fidelity: str
) -> None:
    cfg = SearchConfig(task="sst2", model=str(tiny_encoder_dir), data_dir=glue_dir, out=tmp_path / "run",
                       population=4, generations=2, max_train=None, cache_dir=tmp_path / "cache",
                       reference_length=16, max_epochs=2, latency_runs=5, device="cuda", fidelity=fidelity)  # fmt: skip
    doc = run_search(cfg)
    assert doc["device"] == "cuda" and doc["front"]
    assert all(e["latency_ms"] > 0 for e in doc["front"])


@pytest.mark.parametrize("fidelity", ["frozen", "finetune"])
def test_same_seed_same_results_on_cuda(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, fidelity: str
) -> None:
    def scores(name: str) -> list[float]:
        cfg = SearchConfig(task="sst2", model=str(tiny_encoder_dir), data_dir=glue_dir, out=tmp_path / name,
                           population=6, generations=2, max_train=None, cache_dir=tmp_path / f"cache-{name}",
                           reference_length=16, max_epochs=3, latency_runs=3, device="cuda",
                           objectives=("score", "flops"), fidelity=fidelity)  # fmt: skip
        run_search(cfg)
        archive = (cfg.out / "archive.jsonl").read_text().splitlines()
        return [json.loads(line)["score"] for line in archive]

    assert scores("a") == scores("b")
