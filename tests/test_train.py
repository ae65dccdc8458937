from pathlib import Path

import numpy as np
import pytest
import torch

from moohead.data import load_split
from moohead.encoder import EncoderInfo, load_encoder
from moohead.features import CacheConfig, PooledStore, PrepareContext, SplitFeatures, cached_split
from moohead.fidelity import SearchData
from moohead.frozen import head_inputs, inputs_for, predict, read_states, run_head, train_head
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.metrics import compute_metrics
from moohead.tasks import GLUE_TASKS, Task
from moohead.train import TrainConfig


@pytest.fixture()
def features(tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path) -> dict[str, SplitFeatures]:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    cfg = CacheConfig(tmp_path / "cache")
    return {
        s: cached_split(
            PrepareContext(model, tok, info, task, cfg), s, load_split(task, s, glue_dir)
        )
        for s in ("train", "validation")
    }


def _data(
    task: Task, train: SplitFeatures, val: SplitFeatures, stop: SplitFeatures | None = None
) -> SearchData:
    info = EncoderInfo(
        "tiny", "tiny", num_layers=2, hidden_size=32, uses_token_type_ids=True, fingerprint="0"
    )
    return SearchData(task, None, info, train, val if stop is None else stop, val)


@pytest.mark.parametrize(
    "genome",
    [
        Genome(depth=2, layers="mix", k=2, pool="mean", mlp_layers=1),
        Genome(depth=2, layers="concat", k=2, pool="cls"),
        Genome(depth=1, pool="mean", mlp_layers=2, width=0.5),
        Genome(depth=2, layers="concat", k=2, pool="max", normalize=True),
        Genome(depth=2, layers="mix", k=2, pool="cls+mean", mlp_layers=1),
    ],
)
def test_pooled_fast_path_computes_the_same_head(
    features: dict[str, SplitFeatures], genome: Genome
) -> None:
    """Heads with no mixer that pool cls, mean, cls+mean (or max of unmixed layers) train
    on pre-pooled layers: same outputs, no token state read."""
    val = features["validation"]
    stores = inputs_for(val, genome)
    assert all(isinstance(s, PooledStore) for s in stores)
    torch.manual_seed(0)
    head = build_head(genome, 32, 2).eval()
    idx = np.arange(len(val))
    with torch.no_grad():
        fast = run_head(head, stores, genome, idx, "cpu")
        tokens = head(*head_inputs([val.views["text"]], genome, idx, "cpu"))
    torch.testing.assert_close(fast, tokens, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(predict(head, val, genome, TrainConfig()), tokens.numpy(), atol=1e-5)


def test_token_heads_read_tokens(features: dict[str, SplitFeatures]) -> None:
    for g in (
        Genome(depth=2, layers="mix", k=2, pool="max"),
        Genome(depth=2, pool="attention"),
        Genome(depth=2, pool="mean", mixer="conv3"),
    ):
        assert not isinstance(inputs_for(features["train"], g)[0], PooledStore)
    assert read_states(Genome(depth=4, layers="mix", k=3)) == [2, 3, 4]


def test_training_learns_and_is_deterministic(features: dict[str, SplitFeatures]) -> None:
    genome = Genome(depth=1, pool="attention", mlp_layers=1, lr=3e-3)
    task = GLUE_TASKS["sst2"]
    cfg = TrainConfig(max_epochs=15, patience=15)
    data = _data(task, features["train"], features["validation"])
    a = train_head(genome, data, cfg, seed=5)
    b = train_head(genome, data, cfg, seed=5)
    assert a.metrics == b.metrics
    assert a.metrics["accuracy"] > 0.75  # the cue word decides the label
    for x, y in zip(a.head.state_dict().values(), b.head.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)


def test_regression_outputs_are_in_label_units(features: dict[str, SplitFeatures]) -> None:
    """Targets are standardised for training; the head still predicts on the labels' scale."""
    task = Task("strength", ("sentence",), 1, ("pearson",))
    scaled = {
        k: SplitFeatures(f.views, (f.labels * 4 + 1).astype(np.float32))
        for k, f in features.items()
    }
    genome = Genome(depth=1, pool="attention", mlp_layers=1, lr=3e-3)
    cfg = TrainConfig(max_epochs=15, patience=15)
    result = train_head(genome, _data(task, scaled["train"], scaled["validation"]), cfg, seed=0)
    outputs = predict(result.head, scaled["validation"], genome, cfg).ravel()
    assert result.metrics["pearson"] > 0.6
    assert abs(outputs.mean() - scaled["validation"].labels.mean()) < 0.5
    assert outputs.std() > 1.0  # labels are 1 or 5: predictions spread on that scale


def test_fitness_is_measured_once_on_other_data_than_early_stopping(
    features: dict[str, SplitFeatures],
) -> None:
    """Early stopping reads search-stop; the fitness is the restored head's score on
    search-val, not the best of many epochs on the stopping data."""
    task = GLUE_TASKS["sst2"]
    train, val = features["train"], features["validation"]
    flipped = SplitFeatures(train.views, 1 - train.labels)  # stopping data that disagrees
    genome = Genome(depth=1, pool="attention", mlp_layers=1, lr=3e-3)
    cfg = TrainConfig(max_epochs=6, patience=2)
    stopped = train_head(genome, _data(task, train, val, stop=flipped), cfg, seed=1)
    plain = train_head(genome, _data(task, train, val, stop=val), cfg, seed=1)
    outputs = predict(stopped.head, val, genome, cfg)
    assert stopped.metrics == compute_metrics(task, outputs, val.labels)
    # the flipped stopping data keeps the first epoch's (least trained) head
    assert stopped.epochs == 1 + cfg.patience
    assert stopped.metrics["score"] < plain.metrics["score"]
