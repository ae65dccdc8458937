"""``moohead evolve``: the NSGA-II head search."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from moohead.config import DEVICES, FIDELITIES, OBJECTIVES, default_cache_dir, default_data_dir


def _objectives(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [n for n in names if n not in OBJECTIVES]
    if bad or "score" not in names:
        raise click.BadParameter(
            f"{value!r}: give score plus any of flops, latency (e.g. score,flops)"
        )
    return names


@click.command()
@click.option(
    "--task",
    default="sst2",
    show_default=True,
    help="GLUE task, or a custom task folder under --data-dir.",
)
@click.option(
    "--model",
    default=None,
    help="Encoder: hub id or local folder [default: packaged all-MiniLM-L6-v2].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=default_data_dir,
    help="Folder with <task>/{train,validation}.tsv|csv|parquet|jsonl [default: $GLUE_DIR, else the hub].",
)
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path),
    default=Path("runs/latest"),
    show_default=True,
    help="Run directory.",
)
@click.option(
    "--population", type=int, default=16, show_default=True, help="NSGA-II population (>= 4)."
)
@click.option(
    "--generations", type=int, default=8, show_default=True, help="NSGA-II generations (>= 1)."
)
@click.option(
    "--max-train",
    type=int,
    default=8000,
    show_default=True,
    help="Training examples used; 0 = all.",
)
@click.option(
    "--max-length", type=int, default=128, show_default=True, help="Tokenizer max length (>= 8)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--objectives",
    default=",".join(OBJECTIVES),
    show_default=True,
    callback=_objectives,
    help="Comma-separated subset of score,flops,latency (score required).",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Feature cache [default: $MOOHEAD_CACHE_DIR or {default_cache_dir()}].",
)
@click.option(
    "--max-epochs", type=int, default=12, show_default=True, help="Epoch budget per head."
)
@click.option(
    "--fidelity",
    type=click.Choice(FIDELITIES),
    default="frozen",
    show_default=True,
    help="frozen: heads on cached encoder features; finetune: each genome trains its encoder too.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: train in this process; ray: each generation's genomes as Ray tasks.",
)
@click.option("--ray-address", default=None, help="Ray cluster address [default: a local Ray].")
@click.option(
    "--gpus-per-eval", type=float, default=1.0, show_default=True, help="GPUs per Ray task."
)
@click.option(
    "--force-new",
    is_flag=True,
    help="If --out holds a run, move it aside (RUN.old-<time>) and start over instead of resuming.",
)
@click.option(
    "--lr-encoder", type=float, default=2e-5, show_default=True, help="Encoder LR (finetune)."
)
def evolve(
    task: str,
    model: str | None,
    data_dir: Path | None,
    out: Path,
    population: int,
    generations: int,
    max_train: int,
    max_length: int,
    seed: int,
    objectives: tuple[str, ...],
    device: str,
    cache_dir: Path | None,
    max_epochs: int,
    fidelity: str,
    lr_encoder: float,
    force_new: bool,
    executor: str,
    ray_address: str | None,
    gpus_per_eval: float,
) -> None:
    """Search head architectures with NSGA-II and write the Pareto front to --out.

    If --out already holds a run (interrupted or finished), the search continues it: every
    finished evaluation is kept and nothing is trained twice.
    """
    from moohead.cli.report import RichReporter, front_table
    from rich.console import Console

    from moohead.config import SearchConfig
    from moohead.search import run_search

    cfg = SearchConfig(
        task=task,
        model=model,
        data_dir=data_dir,
        out=out,
        population=population,
        generations=generations,
        max_train=max_train or None,
        max_length=max_length,
        reference_length=max_length,
        seed=seed,
        objectives=objectives,
        device=device,
        cache_dir=cache_dir,
        max_epochs=max_epochs,
        fidelity=fidelity,
        lr_encoder=lr_encoder,
        executor=executor,
        ray_address=ray_address,
        gpus_per_eval=gpus_per_eval,
    )
    console = Console()
    try:
        doc = run_search(cfg, RichReporter(console), force_new=force_new)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: every finished evaluation is saved in {out / 'archive.jsonl'}; "
            f"run the same command again to resume (moohead evolve ... --out {out})",
            err=True,
        )
        sys.exit(130)
    console.print(front_table(doc))
    console.print(f"run written to {out} (front.json, front.png, archive.jsonl, heads/)")
