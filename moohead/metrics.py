"""Official GLUE metrics, in numpy, and the GLUE main score."""

from __future__ import annotations

import numpy as np

from moohead.tasks import Task


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold))


def f1(pred: np.ndarray, gold: np.ndarray) -> float:
    """Binary F1 of the positive class (label 1), as GLUE reports for MRPC/QQP."""
    tp = float(np.sum((pred == 1) & (gold == 1)))
    fp = float(np.sum((pred == 1) & (gold != 1)))
    fn = float(np.sum((pred != 1) & (gold == 1)))
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def mcc(pred: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation for binary labels; 0 when it is undefined."""
    tp = float(np.sum((pred == 1) & (gold == 1)))
    tn = float(np.sum((pred == 0) & (gold == 0)))
    fp = float(np.sum((pred == 1) & (gold == 0)))
    fn = float(np.sum((pred == 0) & (gold == 1)))
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else float((tp * tn - fp * fn) / denom)


def pearson(pred: np.ndarray, gold: np.ndarray) -> float:
    p, g = pred.astype(np.float64), gold.astype(np.float64)
    if p.std() == 0 or g.std() == 0:
        return 0.0
    return float(np.corrcoef(p, g)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    # Average the ranks of equal values.
    _, first, counts = np.unique(sorted_x, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        if count > 1:
            idx = order[start : start + count]
            ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(pred: np.ndarray, gold: np.ndarray) -> float:
    return pearson(_ranks(np.asarray(pred, np.float64)), _ranks(np.asarray(gold, np.float64)))


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": mcc, "pearson": pearson, "spearman": spearman}


def predictions(task: Task, outputs: np.ndarray) -> np.ndarray:
    """Turn model outputs (logits, or scores for regression) into predictions."""
    if task.is_regression:
        return outputs.reshape(-1)
    return outputs.argmax(axis=-1)


def compute_metrics(task: Task, outputs: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """All of the task's metrics plus ``score``, the GLUE main score (their mean)."""
    pred = predictions(task, outputs)
    if not task.is_regression:
        gold = gold.astype(np.int64)
    result = {name: METRICS[name](pred, gold) for name in task.metrics}
    result["score"] = float(np.mean([result[name] for name in task.metrics]))
    return result


def chance_score(task: Task, gold: np.ndarray) -> float:
    """The score of a constant answer, the level below which a head has learnt nothing:
    the majority class's for classification (its accuracy; MCC 0; F1 0 or that of calling
    everything positive), 0 for regression (a constant has no correlation)."""
    if task.is_regression or len(gold) == 0:
        return 0.0
    majority = int(np.bincount(gold.astype(np.int64), minlength=task.num_labels).argmax())
    outputs = np.eye(task.num_labels)[np.full(len(gold), majority)]
    return compute_metrics(task, outputs, gold)["score"]
