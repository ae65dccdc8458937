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
def local_ray():  # type: ignore[no-untyped-def]
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


def _archive(out: Path) -> list[tuple[str, float | None]]:
    lines = (out / "archive.jsonl").read_text().splitlines()
    return [(json.dumps(r["genome"], sort_keys=True), r["score"]) for r in map(json.loads, lines)]


@pytest.mark.slow
@pytest.mark.parametrize("fidelity", ["frozen", "finetune"])
def test_ray_gives_the_local_front(
    local_ray: None, tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path, fidelity: str
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the Ray tasks (one core each), so the numbers match
    try:
        local = run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "local", fidelity=fidelity))
    finally:
        torch.set_num_threads(threads)
    remote = run_search(
        _cfg(tiny_encoder_dir, glue_dir, tmp_path / "ray", fidelity=fidelity, executor="ray")
    )
    assert _archive(tmp_path / "ray") == _archive(tmp_path / "local")
    key = [(e["id"], e["score"], e["flops"], e["validation"]) for e in local["front"]]
    assert [(e["id"], e["score"], e["flops"], e["validation"]) for e in remote["front"]] == key


@pytest.mark.slow
def test_a_dying_worker_is_retried_then_recorded_as_failed(
    local_ray: None,
    tiny_encoder_dir: Path,
    glue_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A genome whose worker process dies on every try fails; the search goes on."""
    import moohead.executor as executor

    train = executor.train_task

    def dying(genome, *args):  # type: ignore[no-untyped-def]
        if genome["lr"] == 0.003:
            os._exit(1)  # the worker process dies, as on an out-of-memory kill
        return train(genome, *args)

    monkeypatch.setattr(executor, "train_task", dying)
    doc = run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "run", executor="ray"))
    records = [json.loads(x) for x in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    died = [r for r in records if r["genome"]["lr"] == 0.003]
    assert died and all(r["status"] == "failed" and "worker died" in r["reason"] for r in died)
    assert doc["front"] and len(died) < len(records)
