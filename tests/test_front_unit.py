"""Unit tests of front.py's pure functions: epsilon-dominance, hypervolume, normalisation.

Hand-computed cases, no model and no run folder: each runs in microseconds, so the
mutation run (``make mutation``) can afford them for every mutant.
"""

import numpy as np
import pytest

from moohead.front import hypervolume, nondominated, normalised_objectives, tolerances


def mask(F: list[list[float]], rel_tol: list[float] | None = None) -> list[bool]:
    tol = None if rel_tol is None else np.array(rel_tol)
    return nondominated(np.array(F, dtype=float), tol).tolist()


# --- nondominated -------------------------------------------------------------------------


def test_nondominated_keeps_exactly_the_pareto_set() -> None:
    # (1,4) (2,2) (4,1) trade off; (3,3) is dominated by (2,2); (5,5) by everything.
    F: list[list[float]] = [[1, 4], [3, 3], [2, 2], [5, 5], [4, 1]]
    assert mask(F) == [True, False, True, False, True]


def test_equal_in_one_objective_and_better_in_another_dominates() -> None:
    assert mask([[1, 2], [1, 3]]) == [True, False]
    assert mask([[2, 1], [3, 1]]) == [True, False]


def test_exact_duplicates_are_all_kept() -> None:
    # Neither copy is strictly better than the other: the caller breaks the tie.
    assert mask([[1, 2], [1, 2], [2, 3]]) == [True, True, False]
    assert mask([[1, 2], [1, 2]], rel_tol=[0.0, 0.05]) == [True, True]


def test_single_point_and_single_objective() -> None:
    assert mask([[7, 7]]) == [True]
    assert mask([[3], [1], [2], [1]]) == [False, True, False, True]


def test_no_tolerance_is_the_same_as_zero_tolerance() -> None:
    rng = np.random.default_rng(0)
    F = rng.integers(0, 4, size=(40, 3)).astype(float)  # many ties
    np.testing.assert_array_equal(nondominated(F), nondominated(F, np.zeros(3)))


def test_slower_within_tolerance_counts_as_equal_so_the_cheaper_point_dominates() -> None:
    # B is 3% faster than A (a timing-noise difference) but needs twice the FLOPs.
    a, b = [1.0, 10.3], [2.0, 10.0]
    assert mask([a, b]) == [True, True]  # exact comparison: a trade-off
    assert mask([a, b], rel_tol=[0.0, 0.05]) == [True, False]  # with 5%: A dominates B


def test_point_dominated_only_outside_tolerance_is_kept() -> None:
    # B is 12.6% faster than A: more than the 5% noise tolerance, a real trade-off.
    a, b = [1.0, 10.3], [2.0, 9.0]
    assert mask([a, b], rel_tol=[0.0, 0.05]) == [True, True]
    # The boundary: B's slack is 5% of B's own latency (0.5 of 10.0); A at 10.5 is
    # still no worse, at 10.6 it is.
    assert mask([[1.0, 10.5], [2.0, 10.0]], rel_tol=[0.0, 0.05]) == [True, False]
    assert mask([[1.0, 10.6], [2.0, 10.0]], rel_tol=[0.0, 0.05]) == [True, True]


def test_better_within_tolerance_is_not_better() -> None:
    # Same FLOPs, A 3% faster: a tie in latency, so neither dominates.
    a, b = [1.0, 10.0], [1.0, 10.3]
    assert mask([a, b]) == [True, False]
    assert mask([a, b], rel_tol=[0.0, 0.05]) == [True, True]
    # 10% faster is better even with the tolerance.
    assert mask([[1.0, 9.0], [1.0, 10.0]], rel_tol=[0.0, 0.05]) == [True, False]


def test_tolerance_is_relative_to_the_magnitude_of_negative_values() -> None:
    # Scores are minimised as -score: the slack must use |value|, not the signed value.
    assert mask([[-0.80], [-0.81]], rel_tol=[0.05]) == [True, True]  # 1.2% apart: a tie
    assert mask([[-0.80], [-0.90]], rel_tol=[0.05]) == [False, True]  # 12% apart
    assert mask([[-0.80], [-0.81]]) == [False, True]
    # B scores 1.25% lower (a tie within 5%) at half the cost: B dominates A. A signed
    # slack would be negative here and keep A.
    a, b = [-0.80, 2.0], [-0.79, 1.0]
    assert mask([a, b]) == [True, True]
    assert mask([a, b], rel_tol=[0.05, 0.0]) == [False, True]


def test_tolerance_applies_per_objective() -> None:
    # Within 5% in latency (a tie) but exact in FLOPs: the FLOPs difference decides.
    assert mask([[1.0, 10.2], [1.01, 10.0]], rel_tol=[0.0, 0.05]) == [True, False]
    # The same with the tolerance on FLOPs instead: 1% FLOPs is a tie, latency is exact.
    assert mask([[1.0, 10.2], [1.01, 10.0]], rel_tol=[0.05, 0.0]) == [False, True]


def test_result_is_a_boolean_mask_of_the_rows() -> None:
    out = nondominated(np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]]))
    assert out.dtype == bool and out.shape == (3,)


# --- tolerances ---------------------------------------------------------------------------


def test_costs_tie_within_their_tolerance_scores_never() -> None:
    tol = tolerances(("score", "flops", "latency"))
    assert tol.tolist() == [0.0, 0.01, 0.05]
    assert tolerances(["latency", "score"]).tolist() == [0.05, 0.0]
    assert tolerances(("score", "flops")).tolist() == [0.0, 0.01]
    assert tol.dtype == float


def test_a_near_chance_head_does_not_enter_the_front_by_being_a_little_cheaper() -> None:
    """The GPU front's case: a 0.509 head 0.02% cheaper than a 0.84 one (same depth)."""
    F = np.array([[-0.84, 1_000_000.0], [-0.509, 999_800.0], [-0.40, 500_000.0]])
    assert nondominated(F, tolerances(("score", "flops"))).tolist() == [True, False, True]
    assert nondominated(F).tolist() == [True, True, True]  # exact FLOPs would keep it


def test_tolerances_plug_into_nondominated() -> None:
    objectives = ("score", "flops", "latency")
    F = np.array([[-0.80, 1.0, 10.3], [-0.80, 2.0, 10.0]])
    assert nondominated(F, tolerances(objectives)).tolist() == [True, False]


# --- hypervolume --------------------------------------------------------------------------


def test_hypervolume_of_a_staircase() -> None:
    # Reference (4, 4): columns of width 1 and heights 1, 2, 3 -> 6.
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(F, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert isinstance(hypervolume(F, np.array([4.0, 4.0])), float)


def test_hypervolume_of_one_point_is_its_box() -> None:
    assert hypervolume(np.array([[1.0, 1.5]]), np.array([3.0, 2.0])) == pytest.approx(1.0)
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), np.array([2.0, 3.0, 0.5])) == pytest.approx(3.0)


def test_dominated_points_add_no_hypervolume() -> None:
    F = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.0, 3.0], [2.5, 2.5]])
    assert hypervolume(F, np.array([4.0, 4.0])) == pytest.approx(6.0)


def test_points_outside_the_reference_are_ignored() -> None:
    ref = np.array([4.0, 4.0])
    inside = np.array([[1.0, 3.0], [2.0, 2.0]])
    outside = np.array([[0.0, 5.0], [5.0, 0.0], [4.0, 1.0], [-1.0, 4.0]])  # beyond or on it
    assert hypervolume(np.vstack([inside, outside]), ref) == pytest.approx(hypervolume(inside, ref))
    assert hypervolume(inside, ref) == pytest.approx(5.0)


def test_hypervolume_is_zero_when_nothing_is_inside() -> None:
    ref = np.array([4.0, 4.0])
    assert hypervolume(np.array([[5.0, 1.0], [1.0, 4.0]]), ref) == 0.0
    assert hypervolume(np.empty((0, 2)), ref) == 0.0


def test_hypervolume_grows_when_a_point_improves() -> None:
    ref = np.array([0.0, 2.0])  # the search's reference: score 0, twice the baseline's cost
    worse = np.array([[-0.8, 1.0]])
    better = np.array([[-0.9, 1.0]])
    assert hypervolume(worse, ref) == pytest.approx(0.8)
    assert hypervolume(better, ref) == pytest.approx(0.9)


# --- normalised_objectives ----------------------------------------------------------------


def test_score_is_negated_and_costs_divided_by_the_baselines() -> None:
    rows = [
        {"score": 0.8, "flops": 2e9, "latency": 5.0},
        {"score": 0.6, "flops": 6e9, "latency": 20.0},
    ]
    baseline = {"score": 0.7, "flops": 4e9, "latency": 10.0}
    out = normalised_objectives(rows, ("score", "flops", "latency"), baseline)
    np.testing.assert_allclose(out, [[-0.8, 0.5, 0.5], [-0.6, 1.5, 2.0]])


def test_columns_follow_the_objectives_order() -> None:
    rows = [{"score": 0.8, "flops": 2e9, "latency": 5.0}]
    baseline = {"flops": 4e9, "latency": 10.0}  # the baseline's score is not needed
    out = normalised_objectives(rows, ("latency", "score"), baseline)
    np.testing.assert_allclose(out, [[0.5, -0.8]])
    assert out.shape == (1, 2)


def test_a_zero_baseline_cost_does_not_divide_by_zero() -> None:
    out = normalised_objectives([{"score": 0.5, "flops": 3.0}], ("score", "flops"), {"flops": 0})
    assert np.isfinite(out).all()
    assert out[0, 1] == pytest.approx(3e12)


def test_no_rows_give_an_empty_matrix() -> None:
    assert normalised_objectives([], ("score", "flops"), {"flops": 1.0}).shape == (0, 2)


def test_normalised_baseline_sits_at_one_and_its_hypervolume_is_its_score() -> None:
    baseline = {"score": 0.75, "flops": 4e9, "latency": 10.0}
    F = normalised_objectives([baseline], ("score", "flops", "latency"), baseline)
    np.testing.assert_allclose(F, [[-0.75, 1.0, 1.0]])
    # Reference (0, 2, 2): a box of 0.75 x 1 x 1.
    assert hypervolume(F, np.array([0.0, 2.0, 2.0])) == pytest.approx(0.75)
