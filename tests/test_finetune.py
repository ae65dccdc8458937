"""Fine-tune fidelity on the tiny encoder: the shared loop, the encoder is trained, runs and export."""

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from moohead.config import SearchConfig
from moohead.data import load_split
from moohead.encoder import load_encoder
from moohead.fidelity import SearchData
from moohead.finetune import finetune_config, finetune_head
from moohead.genome import Genome
from moohead.rundir import RunDir
from moohead.runhead import load_run_head
from moohead.search import run_search
from moohead.tasks import GLUE_TASKS
from moohead.tokens import TokenSplit, tokenize_split
from moohead.train import TrainConfig, _lr_lambda


@pytest.fixture()
def tokens(tiny_encoder_dir: Path, glue_dir: Path) -> tuple[object, object, dict[str, TokenSplit]]:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    splits = {
        s: tokenize_split(tok, task, load_split(task, s, glue_dir), 32, True)
        for s in ("train", "validation")
    }
    return model, info, splits


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    f = _lr_lambda(TrainConfig(warmup_ratio=0.1), total_steps=100)
    values = [f(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(values[9:]))
    assert values[-1] == pytest.approx(1 / 90)


@pytest.mark.parametrize("amp", [None, "bf16"])
def test_finetune_trains_the_encoder_and_leaves_the_original(tokens, amp: str | None) -> None:
    encoder, info, splits = tokens
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    cfg = replace(finetune_config(TrainConfig(batch_size=16, max_epochs=3, patience=3)), amp=amp)
    genome = Genome(depth=1, pool="mean", lr=3e-3)
    task = GLUE_TASKS["sst2"]
    data = SearchData(
        task, encoder, info, splits["train"], splits["validation"], splits["validation"]
    )
    a = finetune_head(genome, data, cfg, seed=1)
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in before.items())
    assert len(a.encoder.encoder.layer) == 1
    moved = [k for k, v in a.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert any("embeddings" in k for k in moved) and any("layer.0" in k for k in moved)
    assert 0.0 <= a.metrics["score"] <= 1.0 and a.epochs >= 1
    if amp is None:  # same seed, same result
        b = finetune_head(genome, data, cfg, seed=1)
        assert a.metrics == b.metrics


def test_a_regression_head_refined_from_its_saved_weights_starts_where_it_left_off(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    """Saved regression heads are in label units; training fits standardised targets. With
    nothing learnt (learning rates 0), fine-tuning from a saved head must give back exactly
    that head's outputs: the label scale is taken out before training and put back after."""
    from conftest import write_synthetic_task

    from moohead.finetune import predict_tokens, token_views
    from moohead.fused import FusedModel
    from moohead.heads import build_head

    encoder, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["stsb"]
    write_synthetic_task(tmp_path, "stsb", n_train=64, n_val=32, pair=True)
    split = {s: load_split(task, s, tmp_path) for s in ("train", "validation")}
    train = tokenize_split(
        tok, task, replace(split["train"], labels=split["train"].labels * 4), 32, True
    )
    val = tokenize_split(tok, task, split["validation"], 32, True)
    data = SearchData(task, encoder, info, train, val, val)
    genome = Genome(depth=1, pool="mean", mlp_layers=0, lr=0.0, weight_decay=0.0)
    torch.manual_seed(0)
    saved = build_head(genome, info.hidden_size, 1)
    with torch.no_grad():
        saved.mlp.classifier.bias.fill_(2.5)  # a head in label units (targets 0..4)
    cfg = replace(finetune_config(TrainConfig(batch_size=16, max_epochs=1)), lr_encoder=0.0)
    result = finetune_head(genome, data, cfg, seed=1, head_init=saved.state_dict())
    from moohead.encoder import truncate

    before = FusedModel(truncate(encoder, 1), saved.eval(), True).eval()
    after = FusedModel(result.encoder, result.head, True).eval()
    views = token_views(val, genome)
    expected = predict_tokens(before, views, cfg)
    assert torch.allclose(
        torch.from_numpy(predict_tokens(after, views, cfg)), torch.from_numpy(expected), atol=1e-5
    )
    assert abs(float(expected.mean())) > 1.0  # label units: the check would see a rescaling


@pytest.mark.slow
def test_finetune_search_saves_and_exports_the_trained_encoder(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    cfg = SearchConfig(
        task="rte",
        model=str(tiny_encoder_dir),
        data_dir=glue_dir,
        out=tmp_path / "run",
        population=4,
        generations=2,
        max_train=None,
        max_length=32,
        reference_length=16,
        max_epochs=2,
        latency_runs=3,
        objectives=("score", "flops"),
        fidelity="finetune",
    )
    doc = run_search(cfg)
    config = json.loads((cfg.out / "config.json").read_text())
    assert config["config"]["fidelity"] == "finetune" and config["cache_bytes"] == 0
    entry = doc["front"][0]
    state = torch.load(cfg.out / entry["weights"], weights_only=True)
    assert any(k.startswith("encoder.") for k in state)
    rh = load_run_head(cfg.out, entry)  # the fine-tuned encoder, not the original
    original, _, _ = load_encoder(str(tiny_encoder_dir))
    emb = "embeddings.word_embeddings.weight"
    assert not torch.equal(rh.model.encoder.state_dict()[emb], original.state_dict()[emb])
    assert RunDir(cfg.out).read_front()["front"][0]["validation"] == entry["validation"]

    from moohead.export.config import ExportConfig
    from moohead.export.pipeline import export_run

    manifest = export_run(
        ExportConfig(cfg.out, tmp_path / "model", id=entry["id"]), log=lambda s: None
    )
    fp32 = manifest["parity"][0]
    assert fp32["max_abs_diff"] <= 1e-4
    # The exported model scores what the search recorded on the official split.
    assert fp32["validation"] == pytest.approx(entry["validation"], abs=1e-6)


@pytest.mark.slow
def test_refine_fine_tunes_the_top_heads_and_export_uses_them(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from moohead.cli.main import main

    cfg = SearchConfig(
        task="sst2", model=str(tiny_encoder_dir), data_dir=glue_dir, out=tmp_path / "run",
        population=4, generations=2, max_train=None, cache_dir=tmp_path / "cache", max_length=24,
        reference_length=16, max_epochs=3, latency_runs=3, objectives=("score", "flops"),
    )  # fmt: skip
    front = run_search(cfg)
    before = {p.name: p.read_bytes() for p in (cfg.out / "heads").iterdir()}
    main(["refine", str(cfg.out), "--top", "2", "--max-epochs", "2", "--device", "cpu"])
    doc = json.loads((cfg.out / "refined.json").read_text())
    best = sorted(front["front"], key=lambda e: -e["score"])[:2]
    assert [e["id"] for e in doc["refined"]] == [e["id"] for e in best]
    assert doc["baseline"]["id"] == front["baseline"]["id"]
    for e in [*doc["refined"], doc["baseline"]]:
        assert (cfg.out / e["weights"]).is_file() and e["refined"] and e["latency_ms"] > 0
        assert "frozen_score" in e and "frozen_validation" in e
    assert {p.name: p.read_bytes() for p in (cfg.out / "heads").iterdir()} == before  # frozen kept

    # pick and export choose from the refined front alone, every score marked fine-tuned.
    assert json.loads((cfg.out / "front.json").read_text())["fidelity"] == "frozen"
    chosen = RunDir(cfg.out).read_front_refined()
    assert chosen["fidelity"] == "finetune" and chosen["refined"]
    assert {e["id"] for e in chosen["front"]} <= {e["id"] for e in doc["refined"]}
    assert all(e["refined"] and e["fidelity"] == "finetune" for e in chosen["front"])
    assert chosen["baseline"]["refined"] and chosen["baseline"]["fidelity"] == "finetune"
    frozen_only = [
        e["id"] for e in front["front"] if e["id"] not in {r["id"] for r in doc["refined"]}
    ]
    if frozen_only:  # a head that was not refined cannot be picked beside refined ones
        code = None
        try:
            main(["pick", str(cfg.out), "--id", str(frozen_only[0])])
        except SystemExit as exc:
            code = exc.code
        assert code == 2 and "is not on the front" in capsys.readouterr().err
    head_id = doc["front"][0]["id"]
    main(["pick", str(cfg.out), "--id", str(head_id)])
    pick = json.loads((cfg.out / "pick.json").read_text())
    assert pick["entry"]["refined"] and pick["entry"]["fidelity"] == "finetune"
    assert pick["entry"]["score"] == doc["front"][0]["score"]
    from moohead.export.config import ExportConfig
    from moohead.export.pipeline import export_run

    manifest = export_run(ExportConfig(cfg.out, tmp_path / "model"), log=lambda s: None)
    assert manifest["source"]["refined"] and manifest["source"]["id"] == head_id
    # The exported model is the refined one: it scores what refine recorded.
    assert manifest["parity"][0]["validation"] == pytest.approx(
        doc["front"][0]["validation"], abs=1e-6
    )
