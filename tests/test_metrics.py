import numpy as np
import pytest

from moohead.metrics import accuracy, compute_metrics, f1, mcc, pearson, predictions, spearman
from moohead.tasks import GLUE_TASKS


def test_mcc_known_values() -> None:
    gold = np.array([1, 1, 1, 0, 0, 0])
    assert mcc(gold, gold) == pytest.approx(1.0)
    assert mcc(1 - gold, gold) == pytest.approx(-1.0)
    # tp=2 tn=2 fp=1 fn=1 -> (4 - 1) / sqrt(3*3*3*3) = 1/3
    assert mcc(np.array([1, 1, 0, 0, 0, 1]), gold) == pytest.approx(1 / 3)
    assert mcc(np.zeros(6, int), gold) == 0.0  # undefined -> 0, as GLUE reports


def test_f1_of_positive_class() -> None:
    gold = np.array([1, 1, 0, 0])
    pred = np.array([1, 0, 1, 0])  # tp=1 fp=1 fn=1
    assert f1(pred, gold) == pytest.approx(0.5)


def test_spearman_handles_ties_like_average_ranks() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0])
    b = np.array([1.0, 2.0, 3.0, 4.0])
    # average ranks of a: 0, 1.5, 1.5, 3 -> pearson with 0,1,2,3
    expected = pearson(np.array([0, 1.5, 1.5, 3]), np.array([0.0, 1, 2, 3]))
    assert spearman(a, b) == pytest.approx(expected)
    assert spearman(b, b**3) == pytest.approx(1.0)


def test_main_score_is_mean_of_task_metrics() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    gold = np.array([1, 0, 0, 1])
    m = compute_metrics(GLUE_TASKS["mrpc"], logits, gold)
    assert m["accuracy"] == 0.5 and m["f1"] == pytest.approx(0.5)
    assert m["score"] == pytest.approx(0.5)
    stsb = compute_metrics(
        GLUE_TASKS["stsb"], np.array([[0.0], [1.0], [3.0]]), np.array([0.0, 2.0, 2.5])
    )
    assert stsb["score"] == pytest.approx((stsb["pearson"] + stsb["spearman"]) / 2)


def test_accuracy_is_the_fraction_right() -> None:
    gold = np.array([0, 1, 1, 0, 1])
    assert accuracy(gold, gold) == 1.0
    assert accuracy(np.array([0, 1, 0, 0, 0]), gold) == pytest.approx(0.6)
    assert accuracy(1 - gold, gold) == 0.0
    assert isinstance(accuracy(gold, gold), float)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ([1, 1, 0, 0], [1, 1, 0, 0], 1.0),
        ([1, 1, 1, 0], [1, 1, 0, 0], 0.8),  # tp=2 fp=1 fn=0: 4 / 5
        ([1, 0, 0, 0], [1, 1, 1, 0], 0.5),  # tp=1 fp=0 fn=2: 2 / 4
        ([0, 0, 1, 1], [1, 1, 0, 0], 0.0),  # no true positive
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # no positive at all: 0, as GLUE reports
        ([1, 1, 1, 1], [0, 0, 0, 1], 0.4),  # tp=1 fp=3 fn=0: 2 / 5
        ([0, 1, 1, 0, 0], [0, 0, 1, 1, 1], 0.4),  # tp=1 fp=1 fn=2: 2 / 5
    ],
)
def test_f1_known_values(pred: list[int], gold: list[int], expected: float) -> None:
    assert f1(np.array(pred), np.array(gold)) == pytest.approx(expected)


def test_f1_and_mcc_read_class_1_as_positive() -> None:
    gold = np.array([1, 1, 0, 0, 0, 0])
    pred = np.array([1, 0, 0, 0, 0, 1])  # tp=1 fp=1 fn=1 tn=3
    assert f1(pred, gold) == pytest.approx(0.5)
    assert f1(1 - pred, 1 - gold) == pytest.approx(0.75)  # tp=3 fp=1 fn=1
    # (1*3 - 1*1) / sqrt(2*2*4*4) = 2/8
    assert mcc(pred, gold) == pytest.approx(0.25)
    assert mcc(1 - pred, 1 - gold) == pytest.approx(0.25)  # symmetric in the classes


def test_mcc_is_zero_when_one_side_is_constant() -> None:
    gold = np.array([1, 0, 1, 0])
    assert mcc(np.ones(4, int), gold) == 0.0
    assert mcc(gold, np.zeros(4, int)) == 0.0
    # tp=2 tn=1 fp=1 fn=0: (2 - 0) / sqrt(3*2*2*1)
    assert mcc(np.array([1, 1, 1, 0]), np.array([1, 1, 0, 0])) == pytest.approx(2 / np.sqrt(12))


def test_pearson_known_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert pearson(np.array([1, 2, 3]), np.array([1, 3, 2])) == pytest.approx(0.5)
    # Standard deviations of exactly 1 are not special.
    assert pearson(np.array([-1.0, 1.0]), np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert pearson(np.array([-1.0, 1.0]), np.array([2.0, 0.0])) == pytest.approx(-1.0)
    # Integer and float32 inputs are compared in float64.
    ints, floats = np.array([1, 2, 3], np.int64), np.array([3, 2, 1], np.float32)
    assert pearson(ints, floats) == pytest.approx(-1.0)


def test_pearson_is_zero_when_either_side_is_constant() -> None:
    varied = np.array([0.0, 1.0, 2.0])
    assert pearson(np.ones(3), varied) == 0.0
    assert pearson(varied, np.ones(3)) == 0.0
    assert pearson(np.ones(3), np.ones(3)) == 0.0


def test_spearman_averages_tied_ranks_wherever_they_fall() -> None:
    # Ties at the start, in the middle and at the end (0-based average ranks below).
    a = np.array([5.0, 1.0, 3.0, 3.0, 9.0, 1.0, 9.0])
    ranks = np.array([4.0, 0.5, 2.5, 2.5, 5.5, 0.5, 5.5])
    b = np.array([0.3, 0.1, 0.9, 0.5, 0.7, 0.2, 0.8])
    b_ranks = np.array([2.0, 0.0, 6.0, 3.0, 4.0, 1.0, 5.0])
    assert spearman(a, b) == pytest.approx(pearson(ranks, b_ranks))
    assert spearman(b, a) == pytest.approx(pearson(b_ranks, ranks))
    # Monotone maps keep the ranks: spearman is 1 where pearson is not.
    assert spearman(b, np.exp(10 * b)) == pytest.approx(1.0)
    assert pearson(b, np.exp(10 * b)) < 0.9
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 2, 3])) == pytest.approx(1.0)


def test_predictions_are_argmax_or_the_regression_score() -> None:
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    np.testing.assert_array_equal(predictions(GLUE_TASKS["mnli"], logits), [1, 0, 2])
    scores = np.array([[0.5], [4.25], [1.0]])
    out = predictions(GLUE_TASKS["stsb"], scores)
    assert out.shape == (3,) and out.tolist() == [0.5, 4.25, 1.0]


def test_compute_metrics_per_task() -> None:
    logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    gold = np.array([1.0, 0.0, 0.0, 1.0, 1.0])  # float labels are read as classes
    # pred 1 0 1 1 0: tp=2 fp=1 fn=1 tn=1
    assert compute_metrics(GLUE_TASKS["sst2"], logits, gold) == {
        "accuracy": pytest.approx(0.6),
        "score": pytest.approx(0.6),
    }
    assert compute_metrics(GLUE_TASKS["cola"], logits, gold) == {
        "mcc": pytest.approx(1 / 6),  # (2*1 - 1*1) / sqrt(3*3*2*2)
        "score": pytest.approx(1 / 6),
    }
    mrpc = compute_metrics(GLUE_TASKS["mrpc"], logits, gold)
    assert mrpc == {
        "f1": pytest.approx(2 / 3),
        "accuracy": pytest.approx(0.6),
        "score": pytest.approx((2 / 3 + 0.6) / 2),
    }
    assert list(mrpc) == ["f1", "accuracy", "score"]
    assert all(isinstance(v, float) for v in mrpc.values())


def test_regression_gold_keeps_its_fractions() -> None:
    outputs = np.array([[0.0], [1.0], [3.0], [2.0]])
    gold = np.array([0.2, 1.5, 2.5, 2.4], dtype=np.float32)
    m = compute_metrics(GLUE_TASKS["stsb"], outputs, gold)
    expected = np.corrcoef(outputs.ravel(), gold.astype(np.float64))[0, 1]
    assert m["pearson"] == pytest.approx(expected)  # 2.5 and 2.4 are not truncated to 2
    assert m["spearman"] == pytest.approx(1.0)
    assert m["score"] == pytest.approx((expected + 1.0) / 2)


def test_chance_score_is_a_constant_answer() -> None:
    from moohead.metrics import chance_score

    gold = np.array([1, 1, 1, 0])
    assert chance_score(GLUE_TASKS["sst2"], gold) == 0.75  # majority-class accuracy
    assert chance_score(GLUE_TASKS["cola"], gold) == 0.0  # MCC of a constant
    # MRPC: everything positive: F1 2*3/(2*3+1) and accuracy 0.75, averaged
    assert chance_score(GLUE_TASKS["mrpc"], gold) == pytest.approx((6 / 7 + 0.75) / 2)
    assert chance_score(GLUE_TASKS["mrpc"], 1 - gold) == pytest.approx((0 + 0.75) / 2)
    assert chance_score(GLUE_TASKS["stsb"], np.array([0.5, 4.0, 2.0])) == 0.0
    assert chance_score(GLUE_TASKS["mnli"], np.array([2, 2, 0, 1, 2])) == 0.6
