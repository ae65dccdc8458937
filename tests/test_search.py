"""End-to-end search on the tiny encoder and synthetic data: run directory, front, determinism."""

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from moohead.config import SearchConfig
from moohead.errors import MooheadError
from moohead.front import hypervolume, nondominated, normalised_objectives, tolerances
from moohead.genome import LEARNING_RATES, Genome, baseline, is_baseline_arch
from moohead.rundir import RunDir
from moohead.search import run_search, written_front


def archive_hypervolume(records: list[dict], objectives: tuple[str, ...], chance: float) -> float:
    """Hypervolume of the finished evaluations in ``records``, recomputed from the archive:
    costs relative to the best baseline's, against the reference (score at chance, twice
    its cost)."""
    ok = [r for r in records if r["status"] == "ok"]
    base = max(
        (r for r in ok if is_baseline_arch(Genome.from_dict(r["genome"]), 2)),
        key=lambda r: (r["score"], -r["id"]),
    )
    rows = [{"score": r["score"], "flops": r["flops"], "latency": r["latency_ms"]} for r in ok]
    ref = {"score": base["score"], "flops": base["flops"], "latency": base["latency_ms"]}
    F = normalised_objectives(rows, objectives, ref)
    reference = np.array([{"score": -chance, "flops": 2.0, "latency": 2.0}[o] for o in objectives])
    return hypervolume(F[nondominated(F)], reference)


def _cfg(tiny_encoder_dir: Path, glue_dir: Path, out: Path, **kw: object) -> SearchConfig:
    base = SearchConfig(
        task="sst2",
        model=str(tiny_encoder_dir),
        data_dir=glue_dir,
        out=out,
        population=6,
        generations=3,
        max_train=None,
        cache_dir=out.parent / "cache",
        reference_length=16,
        max_epochs=4,
        latency_runs=3,
        objectives=("score", "flops"),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_run_directory_holds_everything(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    cfg = _cfg(
        tiny_encoder_dir, glue_dir, tmp_path / "run", objectives=("score", "flops", "latency")
    )
    doc = run_search(cfg)
    run = cfg.out
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["task"] == "sst2" and "torch" in config["versions"]
    records = [json.loads(line) for line in (run / "archive.jsonl").read_text().splitlines()]
    assert len(records) == doc["evaluations"] and [r["id"] for r in records] == list(
        range(len(records))
    )
    # The references were tuned before the search: hf-head over learning rate, dropout and
    # weight decay; native (no modules.json here: mean pooling) and probe@2 are one genome.
    names = [r["name"] for r in doc["references"]]
    assert sorted(names) == ["hf-head", "native", "probe@1", "probe@2"]
    assert "single-sentence" in doc["skipped_references"]["cosine"]
    assert doc["reference"] == names[0] and doc["baseline"]["id"] in {
        r["id"] for r in doc["references"] if r["name"] == "hf-head"
    }
    n_refs = doc["history"][0]["evaluations"] - doc["history"][0]["new"]
    # The first population: every reference and, by default, a population of random genomes.
    assert config["config"]["initial_random"] == "population"
    assert doc["history"][0]["new"] == cfg.population
    hf = [Genome.from_dict(r["genome"]) for r in records[:n_refs]]
    hf = [g for g in hf if g.arch_key() == baseline(2).arch_key()]
    assert {g.lr for g in hf} == set(LEARNING_RATES) and len({g.dropout for g in hf}) == 4
    assert len({g.weight_decay for g in hf}) == 3 and len(hf) == 8  # coordinate search
    # A run never ends worse than its best reference.
    assert max(e["score"] for e in doc["front"]) >= doc["references"][0]["score"]
    # No genome was trained twice.
    keys = [json.dumps(r["genome"], sort_keys=True) for r in records]
    assert len(keys) == len(set(keys))
    assert (run / "front.png").stat().st_size > 10_000
    assert RunDir(run).read_front() == json.loads((run / "front.json").read_text())
    for entry in [doc["baseline"], *doc["front"], *doc["references"]]:
        for key in ("id", "genome", "score", "validation", "flops", "latency_ms", "params"):
            assert entry[key] is not None
        state = torch.load(run / entry["weights"], weights_only=True)
        assert state  # the trained head is on disk
    kept = {int(p.stem) for p in (run / "heads").glob("*.pt")}
    refs = {e["id"] for e in doc["references"]}
    assert kept == {e["id"] for e in doc["front"]} | {doc["baseline"]["id"]} | refs
    # The front is non-dominated on its objectives and is the archive's.
    F = np.array([[-e["score"], e["flops"], e["latency_ms"]] for e in doc["front"]])
    assert nondominated(F, tolerances(cfg.objectives)).all()
    assert doc["cost_tolerances"] == {"latency": 0.05, "flops": 0.01}
    assert 0.5 <= doc["chance_score"] < 1  # a binary task's majority share of search-val
    # Each generation's record agrees with the archive as it stood then.
    history = doc["history"]
    assert [h["generation"] for h in history] == [1, 2, 3]
    assert history[-1]["evaluations"] == len(records)
    assert [h["evaluations"] for h in history] == [
        n_refs + sum(h["new"] for h in history[: g + 1]) for g in range(3)
    ]
    for h in history:
        seen = records[: h["evaluations"]]
        assert h["best_score"] == max(r["score"] for r in seen if r["status"] == "ok")
        hv = archive_hypervolume(seen, cfg.objectives, doc["chance_score"])
        assert h["hypervolume"] == pytest.approx(hv, rel=1e-9)
        # The baseline alone covers a box of its score above chance x 1 x 1.
        assert hv >= doc["baseline"]["score"] - doc["chance_score"] - 1e-12
    # Evaluations only add points: the front's hypervolume never shrinks.
    assert all(a["hypervolume"] <= b["hypervolume"] for a, b in itertools.pairwise(history))
    # The baseline reported is hf-head at its best training genes.
    base_scores = [r["score"] for r in records if r["genome"] in [g.to_dict() for g in hf]]
    assert doc["baseline"]["score"] == max(base_scores)


@pytest.mark.slow
def test_heads_are_compared_on_the_search_val_outputs_they_were_scored_by(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    """The recommendation's paired bootstrap re-predicts search-val from the saved weights:
    the lead it tests is exactly the difference of the scores the search recorded."""
    from moohead.evaluation import Evaluation
    from moohead.references import References
    from moohead.search import front_spec, make_evaluator
    from moohead.stop import StopFlag
    from moohead.workspace import prepare

    cfg = _cfg(tiny_encoder_dir, glue_dir, tmp_path / "run", generations=2)
    doc = run_search(cfg)
    run, ws = RunDir(cfg.out), prepare(cfg)
    _, models = make_evaluator(ws, run, StopFlag())
    spec = front_spec(ws, models, run, References([]))
    records = run.archive.read()[0]
    kept = [Evaluation.from_record(r) for r in records if run.heads.has(r["id"])]
    assert len({e.score for e in kept}) > 1
    for a, b in itertools.combinations(kept, 2):
        lead = spec.compare(a, b)
        assert lead.lead == pytest.approx(a.score - b.score, abs=1e-9)
        assert lead.examples == len(ws.data.val.labels)
        assert (lead.lead <= 0) <= (lead.p_value >= 0.5)  # a lead it lacks is never significant
    rec = doc["recommended"]
    best = max(doc["front"], key=lambda e: (e["score"], -e["id"]))
    assert rec["best"] == best["id"]
    assert rec["id"] in {best["id"], doc["references"][0]["id"]}


@pytest.mark.slow
def test_same_seed_same_front(tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path) -> None:
    docs = [run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / f"run{i}")) for i in range(2)]

    def front(doc: dict) -> list:
        return [(e["genome"], e["score"], e["flops"], e["validation"]) for e in doc["front"]]

    assert front(docs[0]) == front(docs[1])
    other = run_search(_cfg(tiny_encoder_dir, glue_dir, tmp_path / "run-seed1", seed=1))
    archive = [(tmp_path / d / "archive.jsonl").read_text() for d in ("run0", "run-seed1")]
    assert archive[0] != archive[1]
    assert other["front"]


@pytest.mark.slow
def test_pair_task_searches_siamese_heads(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    doc = run_search(
        _cfg(tiny_encoder_dir, glue_dir, tmp_path / "rte", task="rte", population=8, generations=2)
    )
    records = [json.loads(x) for x in (tmp_path / "rte" / "archive.jsonl").read_text().splitlines()]
    assert {r["genome"]["pair"] for r in records} == {"joint", "siamese", "cosine"}
    assert doc["metric"] == "accuracy" and doc["front"]
    names = {r["name"] for r in doc["references"]}
    assert {"hf-head", "native", "cosine"} <= names and not doc["skipped_references"]


def test_existing_run_is_never_overwritten(
    tiny_encoder_dir: Path, glue_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "archive.jsonl").write_text('{"id": 0}\n')
    with pytest.raises(MooheadError, match="no search identity"):
        run_search(_cfg(tiny_encoder_dir, glue_dir, out))
    assert (out / "archive.jsonl").read_text() == '{"id": 0}\n'


@pytest.mark.slow
def test_custom_regression_task(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    """A non-GLUE task with float labels is a regression scored by Pearson."""
    import random

    from conftest import synthetic_sentence

    rng = random.Random(0)
    folder = tmp_path / "data" / "sentiment-strength"
    folder.mkdir(parents=True)
    for split, n in (("train", 200), ("validation", 50)):
        rows = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            rows.append(f"{synthetic_sentence(rng, label)}\t{label * 4 + rng.random():.3f}")
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    cfg = _cfg(
        tiny_encoder_dir,
        tmp_path / "data",
        tmp_path / "run",
        task="sentiment-strength",
        generations=2,
        max_epochs=10,
    )
    doc = run_search(cfg)
    assert doc["metric"] == "pearson"
    assert set(doc["baseline"]["validation_metrics"]["validation"]) == {"pearson", "score"}
    best = max(doc["front"], key=lambda e: e["score"])  # by search-val, never by validation
    assert best["validation"] > 0.4  # the cue word sets the score


def test_a_finished_run_resumed_with_nothing_new_keeps_its_written_front(tmp_path: Path) -> None:
    """Finalising again would re-time latency (noise could swap near-tied heads whose
    weights were already dropped); a stopped search's front is finalised again."""
    run = RunDir(tmp_path)
    assert written_front(run, 0, 5, 2) is None  # nothing written yet
    doc = {"task": "sst2", "metric": "accuracy", "baseline": {}, "front": [{"id": 3}],
           "evaluations": 5, "history": [{}, {}]}  # fmt: skip
    run.write_front(doc)
    assert written_front(run, 0, 5, 2) == doc
    assert written_front(run, 1, 5, 2) is None  # something new was trained
    assert written_front(run, 0, 5, 3) is None  # written before the last generation
    run.write_front(doc | {"evaluations": 4})
    assert written_front(run, 0, 5, 2) is None
