"""``moohead refine``: fine-tune the front's best heads end to end and re-measure them."""

from __future__ import annotations

from pathlib import Path

import click

from moohead.config import DEVICES, RefineConfig

D = RefineConfig(run_dir=Path())  # every default below is the config's own


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--top",
    type=int,
    default=D.top,
    show_default=True,
    help="Front heads to fine-tune (best score first).",
)
@click.option(
    "--max-epochs",
    type=int,
    default=D.max_epochs,
    show_default=True,
    help="Fine-tuning epochs per head.",
)
@click.option(
    "--lr-encoder",
    type=float,
    default=D.lr_encoder,
    show_default=True,
    help="Encoder learning rate.",
)
@click.option("--device", type=click.Choice(DEVICES), default=D.device, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Task data (default: the run's).",
)
def refine(
    run_dir: Path, top: int, max_epochs: int, lr_encoder: float, device: str, data_dir: Path | None
) -> None:
    """Fine-tune RUN_DIR's best front heads and the baseline; write RUN_DIR/refined.json."""
    from moohead.refine import refine as run_refine
    from moohead.rundir import RunDir

    cfg = RefineConfig(
        run_dir=run_dir,
        top=top,
        max_epochs=max_epochs,
        lr_encoder=lr_encoder,
        device=device,
        data_dir=data_dir,
    )
    doc = run_refine(cfg, log=click.echo)
    base = doc["baseline"]
    click.echo(
        f"baseline validation {base['frozen_validation']:.4f} -> {base['validation']:.4f}; "
        f"refined front: {', '.join(str(e['id']) for e in doc['front'])}"
    )
    click.echo(f"wrote {RunDir(run_dir).refined_path}; pick and export now use the refined weights")
