"""A synthetic pair task at MNLI/QQP scale, built from SST-2 sentences (issue 13).

QQP (364k training pairs) and MNLI (393k) have no offline copy here. For cache size and
search throughput at their scale this writes a custom moohead task of the same shape:
``--pairs`` training pairs (default 400,000) and ``--val-pairs`` validation pairs, each
two SST-2 sentences drawn at random with a fixed seed, training pairs from SST-2's train
split and validation pairs from its validation split (no sentence is shared). The label
is learnable from the pair: 0 when both sentences are positive, 1 when both are negative,
2 when they disagree (three classes, as MNLI). Sentences shorter than ``--min-words``
words are skipped, so that a pair is nearer MNLI's length than SST-2's two-word phrases.

Pairs are drawn within blocks of at least ``--block`` sentences, each block whole parse
trees of SST-2's phrases: a sentence pairs only with sentences of its block. With pairs
drawn from all sentences at once, every sentence would recur in a dozen pairs across the
set, joining all 400k pairs into one group that no leak-free split (``splits.py``) can
cut; MNLI's pairs share a premise only within a group of three.

The folder is a moohead custom task (``sentence1``, ``sentence2``, ``label``):

    python benchmarks/synthetic_pairs.py --out /tmp/glue-synth        # writes pairs400k/
    moohead evolve --task pairs400k --data-dir /tmp/glue-synth ...

Same arguments, same files (byte for byte): the seed fixes every draw.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
from common import glue_dir

from moohead.files import atomic_write_json
from moohead.splits import leak_groups


def sentences(split: str, min_words: int) -> pd.DataFrame:
    frame = pd.read_csv(glue_dir() / "sst2" / f"{split}.tsv", sep="\t", quoting=csv.QUOTE_NONE)
    frame["sentence"] = frame["sentence"].astype(str).str.strip()
    return frame[frame["sentence"].str.split().str.len() >= min_words].reset_index(drop=True)


def blocks(frame: pd.DataFrame, size: int, rng: np.random.Generator) -> np.ndarray:
    """A block id per sentence: whole leak groups (``splits.leak_groups``: the phrases of
    one SST-2 parse tree, which share word n-grams), joined in a random order until a
    block holds ``size`` sentences."""
    group, _ = leak_groups((frame["sentence"].tolist(),))
    order = rng.permutation(group.max() + 1)
    counts = np.bincount(group)[order]
    block_of_group = np.empty(len(order), dtype=np.int64)
    block, held = 0, 0
    for g, c in zip(order, counts, strict=True):
        block_of_group[g] = block
        held += c
        if held >= size:
            block, held = block + 1, 0
    return block_of_group[group]


def pairs(frame: pd.DataFrame, n: int, size: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` pairs, both sentences of a pair from one block, blocks in proportion to their
    sentences: a sentence never meets one of another block, so the pairs fall into
    groups that a leak-free split can keep apart, as MNLI's pairs (a premise with its
    three hypotheses) do."""
    block = blocks(frame, size, rng)
    order = np.argsort(block, kind="stable")
    counts = np.bincount(block)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    chosen = rng.choice(len(counts), size=n, p=counts / counts.sum())
    a = order[starts[chosen] + rng.integers(0, counts[chosen])]
    b = order[starts[chosen] + rng.integers(0, counts[chosen])]
    la, lb = frame["label"].to_numpy()[a], frame["label"].to_numpy()[b]
    label = np.where(la != lb, 2, np.where(la == 1, 0, 1))
    return pd.DataFrame(
        {
            "sentence1": frame["sentence"].to_numpy()[a],
            "sentence2": frame["sentence"].to_numpy()[b],
            "label": label,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a data dir; writes NAME/ in it")
    parser.add_argument("--name", default="pairs400k")
    parser.add_argument("--pairs", type=int, default=400_000)
    parser.add_argument("--val-pairs", type=int, default=10_000)
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--block", type=int, default=8, help="sentences a block holds at least")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    folder = args.out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    stats = {}
    for split, n in (("train", args.pairs), ("validation", args.val_pairs)):
        frame = pairs(sentences(split, args.min_words), n, args.block, rng)
        frame.to_csv(folder / f"{split}.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)
        words = frame["sentence1"].str.split().str.len() + frame["sentence2"].str.split().str.len()
        stats[split] = {
            "pairs": len(frame),
            "mean_words_per_pair": round(float(words.mean()), 2),
            "label_counts": {
                str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()
            },
        }
    atomic_write_json(
        folder / "synthetic.json",
        {"arguments": {k: str(v) for k, v in vars(args).items()}, **stats},
    )
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
