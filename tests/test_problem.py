"""The pymoo Problem with an injected fake evaluator: NSGA-II mechanics, no training."""

from pathlib import Path
from typing import Any

import numpy as np

from moohead.config import SearchConfig, parse_initial_random
from moohead.evaluation import Cost, Evaluation
from moohead.genome import Genome, baseline, decode, encode, search_space
from moohead.problem import CanonicalRepair, HeadSearchProblem, make_nsga2


def _fake_evaluate(calls: list[Genome]) -> Any:
    def evaluate(genomes: list[Genome]) -> list[Evaluation]:
        out = []
        for g in genomes:
            calls.append(g)
            score = (
                0.5
                + 0.05 * g.depth
                + (0.1 if g.pool == "mean" else 0.0)
                - abs(np.log10(g.lr) + 3) * 0.01
            )
            cost = Cost(
                flops=g.depth * 1000 + g.mlp_layers * 10, params=1, head_params=1, latency_ms=None
            )
            out.append(Evaluation(len(calls), g, "ok", {"score": score}, cost))
        return out

    return evaluate


def _search(
    evaluate: Any,
    population: int,
    generations: int,
    seed: int,
    seeds: tuple[Genome, ...] = (),
    offspring: int | None = None,
    initial_random: int | None = None,
) -> Any:
    """NSGA-II over the 6-layer single-sentence space, ``evaluate`` answering; run out."""

    def dec(x: dict[str, Any]) -> Genome:
        return decode(x, 6, False)

    def enc(g: Genome) -> dict[str, Any]:
        return encode(g, False)

    space = search_space(6, False)
    problem = HeadSearchProblem(space, ("score", "flops"), dec, evaluate)
    repair = CanonicalRepair(dec, enc)
    algorithm = make_nsga2(
        population,
        [enc(g) for g in seeds],
        repair,
        len(space),
        offspring=offspring,
        initial_random=initial_random,
    )
    algorithm.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    while algorithm.has_next():
        pop = algorithm.ask()
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
    return algorithm


def _run(seed: int, calls: list[Genome]) -> np.ndarray:
    algorithm = _search(_fake_evaluate(calls), 8, 5, seed, seeds=(baseline(6),))
    return np.asarray(algorithm.opt.get("F"))


def test_nsga2_is_seeded_with_the_baseline_and_deterministic(tmp_path: Path) -> None:
    calls: list[Genome] = []
    front = _run(0, calls)
    assert calls[0] == baseline(6)
    assert _run(0, []).tolist() == front.tolist()
    # The search finds a better score than the baseline's 0.8 (mean pooling scores higher).
    assert front[:, 0].min() < -0.8


def test_offspring_are_canonical(tmp_path: Path) -> None:
    calls: list[Genome] = []
    _run(1, calls)
    assert all(decode(encode(g, False), 6, False) == g for g in calls)


def test_mutation_changes_about_one_gene() -> None:
    """Offspring of two identical parents differ from them by mutation alone: about one
    gene (rate 1/n), not the half of the choice genes pymoo's mixed defaults resample
    (4.6 genes measured with those)."""
    from pymoo.core.individual import Individual

    space = search_space(6, True)

    def dec(x: dict[str, Any]) -> Genome:
        return decode(x, 6, True)

    def enc(g: Genome) -> dict[str, Any]:
        return encode(g, True)

    problem = HeadSearchProblem(space, ("score", "flops"), dec, _fake_evaluate([]))
    algorithm = make_nsga2(8, [], CanonicalRepair(dec, enc), len(space))
    parent = encode(Genome(depth=3, layers="mix", k=2, pool="mean", mlp_layers=1), True)
    pairs = [[Individual(X=dict(parent)), Individual(X=dict(parent))] for _ in range(200)]
    rng = np.random.default_rng(0)
    off = algorithm.mating._do(problem, pairs, 400, parents=True, random_state=rng)
    changed = [sum(o.X[k] != parent[k] for k in space) for o in off]
    assert 0.3 < np.mean(changed) < 1.5, np.mean(changed)


class _FakeRungs:
    """What ``Halving`` needs of an evaluator: evaluations at a budget, remembered."""

    def __init__(self) -> None:
        self.batches: list[tuple[float, int]] = []  # (budget, genomes trained)
        self.full: dict[str, Evaluation] = {}
        self.trainer = type("Paused", (), {"keep_paused": lambda self, keys: None})()
        self._score = _fake_evaluate([])

    def asked(self, g: Genome) -> Evaluation | None:
        return self.full.get(g.key())

    def __call__(self, genomes: list[Genome], budget: float) -> list[Evaluation]:
        self.batches.append((budget, len(genomes)))
        out = self._score(genomes)
        for g, e in zip(genomes, out, strict=True):
            e.budget = budget
            if budget == 1.0:
                self.full[g.key()] = e
        return out


def test_offspring_sets_the_new_genomes_a_generation_and_the_full_budget_gets_its_share() -> None:
    """``--offspring 18`` with population 6 and budgets 1/3,1: after the first generation
    each one trains 18 new genomes at a third of the budget and brings 6 to the full one."""
    from moohead.halving import Halving

    rungs = _FakeRungs()
    halving = Halving(rungs, (1 / 3, 1.0), ("score", "flops"))  # type: ignore[arg-type]
    _search(halving, population=6, generations=4, seed=0, offspring=18)
    assert rungs.batches[:2] == [(1 / 3, 6), (1.0, 2)]  # the first population: 6, a third on
    assert rungs.batches[2:] == [(1 / 3, 18), (1.0, 6)] * 3


def test_initial_random_names_a_count_the_population_or_fill() -> None:
    """``--initial-random``: the population by default, ``fill`` as before 2026-12-01."""
    assert SearchConfig().first_random == SearchConfig().population
    assert SearchConfig(population=6).first_random == 6
    assert SearchConfig(initial_random="fill").first_random is None
    assert SearchConfig(initial_random=3).first_random == 3
    assert [parse_initial_random(v) for v in ("12", " fill", "-1")] == [12, "fill", -1]


def test_initial_random_adds_random_genomes_beside_every_seed() -> None:
    """``--initial-random 5`` with 6 seeds and population 4: the first population is all
    6 seeds (none cut to fit the population) and 5 random genomes; later generations ask
    for a population's worth each, and survival keeps the population at 4."""
    from dataclasses import replace

    seeds = tuple(replace(baseline(6), depth=d) for d in range(1, 7))
    calls: list[Genome] = []
    algorithm = _search(_fake_evaluate(calls), 4, 3, 0, seeds=seeds, initial_random=5)
    assert calls[:6] == list(seeds)
    assert len({g.key() for g in calls[:11]}) == 11 and len(calls) == 11 + 4 + 4
    assert len(algorithm.pop) == 4
    default: list[Genome] = []
    _search(_fake_evaluate(default), 4, 1, 0, seeds=seeds)  # the population's worth of seeds
    assert default == list(seeds[:4])
