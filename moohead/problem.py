"""The pymoo side of the search: variables, objectives, and NSGA-II operators.

The Problem only turns variables into objective values; decoding and evaluating are
injected callables, so tests can run it on a tiny model or a fake evaluator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair

from moohead.evaluate import Evaluation
from moohead.genome import Genome
from moohead.halving import survival_objectives


class HeadSearchProblem(Problem):
    """Minimise ``[-score, flops, latency]`` (or the chosen subset) over head genomes."""

    def __init__(
        self,
        space: dict[str, Any],
        objectives: Sequence[str],
        decode: Callable[[dict[str, Any]], Genome],
        evaluate: Callable[[list[Genome]], list[Evaluation]],
    ) -> None:
        super().__init__(vars=space, n_obj=len(objectives))
        self.objectives = tuple(objectives)
        self.decode = decode
        self.evaluate_genomes = evaluate

    def _evaluate(self, X: Any, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        evaluations = self.evaluate_genomes([self.decode(x) for x in X])
        out["F"] = np.array([survival_objectives(e, self.objectives) for e in evaluations])


class CanonicalRepair(Repair):
    """Rewrite each candidate to its canonical genome, so pymoo's duplicate elimination
    sees genomes that compute the same head as the duplicates they are."""

    def __init__(
        self, decode: Callable[[dict[str, Any]], Genome], encode: Callable[[Genome], dict[str, Any]]
    ) -> None:
        super().__init__()
        self.decode_fn = decode
        self.encode_fn = encode

    def _do(self, problem: Any, X: Any, **kwargs: Any) -> Any:
        return np.array([self.encode_fn(self.decode_fn(x)) for x in X], dtype=object)


def make_nsga2(
    population: int,
    seeds: list[dict[str, Any]],
    repair: Repair,
    n_genes: int,
    offspring: int | None = None,
    initial_random: int | None = None,
) -> Any:
    """NSGA-II (rank and crowding survival) for mixed variables, seeded with ``seeds``,
    asking for ``offspring`` new genomes a generation (None: ``population``).

    The first population is ``seeds`` and ``initial_random`` random genomes (None: as
    many as fill ``population``); survival cuts it to ``population`` after the first
    offspring. Random genomes beside the seeds give mating genes the seeds lack.

    Mutation changes each gene with probability ``1 / n_genes`` (about one gene an
    offspring). pymoo's mixed-variable defaults mutate each choice gene on its own, as a
    one-variable problem, so with probability 0.5: an offspring then differs from its
    parents in about half its genes, and the search is little better than sampling at
    random. Integer genes (depth, MLP layers) take polynomial steps wide enough (eta 3)
    to move to a neighbouring value once rounded.
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
    from pymoo.core.mixed import (
        MixedVariableDuplicateElimination,
        MixedVariableMating,
        MixedVariableSampling,
    )
    from pymoo.core.variable import Binary, Choice, Integer
    from pymoo.operators.mutation.bitflip import BFM
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.mutation.rm import ChoiceRandomMutation
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.selection.tournament import TournamentSelection

    rate = 1.0 / n_genes
    mutation = {
        Binary: BFM(prob_var=rate),
        Integer: PM(vtype=float, repair=RoundingRepair(), prob_var=rate, eta=3),
        Choice: ChoiceRandomMutation(prob_var=rate),
    }

    class SeededSampling(MixedVariableSampling):
        """Random genomes, with the seeds (the baseline) first."""

        def _do(self, problem: Any, n_samples: int, random_state: Any = None, **kwargs: Any) -> Any:
            X = super()._do(problem, n_samples, random_state=random_state, **kwargs)
            for i, x in enumerate(seeds[:n_samples]):
                X[i] = dict(x)
            return X

    dedup = MixedVariableDuplicateElimination()
    initial = population if initial_random is None else len(seeds) + initial_random

    class SeededNSGA2(NSGA2):
        """NSGA-II whose first population holds ``initial`` genomes."""

        def _initialize_infill(self) -> Any:
            return self.initialization.do(
                self.problem, initial, algorithm=self, random_state=self.random_state
            )

    return SeededNSGA2(
        pop_size=population,
        n_offsprings=offspring,
        sampling=SeededSampling(),
        mating=MixedVariableMating(
            selection=TournamentSelection(func_comp=binary_tournament),
            mutation=mutation,
            repair=repair,
            eliminate_duplicates=dedup,
        ),
        repair=repair,
        eliminate_duplicates=dedup,
    )
