"""What one genome costs at fine-tune fidelity on this machine (CPU by default).

Fine-tunes the baseline head (all 6 layers) and a 2-layer head on a slice of SST-2 for one
epoch each, with the fine-tune recipe (AdamW, warm-up/decay, clipping), and reports
seconds per 1,000 training examples per epoch, so users can plan a fine-tune search.

    python benchmarks/finetune_cost.py [--examples 600] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from common import glue_dir, write_result

from moohead.data import load_split
from moohead.encoder import load_encoder
from moohead.fidelity import SearchData
from moohead.finetune import finetune_config, finetune_head
from moohead.genome import baseline
from moohead.splits import search_splits
from moohead.tasks import GLUE_TASKS
from moohead.tokens import tokenize_split
from moohead.train import TrainConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--examples", type=int, default=600)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()
    task = GLUE_TASKS["sst2"]
    cut = search_splits(load_split(task, "train", glue_dir()), False, args.examples, 0.15, 0.1, 0)
    encoder, tokenizer, info = load_encoder(None)
    encoder.to(args.device)

    def tokens(split):
        return tokenize_split(tokenizer, task, split, args.max_length, info.uses_token_type_ids)

    train_t, stop_t, val_t = tokens(cut.train), tokens(cut.stop), tokens(cut.val)
    cfg = finetune_config(TrainConfig(max_epochs=1, patience=1, device=args.device))
    rows = {}
    for name, genome in (
        ("baseline (6 layers)", baseline(6, 1e-3)),
        ("2 layers", replace(baseline(6, 1e-3), depth=2)),
    ):
        start = time.perf_counter()
        data = SearchData(task, encoder, info, train_t, stop_t, val_t)
        result = finetune_head(genome, data, cfg, seed=0)
        seconds = time.perf_counter() - start
        rows[name] = {
            "seconds": round(seconds, 1),
            "seconds_per_1000_examples_epoch": round(seconds / (len(train_t) / 1000), 1),
            "search_val": round(result.metrics["score"], 4),
        }
        print(name, rows[name], flush=True)
    write_result(
        "finetune_cost",
        {"device": args.device, "train_examples": len(train_t), "val_examples": len(val_t),
         "max_length": args.max_length, "heads": rows},
    )  # fmt: skip


if __name__ == "__main__":
    main()
