"""Memory of tokenising a 400k-pair split (issue 13): the tokenizer's Python lists against
``token_ids.TokenIds`` (int32 arrays, packed a slice at a time), which the cache pass and
its plan use. Each way runs in a process of its own; the figure is the rise of its peak
RSS over the tokenisation.

    python benchmarks/synthetic_pairs.py --out /tmp/glue-synth
    python benchmarks/token_memory.py --synthetic /tmp/glue-synth
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from common import write_result


def one(way: str, synthetic: Path) -> dict[str, float]:
    from moohead.data import load_split, resolve_task
    from moohead.encoder import load_encoder
    from moohead.token_ids import TokenIds

    task = resolve_task("pairs400k", synthetic)
    train = load_split(task, "train", synthetic)
    _, tokenizer, _ = load_encoder(None)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if way == "lists":
        tokens = sum(
            map(len, tokenizer(*train.texts, truncation=True, max_length=128)["input_ids"])
        )
    else:
        tokens = len(TokenIds.of(tokenizer, list(train.texts), 128, True).ids)
    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"pairs": len(train), "tokens": tokens, "peak_rss_rise_gib": round(rise / 2**20, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, required=True)
    parser.add_argument("--way", choices=("lists", "packed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:  # the child process
        print(json.dumps(one(args.way, args.synthetic)))
        return
    result = {}
    for way in ("lists", "packed"):
        out = subprocess.run(
            [sys.executable, __file__, "--synthetic", str(args.synthetic), "--way", way],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result[way] = json.loads(out.stdout.strip().splitlines()[-1])
    write_result("token_memory", {"split": "pairs400k train, joint view", "ways": result})


if __name__ == "__main__":
    main()
