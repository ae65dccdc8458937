"""Interop: the exported folder loaded by standard tools, against ``moohead predict``.

A short real search (the packaged all-MiniLM-L6-v2, SST-2, ``--max-length 32`` so that a
fifth of the sentences run past the max length) is exported with ``--optimize --quantize
int8``; then 100 SST-2 validation sentences are classified by

- moohead's runtime (``OnnxClassifier``, what ``moohead predict`` runs), fp32 and int8;
- Optimum's ``ORTModelForSequenceClassification.from_pretrained(MODEL_DIR)`` called
  directly (tokenizer with ``truncation=True``), fp32 (``model.onnx``) and int8
  (``subfolder="onnx", file_name="model_quantized.onnx"``);
- ``transformers.pipeline("text-classification", model=<that ORT model>)`` with
  ``truncation=True``;
- transformers.js's ``pipeline('text-classification', ...)`` (``tests/js``, Node), fp32
  and ``dtype: 'q8'``, where ``make js`` installed it.

Optimum pins an older transformers, so it runs in a virtualenv of its own
(``.venv-optimum``, made by ``make interop``), as a subprocess fed the folder and texts.
Writes ``benchmarks/results/interop.json``: label agreement with moohead and the largest
probability difference, over all sentences and over those longer than the max length.

    make interop                     # or: python benchmarks/interop.py [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from common import ROOT, glue_dir, write_result

from moohead.cli.main import main as moohead
from moohead.config import SearchConfig
from moohead.data import load_split
from moohead.export.config import ExportConfig
from moohead.export.pipeline import export_run
from moohead.export.runtime import OnnxClassifier
from moohead.search import run_search
from moohead.tasks import GLUE_TASKS

SENTENCES = 100
OPTIMUM_PYTHON = ROOT / ".venv-optimum" / "bin" / "python"
JS_DIR = ROOT / "tests" / "js"

# Runs in .venv-optimum: argv = model folder, JSON file of texts; prints one JSON object.
OPTIMUM_SCRIPT = """
import json, sys
import numpy as np
from importlib.metadata import version
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

folder, texts = sys.argv[1], json.load(open(sys.argv[2]))
tokenizer = AutoTokenizer.from_pretrained(folder)
out = {"versions": {p: version(p) for p in ("optimum-onnx", "optimum", "transformers", "onnxruntime")}}

def probabilities(model):
    enc = tokenizer(texts, truncation=True, padding=True, return_tensors="pt")
    logits = model(**enc).logits.detach().numpy()
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return (z / z.sum(-1, keepdims=True)).tolist()

fp32 = ORTModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
out["optimum-fp32"] = probabilities(fp32)
q8 = ORTModelForSequenceClassification.from_pretrained(
    folder, subfolder="onnx", file_name="model_quantized.onnx", local_files_only=True
)
out["optimum-int8"] = probabilities(q8)
pipe = pipeline("text-classification", model=fp32, tokenizer=tokenizer, top_k=None)
labels = [fp32.config.id2label[i] for i in range(fp32.config.num_labels)]
ranked = pipe(texts, truncation=True, batch_size=32)
out["pipeline-fp32"] = [[{r["label"]: r["score"] for r in row}[n] for n in labels] for row in ranked]
print(json.dumps(out))
"""


def tiny_run(root: Path, max_length: int) -> Path:
    """A short search on SST-2 with the packaged encoder, its knee point picked (a finished
    run in ``root`` is reused)."""
    if (root / "run" / "pick.json").is_file():
        return root / "run"
    cfg = SearchConfig(
        task="sst2",
        model=None,
        data_dir=glue_dir(),
        out=root / "run",
        population=6,
        generations=2,
        max_train=2000,
        max_length=max_length,
        reference_length=max_length,
        objectives=("score", "flops"),
        cache_dir=root / "cache",
        seed=0,
    )
    run_search(cfg)
    moohead(["pick", str(cfg.out), "--knee"])
    return cfg.out


def compare(
    name: str, probs: list[list[float]], ref: list[list[float]], long: list[bool]
) -> dict[str, Any]:
    """Label agreement and largest probability difference of ``probs`` against ``ref``."""

    def stats(rows: list[int]) -> dict[str, Any]:
        agree = sum(
            max(range(len(probs[i])), key=probs[i].__getitem__)
            == max(range(len(ref[i])), key=ref[i].__getitem__)
            for i in rows
        )
        diff = max(
            (abs(a - b) for i in rows for a, b in zip(probs[i], ref[i], strict=True)), default=0.0
        )
        return {"n": len(rows), "labels_agree": agree, "max_abs_prob_diff": float(f"{diff:.3g}")}

    all_rows = list(range(len(probs)))
    return {
        "runtime": name,
        "all": stats(all_rows),
        "within_max_length": stats([i for i in all_rows if not long[i]]),
        "past_max_length": stats([i for i in all_rows if long[i]]),
    }


def run_json(cmd: list[str], stdin: str | None = None, cwd: Path | None = None) -> Any:
    """Run ``cmd`` and parse the JSON object on its last line of output."""
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def transformers_js(
    model_dir: Path, texts: list[str], dtype: str, labels: list[str]
) -> list[list[float]]:
    cmd = ["node", str(JS_DIR / "classify.mjs"), str(model_dir), dtype]
    preds = run_json(cmd, json.dumps(texts), JS_DIR)["predictions"]
    return [[p["probabilities"][n] for n in labels] for p in preds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", type=Path, default=None, help="a run to export (default: search one)")
    p.add_argument("--search-dir", type=Path, default=ROOT / "runs" / "interop",
                   help="where the short search runs (reused when finished)")  # fmt: skip
    p.add_argument("--max-length", type=int, default=32, help="max length of the search")
    args = p.parse_args()
    if not OPTIMUM_PYTHON.exists():
        raise SystemExit(f"{OPTIMUM_PYTHON} missing: run make interop")
    work = Path(tempfile.mkdtemp(prefix="moohead-interop-"))
    try:
        run = args.run or tiny_run(args.search_dir, args.max_length)
        model_dir = work / "sst2-minilm"
        # This compares tools on the same graphs, so every variant is written: the int8
        # gate's metric and label bounds are off (int8's loss: benchmarks/export_speed.py).
        cfg = ExportConfig(run, model_dir, knee=True, optimize=True, quantize="int8",
                           max_metric_drop=1.0, min_label_agreement=0.0)  # fmt: skip
        doc = export_run(cfg)
        texts = load_split(GLUE_TASKS["sst2"], "validation", glue_dir()).texts[0][:SENTENCES]
        fp32 = OnnxClassifier.load(model_dir, variant="fp32", device="cpu")
        int8 = OnnxClassifier.load(model_dir, variant="int8", device="cpu")
        labels = fp32.labels
        # One batch of all sentences, as the other tools run them here: int8 quantises
        # activations per batch, so its numbers depend on what is batched together.
        ref = {
            v: [[q.probabilities[n] for n in labels] for q in m.predict(texts, len(texts))]
            for v, m in (("fp32", fp32), ("int8", int8))
        }
        fp32.encoder.tokenizer.no_truncation()
        long = [
            len(e.ids) > fp32.encoder.max_length for e in fp32.encoder.tokenizer.encode_batch(texts)
        ]

        (work / "texts.json").write_text(json.dumps(texts))
        cmd = [str(OPTIMUM_PYTHON), "-c", OPTIMUM_SCRIPT, str(model_dir), str(work / "texts.json")]
        optimum = run_json(cmd)
        rows = [
            compare("optimum ORTModelForSequenceClassification fp32", optimum["optimum-fp32"], ref["fp32"], long),
            compare("optimum ORTModelForSequenceClassification int8 (onnx/model_quantized.onnx)", optimum["optimum-int8"], ref["int8"], long),
            compare("transformers.pipeline on the ORT model, fp32", optimum["pipeline-fp32"], ref["fp32"], long),
        ]  # fmt: skip
        js = (
            shutil.which("node")
            and (JS_DIR / "node_modules" / "@huggingface" / "transformers").is_dir()
        )
        if js:
            rows += [
                compare("transformers.js pipeline fp32", transformers_js(model_dir, texts, "fp32", labels), ref["fp32"], long),
                compare("transformers.js pipeline q8", transformers_js(model_dir, texts, "q8", labels), ref["int8"], long),
            ]  # fmt: skip
            # q8 again on the sentences within the max length alone (one batch): without the
            # rows transformers.js truncates its own way, nothing else differs in the batch.
            fit = [t for t, cut in zip(texts, long, strict=True) if not cut]
            ref_fit = [[q.probabilities[n] for n in labels] for q in int8.predict(fit, len(fit))]
            got_fit = transformers_js(model_dir, fit, "q8", labels)
            rows.append(compare("transformers.js pipeline q8, sentences within the max length only", got_fit, ref_fit, [False] * len(fit)))  # fmt: skip
        write_result(
            "interop",
            {
                "task": "sst2",
                "sentences": SENTENCES,
                "max_length": doc["max_length"],
                "past_max_length": sum(long),
                "head": doc["summary"],
                "encoder": doc["encoder"]["name"] if args.run else "all-MiniLM-L6-v2 (packaged)",
                "layers_kept": doc["encoder"]["layers_kept"],
                "reference": "moohead predict (OnnxClassifier), same variant, one batch",
                "optimum_venv": optimum["versions"],
                "transformers_js": json.loads((JS_DIR / "package.json").read_text())[
                    "dependencies"
                ]["@huggingface/transformers"]
                if js
                else None,
                "rows": rows,
            },
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
