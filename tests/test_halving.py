"""Successive halving inside NSGA-II: promotion by non-dominated rank, survival at equal
budget, a real search with --budgets (resume after SIGKILL, refusal of other budgets,
the Ray executor), and the budgets' parsing."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from test_evaluate import archived, make
from test_resume import comparable, evolve_args, lines, wait_for_lines

from moohead.config import parse_budgets, show_budgets
from moohead.evaluation import FAILED_OBJECTIVE, Cost, Evaluation
from moohead.genome import Genome
from moohead.halving import Halving, promote, survival_objectives

BUDGETS = ["--budgets", "1/3,1"]


def ev(i: int, score: float, flops: int, budget: float = 1.0, ok: bool = True) -> Evaluation:
    return Evaluation(
        id=i, genome=Genome(depth=1 + i % 6), status="ok" if ok else "failed",
        metrics={"score": score}, cost=Cost(flops, 1, 1, None), budget=budget,
    )  # fmt: skip


def test_budgets_parse_and_print_as_fractions() -> None:
    assert parse_budgets("1/9, 1/3, 1") == (1 / 9, 1 / 3, 1.0)
    assert parse_budgets("1") == (1.0,) and parse_budgets("0.25,1") == (0.25, 1.0)
    assert show_budgets(parse_budgets("1/9,1/3,1")) == "1/9,1/3,1"


def test_promotion_ranks_by_non_dominated_fronts_then_crowding() -> None:
    evals = [
        ev(0, 0.80, 400),  # front 1
        ev(1, 0.70, 100),  # front 1
        ev(2, 0.75, 300),  # front 1 (middle: least crowded... its neighbours are close)
        ev(3, 0.60, 500),  # dominated by all of front 1
        ev(4, 0.95, 900, ok=False),  # failed: never promoted
        ev(5, 0.65, 200),  # front 2 (dominated by 1)
    ]
    assert promote(evals, ["score", "flops"], 3) == [0, 1, 2]
    assert promote(evals, ["score", "flops"], 2) == [0, 1]  # the extremes: infinite crowding
    assert promote(evals, ["score", "flops"], 4) == [0, 1, 2, 5]
    assert promote(evals, ["score", "flops"], 9) == [0, 1, 2, 3, 5]


def test_survival_compares_heads_only_at_equal_budget() -> None:
    """A head stopped at a lower budget is dominated by every full-budget head, whatever
    its score; heads of one rung compare on their own objectives; failed ones lose."""
    full = survival_objectives(ev(0, 0.10, 10**11), ["score", "flops"])
    ninth = survival_objectives(ev(2, 0.99, 10, budget=1 / 9), ["score", "flops"])
    third = survival_objectives(ev(1, 0.99, 10, budget=1 / 3), ["score", "flops"])
    assert all(a < b for a, b in zip(full, third, strict=True))
    assert all(a < b for a, b in zip(third, ninth, strict=True))
    better = survival_objectives(ev(3, 0.50, 10, budget=1 / 3), ["score", "flops"])
    assert third[0] < better[0] and third[1] == better[1]
    failed = survival_objectives(ev(4, 0.0, 0, budget=1 / 9, ok=False), ["score", "flops"])
    assert failed == [FAILED_OBJECTIVE, FAILED_OBJECTIVE] and max(ninth) < FAILED_OBJECTIVE


def test_a_resume_killed_after_a_promoted_head_finished_replays_the_same_rungs(
    tmp_path: Path,
) -> None:
    """Killed once the promoted head's full-budget evaluation was archived: the resumed
    search answers the batch from the archive and trains nothing. Had it counted that
    restored evaluation as known before the rungs, the rung would hold the other head
    alone and promote it to the full budget."""
    better, worse = Genome(depth=1, lr=3e-3), Genome(depth=1, lr=1e-3)  # same FLOPs
    evaluator, _, _ = make(tmp_path)
    first = Halving(evaluator, (1 / 3, 1.0), ("score", "flops"))([better, worse])
    records = archived(tmp_path)
    assert [(r["id"], r["budget"]) for r in records] == [(0, 1 / 3), (1, 1 / 3), (2, 1.0)]
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    resumed, fidelity, _ = make(resumed_dir)
    resumed.restore(records)
    again = Halving(resumed, (1 / 3, 1.0), ("score", "flops"))([better, worse])
    assert fidelity.trained == []
    assert [e.id for e in again] == [e.id for e in first] == [2, 1]
    assert [e.id for e in resumed.evaluations] == [e.id for e in evaluator.evaluations]


@pytest.mark.slow
def test_a_search_with_budgets_resumes_after_sigkill_and_refuses_other_budgets(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cache, ref = tmp_path / "cache", tmp_path / "reference"
    run = [*evolve_args(tiny_encoder_dir, glue_dir, ref, cache), *BUDGETS]
    subprocess.run(run, env=env, check=True, capture_output=True)
    records, front = comparable(ref)
    budgets = [r["budget"] for r in records]
    assert set(budgets) == {1 / 3, 1.0}
    # Of each generation's new heads a third (rounded up) went on to the full budget.
    low = {json.dumps(r["genome"], sort_keys=True) for r in records if r["budget"] < 1}
    high = [json.dumps(r["genome"], sort_keys=True) for r in records if r["budget"] == 1]
    promoted = low & set(high)
    assert 0 < len(promoted) < len(low)
    doc = json.loads((ref / "front.json").read_text())
    assert doc["evaluations_by_budget"] == {"1/3": budgets.count(1 / 3), "1": budgets.count(1.0)}
    full_ids = {r["id"] for r in records if r["budget"] == 1}
    assert {e["id"] for e in doc["front"]} <= full_ids  # only full-budget heads on the front
    shown = subprocess.run([*run[:3], "front", str(ref)], env=env, capture_output=True, text=True)
    low_n, full_n = budgets.count(1 / 3), budgets.count(1.0)
    assert f"successive halving: {low_n} at 1/3, {full_n} at 1 of the training" in " ".join(
        shown.stdout.split()
    )
    # Same seed, same search: the same archive and front.
    again = tmp_path / "again"
    subprocess.run([*evolve_args(tiny_encoder_dir, glue_dir, again, cache), *BUDGETS],
                   env=env, check=True, capture_output=True)  # fmt: skip
    assert comparable(again) == (records, front)
    # SIGKILL between the rungs of a generation, then resume: the uninterrupted run.
    out = tmp_path / "killed"
    args = [*evolve_args(tiny_encoder_dir, glue_dir, out, cache), *BUDGETS]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_low = next(i for i, r in enumerate(records) if r["budget"] < 1)
    wait_for_lines(proc, out / "archive.jsonl", first_low + 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lines(out / "archive.jsonl") < len(records), "killed too late to test a resume"
    resumed = subprocess.run(args, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert comparable(out) == (records, front)
    # A resume with other budgets is refused, naming the difference; nothing changes.
    before = (out / "archive.jsonl").read_text()
    other = subprocess.run([*args[:-1], "1/9,1/3,1"], env=env, capture_output=True, text=True)
    assert other.returncode == 2
    assert "budgets differs (run: 1/3,1, now: 1/9,1/3,1)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    plain = subprocess.run(args[:-2], env=env, capture_output=True, text=True)
    assert plain.returncode == 2 and "budgets differs (run: 1/3,1, now: 1)" in plain.stderr
    assert (out / "archive.jsonl").read_text() == before
