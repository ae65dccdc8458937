"""Token states recomputed by the cut encoder (``--token-states recompute``): the numbers
the cache would hold, nothing but pooled vectors on disk, and the plan that chooses it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moohead.cache_plan import CachePlan, PlanRequest, plan_cache
from moohead.data import load_split
from moohead.encoder import cut_to, layer_list, load_encoder
from moohead.errors import MooheadError
from moohead.features import CacheConfig, PrepareContext, SplitFeatures, cached_split
from moohead.fidelity import SearchData
from moohead.frozen import predict, train_head
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.recompute import EncodedStore, LiveEncoder
from moohead.splits import search_splits
from moohead.tasks import GLUE_TASKS
from moohead.train import TrainConfig


def _prepare(
    encoder_dir: Path, glue: Path, cache: Path, task: str, live: bool
) -> dict[str, SplitFeatures]:
    model, tok, info = load_encoder(str(encoder_dir))
    ctx = PrepareContext(model, tok, info, GLUE_TASKS[task], CacheConfig(cache, 24, storage="fp16"))
    if live:
        ctx.recompute = LiveEncoder(model, tok.pad_token_id, "cpu", info.path)
    return {
        s: cached_split(ctx, s, load_split(GLUE_TASKS[task], s, glue))
        for s in ("train", "validation")
    }


def test_cut_to_runs_the_first_layers_and_puts_the_rest_back(tiny_encoder_dir: Path) -> None:
    model, tok, _ = load_encoder(str(tiny_encoder_dir))
    batch = tok(["good film", "a bad plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True).hidden_states
        with cut_to(model, 1) as cut:
            assert len(layer_list(cut)) == 1 and cut.config.num_hidden_layers == 1
            short = cut(**batch, output_hidden_states=True).hidden_states
    assert len(short) == 2 and torch.allclose(short[1], full[1], atol=1e-6)
    assert len(layer_list(model)) == 2 and model.config.num_hidden_layers == 2


def test_a_model_first_run_cut_still_gives_every_hidden_state_uncut(
    tiny_encoder_dir: Path,
) -> None:
    """transformers 5 records hidden states by hooks it installs on the layers a model has
    at its first forward: a fresh encoder (a Ray worker's) first run cut to 1 layer, then to
    2, must still give 3 hidden states, as one first run whole does."""
    model, tok, _ = load_encoder(str(tiny_encoder_dir))
    batch = tok(["good film", "a bad plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        for depth in (1, 2):
            with cut_to(model, depth) as cut:
                assert len(cut(**batch, output_hidden_states=True).hidden_states) == depth + 1
        assert len(model(**batch, output_hidden_states=True).hidden_states) == 3


@pytest.mark.parametrize("task", ["sst2", "rte"])
def test_recomputed_states_are_the_cached_ones_and_no_token_state_is_written(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, task: str
) -> None:
    cached = _prepare(tiny_encoder_dir, glue_dir, tmp_path / "cached", task, live=False)
    live = _prepare(tiny_encoder_dir, glue_dir, tmp_path / "live", task, live=True)
    assert list((tmp_path / "cached").rglob("tokens_*"))
    assert not list((tmp_path / "live").rglob("tokens_*"))  # pooled vectors only
    assert list((tmp_path / "live").rglob("pooled_*"))
    for view, store in live["train"].views.items():
        assert isinstance(store, EncodedStore) and store.has_tokens().all()
        idx = np.array([5, 0, 17, 3])
        for states in ([1], [2], [1, 2]):
            got, mask = store.gather(idx, states)
            want, want_mask = cached["train"].views[view].gather(idx, states)
            assert torch.equal(mask, want_mask)
            # the cache holds fp16 copies of the encoder's fp32 states
            assert torch.allclose(got, want, atol=2e-3, rtol=2e-3), (view, states)
        sub = store.subset(np.array([4, 2]))
        assert isinstance(sub, EncodedStore)
        assert torch.equal(sub.gather(np.array([1]), [2])[0], store.gather(np.array([2]), [2])[0])


def test_heads_train_on_recomputed_states_as_on_cached_ones(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    cached = _prepare(tiny_encoder_dir, glue_dir, tmp_path / "cached", "sst2", live=False)
    live = _prepare(tiny_encoder_dir, glue_dir, tmp_path / "live", "sst2", live=True)
    genome = Genome(depth=2, layers="mix", k=2, pool="attention", mixer="conv3", mlp_layers=1)
    cfg = TrainConfig(max_epochs=2, patience=2, batch_size=16)
    task = GLUE_TASKS["sst2"]
    _, _, info = load_encoder(str(tiny_encoder_dir))
    torch.manual_seed(0)
    head = build_head(genome, info.hidden_size, task.num_labels).eval()
    out = {k: predict(head, f["validation"], genome, cfg) for k, f in (("c", cached), ("l", live))}
    assert np.allclose(out["c"], out["l"], atol=1e-2)
    data = [SearchData(task, None, info, f["train"], f["validation"], f["validation"]) for f in (cached, live)]  # fmt: skip
    results = [train_head(genome, d, cfg, 0) for d in data]
    assert results[1].epochs == results[0].epochs
    assert abs(results[1].metrics["accuracy"] - results[0].metrics["accuracy"]) <= 0.05


def test_the_plan_recomputes_on_a_gpu_and_takes_a_subset_on_a_cpu(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    task = GLUE_TASKS["rte"]
    cut = search_splits(load_split(task, "train", glue_dir), False, None, 0.2, 0.1, 0).named()
    model, tok, info = load_encoder(str(tiny_encoder_dir))

    def plan(device: str, budget: int, mode: str = "auto") -> CachePlan:
        cfg = CacheConfig(tmp_path / "cache", 24, device=device)
        return plan_cache(
            PrepareContext(model, tok, info, task, cfg), cut, PlanRequest(budget, 0, mode)
        )

    full = plan("cpu", 1 << 40)
    assert full.token_states == "cache" and full.train_subset is None
    floor = full.pooled  # with the chunks' metadata
    tight = floor + full.scoring_tokens + full.train_tokens // 2
    assert plan("cpu", tight).token_states == "subset"
    gpu = plan("cuda", tight)
    assert gpu.token_states == "recompute" and gpu.scoring_tokens == gpu.train_tokens == 0
    assert gpu.describe()["added_bytes"] == full.pooled
    # Asked for: recompute fits where the token states of the scored splits would not.
    assert plan("cpu", floor, "recompute").token_states == "recompute"
    with pytest.raises(MooheadError, match="too small"):
        plan("cpu", floor)
    with pytest.raises(MooheadError, match="every token state"):
        plan("cpu", tight, "cache")
    assert plan("cuda", 1 << 40).token_states == "cache"  # everything fits: cached


@pytest.mark.slow
def test_evolve_with_recomputed_states_records_and_shows_it(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    run = tmp_path / "run"
    args = [
        "evolve", "--task", "rte", "--model", str(tiny_encoder_dir), "--data-dir", str(glue_dir),
        "--out", str(run), "--cache-dir", str(tmp_path / "cache"), "--population", "4",
        "--generations", "1", "--max-length", "24", "--max-epochs", "2",
        "--objectives", "score,flops", "--token-states", "recompute",
    ]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())
    assert config["cache"]["token_states"] == "recompute"
    assert config["identity"]["token_states"] == "recompute"
    assert not list((tmp_path / "cache").rglob("tokens_*"))
    code, out, _ = run_cli(["front", str(run)], capsys)
    assert code == 0 and "token states: recomputed by the cut encoder" in out
    # A resume that would cache token states instead is refused, naming the difference.
    code, _, err = run_cli([*args[:-2], "--token-states", "cache"], capsys)
    assert code == 2 and "token_states differs" in err and len(err.strip().splitlines()) == 1


def test_token_ids_are_the_tokenizers_across_slices(
    tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moohead import token_ids
    from moohead.token_ids import TokenIds

    _, tok, _ = load_encoder(str(tiny_encoder_dir))
    a = ["good film", "a bad plot", "dull", "the film was good", "bad"]
    b = ["bad", "good plot", "a film", "dull plot", "good film and plot"]
    monkeypatch.setattr(token_ids, "SLICE", 2)  # three slices, the last one short
    got = TokenIds.of(tok, [a, b], 24, True)
    enc = tok(a, b, truncation=True, max_length=24)
    ids, types = got.take(np.arange(5))
    assert [x.tolist() for x in ids] == enc["input_ids"]
    assert types is not None and [x.tolist() for x in types] == enc["token_type_ids"]
    assert got.lengths.tolist() == [len(x) for x in enc["input_ids"]]
    sub = got.subset(np.array([3, 1]))
    assert [x.tolist() for x in sub.take(np.array([0, 1]))[0]] == [
        enc["input_ids"][3],
        enc["input_ids"][1],
    ]
