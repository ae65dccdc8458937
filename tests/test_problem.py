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

    problem = HeadSearchProblem(
        search_space(6, False), ("score", "flops"), dec, _fake_evaluate(calls)
    )
    algorithm = make_nsga2(8, [enc(baseline(6))], CanonicalRepair(dec, enc))
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
