"""Real frozen searches at full scale on this machine (issue 13): all of SST-2's training
set (67,349 sentences) and the synthetic 400,000-pair task (``synthetic_pairs.py``), both
with the packaged all-MiniLM-L6-v2, the cache in int8 (``--cache-storage int8``,
``--token-states auto``, ``--cache-budget`` half the free disk), each a ``moohead
evolve`` process of its own with a fresh cache.

Reported per task: the process's peak RSS (its own ``wait4`` rusage, the target is under
4 GiB), the cache on disk, the cache pass's time, and evaluations per hour of search time
(the process's wall time less the cache pass; references included as evaluations, since
they are trained like genomes), with what the cache plan chose.

    python benchmarks/synthetic_pairs.py --out /tmp/glue-synth
    python benchmarks/scale_search.py --synthetic /tmp/glue-synth [--tasks sst2,pairs400k]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, glue_dir, write_result

NAME = "scale_search"


def run(task: str, data_dir: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    out, cache = work / f"run-{task}", work / f"cache-{task}"
    cmd = [
        sys.executable, "-m", "moohead.cli.main", "evolve", "--task", task,
        "--data-dir", str(data_dir), "--out", str(out), "--cache-dir", str(cache),
        "--max-train", "0", "--max-length", str(args.max_length),
        "--population", str(args.population), "--generations", str(args.generations),
        "--max-epochs", str(args.max_epochs), "--objectives", "score,flops",
        "--threads", str(args.threads), "--cache-storage", "int8",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    log = proc.stderr.read()  # progress goes to stderr; read it all so the pipe never fills
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{task}: moohead evolve failed:\n{log[-3000:]}")
    config = json.loads((out / "config.json").read_text())
    front = json.loads((out / "front.json").read_text())
    evaluations = len((out / "archive.jsonl").read_text().splitlines())
    search_s = wall - config["cache_seconds"]
    disk = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return {
        "examples": config["examples"],
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3),
        "cache_disk_gib": round(disk / 2**30, 3),
        "cache_seconds": round(config["cache_seconds"], 1),
        "cache_plan": config["cache"],
        "evaluations": evaluations,
        "references": len(front.get("references", {})),
        "search_seconds": round(search_s, 1),
        "evaluations_per_hour": round(evaluations / search_s * 3600, 1),
        "wall_seconds": round(wall, 1),
        "best_validation": max(
            (e["validation"] for e in front["front"] if e.get("validation") is not None),
            default=None,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, required=True, help="synthetic_pairs.py's --out")
    parser.add_argument("--tasks", default="sst2,pairs400k")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="where caches go (big)")
    args = parser.parse_args()
    previous = RESULTS / f"{NAME}.json"
    tasks: dict[str, Any] = json.loads(previous.read_text())["tasks"] if previous.exists() else {}
    work = Path(tempfile.mkdtemp(prefix="moohead-scale-", dir=args.work))
    try:
        for task in args.tasks.split(","):
            data_dir = args.synthetic if task == "pairs400k" else glue_dir()
            tasks[task] = run(task, data_dir, args, work)
            config = {k: str(v) for k, v in vars(args).items() if k not in ("tasks", "work")}
            write_result(NAME, {"config": config, "target_peak_rss_gib": 4, "tasks": tasks})
            shutil.rmtree(work / f"cache-{task}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()


def table(data: dict[str, Any]) -> str:
    """benchmarks/README.md's table of a result."""
    c = data["config"]
    rows = [
        f"Population {c['population']}, {c['generations']} generations, at most "
        f"{c['max_epochs']} epochs a head, objectives score and FLOPs, {c['threads']} threads.",
        "",
        "| task | examples (search-train / stop / val) | peak RSS (target < 4 GiB) | cache on disk | cache pass | token states | evaluations | search time | evaluations per hour |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for task, t in data["tasks"].items():
        ex = t["examples"]
        split = " / ".join(f"{ex[k]:,}" for k in ("search-train", "search-stop", "search-val"))
        plan = t["cache_plan"] or {}
        states = plan.get("token_states", "cache")
        sub = plan.get("token_subset")
        if sub:
            states += f" ({sub['rows']:,} of {sub['of']:,})"
        rows.append(
            f"| {task} | {split} | **{t['peak_rss_gib']} GiB** | {t['cache_disk_gib']} GiB | "
            f"{t['cache_seconds']} s | {states} | {t['evaluations']} | {t['search_seconds']} s | "
            f"{t['evaluations_per_hour']} |"
        )
    return "\n".join(rows)
