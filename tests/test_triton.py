"""``moohead export --triton REPO_DIR``: a Triton model repository entry, read with Triton's
own protobuf schema of ``config.pbtxt`` and checked against the exported ONNX graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from conftest import NO_QUALITY_GATE, run_cli

from moohead.errors import MooheadError
from moohead.export.config import ExportConfig
from moohead.export.model_dir import sha256
from moohead.export.pipeline import export_run
from moohead.export.triton import tensor_specs
from moohead.export.validate import ParityError

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] (dev extra) not installed"
)
text_format = pytest.importorskip("google.protobuf.text_format")

# ONNX element type -> Triton's enum, from Triton's schema (not from the module under test).
TRITON_TYPE = {
    onnx.TensorProto.INT64: model_config_pb2.TYPE_INT64,
    onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32,
}


def parse_config(path: Path) -> Any:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def expected_tensors(values: Any) -> list[tuple[str, int, list[int]]]:
    """(name, Triton type, dims after the batch axis; -1 where symbolic) from ONNX."""
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out.append((v.name, TRITON_TYPE[t.elem_type], dims[1:]))
    return out


def config_tensors(tensors: Any) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in tensors]


def test_triton_entry_matches_the_onnx_graph(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, repo = tmp_path / "model", tmp_path / "repo"
    args = ["export", str(finished_run), "--out", str(out), "--triton", str(repo),
            "--triton-name", "sst2-tiny", "--triton-max-batch-size", "16"]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"wrote Triton model {repo / 'sst2-tiny'} (fp32)" in stdout
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*")) == [
        "sst2-tiny", "sst2-tiny/1", "sst2-tiny/1/model.onnx", "sst2-tiny/config.pbtxt",
    ]  # fmt: skip
    config = parse_config(repo / "sst2-tiny" / "config.pbtxt")
    assert config.name == "sst2-tiny"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    assert config.HasField("dynamic_batching")
    graph = onnx.load(str(repo / "sst2-tiny" / "1" / "model.onnx")).graph
    assert config_tensors(config.input) == expected_tensors(graph.input)
    assert config_tensors(config.output) == expected_tensors(graph.output)
    # What this graph is: BERT's three int64 inputs of any length, two float32 logits.
    assert config_tensors(config.input) == [
        (n, model_config_pb2.TYPE_INT64, [-1])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    assert config_tensors(config.output) == [("logits", model_config_pb2.TYPE_FP32, [2])]
    doc = json.loads((out / "moohead.json").read_text())
    assert sha256(repo / "sst2-tiny" / "1" / "model.onnx") == doc["variants"]["fp32"]["sha256"]


def test_triton_variant_and_default_name(finished_run: Path, tmp_path: Path) -> None:
    """Another exported variant on request; the name defaults to the model folder's."""
    out, repo = tmp_path / "sst2_int8", tmp_path / "repo"
    cfg = ExportConfig(finished_run, out, quantize="int8", triton=repo, triton_variant="int8",
                       **NO_QUALITY_GATE)  # fmt: skip
    doc = export_run(cfg, log=lambda s: None)
    model = repo / "sst2_int8"
    assert sha256(model / "1" / "model.onnx") == doc["variants"]["int8"]["sha256"]
    config = parse_config(model / "config.pbtxt")
    assert config.name == "sst2_int8" and config.max_batch_size == 64
    graph = onnx.load(str(model / "1" / "model.onnx")).graph
    assert config_tensors(config.input) == expected_tensors(graph.input)


def test_existing_triton_model_is_kept_unless_overwrite(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "taken" / "1").mkdir(parents=True)
    (repo / "taken" / "config.pbtxt").write_text('name: "taken"\n')
    base = ["export", str(finished_run), "--triton", str(repo), "--triton-name", "taken"]
    code, _, err = run_cli([*base, "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and "Triton model" in err and "already exists" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a").exists()
    assert (repo / "taken" / "config.pbtxt").read_text() == 'name: "taken"\n'
    code, _, err = run_cli([*base, "--out", str(tmp_path / "b"), "--overwrite"], capsys)
    assert code == 0, err
    assert parse_config(repo / "taken" / "config.pbtxt").platform == "onnxruntime_onnx"
    assert (repo / "taken" / "1" / "model.onnx").is_file()
    assert [p.name for p in repo.iterdir()] == ["taken"]  # no temporary folders left


def test_failed_export_writes_no_triton_model(finished_run: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    cfg = ExportConfig(finished_run, tmp_path / "model", knee=True, atol=0.0, triton=repo)
    with pytest.raises(ParityError):
        export_run(cfg, log=lambda s: None)
    assert not (tmp_path / "model").exists()
    assert not repo.exists() or not list(repo.iterdir())


def test_graph_without_a_batch_axis_is_refused() -> None:
    fixed = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    with pytest.raises(MooheadError, match="x has no dynamic batch axis"):
        tensor_specs([fixed])
    strings = onnx.helper.make_tensor_value_info("s", onnx.TensorProto.STRING, ["batch", 4])
    with pytest.raises(MooheadError, match="element type 8"):
        tensor_specs([strings])


def test_bad_triton_options_one_line_exit_2(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "m"
    export = ["export", str(finished_run), "--out", str(out)]
    repo = ["--triton", str(tmp_path / "repo")]
    cases = [
        ([*export, *repo, "--triton-name", "my model"], "'my model' is not a valid Triton model name"),
        ([*export, *repo, "--triton-name", ".hidden"], "is not a valid Triton model name"),
        ([*export, "--triton-name", "x"], "need --triton REPO_DIR"),
        ([*export, "--triton-variant", "fp16"], "need --triton REPO_DIR"),
        ([*export, *repo, "--triton-variant", "int8"], "--triton-variant int8 is not exported; add --quantize int8"),
        ([*export, *repo, "--triton-variant", "int4"], "'int4' is not one of"),
        ([*export, *repo, "--triton-max-batch-size", "0"], "--triton-max-batch-size must be at least 1"),
        ([*export, "--triton", str(tmp_path / "afile")], "is a file, not a model repository folder"),
        ([*export, "--triton", str(out)], "must be outside --out"),
        ([*export, "--triton", str(tmp_path), "--triton-name", "m"], "must be outside --out"),
        (["export", str(finished_run), "--out", str(tmp_path / "bad name"), *repo], "'bad name' is not a valid Triton model name"),
    ]  # fmt: skip
    for args, needle in cases:
        code, stdout, err = run_cli(args, capsys)
        assert code == 2, (args, stdout, err)
        assert needle in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
