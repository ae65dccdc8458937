"""Progress of a search: per-generation statistics and the hooks a front end implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from moohead.evaluation import Evaluation


@dataclass(frozen=True)
class GenerationStats:
    """Progress after one NSGA-II generation."""

    generation: int
    generations: int
    evaluations: int
    new: int
    failed: int
    best_score: float
    hypervolume: float
    seconds: float


class Reporter:
    """Progress hooks; the CLI passes a rich implementation. These defaults are silent."""

    def cache(self, description: str, total: int) -> Callable[[int], None]:
        return lambda n: None

    def evaluated(self, evaluation: Evaluation) -> None:
        pass

    def generation(self, stats: GenerationStats) -> None:
        pass

    def message(self, text: str) -> None:
        pass
