"""The Pareto front: non-dominated selection, hypervolume, and finalising a search.

Everything here is a function over evaluations; measuring (re-timing latency, scoring on
validation) is injected, so unit tests run it without a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moohead.errors import MooheadError
from moohead.evaluation import Evaluation
from moohead.genome import Genome, is_baseline_arch
from moohead.references import References
from moohead.references import summary as reference_fields
from moohead.rundir import RunDir
from moohead.significance import ALPHA, Lead

# Latencies closer than this (relative) are a tie: timing noise on a shared machine is
# a few percent, and a head must not enter the front by being faster by noise alone.
LATENCY_TOLERANCE = 0.05
# FLOPs closer than this (relative) are a tie. FLOPs are exact, but a difference of 1% of
# the fused model is a head's few matrix-vector products beside the encoder: nothing a
# deployment can measure (below latency's 5% resolution), while a near-chance head that is
# 0.02% cheaper than a good one at the same depth would otherwise sit on the front.
FLOPS_TOLERANCE = 0.01
TOLERANCES = {"latency": LATENCY_TOLERANCE, "flops": FLOPS_TOLERANCE}


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
    """Relative tolerances of the objectives for ``nondominated``: costs tie within a few
    percent (``TOLERANCES``), scores are compared exactly."""
    return np.array([TOLERANCES.get(o, 0.0) for o in objectives])


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

    Score becomes ``-score``; costs are divided by the baseline's (see ``hv_reference``).
    """
    out = np.empty((len(rows), len(objectives)))
    for j, name in enumerate(objectives):
        for i, row in enumerate(rows):
            out[i, j] = -row["score"] if name == "score" else row[name] / max(baseline[name], 1e-12)
    return out


# Hypervolume reference of the costs: twice the baseline's.
COST_REFERENCE = 2.0


def hv_reference(objectives: tuple[str, ...], chance: float) -> np.ndarray:
    """The hypervolume reference point of ``normalised_objectives``: the score at chance
    level (``metrics.chance_score``: majority-class accuracy, MCC 0, correlation 0), so that
    a value means the same on every task and no volume is credited below chance; costs at
    ``COST_REFERENCE``."""
    return np.array([-chance if o == "score" else COST_REFERENCE for o in objectives])


def objective_rows(
    evals: list[Evaluation], objectives: tuple[str, ...], latency: dict[str, float] | None = None
) -> np.ndarray:
    """``[n, m]`` minimised objectives; ``latency`` (by architecture) overrides the archived one."""
    rows = [
        [e.objective(o, latency.get(e.genome.arch_key()) if latency else None) for o in objectives]
        for e in evals
    ]
    return np.array(rows, dtype=float).reshape(len(evals), len(objectives))


def best_baseline(evaluations: list[Evaluation], num_layers: int) -> Evaluation:
    """The baseline head at its best learning rate (by search-val score, first on ties)."""
    candidates = [e for e in evaluations if e.ok and is_baseline_arch(e.genome, num_layers)]
    if not candidates:
        raise MooheadError(
            "the baseline head failed to train at every learning rate; see the run's archive"
        )
    return max(candidates, key=lambda e: (e.score, -e.id))


def search_hypervolume(
    evaluations: list[Evaluation], objectives: tuple[str, ...], base: Evaluation, chance: float
) -> float:
    """Hypervolume of the evaluations' front above the chance score, costs relative to
    the baseline's."""
    assert base.cost is not None
    rows = [
        {"score": e.score, "flops": e.cost.flops, "latency": e.cost.latency_ms or 0.0}
        for e in evaluations
        if e.ok and e.cost
    ]
    base_row = {"flops": base.cost.flops, "latency": base.cost.latency_ms or 1.0}
    F = normalised_objectives(rows, objectives, base_row)
    return hypervolume(F[nondominated(F)], hv_reference(objectives, chance))


def failure_counts(evaluations: list[Evaluation]) -> dict[str, int]:
    """Why evaluations failed: reason -> how many (reasons cut to their first clause)."""
    counts: dict[str, int] = {}
    for e in evaluations:
        if not e.ok:
            reason = (e.reason or "unknown").split(" (")[0][:120]
            counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def select_front(
    ok: list[Evaluation],
    objectives: tuple[str, ...],
    retime: Callable[[list[Genome]], list[float]],
    also_time: list[Evaluation],
) -> tuple[list[Evaluation], dict[str, float]]:
    """The front of successful evaluations, with latency re-measured.

    Latency is a measurement: the archived front's candidates (and ``also_time``, the
    baseline and the references) are re-timed together by ``retime``, so noise cannot
    pick the front. Of identical objective vectors (same architecture and score) the
    first evaluated stays.

    Returns:
        (the front by FLOPs then score, latency in ms by architecture).
    """
    tol = tolerances(objectives)
    candidates = [ok[i] for i in np.flatnonzero(nondominated(objective_rows(ok, objectives), tol))]
    archs = {e.genome.arch_key(): e.genome for e in [*candidates, *also_time]}
    latency = dict(zip(archs, retime(list(archs.values())), strict=True))
    rows = objective_rows(candidates, objectives, latency)
    front, seen = [], set()
    for e, keep, row in zip(candidates, nondominated(rows, tol), rows, strict=True):
        if keep and tuple(row) not in seen:
            seen.add(tuple(row))
            front.append(e)
    front.sort(key=lambda e: (e.cost.flops, -e.score))  # type: ignore[union-attr]
    return front, latency


@dataclass
class FrontSpec:
    """What finalising a search needs besides its evaluations.

    Attributes:
        objectives: The search's objectives.
        num_layers: The encoder's depth (to recognise the baseline).
        retime: Latencies (ms) of architectures, measured together.
        validate: Official validation metrics of an evaluation's saved model:
            ``{"score": ..., "splits": {name: metrics}}``.
        compare: How far the first evaluation's saved model leads the second's on
            search-val (a paired bootstrap, ``significance.paired_bootstrap``).
        header: ``front.json``'s descriptive fields (task, metric, encoder, device, ...).
        references: The search's tuned references.
    """

    objectives: tuple[str, ...]
    num_layers: int
    retime: Callable[[list[Genome]], list[float]]
    validate: Callable[[Evaluation], dict[str, Any]]
    compare: Callable[[Evaluation, Evaluation], Lead]
    header: dict[str, Any]
    references: References = field(default_factory=lambda: References([]))


def budget_counts(evaluations: list[Evaluation]) -> dict[str, int]:
    """How many evaluations each training budget got (``"1"`` only, without halving)."""
    from moohead.config import show_budgets

    counts: dict[str, int] = {}
    for e in sorted(evaluations, key=lambda e: e.budget):
        name = show_budgets([e.budget])
        counts[name] = counts.get(name, 0) + 1
    return counts


def front_document(
    evaluations: list[Evaluation], history: list[dict[str, Any]], spec: FrontSpec, run: RunDir
) -> dict[str, Any]:
    """``front.json``'s document: the baseline and the front, re-scored on validation.

    Heads whose weights an earlier finalisation dropped (they were off its front) are not
    candidates: a search resumed for more generations re-times latency, and noise could
    otherwise put back on the front a head that can no longer be validated or exported.
    """
    full = [e for e in evaluations if e.full]  # heads stopped at a lower budget kept no weights
    ok = [e for e in full if e.ok and run.heads.has(e.id)]
    base = best_baseline(full, spec.num_layers)
    refs = [ev for _, ev in spec.references.ranked()]
    front, latency = select_front(ok, spec.objectives, spec.retime, [base, *refs])
    validated: dict[int, dict[str, Any]] = {}

    def entry(e: Evaluation) -> dict[str, Any]:
        assert e.cost is not None
        if e.id not in validated:
            validated[e.id] = spec.validate(e)
        val = validated[e.id]
        return {
            "id": e.id,
            "summary": e.genome.describe(),
            "genome": e.genome.to_dict(),
            "score": e.score,
            "validation": val["score"],
            "search_val_metrics": e.metrics,
            "validation_metrics": val["splits"],
            "flops": e.cost.flops,
            "latency_ms": latency[e.genome.arch_key()],
            "params": e.cost.params,
            "head_params": e.cost.head_params,
            "weights": run.heads.name(e.id),
        }

    base_entry, entries = entry(base), [entry(e) for e in front]
    refs_doc = reference_fields(spec.references, entry)
    chosen = recommend(front, spec.references.ranked(), spec.compare)
    return {
        **spec.header,
        "objectives": list(spec.objectives),
        "evaluations": len(evaluations),
        "failed": sum(1 for e in evaluations if not e.ok),
        "failures": failure_counts(evaluations),
        "evaluations_by_budget": budget_counts(evaluations),
        "baseline": base_entry,
        "front": entries,
        **refs_doc,
        "recommended": chosen,
        "gains": gains(entries, refs_doc["references"], base_entry, chosen["id"]),
        "history": history,
    }


def recommend(
    front: list[Evaluation],
    ranked: list[tuple[str, Evaluation]],
    compare: Callable[[Evaluation, Evaluation], Lead],
) -> dict[str, Any]:
    """The head a user should take when score is all that matters: the front's best
    search-val head if its lead over the reference (the best search-val reference) is
    significant on search-val, else the reference.

    The best head is the maximum of many noisy search-val scores, so a small lead is
    mostly selection noise; the reference is one fixed, tuned recipe.

    Returns:
        ``{"id", "name" (the reference's, or None), "summary", "best" (the best head's id),
        "lead" (the paired bootstrap, or None), "why"}``.
    """
    best = max(front, key=lambda e: (e.score, -e.id))
    lead: Lead | None = None
    if not ranked:
        chosen, name = best, None
        why = "the best search-val head; no reference trained to compare it with"
    else:
        ref_name, ref = ranked[0]
        if best.score <= ref.score:  # the best head may be the reference itself
            chosen, name = ref, ref_name
            why = f"the reference ({ref_name}): no front head scores above it on search-val"
        else:
            lead = compare(best, ref)
            test = (
                f"leads {ref_name} by {100 * lead.lead:+.2f} points on search-val "
                f"(paired bootstrap p={lead.p_value:.3f}, {100 * (1 - 2 * ALPHA):g}% interval "
                f"{100 * lead.low:+.2f} to {100 * lead.high:+.2f})"
            )
            if lead.significant:
                chosen, name, why = best, None, f"the best search-val head: it {test}"
            else:
                chosen, name = ref, ref_name
                why = (
                    f"the reference ({ref_name}): the best search-val head #{best.id} {test}, "
                    f"not significant at {ALPHA:g}"
                )
    return {
        "id": chosen.id,
        "name": name,
        "summary": chosen.genome.describe(),
        "best": best.id,
        "lead": lead.to_dict() if lead else None,
        "why": why,
    }


def gains(
    front: list[dict[str, Any]],
    references: list[dict[str, Any]],
    hf_head: dict[str, Any],
    recommended: int,
) -> dict[str, Any]:
    """Validation gains (never chosen on validation) of the front's best search-val head
    and of the recommended head over the best search-val reference and over ``hf-head``."""

    def over(e: dict[str, Any]) -> dict[str, Any]:
        out = {"head": e["id"], "vs_hf_head": e["validation"] - hf_head["validation"]}
        if references:
            out["vs_reference"] = e["validation"] - references[0]["validation"]
        return out

    best = max(front, key=lambda e: (e["score"], -e["id"]))
    chosen = next(e for e in [*front, *references] if e["id"] == recommended)
    return over(best) | {"recommended": over(chosen)}


def finalize(
    evaluations: list[Evaluation], history: list[dict[str, Any]], spec: FrontSpec, run: RunDir
) -> dict[str, Any]:
    """Write ``front.json`` and the plot, then drop the weights of heads off the front
    (but for the baseline's and the references')."""
    from moohead.plot import plot_front

    doc = front_document(evaluations, history, spec, run)
    run.write_front(doc)
    plot_front(doc, [e.to_record() for e in evaluations], run.plot_path)
    # Only now that the front is written: the front's, baseline's and references' stay.
    run.heads.prune({e["id"] for e in [doc["baseline"], *doc["front"], *doc["references"]]})
    return doc
