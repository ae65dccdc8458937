"""Feature-cache size and build time at scale (issue 13).

For each encoder (the packaged all-MiniLM-L6-v2, and a BERT of bert-base's shape, 12
layers 768 wide, with random weights: for size and time only) and each local task (the
training split; qnli: its validation split, the only one here; ``pairs400k``: the
synthetic pair task of ``synthetic_pairs.py``), a fresh cache is built for a sample of
the split (``--sample`` rows, the first of one fixed shuffle, as ``--max-train`` takes
them) at each storage (``fp16``, ``int8``). Measured per sample:

- bytes on disk, per example and per token (every cached view: the sentence, or the
  joint pair and each side);
- build time, and a plain encoder pass over the same views (same tokenisation, length-
  sorted batches of 64), and their ratio;
- the projection to the whole split: bytes per example x its examples.

Then the projection for MNLI's 392,702 training pairs with the 768-wide encoder, from the
synthetic pair task's bytes per pair (its pairs average 24 words; scale by the bytes per
token for longer pairs).

    python benchmarks/synthetic_pairs.py --out /tmp/glue-synth
    python benchmarks/cache_scale.py --synthetic /tmp/glue-synth [--sample 2000]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import glue_dir, write_result

from moohead.data import load_split, resolve_task
from moohead.encoder import load_encoder
from moohead.features import CacheConfig, PrepareContext, cache_size_bytes, cached_split
from moohead.splits import sample_rows

NAME = "cache_scale"
TASKS = {"sst2": "train", "cola": "train", "mrpc": "train", "rte": "train", "stsb": "train",
         "wnli": "train", "qnli": "validation", "pairs400k": "train"}  # fmt: skip
MNLI_TRAIN_PAIRS = 392_702


def random_bert(folder: Path) -> Path:
    """A BERT of bert-base's shape with random weights (seed 0) and MiniLM's tokenizer."""
    from transformers import BertConfig, BertModel

    _, tokenizer, _ = load_encoder(None)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def views(texts: tuple[list[str], ...]) -> list[tuple[list[str], ...]]:
    """What the cache encodes: the sentence, or the joint pair and each side."""
    return [texts] if len(texts) == 1 else [texts, (texts[0],), (texts[1],)]


def plain_pass(model: Any, tokenizer: Any, texts: tuple[list[str], ...], max_length: int) -> float:
    """Seconds for the encoder alone over one view, batched as the cache pass is."""
    start = time.perf_counter()
    ids = tokenizer(*texts, truncation=True, max_length=max_length)["input_ids"]
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for i in range(0, len(order), 64):
            batch = tokenizer.pad(
                {"input_ids": [ids[j] for j in order[i : i + 64]]}, return_tensors="pt"
            )
            model(**batch)
    return time.perf_counter() - start


def measure(
    encoder: tuple[Any, Any, Any], task_name: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    model, tokenizer, info = encoder
    data_dir = args.synthetic if task_name == "pairs400k" else glue_dir()
    task = resolve_task(task_name, data_dir)
    split_name = TASKS[task_name]
    full = load_split(task, split_name, data_dir).with_origin(split_name)
    part = full.subset(sample_rows(len(full), args.sample))
    plain_pass(model, tokenizer, tuple(t[:64] for t in part.texts), args.max_length)  # warm-up
    plain = sum(plain_pass(model, tokenizer, v, args.max_length) for v in views(part.texts))
    out: dict[str, Any] = {"split": split_name, "examples": len(part), "split_examples": len(full),
                           "plain_pass_seconds": round(plain, 2)}  # fmt: skip
    for storage in args.storages.split(","):
        cache = work / f"{info.hidden_size}-{task_name}-{storage}"
        cfg = CacheConfig(cache, args.max_length, storage=storage, siamese=task.is_pair)
        start = time.perf_counter()
        features = cached_split(PrepareContext(model, tokenizer, info, task, cfg), split_name, part)
        build = time.perf_counter() - start
        nbytes = cache_size_bytes([features])
        files = [f for f in cache.rglob("*") if f.is_file()]
        pooled = sum(f.stat().st_size for f in files if f.name.startswith("pooled_"))
        token = sum(f.stat().st_size for f in files if f.name.startswith("tokens_"))
        tokens = int(sum(v.lengths.astype(np.int64).sum() for v in features.views.values()))
        out[storage] = {
            "bytes": nbytes,
            "tokens": tokens,
            "bytes_per_example": round(nbytes / len(part), 1),
            "bytes_per_token": round(nbytes / tokens, 1),
            "pooled_bytes_per_example": round(pooled / len(part), 1),
            "token_bytes_per_token": round(token / tokens, 1),
            "build_seconds": round(build, 2),
            "build_over_plain": round(build / plain, 3),
            "projected_split_gib": round(nbytes / len(part) * len(full) / 2**30, 3),
        }
        shutil.rmtree(cache, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, required=True, help="synthetic_pairs.py's --out")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--encoders", default="minilm,bert768")
    parser.add_argument("--storages", default="fp16,int8")
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--name", default=NAME, help="results file name (a smoke run: other)")
    args = parser.parse_args()
    result: dict[str, Any] = {"config": {k: str(v) for k, v in vars(args).items()}, "encoders": {}}
    with tempfile.TemporaryDirectory(prefix="moohead-cache-scale-") as tmp:
        work = Path(tmp)
        for name in args.encoders.split(","):
            path = None if name == "minilm" else str(random_bert(work / "bert768"))
            encoder = load_encoder(path)
            tasks = {t: measure(encoder, t, args, work) for t in args.tasks.split(",")}
            result["encoders"][name] = {
                "hidden": encoder[2].hidden_size,
                "layers": encoder[2].num_layers,
                "tasks": tasks,
            }
            write_result(args.name, result)
    pairs = result["encoders"].get("bert768", {}).get("tasks", {}).get("pairs400k")
    if pairs:
        result["mnli_projection_768"] = {
            storage: {
                "all_token_states_gib": gib(pairs[storage]["bytes_per_example"]),
                "pooled_only_gib": gib(pairs[storage]["pooled_bytes_per_example"]),
            }
            for storage in args.storages.split(",")
        }
        write_result(args.name, result)


def gib(bytes_per_pair: float) -> float:
    """GiB for MNLI's training pairs at ``bytes_per_pair``."""
    return round(bytes_per_pair * MNLI_TRAIN_PAIRS / 2**30, 2)


if __name__ == "__main__":
    main()


def table(data: dict[str, Any]) -> str:
    """benchmarks/README.md's table of a result."""
    rows = [
        "| encoder | task | sample / split | int8 KB per example (pooled) | int8 B per token | fp16 KB per example | build / plain pass (int8, fp16) | whole split int8 / fp16 |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, enc in data["encoders"].items():
        for task, t in enc["tasks"].items():
            i8, f16 = t["int8"], t["fp16"]
            rows.append(
                f"| {name} ({enc['layers']}x{enc['hidden']}) | {task} | {t['examples']} / "
                f"{t['split_examples']:,} | {i8['bytes_per_example'] / 1e3:.1f} "
                f"({i8['pooled_bytes_per_example'] / 1e3:.1f}) | {i8['token_bytes_per_token']:.0f} "
                f"| {f16['bytes_per_example'] / 1e3:.1f} | {i8['build_over_plain']:.2f}x, "
                f"{f16['build_over_plain']:.2f}x | {i8['projected_split_gib']:.2f} / "
                f"{f16['projected_split_gib']:.2f} GiB |"
            )
    mnli = data.get("mnli_projection_768")
    if mnli:
        rows += [
            "",
            "| MNLI training set (392,702 pairs), 12x768 encoder | int8 | fp16 |",
            "|---|---|---|",
            f"| every token state cached | {mnli['int8']['all_token_states_gib']} GiB | "
            f"{mnli['fp16']['all_token_states_gib']} GiB |",
            f"| pooled vectors only (`--token-states recompute`) | "
            f"**{mnli['int8']['pooled_only_gib']} GiB** | {mnli['fp16']['pooled_only_gib']} GiB |",
        ]
    return "\n".join(rows)
