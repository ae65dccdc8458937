from pathlib import Path

import numpy as np
import torch

from moohead.data import Split
from moohead.encoder import load_encoder
from moohead.features import CacheConfig, PrepareContext, cached_split
from moohead.tasks import GLUE_TASKS


def _split(texts: list[str], texts_b: list[str] | None = None) -> Split:
    cols = (texts,) if texts_b is None else (texts, texts_b)
    return Split(cols, np.arange(len(texts)) % 2)


def test_cache_holds_every_layer_of_every_token_unpadded(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    texts = [
        "the movie was very good",
        "bad",
        "a film and a plot",
        "it is not dull and it was great",
    ]
    cfg = CacheConfig(tmp_path, max_length=6, batch_size=3)
    feats = cached_split(
        PrepareContext(model, tok, info, GLUE_TASKS["sst2"], cfg), "train", _split(texts)
    )
    store = feats.views["text"]
    assert store.num_states == 3 and store.lengths.tolist() == [
        6,
        3,
        6,
        6,
    ]  # truncated at max_length
    # Ragged: no padding stored.
    assert (store.path / "state_00.f16").stat().st_size == store.lengths.sum() * 32 * 2
    with torch.no_grad():
        for i, text in enumerate(texts):
            x = tok(text, truncation=True, max_length=6, return_tensors="pt")
            ref = model(**x, output_hidden_states=True).hidden_states
            states, mask = store.gather(np.array([i]), [0, 1, 2])
            for s in range(3):
                torch.testing.assert_close(states[s, 0], ref[s][0], atol=2e-3, rtol=2e-3)  # fp16
    # A batch with different lengths is padded and masked.
    states, mask = store.gather(np.array([1, 0]), [2])
    assert states.shape == (1, 2, 6, 32) and mask.sum(1).tolist() == [3, 6]
    assert torch.all(states[0, 0, 3:] == 0)


def test_cache_is_reused_and_keyed_by_content_and_length(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    task = GLUE_TASKS["sst2"]
    cfg = CacheConfig(tmp_path, max_length=16)
    first = cached_split(
        PrepareContext(model, tok, info, task, cfg), "train", _split(["good", "bad"])
    )
    calls: list[str] = []

    def progress(desc: str, total: int):  # type: ignore[no-untyped-def]
        calls.append(desc)
        return lambda n: None

    again = cached_split(
        PrepareContext(model, tok, info, task, cfg, progress), "train", _split(["good", "bad"])
    )
    assert again.views["text"].path == first.views["text"].path and calls == []
    other = cached_split(
        PrepareContext(model, tok, info, task, cfg, progress), "train", _split(["good", "dull"])
    )
    shorter = cached_split(
        PrepareContext(model, tok, info, task, CacheConfig(tmp_path, max_length=8), progress),
        "train",
        _split(["good", "bad"]),
    )
    assert (
        len({first.views["text"].path, other.views["text"].path, shorter.views["text"].path}) == 3
    )
    assert calls == ["train/text", "train/text"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_pair_tasks_cache_joint_and_each_side(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    model, tok, info = load_encoder(str(tiny_encoder_dir))
    feats = cached_split(
        PrepareContext(model, tok, info, GLUE_TASKS["rte"], CacheConfig(tmp_path)),
        "train",
        _split(["good film", "bad"], ["the plot", "dull"]),
    )
    assert set(feats.views) == {"joint", "a", "b"}
    j, a, b = (feats.views[v].lengths.tolist() for v in ("joint", "a", "b"))
    assert j == [x + y - 1 for x, y in zip(a, b, strict=True)]  # [CLS] a [SEP] b [SEP]
