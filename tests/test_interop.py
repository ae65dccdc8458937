"""The exported folder in standard tools: config.json, tokenizer config, transformers.js names.

The proof is a client no one here wrote: transformers.js (``tests/js``, installed by
``make js``) runs its standard ``text-classification`` pipeline on the folder, on local
files only, and must return what moohead's own runtime returns on real SST-2 sentences.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from conftest import NO_QUALITY_GATE, require_shared_glue, tiny_config

from moohead.batching import pad
from moohead.data import load_split
from moohead.export.config import ExportConfig
from moohead.export.hf_layout import ALIAS_FILES, hf_config
from moohead.export.model_dir import sha256
from moohead.export.pipeline import export_run
from moohead.export.runtime import OnnxClassifier, softmax
from moohead.genome import baseline
from moohead.tasks import GLUE_TASKS

JS_DIR = Path(__file__).parent / "js"
SENTENCES = 100  # SST-2 validation sentences classified by transformers.js


@pytest.fixture(scope="module")
def hf_model(finished_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny run's pick with every variant that has a transformers.js name."""
    out = tmp_path_factory.mktemp("interop") / "sst2-tiny"
    # Near chance, int8 may flip answers of the tiny random encoder: serve it, don't gate it.
    cfg = ExportConfig(finished_run, out, quantize="int8", fp16=True, **NO_QUALITY_GATE)
    export_run(cfg, log=lambda s: None)
    return out


def test_folder_has_the_hugging_face_layout(hf_model: Path) -> None:
    doc = json.loads((hf_model / "moohead.json").read_text())
    config = json.loads((hf_model / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["num_hidden_layers"] == doc["encoder"]["layers_kept"]
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["num_labels"] == 2
    assert config["problem_type"] == "single_label_classification"
    assert "_name_or_path" not in config  # no path of the exporting machine
    tokenizer_config = json.loads((hf_model / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == doc["max_length"] == 24
    # Each transformers.js name holds exactly the gated variant, and the manifest says so.
    assert set(doc["aliases"]) == set(ALIAS_FILES) == {"fp32", "int8", "fp16"}
    for variant, record in doc["aliases"].items():
        assert record["file"] == ALIAS_FILES[variant]
        alias = hf_model / record["file"]
        assert sha256(alias) == record["sha256"] == doc["variants"][variant]["sha256"]
        assert alias.stat().st_size == record["bytes"]


def test_transformers_reads_the_config_and_tokenizer(hf_model: Path) -> None:
    """transformers' own loaders: labels, depth and truncation length come through."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(hf_model)
    assert config.num_labels == 2 and config.id2label == {0: "negative", 1: "positive"}
    assert config.problem_type == "single_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(hf_model)
    assert tokenizer.model_max_length == 24
    long = " ".join(["good"] * 100)
    assert len(tokenizer(long, truncation=True)["input_ids"]) == 24


def test_regression_config_names_the_problem() -> None:
    """STS-B-like heads (one output) are declared as regression, with one label."""
    from transformers import BertModel

    rh = SimpleNamespace(
        model=SimpleNamespace(encoder=BertModel(tiny_config(num_hidden_layers=3))),
        task=GLUE_TASKS["stsb"],
        genome=baseline(3),
    )
    config = hf_config(cast(Any, rh))
    assert config["problem_type"] == "regression" and config["num_labels"] == 1
    assert config["id2label"] == {"0": "LABEL_0"}
    assert config["num_hidden_layers"] == rh.genome.depth


def require_transformers_js() -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH (transformers.js runs on Node 20)")
    if not (JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip("transformers.js is not installed in tests/js: run make js")


def transformers_js(model_dir: Path, texts: list[str], dtype: str) -> list[dict[str, Any]]:
    """transformers.js's text-classification pipeline on ``model_dir``, local files only."""
    proc = subprocess.run(
        ["node", str(JS_DIR / "classify.mjs"), str(model_dir), dtype],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=JS_DIR,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["dtype"] == dtype
    return list(out["predictions"])


@pytest.mark.integration
@pytest.mark.parametrize(("dtype", "variant"), [("fp32", "fp32"), ("q8", "int8"), ("fp16", "fp16")])
def test_transformers_js_runs_the_exported_model(hf_model: Path, dtype: str, variant: str) -> None:
    """transformers.js's text-classification pipeline on 100 SST-2 sentences, on local files.

    - Tokens: those of ``moohead predict`` for every input that fits the max length; a
      longer input's encoded ids cut at ``model_max_length`` (transformers.js's rule, which
      drops the closing [SEP] that the search and ``moohead predict`` keep).
    - Numbers: exactly what ORT computes with the variant's graph on the pipeline's batch.
    - fp32 (padding cannot change its results): the labels and probabilities of
      ``moohead predict`` on every input that fits.
    """
    require_transformers_js()
    texts = load_split(GLUE_TASKS["sst2"], "validation", require_shared_glue()).texts[0][:SENTENCES]
    model = OnnxClassifier.load(hf_model, variant=variant, device="cpu")
    expected = model.predict(texts)
    max_length = model.encoder.max_length
    got = transformers_js(hf_model, texts, dtype)
    assert len(got) == SENTENCES

    model.encoder.tokenizer.no_truncation()
    full = [e.ids for e in model.encoder.tokenizer.encode_batch(texts)]
    fits = [len(ids) <= max_length for ids in full]
    assert SENTENCES / 2 < sum(fits) < SENTENCES  # both kinds are checked
    assert [g["input_ids"] for g in got] == [ids[:max_length] for ids in full]

    ids = [g["input_ids"] for g in got]  # one batch, padded to the longest, as the pipeline
    feeds = pad(ids, [[0] * len(x) for x in ids], pad_id=0)
    logits = model.session.run(None, {k: feeds[k] for k in model.input_names})[0]
    for g, row in zip(got, softmax(logits), strict=True):
        probs = dict(zip(model.labels, row.tolist(), strict=True))
        assert g["probabilities"] == pytest.approx(probs, abs=1e-4)
        assert g["label"] == max(probs, key=probs.__getitem__)

    if variant == "fp32":
        for g, p, fit in zip(got, expected, fits, strict=True):
            if fit:
                assert g["label"] == p.label
                assert g["probabilities"] == pytest.approx(p.probabilities, abs=1e-4)
