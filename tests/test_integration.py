"""The real thing on small slices: packaged all-MiniLM-L6-v2 and GLUE text from ../shared/glue."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_packaged_encoder, require_shared_glue

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def evolve(task: str, out: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    glue = require_shared_glue()
    require_packaged_encoder()
    args = [
        "evolve", "--task", task, "--data-dir", str(glue), "--out", str(out), "--cache-dir", str(cache),
        "--population", "4", "--generations", "2", "--max-train", "300", "--max-length", "48",
        "--max-epochs", "3", *extra,
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", *args], capture_output=True, text=True
    )


def test_sst2_search_with_the_packaged_encoder(tmp_path: Path) -> None:
    proc = evolve("sst2", tmp_path / "run", tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "run" / "front.json").read_text())
    assert doc["encoder"] == "all-MiniLM-L6-v2" and doc["metric"] == "accuracy"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["examples"] == {
        "search-train": 180,
        "search-stop": 30,
        "search-val": 90,
        "validation": 872,
    }
    base = doc["baseline"]
    # 6 layers x 48 tokens x 1.77M multiply-adds, plus attention: about 1.04 GFLOPs
    assert base["genome"]["depth"] == 6 and 1.0e9 < base["flops"] < 1.1e9
    assert 0.5 < base["validation"] <= 1.0
    # Cutting encoder layers saves far more than any head costs.
    assert all(e["flops"] < base["flops"] for e in doc["front"] if e["genome"]["depth"] < 6)
    # The cache is reused by the next run on the same data.
    again = evolve("sst2", tmp_path / "run2", tmp_path / "cache")
    assert again.returncode == 0 and "encoding" not in again.stdout


def test_stsb_regression_pair_task(tmp_path: Path) -> None:
    proc = evolve("stsb", tmp_path / "run", tmp_path / "cache", "--objectives", "score,flops")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "run" / "front.json").read_text())
    assert doc["metric"] == "pearson/spearman"
    metrics = doc["baseline"]["validation_metrics"]["validation"]
    assert set(metrics) == {"pearson", "spearman", "score"}
    records = [json.loads(x) for x in (tmp_path / "run" / "archive.jsonl").read_text().splitlines()]
    # A pair task searches every encoding; siamese heads train and score on real pairs.
    assert {r["genome"]["pair"] for r in records} == {"joint", "siamese", "cosine"}
    siamese = [r for r in records if r["genome"]["pair"] == "siamese" and r["status"] == "ok"]
    assert siamese and all(-1.0 <= r["score"] <= 1.0 for r in siamese)
    # The cosine reference is the encoder's standard use on STS-B (86.8 zero-shot on the
    # whole validation split); the search never ends below its best reference.
    refs = {r["name"]: r for r in doc["references"]}
    assert refs["cosine"]["validation"] > 0.8 and doc["reference"] == "cosine"
    assert max(e["score"] for e in doc["front"]) >= refs["cosine"]["score"]
