"""``moohead serve``: the real server (uvicorn + Starlette) over HTTP on 127.0.0.1.

The main server runs as a ``moohead serve`` subprocess on the tiny sst2 export of
test_export.py; servers with special set-ups (forced batches, a blocked model for the
queue bound, hand-built pair and regression models) run uvicorn in a thread. Nothing here
asserts a wall-clock bound.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import NO_QUALITY_GATE, finished_search, run_cli
from prometheus_client.parser import text_string_to_metric_families

from moohead.export.model_dir import FORMAT, MANIFEST, TOKENIZER_FILE, file_record
from moohead.export.runtime import OnnxClassifier
from moohead.export.serve_config import ServeConfig

STARTUP_GUARD_S = 120  # a hang guard for start-up, not a timing assertion
TEXTS = [
    "a good movie",
    "the plot was not very awful and it is dull",
    "great",
    "the actor is fine and the film is nice but the plot was poor",
    "bad",
]


# --- servers ------------------------------------------------------------------------------


class Server:
    """A ``moohead serve`` subprocess on a free port, its stderr collected."""

    def __init__(self, model_dir: Path, *args: str) -> None:
        cmd = [sys.executable, "-m", "moohead.cli.main", "serve", str(model_dir), "--port", "0"]
        self.proc = subprocess.Popen(
            [*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stderr is not None
        self.stderr: list[str] = []
        for line in self.proc.stderr:  # up to "serving NAME (...) at http://HOST:PORT: ..."
            self.stderr.append(line)
            if line.startswith("serving ") and " at http://" in line:
                break
        else:
            self.proc.kill()
            raise AssertionError(f"server did not start: {''.join(self.stderr)}")
        self.url = line.split(" at ")[1].split(": ")[0]
        self._drain = threading.Thread(target=self._collect, daemon=True)
        self._drain.start()
        wait_ready(self.url)

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=STARTUP_GUARD_S)
        self._drain.join(timeout=10)
        return code


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + STARTUP_GUARD_S
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                return
        assert time.monotonic() < deadline, f"{url} never became ready"
        time.sleep(0.05)


@contextlib.contextmanager
def thread_server(model: Any, cfg: ServeConfig) -> Iterator[str]:
    """The app under a real uvicorn in a thread of this process; yields its URL."""
    import uvicorn

    from moohead.export import server
    from moohead.export.serve_app import build_app

    sock = server.bind("127.0.0.1", 0)
    config = uvicorn.Config(build_app(model, cfg), lifespan="on", log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = server.url(sock)
    try:
        wait_ready(url)
        yield url
    finally:
        srv.should_exit = True
        thread.join(timeout=STARTUP_GUARD_S)
        sock.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sst2 search exported as test_export.py exports it (fp32, optimized, int8)."""
    from moohead.export.config import ExportConfig
    from moohead.export.pipeline import export_run

    run = finished_search(tmp_path_factory.mktemp("serve-run"))
    out = run.parent / "model"
    # A model to serve, not a test of the quality gates (the tiny encoder sits near chance).
    cfg = ExportConfig(run, out, optimize=True, quantize="int8", **NO_QUALITY_GATE)
    export_run(cfg, log=lambda s: None)
    return out


@pytest.fixture(scope="module")
def served(model_dir: Path) -> Iterator[Server]:
    """The tiny sst2 model (fp32: answers do not depend on the batch) with small limits."""
    srv = Server(
        model_dir, "--name", "sst2", "--variant", "fp32", "--device", "cpu", "--threads", "1",
        "--max-batch", "8", "--max-delay-ms", "2", "--max-texts", "16", "--max-queue", "64",
        "--max-body-bytes", "20000",
    )  # fmt: skip
    yield srv
    assert srv.stop() == 0
    log = "".join(srv.stderr)  # bad requests are answered, never logged as server errors
    assert "Traceback" not in log and "Exception" not in log, log


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> OnnxClassifier:
    return OnnxClassifier.load(model_dir, variant="fp32", device="cpu")


def metrics(url: str) -> dict[str, float]:
    """``/metrics`` samples as ``name{label=value,...}`` -> value."""
    text = httpx.get(f"{url}/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def v2_body(texts: list[str], pairs: list[str] | None = None) -> dict[str, Any]:
    inputs = [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]
    if pairs is not None:
        inputs.append(
            {"name": "text_pair", "shape": [len(pairs)], "datatype": "BYTES", "data": pairs}
        )
    return {"id": "req-1", "inputs": inputs}


def assert_matches(predictions: list[dict[str, Any]], expected: list[Any]) -> None:
    assert len(predictions) == len(expected)
    for got, want in zip(predictions, expected, strict=True):
        assert got["label"] == want.label
        assert got["score"] == pytest.approx(want.score, abs=1e-5)
        assert set(got["probabilities"]) == set(want.probabilities)
        for name, p in want.probabilities.items():
            assert got["probabilities"][name] == pytest.approx(p, abs=1e-5)


# --- the v2 protocol and /predict ---------------------------------------------------------


def test_health_metadata_and_server_metadata(served: Server) -> None:
    url = served.url
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{url}/v2/models/sst2/ready").status_code == 200
    server_doc = httpx.get(f"{url}/v2").json()
    assert server_doc["name"] == "moohead" and "version" in server_doc
    meta = httpx.get(f"{url}/v2/models/sst2").json()
    assert meta["name"] == "sst2" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
    ]
    assert meta["parameters"]["labels"] == ["negative", "positive"]
    assert meta["parameters"]["variant"] == "fp32"


def test_v2_infer_and_predict_answer_as_the_runtime(
    served: Server, reference: OnnxClassifier
) -> None:
    expected = reference.predict(TEXTS)
    r = httpx.post(f"{served.url}/predict", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    assert_matches(r.json()["predictions"], expected)

    r = httpx.post(f"{served.url}/v2/models/sst2/infer", json=v2_body(TEXTS))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_name"] == "sst2" and doc["id"] == "req-1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [5]
    assert outputs["label"]["data"] == [p.label for p in expected]
    probs = outputs["probabilities"]
    assert probs["datatype"] == "FP32" and probs["shape"] == [5, 2]
    want = [[p.probabilities[k] for k in ("negative", "positive")] for p in expected]
    np.testing.assert_allclose(np.reshape(probs["data"], (5, 2)), want, atol=1e-5)

    # Requested outputs only, and the nested form of a [n, 1] tensor.
    body = {
        "inputs": [
            {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["great"], ["bad"]]}
        ],
        "outputs": [{"name": "label"}],
    }
    r = httpx.post(f"{served.url}/v2/models/sst2/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]
    assert r.json()["outputs"][0]["data"] == [p.label for p in reference.predict(["great", "bad"])]


def test_a_text_answers_the_same_alone_and_batched(served: Server) -> None:
    """Padding is masked: fp32 gives a text the same answer whatever is batched beside it."""
    alone = [httpx.post(f"{served.url}/predict", json={"texts": [t]}).json() for t in TEXTS]
    together = httpx.post(f"{served.url}/predict", json={"texts": TEXTS}).json()["predictions"]
    for single, batched in zip(alone, together, strict=True):
        (single,) = single["predictions"]
        assert single["label"] == batched["label"]
        for k, p in single["probabilities"].items():
            assert batched["probabilities"][k] == pytest.approx(p, abs=1e-5)


@pytest.mark.parametrize("variant", ["fp32", "optimized"])
def test_batch_independence_per_variant(model_dir: Path, variant: str) -> None:
    """Within one forced batch of four requests, each text answers as it does alone."""
    model = OnnxClassifier.load(model_dir, variant=variant, device="cpu", threads=1)
    texts = TEXTS[:4]
    alone = [model.logits([t], batch_size=1)[0] for t in texts]
    cfg = ServeConfig(model_dir, max_batch=4, max_delay_ms=600_000, max_texts=4, max_queue=8)
    with thread_server(model, cfg) as url, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda t: post_predict(url, [t]), texts))
        families = metrics(url)
    assert families["moohead_batch_size_count"] == 1  # one batch for the four requests
    assert families["moohead_batch_size_sum"] == 4
    for logits, answer in zip(alone, answers, strict=True):
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        got = [answer["probabilities"][k] for k in ("negative", "positive")]
        np.testing.assert_allclose(got, probs, atol=1e-5)


def post_predict(url: str, texts: list[Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}/predict", json={"texts": texts}, timeout=STARTUP_GUARD_S)
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["predictions"]
    return dict(prediction)


def test_concurrent_requests_are_batched_and_counted(served: Server) -> None:
    """A flood of one-text requests on the main server: every answer right, and /metrics
    counts requests by endpoint and status and the batches' sizes."""
    before = metrics(served.url)
    texts = [f"{TEXTS[i % 5]} {i}" for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: post_predict(served.url, [t]), texts))
    assert all(a["label"] in ("negative", "positive") for a in answers)
    after = metrics(served.url)
    key = "moohead_requests_total{endpoint=predict,status=200}"
    assert after[key] - before.get(key, 0) == 40
    inputs = after["moohead_inferred_inputs_total"] - before["moohead_inferred_inputs_total"]
    assert inputs == 40
    assert "moohead_queue_depth" in after
    assert after["moohead_request_duration_seconds_count{endpoint=predict}"] >= 40


def test_a_request_larger_than_a_batch_is_split(model_dir: Path) -> None:
    model = OnnxClassifier.load(model_dir, variant="fp32", device="cpu", threads=1)
    texts = [f"{TEXTS[i % 5]} {i}" for i in range(10)]
    cfg = ServeConfig(model_dir, max_batch=4, max_delay_ms=0, max_texts=10, max_queue=10)
    with thread_server(model, cfg) as url:
        r = httpx.post(f"{url}/predict", json={"texts": texts})
        families = metrics(url)
    assert r.status_code == 200
    assert_matches(r.json()["predictions"], model.predict(texts))
    assert families["moohead_batch_size_sum"] == 10
    assert families["moohead_batch_size_count"] >= 3  # 4 + 4 + 2 at most per call
    assert families["moohead_batch_size_bucket{le=4.0}"] == families["moohead_batch_size_count"]


# --- pair and regression tasks ------------------------------------------------------------


def hand_built_model(encoder_dir: Path, out: Path, task: str, pair: str, num_labels: int) -> Path:
    """A model folder as ``moohead export`` writes it (fp32 only) for a pair task."""
    import torch

    from moohead.encoder import load_encoder, truncate
    from moohead.fused import FusedModel
    from moohead.genome import baseline
    from moohead.heads import build_head
    from moohead.onnx_graph import export_onnx

    encoder, _, _ = load_encoder(str(encoder_dir))
    genome = replace(baseline(2), pair=pair, depth=2, pool="mean")
    torch.manual_seed(1)
    model = FusedModel(truncate(encoder, 2), build_head(genome, 32, num_labels).eval(), True)
    out.mkdir()
    export_onnx(model.eval(), out / "model.onnx")
    shutil.copy(encoder_dir / TOKENIZER_FILE, out / TOKENIZER_FILE)
    labels = ["entailment", "not_entailment"] if num_labels == 2 else None
    doc = {
        "format": FORMAT,
        "task": {"name": task, "text_columns": ["sentence1", "sentence2"],
                 "num_labels": num_labels, "metrics": []},
        "labels": labels,
        "max_length": 24,
        "inputs": model.side_names,
        "siamese": model.siamese,
        "variants": {"fp32": file_record(out / "model.onnx")},
    }  # fmt: skip
    (out / MANIFEST).write_text(json.dumps(doc))
    return out


@pytest.fixture(scope="module")
def pair_models(
    tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pair-models")
    return {
        "rte": hand_built_model(tiny_encoder_dir, root / "rte", "rte", "siamese", 2),
        "stsb": hand_built_model(tiny_encoder_dir, root / "stsb", "stsb", "joint", 1),
    }


PAIRS = [
    ("a good movie", "the film is great"),
    ("it was dull", "not very nice"),
    ("bad", "awful plot and actor"),
]


def test_pair_classification_takes_text_and_text_pair(pair_models: dict[str, Path]) -> None:
    model = OnnxClassifier.load(pair_models["rte"], device="cpu", threads=1)
    expected = model.predict(PAIRS)
    cfg = ServeConfig(pair_models["rte"], max_texts=8)
    with thread_server(model, cfg) as url:
        meta = httpx.get(f"{url}/v2/models/rte").json()
        assert [i["name"] for i in meta["inputs"]] == ["text", "text_pair"]
        r = httpx.post(f"{url}/predict", json={"texts": [list(p) for p in PAIRS]})
        assert r.status_code == 200, r.text
        assert_matches(r.json()["predictions"], expected)
        body = v2_body([a for a, _ in PAIRS], [b for _, b in PAIRS])
        outputs = {
            o["name"]: o
            for o in httpx.post(f"{url}/v2/models/rte/infer", json=body).json()["outputs"]
        }
        assert outputs["label"]["data"] == [p.label for p in expected]
        bad = [
            ({"texts": ["one text only"]}, "/predict", "must be a pair"),
            ({"texts": [["a", "b", "c"]]}, "/predict", "must be a pair"),
            ({"texts": [["a", ""]]}, "/predict", "texts[0][1] is empty"),
            (v2_body(["a"]), "/v2/models/rte/infer", "missing input 'text_pair'"),
            (v2_body(["a", "b"], ["c"]), "/v2/models/rte/infer", "differ in length"),
        ]
        for doc, path, needle in bad:
            r = httpx.post(f"{url}{path}", json=doc)
            assert r.status_code == 400 and needle in r.json()["error"], (doc, r.text)


def test_regression_answers_a_score(pair_models: dict[str, Path]) -> None:
    model = OnnxClassifier.load(pair_models["stsb"], device="cpu", threads=1)
    expected = model.predict(PAIRS)
    with thread_server(model, ServeConfig(pair_models["stsb"])) as url:
        meta = httpx.get(f"{url}/v2/models/stsb").json()
        assert meta["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [-1]}]
        r = httpx.post(f"{url}/predict", json={"texts": [list(p) for p in PAIRS]})
        got = r.json()["predictions"]
        assert [g["label"] for g in got] == [None] * 3
        np.testing.assert_allclose(
            [g["score"] for g in got], [p.score for p in expected], atol=1e-5
        )
        body = v2_body([a for a, _ in PAIRS], [b for _, b in PAIRS])
        (score,) = httpx.post(f"{url}/v2/models/stsb/infer", json=body).json()["outputs"]
        assert score["name"] == "score" and score["shape"] == [3]
        np.testing.assert_allclose(score["data"], [p.score for p in expected], atol=1e-5)


class CountedSession:
    """An ORT session that counts its calls and the padded tokens it was fed."""

    def __init__(self, session: Any) -> None:
        self.session, self.calls, self.tokens = session, 0, 0

    def run(self, names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.calls += 1
        self.tokens += sum(v.size for k, v in feeds.items() if k.startswith("input_ids"))
        return self.session.run(names, feeds)


LENGTHS = [("a", "b"), ("the plot was not very awful and it is dull, long and slow", "fine"),
           ("ok", "it was a good film with a plot and actors and a score"), ("bad", "awful"),
           ("great great great great great great great great great great", "so so so so so so")]  # fmt: skip


@pytest.mark.parametrize("task", ["rte", "stsb", "sst2"])
def test_a_batch_runs_as_length_groups_with_the_same_answers(
    pair_models: dict[str, Path], model_dir: Path, task: str
) -> None:
    """On CPU a batch of mixed lengths runs as several calls that pad less (both sides of
    a siamese pair, a joint pair, one sentence), and each text answers as in one call."""
    folder = model_dir if task == "sst2" else pair_models[task]
    model = OnnxClassifier.load(folder, variant="fp32", device="cpu", threads=1)
    texts: list[Any] = [a + " " + b for a, b in LENGTHS] if task == "sst2" else LENGTHS
    counted = CountedSession(model.session)
    model.session = counted
    grouped = model.logits(texts, batch_size=len(texts))
    calls, tokens = counted.calls, counted.tokens
    model.call_tokens = float("inf")  # what a GPU session does: one call a batch
    whole = model.logits(texts, batch_size=len(texts))
    assert calls > 1 and counted.calls == calls + 1
    assert tokens < counted.tokens - tokens  # fewer padded tokens than the one call
    np.testing.assert_allclose(grouped, whole, atol=1e-5)


# --- overload, shutdown, start-up errors --------------------------------------------------


class Blocked:
    """A model whose calls wait until released: the queue fills deterministically."""

    def __init__(self, model: OnnxClassifier) -> None:
        self.model, self.doc, self.variant = model, model.doc, model.variant
        self.entered, self.release = threading.Event(), threading.Event()

    def logits(self, texts: list[Any], batch_size: int = 32) -> np.ndarray:
        self.entered.set()
        self.release.wait(STARTUP_GUARD_S)
        return self.model.logits(texts, batch_size)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_GUARD_S
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.02)


def test_a_full_queue_answers_503_with_retry_after(model_dir: Path) -> None:
    model = Blocked(OnnxClassifier.load(model_dir, variant="fp32", device="cpu", threads=1))
    cfg = ServeConfig(model_dir, name="m", max_batch=2, max_delay_ms=0, max_queue=4, max_texts=4)
    with thread_server(model, cfg) as url, ThreadPoolExecutor(2) as pool:
        running = pool.submit(post_predict, url, ["great"])  # taken into the (blocked) batch
        assert model.entered.wait(STARTUP_GUARD_S)
        queued = pool.submit(
            httpx.post, f"{url}/predict", json={"texts": TEXTS[:4]}, timeout=STARTUP_GUARD_S
        )
        wait_for(lambda: metrics(url)["moohead_queue_depth"] == 4)
        for path, body in (
            ("/predict", {"texts": ["bad"]}),
            ("/v2/models/m/infer", v2_body(["bad"])),
        ):
            r = httpx.post(f"{url}{path}", json=body)
            assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
            assert "queue" in r.json()["error"]
        assert httpx.get(f"{url}/v2/health/live").status_code == 200  # health needs no queue
        model.release.set()
        assert running.result()["label"] in ("negative", "positive")
        assert queued.result().status_code == 200
        assert httpx.post(f"{url}/predict", json={"texts": ["bad"]}).status_code == 200
        families = metrics(url)
    assert families["moohead_requests_total{endpoint=predict,status=503}"] == 1
    assert families["moohead_request_errors_total{endpoint=infer,kind=overloaded}"] == 1


def test_sigterm_finishes_the_request_in_flight(model_dir: Path, reference: OnnxClassifier) -> None:
    """A queued request waiting for its batch to fill is answered after SIGTERM, at once
    (the batcher stops waiting), and the process exits 0."""
    srv = Server(model_dir, "--variant", "fp32", "--device", "cpu", "--threads", "1",
                 "--max-batch", "64", "--max-delay-ms", "600000")  # fmt: skip
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(httpx.post, f"{srv.url}/predict", json={"texts": ["great"]},
                                  timeout=STARTUP_GUARD_S)  # fmt: skip
            wait_for(lambda: metrics(srv.url)["moohead_queue_depth"] == 1)
            srv.proc.send_signal(signal.SIGTERM)
            r = pending.result()
    finally:
        code = srv.stop()
    assert r.status_code == 200, r.text
    assert_matches(r.json()["predictions"], reference.predict(["great"]))
    assert code == 0, "".join(srv.stderr)
    assert srv.stderr[-1].strip() == "stopped" and "Traceback" not in "".join(srv.stderr)


def test_serve_imports_no_torch(model_dir: Path) -> None:
    """The serving path, started and answering a request, never imports torch or transformers."""
    script = (
        "import pathlib, sys, threading, time, httpx, uvicorn\n"
        "from moohead.cli.main import cli\n"
        "from moohead.export import server\n"
        "from moohead.export.runtime import OnnxClassifier\n"
        "from moohead.export.serve_app import build_app\n"
        "from moohead.export.serve_config import ServeConfig\n"
        f"cfg = ServeConfig(pathlib.Path({str(model_dir)!r}), name='m')\n"
        "sock = server.bind('127.0.0.1', 0)\n"
        "app = build_app(OnnxClassifier.load(cfg.model_dir, device='cpu'), cfg)\n"
        "srv = uvicorn.Server(uvicorn.Config(app, log_level='warning'))\n"
        "t = threading.Thread(target=srv.run, kwargs={'sockets': [sock]}); t.start()\n"
        "while not srv.started: time.sleep(0.01)\n"
        "r = httpx.post(server.url(sock) + '/predict', json={'texts': ['a good film']})\n"
        "assert r.status_code == 200, r.text\n"
        "srv.should_exit = True; t.join()\n"
        "loaded = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_bad_start_up_is_one_line_and_exit_2(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    modified = tmp_path / "modified"
    shutil.copytree(model_dir, modified)
    data = bytearray((modified / "model.onnx").read_bytes())
    data[-1] ^= 1
    (modified / "model.onnx").write_bytes(bytes(data))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = str(taken.getsockname()[1])
    cases = [
        ([str(tmp_path / "nosuchmodel")], "does not exist"),
        ([str(modified)], "does not match the SHA-256"),
        ([str(model_dir), "--variant", "fp16"], "has no fp16 variant"),
        ([str(model_dir), "--max-texts", "10", "--max-queue", "5"], "must not exceed --max-queue"),
        ([str(model_dir), "--max-batch", "0"], "--max-batch must be at least 1"),
        (
            [str(model_dir), "--host", "127.0.0.1", "--port", port],
            f"cannot listen on 127.0.0.1:{port}",
        ),
    ]
    try:
        for args, needle in cases:
            code, out, err = run_cli(["serve", *args], capsys)
            assert code == 2, (args, out, err)
            assert err.startswith("error: ") and needle in err, (args, err)
            assert len(err.strip().splitlines()) == 1, (args, err)
    finally:
        taken.close()
    # The real command, as a process: nothing listens, one line, exit 2.
    proc = subprocess.run(
        [sys.executable, "-m", "moohead.cli.main", "serve", str(modified), "--port", "0"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "SHA-256" in proc.stderr


# --- the bad-request matrix ---------------------------------------------------------------

V2 = "/v2/models/sst2/infer"
OK_TENSOR = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["fine"]}
BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (case, method, path, httpx arguments, status, part of the error)
    ("malformed json", "POST", "/predict", {"content": b'{"texts": ["a"', "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ("json not an object", "POST", "/predict", {"json": ["a", "b"]}, 400, "takes a JSON object"),
    ("json null", "POST", V2, {"content": b"null"}, 400, "non-empty list 'inputs'"),
    ("no body", "POST", "/predict", {}, 400, "not valid JSON"),
    ("texts not a list", "POST", "/predict", {"json": {"texts": "a good film"}}, 400, "texts must be a list, not str"),
    ("number in texts", "POST", "/predict", {"json": {"texts": ["ok", 3]}}, 400, "texts[1] must be a string, not int"),
    ("missing texts", "POST", "/predict", {"json": {"text": ["ok"]}}, 400, "takes a JSON object"),
    ("unknown field", "POST", "/predict", {"json": {"texts": ["ok"], "top_k": 2}}, 400, "unknown field 'top_k'"),
    ("empty texts", "POST", "/predict", {"json": {"texts": []}}, 400, "has no texts"),
    ("empty string", "POST", "/predict", {"json": {"texts": ["ok", ""]}}, 400, "texts[1] is empty"),
    ("blank string", "POST", "/predict", {"json": {"texts": ["   \t"]}}, 400, "texts[0] is empty"),
    ("lone surrogate", "POST", "/predict", {"content": b'{"texts": ["\\ud800"]}'}, 400, "not valid Unicode"),
    ("too many texts", "POST", "/predict", {"json": {"texts": ["ok"] * 17}}, 413, "at most 16 per request"),
    ("body over the limit", "POST", "/predict", {"json": {"texts": ["x" * 30000]}}, 413, "over the limit of 20000 bytes"),
    ("not utf-8", "POST", "/predict", {"content": b'{"texts": ["caf\xe9"]}'}, 400, "not valid UTF-8"),
    ("wrong content type", "POST", "/predict", {"content": b'{"texts": ["ok"]}', "headers": {"content-type": "text/plain"}}, 415, "'text/plain' is not supported"),
    ("form content type", "POST", V2, {"data": {"texts": "ok"}}, 415, "application/x-www-form-urlencoded"),
    ("deep nesting", "POST", "/predict", {"content": b"[" * 15000}, 400, "nested too deeply"),
    ("v2 missing inputs", "POST", V2, {"json": {"id": "x"}}, 400, "non-empty list 'inputs'"),
    ("v2 empty inputs", "POST", V2, {"json": {"inputs": []}}, 400, "non-empty list 'inputs'"),
    ("v2 datatype not BYTES", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "datatype": "FP32"}]}}, 400, "datatype 'FP32'"),
    ("v2 shape mismatch", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "shape": [2]}]}}, 400, "shape [2] but 1 data elements"),
    ("v2 shape rank 3", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "shape": [1, 1, 1]}]}}, 400, "take shape [n] or [n, 1]"),
    ("v2 negative shape", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "shape": [-1]}]}}, 400, "take shape [n] or [n, 1]"),
    ("v2 tensor lacks data", "POST", V2, {"json": {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}}, 400, "inputs[0] lacks data"),
    ("v2 data not a list", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "data": "fine"}]}}, 400, "data must be a list"),
    ("v2 unknown input", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "name": "sentence"}]}}, 400, "unknown input 'sentence'"),
    ("v2 input twice", "POST", V2, {"json": {"inputs": [OK_TENSOR, OK_TENSOR]}}, 400, "given twice"),
    ("v2 number in data", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "data": [7]}]}}, 400, "element 0 must be a string"),
    ("v2 unknown output", "POST", V2, {"json": {"inputs": [OK_TENSOR], "outputs": [{"name": "logits"}]}}, 400, "unknown output 'logits'"),
    ("v2 empty tensor", "POST", V2, {"json": {"inputs": [{**OK_TENSOR, "shape": [0], "data": []}]}}, 400, "has no texts"),
    ("unknown model infer", "POST", "/v2/models/nope/infer", {"json": {"inputs": [OK_TENSOR]}}, 404, "unknown model 'nope'"),
    ("unknown model metadata", "GET", "/v2/models/nope", {}, 404, "unknown model 'nope'"),
    ("unknown path", "GET", "/v1/models", {}, 404, "Not Found"),
    ("wrong method", "GET", "/predict", {}, 405, "Method Not Allowed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_a_one_line_json_error_and_the_server_still_serves(
    served: Server, method: str, path: str, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    r = httpx.request(method, f"{served.url}{path}", **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert "\n" not in r.text.strip()
    doc = r.json()
    assert list(doc) == ["error"] and isinstance(doc["error"], str), doc
    assert needle in doc["error"], doc
    ok = httpx.post(f"{served.url}/predict", json={"texts": ["a good film"]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["label"] in (
        "negative",
        "positive",
    )
    assert served.proc.poll() is None


def test_bad_requests_are_counted_as_client_errors(served: Server) -> None:
    httpx.post(f"{served.url}/predict", json={"texts": []})
    families = metrics(served.url)
    assert families["moohead_request_errors_total{endpoint=predict,kind=client}"] >= 1
    assert families["moohead_requests_total{endpoint=predict,status=400}"] >= 1
