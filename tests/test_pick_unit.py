"""pick.py's rules on hand-made fronts: the knee, ids, budgets and their messages.

No CLI and no model (test_pick.py covers ``moohead pick``), so the mutation run can use these.
"""

import json
from pathlib import Path
from typing import Any

import pytest

from moohead.errors import MooheadError
from moohead.pick import PickConfig, choose, knee_point, pick


def entry(i: int, score: float, gflops: float, ms: float) -> dict[str, Any]:
    return {"id": i, "score": score, "flops": gflops * 1e9, "latency_ms": ms}


BASELINE = entry(0, 0.80, 3.0, 30.0)
FRONT = [
    entry(1, 0.78, 0.5, 6.0),
    entry(2, 0.86, 0.6, 7.0),
    entry(3, 0.87, 1.0, 12.0),
    entry(4, 0.875, 2.9, 29.0),
]
DOC = {"task": "sst2", "metric": "accuracy", "baseline": BASELINE, "front": FRONT}


def ids(entries: list[dict[str, Any]]) -> list[int]:
    return [e["id"] for e in entries]


# --- PickConfig ---------------------------------------------------------------------------


def test_budgets_in_a_fixed_order_with_their_comparisons() -> None:
    cfg = PickConfig(max_latency_ms=12.0, max_flops=5e8, min_score=0.85)
    assert cfg.budgets() == [
        ("latency_ms", "<=", 12.0),
        ("flops", "<=", 5e8),
        ("score", ">=", 0.85),
    ]
    assert PickConfig(max_flops=1e9).budgets() == [("flops", "<=", 1e9)]
    assert PickConfig(min_score=0.0).budgets() == [("score", ">=", 0.0)]  # zero is a bound
    assert PickConfig(knee=True).budgets() == []


@pytest.mark.parametrize(
    ("cfg", "rule"),
    [
        (PickConfig(knee=True), "knee"),
        (PickConfig(recommended=True), "recommended"),
        (PickConfig(id=3), "id 3"),
        (PickConfig(id=0), "id 0"),
        (PickConfig(max_latency_ms=12.0), "latency_ms <= 12"),
        (PickConfig(max_flops=5e8, min_score=0.85), "flops <= 5e+08, score >= 0.85"),
        (PickConfig(max_latency_ms=2.5, max_flops=1e9, min_score=0.5),
         "latency_ms <= 2.5, flops <= 1e+09, score >= 0.5"),
    ],
)  # fmt: skip
def test_rule_names_the_choice(cfg: PickConfig, rule: str) -> None:
    assert cfg.rule() == rule


@pytest.mark.parametrize(
    "cfg",
    [PickConfig(knee=True), PickConfig(id=0), PickConfig(id=7), PickConfig(min_score=0.0),
     PickConfig(recommended=True),
     PickConfig(max_flops=1e9, max_latency_ms=3.0, min_score=0.5)],
)  # fmt: skip
def test_exactly_one_mode_is_valid(cfg: PickConfig) -> None:
    cfg.validate()


@pytest.mark.parametrize(
    "cfg",
    [PickConfig(), PickConfig(knee=True, id=1), PickConfig(knee=True, max_flops=1.0),
     PickConfig(id=0, min_score=0.5), PickConfig(knee=True, id=2, max_latency_ms=1.0),
     PickConfig(recommended=True, knee=True), PickConfig(recommended=True, min_score=0.1)],
)  # fmt: skip
def test_none_or_several_modes_are_refused(cfg: PickConfig) -> None:
    with pytest.raises(
        MooheadError,
        match=r"^choose exactly one of --recommended, --knee, --id N, or budgets "
        r"\(--max-latency-ms, --max-flops, --min-score\)$",
    ):
        cfg.validate()


# --- knee_point ---------------------------------------------------------------------------


def test_knee_maximises_scaled_score_minus_scaled_flops() -> None:
    # score' = [0, .857, 1], flops' = [0, .111, 1]: the middle point gains most for its cost.
    front = [entry(1, 0.50, 1.0, 1.0), entry(2, 0.80, 2.0, 2.0), entry(3, 0.85, 10.0, 9.0)]
    assert knee_point(front)["id"] == 2
    assert knee_point(FRONT)["id"] == 2


def test_knee_uses_scaled_not_raw_values() -> None:
    # Raw FLOPs (1e9) would swamp scores; scaled, point 3 is the knee
    # (score' = [0, .2, .9, 1], flops' = [0, .1, .2, 1]).
    front = [entry(1, 0.60, 1.0, 1), entry(2, 0.62, 1.1, 1), entry(3, 0.69, 1.2, 1),
             entry(4, 0.70, 2.0, 1)]  # fmt: skip
    assert knee_point(front)["id"] == 3
    # Shifted scores give the same knee: only differences count.
    shifted = [{**e, "score": e["score"] + 5.0} for e in front]
    assert knee_point(shifted)["id"] == 3


def test_knee_of_one_or_two_points_is_the_best_score() -> None:
    assert knee_point([entry(5, 0.7, 1.0, 1.0)])["id"] == 5
    assert knee_point([entry(1, 0.9, 2.0, 1.0), entry(2, 0.7, 1.0, 1.0)])["id"] == 1
    assert knee_point([entry(1, 0.7, 1.0, 1.0), entry(2, 0.9, 2.0, 1.0)])["id"] == 2


def test_knee_with_equal_flops_is_the_best_score() -> None:
    front = [entry(1, 0.7, 1.0, 1.0), entry(2, 0.9, 1.0, 1.0), entry(3, 0.8, 1.0, 1.0)]
    assert knee_point(front)["id"] == 2


def test_knee_with_equal_scores_is_the_cheapest() -> None:
    front = [entry(1, 0.8, 3.0, 1.0), entry(2, 0.8, 1.0, 1.0), entry(3, 0.8, 2.0, 1.0)]
    assert knee_point(front)["id"] == 2


# --- choose -------------------------------------------------------------------------------


def test_choose_by_id_finds_front_heads_and_the_baseline() -> None:
    assert choose(DOC, PickConfig(id=3)) is FRONT[2]
    assert choose(DOC, PickConfig(id=0)) is BASELINE


def test_choose_unknown_id_lists_the_front() -> None:
    with pytest.raises(
        MooheadError, match=r"^id 9 is not on the front; front ids: 1, 2, 3, 4 \(baseline 0\)$"
    ):
        choose(DOC, PickConfig(id=9))


REFERENCE = {**entry(5, 0.85, 3.0, 30.0), "name": "native"}
WITH_REFS = {
    **DOC,
    "references": [REFERENCE, {**BASELINE, "name": "hf-head"}],
    "recommended": {"id": 5, "name": "native", "best": 4},
}


def test_choose_by_id_finds_references() -> None:
    assert choose(WITH_REFS, PickConfig(id=5)) is REFERENCE
    with pytest.raises(
        MooheadError,
        match=r"^id 9 is not on the front; front ids: 1, 2, 3, 4 \(baseline 0; references: "
        r"native 5\)$",
    ):
        choose(WITH_REFS, PickConfig(id=9))


def test_choose_the_recommended_head_a_reference_or_a_front_head() -> None:
    assert choose(WITH_REFS, PickConfig(recommended=True)) is REFERENCE
    on_front = {**WITH_REFS, "recommended": {"id": 4, "name": None, "best": 4}}
    assert choose(on_front, PickConfig(recommended=True)) is FRONT[3]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (DOC, r"^this run's front\.json has no recommended head \(written before"),
        ({**WITH_REFS, "refined": True}, r"^the recommendation compares the search's scores"),
        ({**WITH_REFS, "recommended": {"id": 77}}, r"^the recommended head 77 is neither"),
    ],
)
def test_choose_recommended_refuses_what_has_no_recommendation(
    doc: dict[str, Any], message: str
) -> None:
    with pytest.raises(MooheadError, match=message):
        choose(doc, PickConfig(recommended=True))


def test_a_refined_front_does_not_offer_the_frozen_references() -> None:
    with pytest.raises(MooheadError, match="is not on the front"):
        choose({**WITH_REFS, "refined": True}, PickConfig(id=5))


def test_choose_knee() -> None:
    assert choose(DOC, PickConfig(knee=True))["id"] == 2


def test_empty_front_is_refused_with_the_reason() -> None:
    doc = {**DOC, "front": []}
    for cfg in (PickConfig(knee=True), PickConfig(id=0), PickConfig(max_flops=1e12)):
        with pytest.raises(
            MooheadError,
            match=r"^the run's front is empty: every evaluation failed; see archive\.jsonl$",
        ):
            choose(doc, cfg)


def test_choose_validates_the_config_first() -> None:
    with pytest.raises(MooheadError, match="choose exactly one"):
        choose(DOC, PickConfig(knee=True, id=2))


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (PickConfig(max_latency_ms=12.0), 3),  # the bound itself is allowed
        (PickConfig(max_latency_ms=11.99), 2),
        (PickConfig(max_flops=0.6e9), 2),
        (PickConfig(max_flops=0.55e9), 1),
        (PickConfig(max_latency_ms=100.0), 4),  # no constraint: the best score
        (PickConfig(min_score=0.86), 2),  # the bound itself is allowed; cheapest above it
        (PickConfig(min_score=0.0), 1),  # everything qualifies: the cheapest
        (PickConfig(min_score=0.85, max_latency_ms=20), 3),  # best within budget and above score
        (PickConfig(min_score=0.85, max_flops=0.9e9), 2),
        (PickConfig(max_latency_ms=12.0, max_flops=0.7e9), 2),  # both budgets hold
    ],
)
def test_budget_rules(cfg: PickConfig, expected: int) -> None:
    assert choose(DOC, cfg)["id"] == expected


def test_ties_break_towards_fewer_flops_or_higher_score() -> None:
    front = [entry(1, 0.9, 2.0, 5.0), entry(2, 0.9, 1.0, 5.0), entry(3, 0.8, 1.0, 5.0)]
    doc = {**DOC, "front": front}
    # Best score within budget: the two 0.9s tie; the cheaper wins.
    assert choose(doc, PickConfig(max_latency_ms=10.0))["id"] == 2
    # Cheapest above a score: the two 1-GFLOP heads tie; the better wins.
    assert choose(doc, PickConfig(min_score=0.5))["id"] == 2


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (PickConfig(max_latency_ms=1.0),
         "no front head has latency_ms <= 1; the closest is id 1 (score 0.7800, 0.500 GFLOPs, 6.00 ms)"),
        (PickConfig(max_flops=0.1e9),
         "no front head has flops <= 1e+08; the closest is id 1 (score 0.7800, 0.500 GFLOPs, 6.00 ms)"),
        (PickConfig(min_score=0.99),
         "no front head has score >= 0.99; the closest is id 4 (score 0.8750, 2.900 GFLOPs, 29.00 ms)"),
        (PickConfig(min_score=0.871, max_latency_ms=12.5),  # the closest among those in budget
         "no front head has score >= 0.871; the closest is id 3 (score 0.8700, 1.000 GFLOPs, 12.00 ms)"),
        (PickConfig(max_latency_ms=6.9, max_flops=0.4e9),
         "no front head has flops <= 4e+08; the closest is id 1 (score 0.7800, 0.500 GFLOPs, 6.00 ms)"),
    ],
)  # fmt: skip
def test_no_match_names_the_closest_head(cfg: PickConfig, message: str) -> None:
    with pytest.raises(MooheadError) as exc:
        choose(DOC, cfg)
    assert str(exc.value) == message


def test_closest_is_by_distance_to_the_bound() -> None:
    front = [entry(1, 0.5, 1.0, 10.0), entry(2, 0.6, 2.0, 3.5), entry(3, 0.7, 3.0, 20.0)]
    with pytest.raises(MooheadError, match=r"the closest is id 2 "):
        choose({**DOC, "front": front}, PickConfig(max_latency_ms=3.0))


# --- pick ---------------------------------------------------------------------------------


def test_pick_records_the_choice(tmp_path: Path) -> None:
    (tmp_path / "front.json").write_text(json.dumps(DOC))
    record = pick(tmp_path, PickConfig(max_flops=0.6e9))
    frozen = {"fidelity": "frozen"}  # every score is marked with its fidelity
    assert record == {
        "rule": "flops <= 6e+08", "id": 2, "entry": FRONT[1] | frozen, "baseline": BASELINE | frozen
    }  # fmt: skip
    assert json.loads((tmp_path / "pick.json").read_text()) == record


def test_failed_pick_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "front.json").write_text(json.dumps(DOC))
    with pytest.raises(MooheadError, match="not on the front"):
        pick(tmp_path, PickConfig(id=42))
    assert not (tmp_path / "pick.json").exists()
