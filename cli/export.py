"""``moohead export``: fuse a front head with its encoder and write a checked ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from moohead.export.config import QUANTIZE_MODES, ExportConfig


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", "out", type=click.Path(path_type=Path), required=True, help="Model folder to write."
)
@click.option(
    "--id", "id", type=int, default=None, help="Export this head (default: the recorded pick)."
)
@click.option("--knee", is_flag=True, help="Export the front's knee point.")
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
@click.option("--overwrite", is_flag=True, help="Replace --out once the new model passed the gate.")
def export(**options: Any) -> None:
    """Export a head of RUN_DIR to ONNX in --out, gated on parity with PyTorch."""
    from moohead.export.pipeline import export_run

    cfg = ExportConfig(**options)  # every option is an ExportConfig field of the same name
    doc = export_run(cfg, log=click.echo)
    files = ", ".join(v["file"] for v in doc["variants"].values())
    click.echo(f"wrote {cfg.out}: {files}, tokenizer, moohead.json")
