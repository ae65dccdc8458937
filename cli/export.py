"""``moohead export``: fuse a front head with its encoder and write a checked ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from moohead.export.config import QUANTIZE_MODES, ExportConfig
from moohead.export.model_dir import VARIANT_FILES
from moohead.export.triton import MAX_BATCH_SIZE


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", "out", type=click.Path(path_type=Path), required=True, help="Model folder to write."
)
@click.option(
    "--id", "id", type=int, default=None, help="Export this head (default: the recorded pick)."
)
@click.option("--knee", is_flag=True, help="Export the front's knee point.")
@click.option(
    "--recommended", is_flag=True, help="Export the head the search recommends (moohead front)."
)
@click.option("--optimize", is_flag=True, help="Also write ORT's transformer-optimised graph.")
@click.option(
    "--quantize",
    type=click.Choice(QUANTIZE_MODES),
    default=None,
    help="Also write a dynamic int8 graph (CPU).",
)
@click.option("--fp16", is_flag=True, help="Also write a float16 graph (GPU).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder with the task's validation split (default: the run's).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace --out (and the --triton model) once the new model passed the gate.",
)
@click.option(
    "--triton",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the model into this Triton model repository (REPO_DIR/NAME/1/model.onnx).",
)
@click.option(
    "--triton-name", default=None, help="The Triton model's name (default: --out's folder name)."
)
@click.option(
    "--triton-variant",
    type=click.Choice(list(VARIANT_FILES)),
    default="fp32",
    show_default=True,
    help="The exported variant Triton serves.",
)
@click.option(
    "--triton-max-batch-size",
    type=int,
    default=MAX_BATCH_SIZE,
    show_default=True,
    help="The largest batch Triton's dynamic batcher forms.",
)
def export(**options: Any) -> None:
    """Export a head of RUN_DIR to ONNX in --out, gated on parity with PyTorch."""
    from moohead.export.pipeline import export_run

    cfg = ExportConfig(**options)  # every option is an ExportConfig field of the same name
    doc = export_run(cfg, log=click.echo)
    files = ", ".join(v["file"] for v in doc["variants"].values())
    click.echo(f"wrote {cfg.out}: {files}, tokenizer, config.json, onnx/, moohead.json")
    if cfg.triton_model is not None:
        click.echo(f"wrote Triton model {cfg.triton_model} ({cfg.triton_variant})")
