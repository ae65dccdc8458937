"""Helpers shared by the benchmark scripts: where data lives and how results are written."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moohead.files import atomic_write_json, package_versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def glue_dir() -> Path:
    """``$GLUE_DIR``, else ``../shared/glue`` beside the repository."""
    path = Path(os.environ.get("GLUE_DIR", ROOT.parent / "shared" / "glue"))
    if not path.is_dir():
        raise SystemExit(f"GLUE data not found at {path}; set GLUE_DIR")
    return path


def add_initial_random(parser: argparse.ArgumentParser) -> None:
    """``moohead evolve --initial-random`` for a benchmark's searches, with evolve's default
    (results measured before 2026-12-01 record none or null: they were ``fill``)."""
    from moohead.config import SearchConfig, parse_initial_random

    parser.add_argument(
        "--initial-random",
        type=parse_initial_random,
        default=SearchConfig().initial_random,
        help="random genomes beside the references in NSGA-II's first population: a count, "
        "'population' (evolve's default) or 'fill' (the default before 2026-12-01)",
    )


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": package_versions(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_json(path, {"machine": machine(), **data})
    print(json.dumps(data, indent=1)[:4000])
    return path


def run_task_seeds(
    args: Any,
    name: str,
    one: Callable[[str, int, Any, Path], dict[str, Any]],
    summarise: Callable[[dict[str, dict[str, Any]]], dict[str, Any]],
) -> None:
    """Run ``one(task, seed, args, work)`` for each of ``args.tasks`` x ``args.seeds``,
    keeping the results of tasks and seeds not rerun; the results file is rewritten (with
    each task's ``summarise`` of its seeds) after every run, so a long benchmark stopped
    midway keeps what it measured."""
    import tempfile

    path = RESULTS / f"{name}.json"
    tasks: dict[str, Any] = json.loads(path.read_text())["tasks"] if path.exists() else {}
    with tempfile.TemporaryDirectory(prefix=f"moohead-{name}-") as tmp:
        for task in args.tasks.split(","):
            entry = tasks.setdefault(task, {"seeds": {}})
            for seed in (int(s) for s in args.seeds.split(",")):
                entry["seeds"][str(seed)] = one(task, seed, args, Path(tmp))
                entry["summary"] = summarise(entry["seeds"])
                config = vars(args) | {"cache_dir": str(args.cache_dir)}
                write_result(name, {"config": config, "tasks": tasks})
    print(f"results in {path}")
