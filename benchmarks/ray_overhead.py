"""Ray executor overhead: the same small search, local and on a local Ray instance.

Same seed, same data (SST-2 slice), same objectives (score, FLOPs): the local executor
trains one genome at a time with torch's threads on all cores; the Ray executor runs one
task per genome, one core each, as many at once as there are cores. Reports wall time,
evaluations per hour and whether the two archives agree.

    python benchmarks/ray_overhead.py [--max-train 2000] [--population 8] [--generations 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import glue_dir, write_result

from moohead.config import SearchConfig
from moohead.search import run_search


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--max-train", type=int, default=2000)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="moohead-ray-"))
    base = dict(
        task="sst2", data_dir=glue_dir(), population=args.population,
        generations=args.generations, max_train=args.max_train, max_length=64,
        reference_length=64, objectives=("score", "flops"), cache_dir=work / "cache",
    )  # fmt: skip
    run_search(SearchConfig(**base, out=work / "warm"))  # the feature cache, for both runs
    result = {
        "cores": os.cpu_count(),
        **{k: args.__dict__[k] for k in ("max_train", "population", "generations")},
    }
    archives = {}
    for executor in ("local", "ray"):
        out = work / executor
        start = time.perf_counter()
        run_search(SearchConfig(**base, out=out, executor=executor))
        seconds = time.perf_counter() - start
        records = [json.loads(x) for x in (out / "archive.jsonl").read_text().splitlines()]
        archives[executor] = [
            (json.dumps(r["genome"], sort_keys=True), r["score"]) for r in records
        ]
        result[executor] = {
            "seconds": round(seconds, 1),
            "evaluations": len(records),
            "evaluations_per_hour": round(len(records) / seconds * 3600, 1),
            "train_seconds_sum": round(sum(r["train_seconds"] for r in records), 1),
        }
        print(executor, result[executor], flush=True)
    result["same_archive"] = archives["local"] == archives["ray"]
    result["ray_over_local"] = round(result["ray"]["seconds"] / result["local"]["seconds"], 2)
    write_result("ray_overhead", result)


if __name__ == "__main__":
    main()
