"""``moohead export``: fuse a front head with its encoder and write a checked ONNX model."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out", "out", type=click.Path(path_type=Path), required=True, help="Model folder to write."
)
@click.option(
    "--id", "head_id", type=int, default=None, help="Export this head (default: the recorded pick)."
)
@click.option("--knee", is_flag=True, help="Export the front's knee point.")
@click.option("--optimize", is_flag=True, help="Also write ORT's transformer-optimised graph.")
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
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
def export(
    run_dir: Path,
    out: Path,
    head_id: int | None,
    knee: bool,
    optimize: bool,
    quantize: str | None,
    fp16: bool,
    data_dir: Path | None,
    overwrite: bool,
) -> None:
    """Export a head of RUN_DIR to ONNX in --out, gated on parity with PyTorch."""
    from moohead.export.config import ExportConfig
    from moohead.export.pipeline import export_run

    cfg = ExportConfig(run_dir, out, head_id, knee, optimize, quantize, fp16, data_dir, overwrite)
    doc = export_run(cfg, log=click.echo)
    files = ", ".join(v["file"] for v in doc["variants"].values())
    click.echo(f"wrote {out}: {files}, tokenizer, moohead.json")
