"""The Ray executor on a local Ray instance: the local search's front, failures recorded."""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from moohead.config import SearchConfig
from moohead.search import run_search

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'moohead[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(encoder: Path, glue: Path, out: Path, **kw: object) -> SearchConfig:
    base = SearchConfig(
        task="rte", model=str(encoder), data_dir=glue, out=out, population=6, generations=2,
        max_train=None, cache_dir=out.parent / "cache", max_length=24, reference_length=16,
        max_epochs=3, latency_runs=3, objectives=("score", "flops"),
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def _archive(out: Path) -> list[tuple[str, float | None, float]]:
    lines = (out / "archive.jsonl").read_text().splitlines()
    return [
        (json.dumps(r["genome"], sort_keys=True), r["score"], r["budget"])
        for r in map(json.loads, lines)
    ]


FULL, HALVING = (1.0,), (1 / 3, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fidelity, budgets",
    [
        ("frozen", FULL),
        ("frozen", HALVING),
        ("finetune", FULL),
        ("finetune", HALVING),
        ("recompute", FULL),  # frozen, token states recomputed by each worker's encoder
    ],
    ids=["frozen-full", "frozen-halving", "finetune-full", "finetune-halving", "recompute"],
)
def test_ray_gives_the_local_front(
    local_ray: None,
    tiny_encoder_dir: Path,
    glue_dir: Path,
    tmp_path: Path,
    fidelity: str,
    budgets: tuple[float, ...],
) -> None:
    """Also with successive halving, where the local trainer continues paused heads and a
    Ray task trains a promoted head afresh to the higher budget: the same heads."""
    import torch

    threads = torch.get_num_threads()
    kw: dict[str, object] = {"fidelity": fidelity, "budgets": budgets}
    if fidelity == "recompute":
        kw |= {"fidelity": "frozen", "token_states": "recompute"}
    try:  # one thread, as in the Ray tasks (one core each), so the numbers match
        local = run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "local", threads=1, **kw))
    finally:
        torch.set_num_threads(threads)  # the search fixes it for the process
    remote = run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "ray", executor="ray", **kw))
    assert {b for *_, b in _archive(tmp_path / "local")} == set(budgets)
    assert _archive(tmp_path / "ray") == _archive(tmp_path / "local")
    key = [(e["id"], e["score"], e["flops"], e["validation"]) for e in local["front"]]
    assert [(e["id"], e["score"], e["flops"], e["validation"]) for e in remote["front"]] == key


@pytest.mark.slow
def test_a_dying_worker_is_retried_then_recorded_as_failed(
    local_ray: None, tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    """A genome whose worker process dies on every try fails; the others train."""
    from moohead.executor import RayConfig, RayTrainer
    from moohead.genome import Genome
    from moohead.train import TrainResult
    from moohead.workspace import prepare

    def dying(genome: dict, seed: int, spec: object, budget: float) -> dict:
        """Dies for lr 0.003, as on an out-of-memory kill (nested: Ray ships it by value)."""
        from moohead.executor import train_task

        if genome["lr"] == 0.003:
            os._exit(1)
        return train_task(genome, seed, spec, budget)  # type: ignore[arg-type]

    ws = prepare(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "run"))
    cfg = RayConfig(max_retries=1)
    trainer = RayTrainer(cfg, "frozen", ws.data, ws.train_config(), seed=0, task=dying)
    dies, lives = Genome(depth=1, lr=0.003), Genome(depth=1, lr=0.001)
    outcomes = list(trainer.train([dies, lives, dies]))
    assert isinstance(outcomes[1], TrainResult) and outcomes[1].metrics["score"] >= 0
    for died in (outcomes[0], outcomes[2]):
        assert isinstance(died, RuntimeError)
        assert str(died).startswith("Ray worker died") and "retried 1 times" in str(died)


@pytest.mark.slow
def test_with_latency_no_outcome_comes_back_while_a_task_still_trains(
    local_ray: None, tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    """Latency is timed on the driver as each outcome comes back: with ``quiet_timing`` the
    first comes back only when every task of the generation has finished."""
    from moohead.executor import RayConfig, RayTrainer
    from moohead.genome import Genome
    from moohead.workspace import prepare

    done = tmp_path / "done"
    done.mkdir()

    def slow_second(genome: dict, seed: int, spec: object, budget: float) -> dict:
        """The second genome trains 3 s longer, then leaves a mark (nested: by value)."""
        import time as _time
        import uuid

        from moohead.executor import train_task

        out = train_task(genome, seed, spec, budget)  # type: ignore[arg-type]
        if genome["lr"] == 0.001:
            _time.sleep(3.0)
        (done / uuid.uuid4().hex).touch()
        return out

    ws = prepare(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "run"))
    genomes = [Genome(depth=1, lr=0.003), Genome(depth=1, lr=0.001)]
    for quiet, finished_at_first in ((True, 2), (False, 1)):
        for mark in done.iterdir():
            mark.unlink()
        cfg = RayConfig(quiet_timing=quiet)
        trainer = RayTrainer(cfg, "frozen", ws.data, ws.train_config(), seed=0, task=slow_second)
        outcomes = trainer.train(genomes)
        next(outcomes)  # the evaluator would time this one now
        assert len(list(done.iterdir())) == finished_at_first, quiet
        list(outcomes)
