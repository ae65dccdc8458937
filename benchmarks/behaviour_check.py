"""Record two real searches and compare them with a committed record: a refactor that
changes no behaviour gives identical archives (timings excluded) and fronts.

    # before a refactor: record (writes benchmarks/results/behaviour/<name>.json)
    .venv/bin/python benchmarks/behaviour_check.py record
    # after it: run the same searches again and compare with the record
    .venv/bin/python benchmarks/behaviour_check.py compare

The searches are frozen fidelity on real GLUE data with the packaged encoder: SST-2
(single sentence) and STS-B (pairs, so siamese heads are in the space), population 8,
3 generations, 1,000 training examples, objectives score and FLOPs, seed 0. Each gets a
fresh feature cache, so the cache pass is part of what is compared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import RESULTS, ROOT, glue_dir

RECORDS = RESULTS / "behaviour"
SEARCHES = {
    "sst2": ["--task", "sst2"],
    "stsb": ["--task", "stsb"],
}
COMMON = [
    "--population", "8", "--generations", "3", "--max-train", "1000",
    "--objectives", "score,flops", "--seed", "0", "--device", "cpu",
]  # fmt: skip
# Measured times: they differ from run to run and are not behaviour.
TIMING_KEYS = {"train_seconds", "measure_seconds", "latency_ms", "seconds", "cache_seconds"}


def without_timings(value: Any) -> Any:
    """``value`` with every timing key removed, recursively."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def run_search(name: str, work: Path) -> dict[str, Any]:
    """Run one search with the installed ``moohead``; return its timing-free record."""
    out = work / name
    cmd = [
        str(Path(sys.executable).with_name("moohead")), "evolve", *SEARCHES[name], *COMMON,
        "--data-dir", str(glue_dir()), "--out", str(out), "--cache-dir", str(work / "cache"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    archive = [json.loads(x) for x in (out / "archive.jsonl").read_text().splitlines()]
    front = json.loads((out / "front.json").read_text())
    return {
        "command": " ".join(["moohead evolve", *SEARCHES[name], *COMMON]),
        "archive": without_timings(archive),
        "front": without_timings(front),
    }


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two JSON values first differ (a readable path), or None."""
    if type(a) is not type(b):
        return f"{path or '/'}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}/{key}: only in {'record' if key in a else 'this run'}"
            diff = first_difference(a[key], b[key], f"{path}/{key}")
            if diff:
                return diff
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return None if a == b else f"{path}: {a!r} vs {b!r}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("--only", choices=tuple(SEARCHES), help="one search instead of both")
    args = parser.parse_args()
    names = [args.only] if args.only else list(SEARCHES)
    failed = False
    with tempfile.TemporaryDirectory(prefix="moohead-behaviour-") as tmp:
        for name in names:
            current = run_search(name, Path(tmp))
            path = RECORDS / f"{name}.json"
            siamese = sum(r["genome"]["pair"] == "siamese" for r in current["archive"])
            summary = (
                f"{name}: {len(current['archive'])} evaluations ({siamese} siamese), "
                f"front of {len(current['front']['front'])}"
            )
            if args.mode == "record":
                RECORDS.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
                print(f"recorded {summary} in {path.relative_to(ROOT)}")
                continue
            recorded = json.loads(path.read_text())
            diff = first_difference(recorded, current)
            print(f"{'identical' if diff is None else 'DIFFERENT'}: {summary}")
            if diff is not None:
                print(f"  first difference at {diff}")
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
