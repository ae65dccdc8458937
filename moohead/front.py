"""The Pareto front: non-dominated selection, hypervolume, and ``front.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from moohead.errors import MooheadError

FRONT_FILE = "front.json"
REFINED_FILE = "refined.json"  # written by moohead refine
REQUIRED_KEYS = ("task", "metric", "baseline", "front")


# Latencies closer than this (relative) are a tie: timing noise on a shared machine is
# a few percent, and a head must not enter the front by being faster by noise alone.
LATENCY_TOLERANCE = 0.05


def nondominated(F: np.ndarray, rel_tol: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the rows of ``F`` (minimised objectives) that no other row dominates.

    Args:
        F: ``[n, m]`` objective values, all minimised.
        rel_tol: Optional ``[m]`` relative tolerances: values within ``tol * |value|`` of
            each other count as equal (epsilon-dominance), e.g. for measured latency.

    Exact duplicates are all kept; callers decide how to break such ties.
    """
    n = len(F)
    tol = np.zeros(F.shape[1]) if rel_tol is None else np.asarray(rel_tol, dtype=float)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        slack = tol * np.abs(F[i])
        no_worse = np.all(F[i] + slack >= F, axis=1)
        better = np.any(F[i] - slack > F, axis=1)
        keep[i] = not (no_worse & better).any()
    return keep


def tolerances(objectives: tuple[str, ...] | list[str]) -> np.ndarray:
    """Relative tolerances of the objectives for ``nondominated``: only latency is noisy."""
    return np.array([LATENCY_TOLERANCE if o == "latency" else 0.0 for o in objectives])


def hypervolume(F: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume (pymoo) of minimised objectives ``F`` against reference point ``ref``."""
    from pymoo.indicators.hv import HV

    inside = F[np.all(ref > F, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref)(inside))


def normalised_objectives(
    rows: list[dict[str, float]], objectives: tuple[str, ...], baseline: dict[str, float]
) -> np.ndarray:
    """Objectives as minimised values on a common scale for hypervolume.

    Score becomes ``-score`` (reference 0); costs are divided by the baseline's
    (reference 2, i.e. twice the baseline's cost).
    """
    out = np.empty((len(rows), len(objectives)))
    for j, name in enumerate(objectives):
        for i, row in enumerate(rows):
            out[i, j] = -row["score"] if name == "score" else row[name] / max(baseline[name], 1e-12)
    return out


HV_REFERENCE = {"score": 0.0, "flops": 2.0, "latency": 2.0}


def read_front(run_dir: Path) -> dict[str, Any]:
    """Load and check ``RUN_DIR/front.json``."""
    if not run_dir.is_dir():
        raise MooheadError(
            f"run directory {run_dir} does not exist; run moohead evolve --out {run_dir}"
        )
    path = run_dir / FRONT_FILE
    if not path.is_file():
        raise MooheadError(
            f"{run_dir} has no {FRONT_FILE}: the run has not finished; resume it with "
            f"moohead evolve --out {run_dir}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MooheadError(
            f"{path} is corrupted ({exc}); re-run moohead evolve to rebuild it"
        ) from exc
    missing = [k for k in REQUIRED_KEYS if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise MooheadError(
            f"{path} lacks {', '.join(missing)}; re-run moohead evolve to rebuild it"
        )
    return doc


def with_refined(run_dir: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """``front.json``'s document with each refined head's entry in place of its frozen one."""
    path = run_dir / REFINED_FILE
    if not path.is_file():
        return doc
    try:
        refined = json.loads(path.read_text(encoding="utf-8"))
        by_id = {e["id"]: e for e in [*refined["refined"], refined["baseline"]]}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise MooheadError(f"{path} is corrupted ({exc}); run moohead refine again") from exc
    return replace_entries(doc, by_id)


def replace_entries(doc: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> dict[str, Any]:
    out = dict(doc)
    out["front"] = [by_id.get(e["id"], e) for e in doc["front"]]
    out["baseline"] = by_id.get(doc["baseline"]["id"], doc["baseline"])
    return out
