import errno
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from moohead.data import Split, load_split
from moohead.encoder import load_encoder
from moohead.errors import MooheadError
from moohead.features import CacheConfig, PrepareContext, cached_split, read_views
from moohead.genome import Genome
from moohead.splits import search_splits
from moohead.tasks import GLUE_TASKS, Task


def _split(texts: list[str], texts_b: list[str] | None = None) -> Split:
    cols = (texts,) if texts_b is None else (texts, texts_b)
    return Split(cols, np.arange(len(texts)) % 2)


class Counter:
    """Progress callback that counts the views encoded and the rows encoded."""

    def __init__(self) -> None:
        self.views: list[str] = []
        self.rows = 0

    def __call__(self, desc: str, total: int) -> Callable[[int], None]:
        self.views.append(desc)

        def tick(n: int) -> None:
            self.rows += n

        return tick


def _ctx(encoder_dir: Path, task: Task, cfg: CacheConfig, counter: Counter | None = None):
    model, tok, info = load_encoder(str(encoder_dir))
    return PrepareContext(model, tok, info, task, cfg, counter)


def _chunks(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("c0*") if p.is_dir())


def test_cache_holds_readable_layers_of_every_token_unpadded(
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
    # The embeddings (state 0) are never read by a genome (k <= depth): not stored.
    assert store.states == (1, 2) and store.lengths.tolist() == [6, 3, 6, 6]  # truncated
    files = {p.name for c in _chunks(tmp_path) for p in c.iterdir()}
    assert "tokens_01.f16" in files and not any(f.startswith("tokens_00") for f in files)
    (chunk,) = _chunks(tmp_path)
    assert (chunk / "tokens_01.f16").stat().st_size == store.lengths.sum() * 32 * 2  # ragged
    with torch.no_grad():
        for i, text in enumerate(texts):
            x = tok(text, truncation=True, max_length=6, return_tensors="pt")
            ref = model(**x, output_hidden_states=True).hidden_states
            states, mask = store.gather(np.array([i]), [1, 2])
            for j, s in enumerate((1, 2)):
                torch.testing.assert_close(states[j, 0], ref[s][0], atol=2e-3, rtol=2e-3)  # fp16
                tokens = states[j, 0]
                torch.testing.assert_close(torch.from_numpy(store.pooled(s, "cls")[i]), tokens[0])
                torch.testing.assert_close(
                    torch.from_numpy(store.pooled(s, "mean")[i]), tokens.mean(0)
                )
                assert torch.equal(torch.from_numpy(store.pooled(s, "max")[i]), tokens.amax(0))
    # A batch with different lengths is padded and masked.
    states, mask = store.gather(np.array([1, 0]), [2])
    assert states.shape == (1, 2, 6, 32) and mask.sum(1).tolist() == [3, 6]
    assert torch.all(states[0, 0, 3:] == 0)


def test_cache_is_reused_and_keyed_by_source_content_and_length(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    task = GLUE_TASKS["sst2"]
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path, max_length=16), counter)
    first = cached_split(ctx, "train", _split(["good", "bad"]))
    assert counter.rows == 2
    again = cached_split(ctx, "train", _split(["good", "bad"]))
    assert again.views["text"].root == first.views["text"].root and counter.rows == 2
    other = cached_split(ctx, "train", _split(["good", "dull"]))
    short = _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path, max_length=8), counter)
    shorter = cached_split(short, "train", _split(["good", "bad"]))
    roots = {f.views["text"].root for f in (first, other, shorter)}
    assert len(roots) == 3 and counter.rows == 6
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary leftovers


def test_search_splits_of_any_seed_and_size_share_one_cache(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    """The cache is per source split: a larger --max-train encodes only the rows it adds,
    another seed encodes nothing."""
    task = GLUE_TASKS["sst2"]
    train = load_split(task, "train", glue_dir)
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path / "cache"), counter)

    def prepare(max_train: int, seed: int) -> dict[str, object]:
        cut = search_splits(train, False, max_train, 0.2, 0.1, seed)
        return {name: cached_split(ctx, name, split) for name, split in cut.named().items()}

    feats = prepare(100, seed=0)
    assert counter.rows == 100
    prepare(100, seed=1)
    assert counter.rows == 100  # another seed: the same rows, nothing encoded
    prepare(150, seed=2)
    assert counter.rows == 150  # only the 50 rows the larger sample adds
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one source cache
    # A search split reads its own rows: the same features as encoding it on its own.
    cut = search_splits(train, False, 100, 0.2, 0.1, 0)
    val = feats["search-val"]
    alone = cached_split(
        _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path / "alone")),
        "v",
        Split(cut.val.texts, cut.val.labels),
    )
    idx = np.arange(len(val))  # type: ignore[arg-type]
    a, _ = val.views["text"].gather(idx, [2])  # type: ignore[attr-defined]
    b, _ = alone.views["text"].gather(idx, [2])
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_pair_tasks_cache_joint_and_each_side_only_when_asked(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    data = _split(["good film", "bad"], ["the plot", "dull"])
    feats = cached_split(
        _ctx(tiny_encoder_dir, GLUE_TASKS["rte"], CacheConfig(tmp_path)), "train", data
    )
    assert set(feats.views) == {"joint", "a", "b"}
    j, a, b = (feats.views[v].lengths.tolist() for v in ("joint", "a", "b"))
    assert j == [x + y - 1 for x, y in zip(a, b, strict=True)]  # [CLS] a [SEP] b [SEP]
    counter = Counter()
    cfg = CacheConfig(tmp_path / "joint", siamese=False)
    joint = cached_split(_ctx(tiny_encoder_dir, GLUE_TASKS["rte"], cfg, counter), "train", data)
    assert set(joint.views) == {"joint"} and counter.views == ["train/joint"]
    assert read_views(joint.views, Genome(depth=1)) == ["joint"]
    with pytest.raises(MooheadError, match="two-sided"):
        read_views(joint.views, Genome(depth=1, pair="siamese"))


def test_a_sentence_repeated_in_one_side_of_pairs_is_encoded_once(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from moohead.cache_plan import CHUNK_OVERHEAD, PlanRequest, plan_cache
    from moohead.cache_store import bytes_per_row

    premises = ["good film", "a dull plot", "good film", "good film", "a dull plot"]
    hypotheses = ["bad", "the plot", "dull", "bad film", "good"]
    data = _split(premises, hypotheses).with_origin("train")
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["rte"], CacheConfig(tmp_path), counter)
    planned = plan_cache(ctx, {"search-train": data}, PlanRequest(1 << 30))
    feats = cached_split(ctx, "train", data)
    assert counter.rows == 5 + 2 + 5  # joint: every pair; a: two sentences; b: five
    per_row = bytes_per_row(2, 32, "fp16", 0)[0]  # the tiny encoder: 2 states, 32 wide
    # the plan counts what is written: pooled vectors, and metadata of 6 chunks (pooled
    # vectors and token states of 3 views)
    assert planned.pooled == per_row * (5 + 2 + 5) + CHUNK_OVERHEAD * 6
    a = feats.views["a"]
    assert a.rows.tolist() == [0, 1, 0, 0, 1]
    x, _ = a.gather(np.array([0, 2, 3]), [1, 2])
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    np.testing.assert_array_equal(a.pooled(2, "mean")[0], a.pooled(2, "mean")[3])
    # The disk budget's token subset (pair 3) gets token states in every view, its premise
    # in the shared row 0; the other pairs get pooled vectors only.
    fresh = _ctx(tiny_encoder_dir, GLUE_TASKS["rte"], CacheConfig(tmp_path / "subset"))
    fresh.token_rows = {"train": np.array([3])}
    sub = cached_split(fresh, "train", data)
    assert sub.token_positions().tolist() == [3]
    assert np.flatnonzero(sub.views["a"].has_tokens()).tolist() == [0, 2, 3]


def test_int8_storage_keeps_one_scale_per_token(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    texts = ["the movie was very good", "bad", "a film and a plot"]
    task = GLUE_TASKS["sst2"]
    ref = cached_split(
        _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path / "a")), "t", _split(texts)
    )
    cfg = CacheConfig(tmp_path / "b", storage="int8")
    q = cached_split(_ctx(tiny_encoder_dir, task, cfg), "t", _split(texts))
    idx = np.arange(3)
    x, _ = ref.views["text"].gather(idx, [1, 2])
    y, _ = q.views["text"].gather(idx, [1, 2])
    absmax = x.abs().amax(-1, keepdim=True)
    assert torch.all((x - y).abs() <= absmax / 127 * 0.5 + 2e-3)  # half a step (+ fp16)
    (chunk,) = _chunks(tmp_path / "b")
    assert (chunk / "tokens_01.i8").stat().st_size * 2 == (
        next(_chunks(tmp_path / "a")[0].glob("tokens_01.f16")).stat().st_size
    )
    for how in ("cls", "mean", "max"):
        a, b = ref.views["text"].pooled(2, how), q.views["text"].pooled(2, how)
        np.testing.assert_allclose(a, b, atol=float(np.abs(a).max()) / 127)


def test_runs_growing_one_cache_at_once_encode_each_row_once(
    tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path), counter)
    data = _split([f"text number {i} is here" for i in range(40)])
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(cached_split(ctx, "train", data)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and counter.rows == 40 and len(_chunks(tmp_path)) == 1


def test_a_crash_leaves_no_visible_half_chunk(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path), counter)
    calls = {"n": 0}

    def crash(n: int) -> None:
        calls["n"] += 1
        raise KeyboardInterrupt

    ctx.progress = lambda desc, total: crash
    with pytest.raises(KeyboardInterrupt):
        cached_split(ctx, "train", _split(["good", "bad"]))
    ctx.progress = counter
    feats = cached_split(ctx, "train", _split(["good", "bad"]))
    assert counter.rows == 2 and len(feats) == 2 and len(_chunks(tmp_path)) == 1
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_damaged_chunk_is_rebuilt_and_nothing_else_is_lost(
    tiny_encoder_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counter = Counter()
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path), counter)
    rows = Split((["good", "bad", "dull", "fine"],), np.array([0, 1, 0, 1])).with_origin("train")
    cached_split(ctx, "train", rows.subset(np.array([0, 1])))
    cached_split(ctx, "train", rows.subset(np.array([2, 3])))
    first, second = _chunks(tmp_path)
    with open(second / "tokens_02.f16", "r+b") as f:
        f.truncate(10)  # cut short
    with caplog.at_level(logging.WARNING):
        feats = cached_split(ctx, "train", rows)
    assert counter.rows == 6  # only the damaged chunk's two rows again
    assert "tokens_02.f16 is 10 bytes" in caplog.text and first.is_dir()
    assert len(feats) == 4 and feats.views["text"].gather(np.arange(4), [2])[0].shape[1] == 4
    # An unreadable index is rebuilt from the chunks: nothing is encoded again.
    index = next(tmp_path.glob("*/index.json"))
    index.write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cached_split(ctx, "train", rows)
    assert counter.rows == 6 and "index.json was damaged" in caplog.text
    assert json.loads(index.read_text())["views"]["text"]


def test_a_read_only_cache_folder_is_one_clear_error(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path / "cache"))
    cached_split(ctx, "train", _split(["good", "bad"]))
    folders = [tmp_path / "cache", *(p for p in (tmp_path / "cache").rglob("*") if p.is_dir())]
    if os.geteuid() == 0:  # root writes to read-only folders: fail as a read-only mount does
        import moohead.cache_store as cache_store

        def read_only(*args: object, **kwargs: object) -> str:
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(cache_store.tempfile, "mkdtemp", read_only)
    for folder in folders:
        os.chmod(folder, 0o555)
    try:
        # What is cached already is read; what is not cannot be added.
        assert len(cached_split(ctx, "train", _split(["good", "bad"]))) == 2
        with pytest.raises(MooheadError, match="not writable"):
            cached_split(ctx, "train", _split(["good", "awful"]))
    finally:
        for folder in folders:
            os.chmod(folder, 0o755)


def test_a_full_disk_is_one_clear_error(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moohead.features as features

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(features, "encode_chunk", full)
    ctx = _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path))
    with pytest.raises(MooheadError, match="is full"):
        cached_split(ctx, "train", _split(["good", "bad"]))
    assert not list(tmp_path.rglob(".tmp-*")) and not _chunks(tmp_path)


def test_a_disk_budget_bounds_token_states_to_a_stratified_subset(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moohead.cache_plan import PlanRequest, plan_cache
    from moohead.config import SearchConfig, parse_size
    from moohead.frozen import training_rows
    from moohead.token_ids import TokenIds

    tokenised: list[int] = []
    of = TokenIds.of.__func__  # type: ignore[attr-defined]

    def counted(cls: type, tokenizer: object, texts: list[list[str]], *args: object) -> object:
        tokenised.append(len(texts[0]))
        return of(cls, tokenizer, texts, *args)

    monkeypatch.setattr(TokenIds, "of", classmethod(counted))

    task = GLUE_TASKS["sst2"]
    train = load_split(task, "train", glue_dir)
    cut = search_splits(train, False, 200, 0.2, 0.1, 0).named()
    ctx = _ctx(tiny_encoder_dir, task, CacheConfig(tmp_path / "cache"))
    full = plan_cache(ctx, cut, PlanRequest(parse_size("1G")))
    assert full.train_subset is None and not full.token_rows
    need = full.pooled + full.scoring_tokens
    # Too small for the pooled vectors: refused before anything is written, naming the size.
    with pytest.raises(MooheadError, match="too small: the cache needs at least"):
        plan_cache(ctx, cut, PlanRequest(full.pooled // 2))
    assert not (tmp_path / "cache").exists()
    budget = need + full.train_tokens // 2
    plan = plan_cache(ctx, cut, PlanRequest(budget))
    assert plan.train_subset is not None and 0 < plan.train_subset[0] < len(cut["search-train"])
    ctx.token_rows = plan.token_rows
    feats = {n: cached_split(ctx, n, s) for n, s in cut.items()}
    used = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*") if f.is_file())
    assert used <= budget
    tr = feats["search-train"]
    have = tr.token_positions()
    assert len(have) == plan.train_subset[0] and len(feats["search-val"].token_positions()) == len(
        feats["search-val"]
    )
    labels = tr.labels[have]
    assert abs(labels.mean() - tr.labels.mean()) < 0.05  # stratified
    assert len(training_rows(tr, Genome(depth=2, pool="attention"))) == len(have)
    assert len(training_rows(tr, Genome(depth=2, pool="mean"))) == len(tr)  # pooled: all
    # Four plans and the encoder pass tokenised each split once; a warm cache, not at all.
    assert sorted(tokenised) == sorted(len(s) for s in cut.values())
    for n, s in cut.items():
        cached_split(ctx, n, s)
    assert len(tokenised) == len(cut)
    # parse_size
    assert parse_size("20G") == 20 * 2**30 and parse_size("1.5M") == int(1.5 * 2**20)
    with pytest.raises(MooheadError, match="not a size"):
        parse_size("lots")
    with pytest.raises(MooheadError, match="'5Q' is not a size"):  # before any work starts
        SearchConfig(cache_budget="5Q").validate()


def test_evolve_refuses_a_budget_too_small_in_one_line(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    code, _, err = run_cli(
        [
            "evolve", "--task", "sst2", "--model", str(tiny_encoder_dir),
            "--data-dir", str(glue_dir), "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--cache-budget", "10K",
            "--population", "4", "--generations", "1", "--max-length", "24",
        ],
        capsys,
    )  # fmt: skip
    assert code == 2 and err.strip().startswith("error: --cache-budget")
    assert len(err.strip().splitlines()) == 1 and "too small" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.f16"))


@pytest.mark.slow
def test_a_resume_under_a_tight_budget_trains_on_the_same_token_subset(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cache holds the subset's token states by then, so what is missing (and would
    fit) differs: the resume takes the recorded subset again instead of a new one."""
    from conftest import run_cli

    from moohead.cache_plan import PlanRequest, plan_cache
    from moohead.workspace import validation_context

    task = GLUE_TASKS["sst2"]
    cut = search_splits(load_split(task, "train", glue_dir), False, None, 0.15, 0.1, 0).named()
    splits = cut | {"validation": load_split(task, "validation", glue_dir)}
    cfg = CacheConfig(tmp_path / "cache", 24, storage="int8")
    ctx = _ctx(tiny_encoder_dir, task, cfg)
    validation = {"validation": validation_context(ctx)}  # as the search caches it: fp16
    full = plan_cache(ctx, splits, PlanRequest(1 << 40), validation)
    budget = full.pooled + full.scoring_tokens + full.train_tokens // 2
    args = [
        "evolve", "--task", "sst2", "--model", str(tiny_encoder_dir),
        "--data-dir", str(glue_dir), "--out", str(tmp_path / "run"),
        "--cache-dir", str(tmp_path / "cache"), "--cache-budget", str(budget),
        "--population", "4", "--generations", "1", "--max-length", "24", "--max-epochs", "2",
        "--objectives", "score,flops", "--cache-storage", "int8",
    ]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    first = json.loads((tmp_path / "run" / "config.json").read_text())["cache"]
    # int8 as asked; validation in fp16, so it scores the front as deployed
    cache = tmp_path / "cache"
    assert list(cache.glob("sst2-train-*/*/*/tokens_01.i8"))
    assert not list(cache.glob("sst2-train-*/*/*/tokens_01.f16"))
    assert list(cache.glob("sst2-validation-*/*/*/tokens_01.f16"))
    assert first["token_states"] == "subset" and first["token_subset"]["rows"] > 0
    code, _, err = run_cli([*args, "--generations", "2"], capsys)  # the last value counts
    assert code == 0, err  # refused before: "token_subset differs"
    again = json.loads((tmp_path / "run" / "config.json").read_text())["cache"]
    assert again["token_subset"] == first["token_subset"]


def test_reads_drop_the_memory_maps_after_a_window_and_give_the_same_numbers(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages touched through a memory map count in the RSS until the map is dropped: a
    store drops its maps after MAP_WINDOW bytes of reads, so memory does not grow with
    the split over a long training run."""
    from moohead import feature_store

    texts = ["the movie was very good", "bad", "a film and a plot", "good plot"] * 8
    store = cached_split(
        _ctx(tiny_encoder_dir, GLUE_TASKS["sst2"], CacheConfig(tmp_path)), "t", _split(texts)
    ).views["text"]
    idx = np.arange(len(texts))
    want = store.gather(idx, [1, 2])[0], store.pooled(2, "mean", idx)
    assert store._maps  # kept while under the window
    monkeypatch.setattr(feature_store, "MAP_WINDOW", feature_store.PAGE)
    for i in range(0, len(texts), 4):  # batch by batch, the maps dropped each time
        part = idx[i : i + 4]
        torch.testing.assert_close(
            store.gather(part, [1, 2])[0], want[0][:, part, : store.lengths[part].max()]
        )
        assert not store._maps
        np.testing.assert_array_equal(store.pooled(2, "mean", part), want[1][part])
        assert not store._maps
