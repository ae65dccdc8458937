"""Finalising a search on fake evaluations: front selection with re-timed latency,
de-duplication, the baseline, failures, the written run and pruned weights. No model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from moohead.errors import MooheadError
from moohead.evaluation import Cost, Evaluation
from moohead.front import (
    FrontSpec,
    best_baseline,
    failure_counts,
    finalize,
    front_document,
    search_hypervolume,
    select_front,
)
from moohead.genome import Genome, baseline
from moohead.pooling import NativePooling
from moohead.references import References, define
from moohead.rundir import RunDir
from moohead.significance import Lead

LAYERS = 6


def ev(
    i: int, genome: Genome, score: float, flops: int, latency: float = 1.0, ok: bool = True
) -> Evaluation:
    if not ok:
        return Evaluation(id=i, genome=genome, status="failed", reason="diverged: loss is nan")
    cost = Cost(flops=flops, params=100, head_params=10, latency_ms=latency)
    return Evaluation(id=i, genome=genome, status="ok", metrics={"score": score}, cost=cost)


def spec(
    latency: dict[int, float] | None = None,
    objectives: tuple[str, ...] = ("score", "flops"),
    p_value: float = 0.001,
) -> tuple[FrontSpec, list[list[Genome]]]:
    """A FrontSpec whose re-timing returns ``latency[depth]`` (default 1 ms), whose
    validation score is the search-val score minus 0.01, and whose comparison of two heads
    on search-val gives the difference of their scores with ``p_value``; records the
    re-timing calls."""
    calls: list[list[Genome]] = []

    def retime(genomes: list[Genome]) -> list[float]:
        calls.append(genomes)
        return [(latency or {}).get(g.depth, 1.0) for g in genomes]

    def validate(e: Evaluation) -> dict[str, Any]:
        return {"score": e.score - 0.01, "splits": {"validation": {"score": e.score - 0.01}}}

    def compare(a: Evaluation, b: Evaluation) -> Lead:
        lead = a.score - b.score
        return Lead(lead, lead - 0.02, lead + 0.02, p_value, resamples=100, examples=50)

    header = {"task": "sst2", "metric": "accuracy"}
    return FrontSpec(objectives, LAYERS, retime, validate, compare, header), calls


def evaluations() -> list[Evaluation]:
    return [
        ev(0, baseline(LAYERS, 3e-4), 0.70, 6000),
        ev(1, baseline(LAYERS, 1e-3), 0.75, 6000),  # the baseline at its best lr
        ev(2, Genome(depth=1, pool="mean"), 0.72, 1000),  # cheap, on the front
        ev(3, Genome(depth=2, pool="mean"), 0.71, 2000),  # dominated by 2
        ev(4, Genome(depth=3, pool="attention"), 0.80, 3000),  # best, on the front
        ev(5, Genome(depth=1, pool="max"), 0.0, 0, ok=False),
        ev(6, Genome(depth=3, pool="attention", lr=3e-3), 0.80, 3000),  # a duplicate of 4
    ]


def saved(path: Path) -> RunDir:
    """A run directory holding the weights of every evaluation that trained."""
    run = RunDir(path)
    for e in evaluations():
        if e.ok:
            run.heads.save(e.id, {"w": torch.zeros(1)})
    return run


def test_best_baseline_takes_the_best_score_and_the_first_on_ties() -> None:
    evals = evaluations()
    assert best_baseline(evals, LAYERS).id == 1
    tie = [*evals, ev(7, baseline(LAYERS, 3e-3), 0.75, 6000)]
    assert best_baseline(tie, LAYERS).id == 1
    with pytest.raises(MooheadError, match="baseline head failed"):
        best_baseline(evals[2:], LAYERS)


def test_front_keeps_non_dominated_heads_once_sorted_by_flops() -> None:
    s, calls = spec()
    evals = evaluations()
    front, latency = select_front([e for e in evals if e.ok], s.objectives, s.retime, [evals[1]])
    assert [e.id for e in front] == [2, 4]  # 3 dominated, 6 a duplicate, 0/1 dominated by 4
    # the candidates and the baseline were re-timed in one call, each architecture once
    assert len(calls) == 1 and len(calls[0]) == len({g.arch_key() for g in calls[0]})
    assert set(latency) == {g.arch_key() for g in calls[0]}


def test_re_timed_latency_decides_the_front() -> None:
    """Archived latency says depth 3 is fast; re-timed together it is slower than depth 1
    and so only its better score keeps it; a slower, worse head drops out."""
    evals = [
        ev(0, baseline(LAYERS, 1e-3), 0.70, 6000, latency=9.0),
        ev(1, Genome(depth=1, pool="mean"), 0.72, 1000, latency=5.0),
        ev(2, Genome(depth=2, pool="mean"), 0.71, 1000, latency=0.5),  # archived: fastest
    ]
    s, _ = spec(latency={1: 1.0, 2: 2.0, 6: 6.0}, objectives=("score", "latency"))
    front, latency = select_front(evals, s.objectives, s.retime, [evals[0]])
    assert [e.id for e in front] == [1]
    assert latency[evals[2].genome.arch_key()] == 2.0


def test_front_document_scores_on_validation_and_counts_failures(tmp_path: Path) -> None:
    s, _ = spec()
    history = [{"generation": 1}]
    doc = front_document(evaluations(), history, s, saved(tmp_path))
    assert doc["task"] == "sst2" and doc["objectives"] == ["score", "flops"]
    assert doc["evaluations"] == 7 and doc["failed"] == 1
    assert doc["failures"] == {"diverged: loss is nan": 1}
    assert doc["baseline"]["id"] == 1 and doc["history"] == history
    entry = doc["front"][1]
    best = evaluations()[4]
    assert entry == {
        "id": 4,
        "summary": best.genome.describe(),
        "genome": best.genome.to_dict(),
        "score": 0.80,
        "validation": pytest.approx(0.79),
        "search_val_metrics": {"score": 0.80},
        "validation_metrics": {"validation": {"score": pytest.approx(0.79)}},
        "flops": 3000,
        "latency_ms": 1.0,
        "params": 100,
        "head_params": 10,
        "weights": "heads/4.pt",
    }


def test_finalize_writes_the_run_and_keeps_only_front_weights(tmp_path: Path) -> None:
    run = saved(tmp_path)
    s, _ = spec()
    doc = finalize(evaluations(), [{"generation": 1}], s, run)
    assert run.read_front() == doc and doc["history"] == [{"generation": 1}]
    assert run.plot_path.stat().st_size > 0
    assert sorted(int(p.stem) for p in (tmp_path / "heads").glob("*.pt")) == [1, 2, 4]


def test_finalizing_again_never_picks_a_head_whose_weights_were_dropped(tmp_path: Path) -> None:
    """Head 2's archived latency makes it a candidate; re-timed, the first finalisation
    finds it dominated and drops its weights. Re-timed again, noise could make it
    non-dominated: it can no longer be validated or exported, so it is not a candidate."""
    evals = [
        ev(0, baseline(LAYERS, 1e-3), 0.70, 6000, latency=9.0),
        ev(1, Genome(depth=1, pool="mean"), 0.72, 1000, latency=1.0),
        ev(2, Genome(depth=2, pool="mean"), 0.71, 2000, latency=0.5),
    ]
    run = RunDir(tmp_path)
    for e in evals:
        run.heads.save(e.id, {"w": torch.zeros(1)})
    objectives = ("score", "latency")
    first, _ = spec(latency={1: 1.0, 2: 2.0, 6: 6.0}, objectives=objectives)
    assert [e["id"] for e in finalize(evals, [], first, run)["front"]] == [1]
    again, _ = spec(latency={1: 1.0, 2: 0.5, 6: 6.0}, objectives=objectives)
    assert [e["id"] for e in finalize(evals, [], again, run)["front"]] == [1]


def test_front_prints_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_cli

    s, _ = spec()
    run = saved(tmp_path / "run")
    run.write_front(front_document(evaluations(), [], s, run))
    code, out, _ = run_cli(["front", str(run.path)], capsys)
    assert code == 0
    assert "1 of 7 evaluations failed: 1x diverged: loss is nan" in " ".join(out.split())


def test_piped_output_keeps_each_row_on_one_line(tmp_path: Path) -> None:
    """Output to a file or CI log (not a terminal) is not folded at 80 columns."""
    import subprocess
    import sys

    s, _ = spec()
    run = saved(tmp_path / "a-run-folder-with-a-long-name-so-rows-are-wide")
    run.write_front(front_document(evaluations(), [], s, run))
    out = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", "front", str(run.path)],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin", "TERM": "dumb"},
    ).stdout  # fmt: skip
    baseline_row = next(line for line in out.splitlines() if "baseline:" in line)
    assert len(baseline_row) > 100  # wider than the 80 columns rich assumes for a pipe
    assert evaluations()[1].genome.describe() in baseline_row
    assert "0.7500" in baseline_row and "0.7400" in baseline_row  # search-val, validation
    assert "1 of 7 evaluations failed: 1x diverged: loss is nan" in out


def test_search_hypervolume_by_hand() -> None:
    """Costs relative to the baseline's, reference (score at chance, here 0, twice the
    baseline's cost)."""
    base = ev(0, baseline(LAYERS, 1e-3), 0.5, 1000, latency=1.0)
    good = ev(1, Genome(depth=1), 0.8, 500, latency=0.25)
    failed = ev(2, Genome(depth=2), 0.0, 0, ok=False)
    evals = [base, good, failed]
    # good dominates the baseline: its box is 0.8 x (2 - 0.5) by FLOPs, 0.8 x (2 - 0.25) by latency
    assert search_hypervolume(evals, ("score", "flops"), base, 0.0) == pytest.approx(1.2)
    assert search_hypervolume(evals, ("score", "latency"), base, 0.0) == pytest.approx(1.4)
    assert search_hypervolume([base], ("score", "flops"), base, 0.0) == pytest.approx(0.5)
    # unmeasured latency: the baseline's scale is 1 ms and its own row 0 ms, which adds
    # its box 0.5 x (0.25 - 0) below good's
    base.cost = Cost(flops=1000, params=1, head_params=1, latency_ms=None)
    assert search_hypervolume(evals, ("score", "latency"), base, 0.0) == pytest.approx(1.525)
    unmeasured = ev(1, Genome(depth=1), 0.8, 500, latency=1.0)
    unmeasured.cost = Cost(flops=500, params=1, head_params=1, latency_ms=None)  # as 0 ms
    assert search_hypervolume([base, unmeasured], ("score", "latency"), base, 0.0) == pytest.approx(
        1.6
    )


def test_search_hypervolume_counts_only_what_lies_above_chance() -> None:
    """With SST-2-like chance 0.5, the 0.8 head's box is (0.8 - 0.5) x (2 - 0.5) and the
    baseline at 0.5 adds nothing; a head below chance adds nothing either."""
    base = ev(0, baseline(LAYERS, 1e-3), 0.5, 1000)
    good = ev(1, Genome(depth=1), 0.8, 500)
    below = ev(2, Genome(depth=2), 0.45, 100)
    assert search_hypervolume([base, good, below], ("score", "flops"), base, 0.5) == (
        pytest.approx(0.3 * 1.5)
    )
    assert search_hypervolume([base, below], ("score", "flops"), base, 0.5) == 0.0


def test_failure_counts_most_common_first_cut_to_the_first_clause() -> None:
    def failed(i: int, reason: str | None) -> Evaluation:
        return Evaluation(id=i, genome=Genome(depth=1), status="failed", reason=reason)

    long = "RuntimeError: " + "x" * 200
    evals = [
        failed(0, "diverged: loss is nan (fit)"),
        failed(1, "MemoryError: no memory (forward)"),
        failed(2, "MemoryError: no memory (backward)"),
        failed(3, None),
        failed(4, long),
        ev(5, Genome(depth=2), 0.7, 100),
        failed(6, "MemoryError: no memory (step)"),
    ]
    counts = failure_counts(evals)
    assert list(counts.items()) == [
        ("MemoryError: no memory", 3),
        ("diverged: loss is nan", 1),
        ("unknown", 1),
        (long[:120], 1),
    ]


def test_latency_within_the_tolerance_is_a_tie() -> None:
    """3% faster is timing noise: the better-scoring head dominates; 10% faster is not."""
    objectives = ("score", "latency")

    def front_ids(b_latency: float, retimed: float | None = None) -> list[int]:
        # archived latencies are the re-timed ones: candidates come from the archive
        base = ev(0, baseline(LAYERS, 1e-3), 0.5, 6000, latency=9.0)
        a = ev(1, Genome(depth=2), 0.80, 1000, latency=1.0)
        b = ev(2, Genome(depth=1), 0.79, 1000, latency=b_latency)
        again = b_latency if retimed is None else retimed
        s, _ = spec(latency={2: 1.0, 1: again, 6: 9.0}, objectives=objectives)
        return [e.id for e in select_front([base, a, b], objectives, s.retime, [base])[0]]

    assert front_ids(0.97) == [1]
    assert front_ids(0.90) == [1, 2]  # equal FLOPs: the better score first
    # Both stages use the tolerance: a tie in the archive is never re-timed; a tie once
    # re-timed does not enter the front.
    assert front_ids(0.97, retimed=0.5) == [1]
    assert front_ids(0.5, retimed=0.97) == [1]


def test_front_is_sorted_by_flops_then_score() -> None:
    evals = [  # archived, every head is a candidate; re-timing decides
        ev(0, baseline(LAYERS, 1e-3), 0.5, 6000, latency=3.0),
        ev(1, Genome(depth=2), 0.70, 3000, latency=0.15),
        ev(2, Genome(depth=1), 0.60, 1000, latency=0.1),
        ev(3, Genome(depth=3), 0.80, 3000, latency=0.2),
    ]
    s, _ = spec(latency={1: 0.1, 2: 1.0, 3: 0.5, 6: 3.0}, objectives=("score", "latency"))
    front, _ = select_front(evals, s.objectives, s.retime, [evals[0]])
    assert [e.id for e in front] == [2, 3]  # 1 is slower and worse than 3
    s, _ = spec(latency={1: 0.1, 2: 0.2, 3: 0.5, 6: 3.0}, objectives=("score", "latency"))
    front, _ = select_front(evals, s.objectives, s.retime, [evals[0]])
    assert [e.id for e in front] == [2, 3, 1]  # 3 before 1: same FLOPs, better score


def test_read_weights_names_a_missing_or_damaged_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.heads.save(3, {"w": torch.ones(2)})
    entry = {"id": 3, "weights": run.heads.name(3)}
    assert torch.equal(run.read_weights(entry)["w"], run.heads.load(3)["w"])
    with pytest.raises(MooheadError, match=r"heads/4\.pt is missing"):
        run.read_weights({"id": 4})
    run.heads.path(3).write_bytes(b"not a torch file")
    with pytest.raises(MooheadError, match=r"cannot load head weights .*the file is damaged"):
        run.read_weights(entry)


def test_references_are_reported_with_gains_and_their_weights_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    evals = evaluations()
    s, _ = spec()
    s.references = references_of(evals)
    run = saved(tmp_path)
    doc = finalize(evals, [], s, run)
    assert [r["name"] for r in doc["references"]] == ["hf-head", "probe@1", "probe@2"]
    assert doc["reference"] == "hf-head"
    assert "single-sentence" in doc["skipped_references"]["cosine"]
    assert "failed" in doc["skipped_references"]["native"]  # defined, never trained
    # the best search-val head (4: 0.80) against the reference (hf-head: 0.75), on validation
    assert doc["gains"]["head"] == 4
    assert doc["gains"]["vs_reference"] == pytest.approx(0.05)
    assert doc["gains"]["vs_hf_head"] == pytest.approx(0.05)
    # probe@2 (id 3) is off the front, but a reference: its weights stay
    assert sorted(int(p.stem) for p in (tmp_path / "heads").glob("*.pt")) == [1, 2, 3, 4]
    code, out, _ = run_cli(["front", str(tmp_path)], capsys)
    text = " ".join(out.split())
    assert code == 0 and "hf-head (baseline):" in text and "probe@2:" in text
    assert "baseline: " not in text.replace("(baseline):", "")  # hf-head is the baseline row
    assert "+0.0500 over hf-head (the reference), +0.0500 over hf-head" in text
    assert "cosine skipped: a single-sentence task" in text


def references_of(evals: list[Evaluation]) -> References:
    """hf-head (the reference, 0.75), probe@1 (on the front) and probe@2 (off it)."""
    refs = define(LAYERS, False, NativePooling("mean", True, "x"))
    refs.best = {"hf-head": evals[1], "probe@1": evals[2], "probe@2": evals[3]}
    return refs


def test_the_best_head_is_recommended_when_its_lead_is_significant(tmp_path: Path) -> None:
    evals = evaluations()
    s, _ = spec(p_value=0.001)
    s.references = references_of(evals)
    doc = finalize(evals, [], s, saved(tmp_path))
    rec = doc["recommended"]
    assert rec["id"] == 4 and rec["best"] == 4 and rec["name"] is None
    assert rec["lead"]["lead"] == pytest.approx(0.05) and rec["lead"]["p_value"] == 0.001
    assert rec["why"].startswith("the best search-val head: it leads hf-head by +5.00 points")
    assert doc["gains"]["recommended"] == {
        k: doc["gains"][k] for k in ("head", "vs_hf_head", "vs_reference")
    }


def test_the_reference_is_recommended_when_the_lead_may_be_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest import run_cli

    evals = evaluations()
    s, _ = spec(p_value=0.2)
    s.references = references_of(evals)
    doc = finalize(evals, [], s, saved(tmp_path))
    rec = doc["recommended"]
    assert rec["id"] == 1 and rec["name"] == "hf-head" and rec["best"] == 4
    assert "best search-val head #4 leads hf-head by +5.00 points" in rec["why"]
    assert "not significant at 0.05" in rec["why"]
    assert doc["gains"]["recommended"] == {"head": 1, "vs_hf_head": 0.0, "vs_reference": 0.0}
    assert doc["gains"]["head"] == 4  # the best head's gains are still reported
    code, out, _ = run_cli(["front", str(tmp_path)], capsys)
    text = " ".join(out.split())
    assert code == 0 and "recommended: #1, the reference (hf-head)" in text


def test_no_comparison_when_no_front_head_beats_the_reference(tmp_path: Path) -> None:
    evals = evaluations()
    refs = references_of(evals)
    refs.best["probe@1"] = evals[4]  # the best head is itself the best reference
    s, _ = spec()

    def never(a: Evaluation, b: Evaluation) -> Lead:
        raise AssertionError("nothing to compare")

    s.compare = never
    s.references = refs
    rec = finalize(evals, [], s, saved(tmp_path))["recommended"]
    assert rec["id"] == 4 and rec["name"] == "probe@1" and rec["lead"] is None
    assert "no front head scores above it" in rec["why"]
