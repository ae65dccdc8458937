"""Pick a trade-off point from a run's front: the recommended head, the knee, an id, or
the best under a budget.

Selection reads the search-val ``score`` (what the search optimised), never the official
validation score, which stays a report.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from moohead.errors import MooheadError
from moohead.rundir import RunDir


@dataclass(frozen=True)
class PickConfig:
    """One way of choosing a head.

    Attributes:
        recommended: The head the search recommends (``front.json``'s ``recommended``: the
            best search-val head if its lead over the reference is significant, else the
            reference).
        knee: The front's knee point in (score, FLOPs).
        id: A head by its evaluation id (a front member, the baseline or a reference).
        max_latency_ms: Best score with latency at most this.
        max_flops: Best score with FLOPs at most this.
        min_score: Cheapest (fewest FLOPs) head with a score at least this; combined with a
            budget, the best score within the budget that also meets it.
    """

    recommended: bool = False
    knee: bool = False
    id: int | None = None
    max_latency_ms: float | None = None
    max_flops: float | None = None
    min_score: float | None = None

    def budgets(self) -> list[tuple[str, str, float]]:
        """The given bounds as ``(front.json key, "<=" or ">=", value)``."""
        bounds = (
            ("latency_ms", "<=", self.max_latency_ms),
            ("flops", "<=", self.max_flops),
            ("score", ">=", self.min_score),
        )
        return [(key, op, value) for key, op, value in bounds if value is not None]

    def rule(self) -> str:
        if self.recommended:
            return "recommended"
        if self.knee:
            return "knee"
        if self.id is not None:
            return f"id {self.id}"
        return ", ".join(f"{key} {op} {value:g}" for key, op, value in self.budgets())

    def validate(self) -> None:
        modes = int(self.recommended) + int(self.knee) + int(self.id is not None)
        if modes + int(bool(self.budgets())) != 1:
            raise MooheadError(
                "choose exactly one of --recommended, --knee, --id N, or budgets "
                "(--max-latency-ms, --max-flops, --min-score)"
            )


def knee_point(front: list[dict[str, Any]]) -> dict[str, Any]:
    """The point farthest above the line joining the front's cheapest and best heads.

    Score and FLOPs are scaled to [0, 1] over the front; the knee maximises
    ``score' - flops'``, the distance to that line up to a constant.
    """
    if len(front) <= 2:
        return max(front, key=lambda e: e["score"])
    score = np.array([e["score"] for e in front], dtype=float)
    flops = np.array([e["flops"] for e in front], dtype=float)

    def unit(x: np.ndarray) -> np.ndarray:
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.zeros_like(x)

    return front[int(np.argmax(unit(score) - unit(flops)))]


def _distance(e: dict[str, Any], key: str, value: float) -> float:
    return abs(float(e[key]) - value)


def _describe(e: dict[str, Any]) -> str:
    return f"id {e['id']} (score {e['score']:.4f}, {e['flops'] / 1e9:.3f} GFLOPs, {e['latency_ms']:.2f} ms)"


def choose(doc: dict[str, Any], cfg: PickConfig) -> dict[str, Any]:
    """The front entry the rule selects, or a MooheadError naming the closest one."""
    cfg.validate()
    front = doc["front"]
    if not front:
        raise MooheadError("the run's front is empty: every evaluation failed; see archive.jsonl")
    if cfg.knee:
        return knee_point(front)
    # A refined front's scores are fine-tuned: its references are not comparable to it.
    references = [] if doc.get("refined") else doc.get("references", [])
    if cfg.recommended:
        return recommended(doc, references)
    if cfg.id is not None:
        found = by_id(doc, references, cfg.id)
        if found is not None:
            return found
        ids = ", ".join(str(e["id"]) for e in front)
        also = ", ".join(f"{e['name']} {e['id']}" for e in references if e["name"] != "hf-head")
        raise MooheadError(
            f"id {cfg.id} is not on the front; front ids: {ids} (baseline {doc['baseline']['id']}"
            + (f"; references: {also})" if also else ")")
        )
    ok = front
    for key, op, value in cfg.budgets():
        narrowed = [e for e in ok if (e[key] <= value if op == "<=" else e[key] >= value)]
        if not narrowed:
            closest = min(ok, key=partial(_distance, key=key, value=value))
            raise MooheadError(
                f"no front head has {key} {op} {value:g}; the closest is {_describe(closest)}"
            )
        ok = narrowed
    if cfg.min_score is not None and cfg.max_latency_ms is None and cfg.max_flops is None:
        return min(ok, key=lambda e: (e["flops"], -e["score"]))
    return max(ok, key=lambda e: (e["score"], -e["flops"]))


def by_id(
    doc: dict[str, Any], references: list[dict[str, Any]], head_id: int
) -> dict[str, Any] | None:
    """The front head, baseline or reference (of ``references``) with this id, if any."""
    return next(
        (e for e in [*doc["front"], doc["baseline"], *references] if e["id"] == head_id), None
    )


def recommended(doc: dict[str, Any], references: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry of the head the search recommends."""
    if doc.get("refined"):
        raise MooheadError(
            "the recommendation compares the search's scores, and moohead refine replaced "
            "them: pick from the refined front with --knee, --id N or a budget"
        )
    rec = doc.get("recommended")
    if not rec:
        raise MooheadError(
            "this run's front.json has no recommended head (written before moohead "
            "recommended one): pick with --knee, --id N or a budget"
        )
    found = by_id(doc, references, rec["id"])
    if found is not None:
        return found
    raise MooheadError(
        f"the recommended head {rec['id']} is neither on the front nor a reference, so "
        "front.json is damaged; pick with --knee, --id N or a budget"
    )


def pick(run_dir: Path, cfg: PickConfig) -> dict[str, Any]:
    """Choose a head from the run's front and record the choice in the run.

    Returns:
        The pick record: ``rule``, ``id``, ``entry`` and ``baseline``.
    """
    run = RunDir(run_dir)
    doc = run.read_front_refined()
    entry = choose(doc, cfg)
    record = {"rule": cfg.rule(), "id": entry["id"], "entry": entry, "baseline": doc["baseline"]}
    run.write_pick(record)
    return record
