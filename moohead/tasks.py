"""GLUE task definitions: text columns, label counts and official metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """A sentence or sentence-pair task.

    Attributes:
        name: Task name (a GLUE name or a custom task's folder name).
        text_columns: One column (single sentence) or two (pair).
        num_labels: Number of classes; 1 means regression.
        metrics: Metric names; the main score is their mean (GLUE convention).
        validation_splits: Official evaluation splits (two for MNLI).
        label_column: Column with the label.
        label_names: Class names, in label order (empty: the ids themselves).
    """

    name: str
    text_columns: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    validation_splits: tuple[str, ...] = ("validation",)
    label_column: str = "label"
    label_names: tuple[str, ...] = ()

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def metric_name(self) -> str:
        """Display name of the main score, e.g. ``f1/accuracy``."""
        return "/".join(self.metrics)

    @property
    def labels(self) -> list[str]:
        """Class names for display and export (none for regression)."""
        if self.is_regression:
            return []
        return list(self.label_names) or [str(i) for i in range(self.num_labels)]

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.text_columns, self.label_column)


GLUE_TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("cola", ("sentence",), 2, ("mcc",), label_names=("unacceptable", "acceptable")),
        Task("sst2", ("sentence",), 2, ("accuracy",), label_names=("negative", "positive")),
        Task(
            "mrpc",
            ("sentence1", "sentence2"),
            2,
            ("f1", "accuracy"),
            label_names=("not_equivalent", "equivalent"),
        ),
        Task(
            "qqp",
            ("question1", "question2"),
            2,
            ("f1", "accuracy"),
            label_names=("not_duplicate", "duplicate"),
        ),
        Task("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearman")),
        Task(
            "mnli",
            ("premise", "hypothesis"),
            3,
            ("accuracy",),
            validation_splits=("validation_matched", "validation_mismatched"),
            label_names=("entailment", "neutral", "contradiction"),
        ),
        Task(
            "qnli",
            ("question", "sentence"),
            2,
            ("accuracy",),
            label_names=("entailment", "not_entailment"),
        ),
        Task(
            "rte",
            ("sentence1", "sentence2"),
            2,
            ("accuracy",),
            label_names=("entailment", "not_entailment"),
        ),
        Task(
            "wnli",
            ("sentence1", "sentence2"),
            2,
            ("accuracy",),
            label_names=("not_entailment", "entailment"),
        ),
    )
}
