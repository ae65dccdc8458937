"""Successive halving inside NSGA-II: each batch of new genomes trains first at the
smallest budget, and only the best by non-dominated rank go on to the next.

Budgets are shares of the full data-times-epochs budget, increasing and ending at 1
(``--budgets 1/9,1/3,1``). FLOPs and latency are exact at any budget; only the score is
uncertain, so promotion ranks each rung's heads by non-dominated sorting of (score at the
rung, costs), crowding distance breaking ties within a front, and keeps the share the next
budget's ratio allows (a third for 1/3 -> 1). Promoted heads continue from where they
stopped (the trainer keeps them paused); the rest keep their lower-budget evaluation.

NSGA-II's survival compares heads at equal budget only: ``survival_objectives`` lifts a
head below the full budget above every full-budget one on every objective, by a margin
that grows as its budget shrinks, so heads of different budgets never meet in one front
and each rung's heads are ranked among themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from moohead.evaluate import Evaluator
from moohead.evaluation import FAILED_OBJECTIVE, Evaluation
from moohead.genome import Genome

RUNG_MARGIN = 1e15  # above any score, FLOPs or latency; below FAILED_OBJECTIVE


def survival_objectives(ev: Evaluation, objectives: Sequence[str]) -> list[float]:
    """What NSGA-II's survival minimises for an evaluation: its objectives, lifted by a
    margin per halving of budget below 1, so heads meet only at equal budget."""
    values = [ev.objective(o) for o in objectives]
    if ev.full or not ev.ok:
        return values
    lift = RUNG_MARGIN * (1.0 + round(-math.log2(ev.budget), 6))
    assert lift < FAILED_OBJECTIVE / 2
    return [v + lift for v in values]


def promote(evaluations: list[Evaluation], objectives: Sequence[str], keep: int) -> list[int]:
    """Indices of the ``keep`` best evaluations by non-dominated rank, then crowding
    distance (pymoo's, as NSGA-II's survival); failed ones never."""
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    ok = [i for i, e in enumerate(evaluations) if e.ok]
    if len(ok) <= keep:
        return ok
    F = np.array([[evaluations[i].objective(o) for o in objectives] for i in ok], dtype=float)
    chosen: list[int] = []
    for front in NonDominatedSorting().do(F):
        if len(chosen) + len(front) <= keep:
            chosen += [ok[i] for i in front]
            continue
        crowding = calc_crowding_distance(F[front])
        order = sorted(range(len(front)), key=lambda j: (-crowding[j], front[j]))
        chosen += [ok[front[j]] for j in order[: keep - len(chosen)]]
        break
    return sorted(chosen)


class Halving:
    """The evaluator NSGA-II's problem calls: each batch of genomes goes through the
    budgets' rungs; every genome answers with its evaluation at the highest budget it
    reached. With one budget (``(1.0,)``) it is the plain evaluator.
    """

    def __init__(
        self, evaluator: Evaluator, budgets: Sequence[float], objectives: Sequence[str]
    ) -> None:
        self.evaluator, self.budgets, self.objectives = evaluator, tuple(budgets), objectives

    def __call__(self, genomes: list[Genome]) -> list[Evaluation]:
        if len(self.budgets) == 1:
            return self.evaluator(genomes)
        reached: dict[str, Evaluation] = {}
        current: dict[str, Genome] = {}
        # Each genome once; those this run evaluated in full before are answered. Full
        # evaluations only restored from a killed run's archive do not count: their genomes
        # go through the rungs again (answered from the archive), so that each rung's
        # promotion ranks the same heads as before the kill.
        for g in genomes:
            done = self.evaluator.asked(g)
            if done is not None:
                reached[g.key()] = done
            else:
                current.setdefault(g.key(), g)
        self._halve(list(current.values()), reached)
        return [reached[g.key()] for g in genomes]

    def _halve(self, current: list[Genome], reached: dict[str, Evaluation]) -> None:
        trainer = self.evaluator.trainer
        try:
            for rung, budget in enumerate(self.budgets):
                if not current:
                    break
                evaluations = self.evaluator(current, budget)
                reached.update({g.key(): e for g, e in zip(current, evaluations, strict=True)})
                if rung + 1 == len(self.budgets):
                    break
                keep = math.ceil(len(current) * budget / self.budgets[rung + 1])
                current = [current[i] for i in promote(evaluations, self.objectives, keep)]
                trainer.keep_paused({g.key() for g in current})
        finally:
            trainer.keep_paused(set())
