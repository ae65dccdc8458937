"""The pymoo Problem with an injected fake evaluator: NSGA-II mechanics, no training."""

from pathlib import Path
from typing import Any

import numpy as np

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


def _run(seed: int, calls: list[Genome]) -> np.ndarray:
    def dec(x: dict[str, Any]) -> Genome:
        return decode(x, 6, False)

    def enc(g: Genome) -> dict[str, Any]:
        return encode(g, False)

    space = search_space(6, False)
    problem = HeadSearchProblem(space, ("score", "flops"), dec, _fake_evaluate(calls))
    algorithm = make_nsga2(8, [enc(baseline(6))], CanonicalRepair(dec, enc), len(space))
    algorithm.setup(problem, termination=("n_gen", 5), seed=seed, verbose=False)
    while algorithm.has_next():
        pop = algorithm.ask()
        algorithm.evaluator.eval(problem, pop)
        algorithm.tell(infills=pop)
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
