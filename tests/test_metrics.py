import numpy as np
import pytest

from moohead.metrics import compute_metrics, f1, mcc, pearson, spearman
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
