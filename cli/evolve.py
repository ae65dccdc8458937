"""``moohead evolve``: the NSGA-II head search."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from moohead.config import (
    CACHE_STORAGES,
    DEVICES,
    EXECUTORS,
    FIDELITIES,
    LATENCY_RUNTIMES,
    OBJECTIVES,
    TOKEN_STATES,
    SearchConfig,
    default_cache_dir,
    default_data_dir,
    parse_budgets,
    parse_initial_random,
    show_budgets,
)

D = SearchConfig()  # every default below is the config's own


def _objectives(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    """Split the comma-separated list; SearchConfig.validate judges it."""
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command()
@click.option(
    "--task",
    default=D.task,
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
    default=D.out,
    show_default=True,
    help="Run directory.",
)
@click.option(
    "--population",
    type=int,
    default=D.population,
    show_default=True,
    help="NSGA-II population (>= 4).",
)
@click.option(
    "--offspring",
    type=int,
    default=None,
    help="New genomes a generation after the first [default: the population]. With "
    "--budgets, the first budget's share of them reaches the full budget.",
)
@click.option(
    "--initial-random",
    default=D.initial_random,
    show_default=True,
    callback=lambda _ctx, _param, value: parse_initial_random(value),
    help="Random genomes beside the references in the first population: a count, "
    "'population' (as many as --population) or 'fill' (as many as fill the population; "
    "the default before 2026-12-01).",
)
@click.option(
    "--generations",
    type=int,
    default=D.generations,
    show_default=True,
    help="NSGA-II generations (>= 1).",
)
@click.option(
    "--max-train",
    type=int,
    default=D.max_train,
    show_default=True,
    help="Training examples used (the first N of one fixed shuffle, whatever the seed), "
    "cut into search-train, search-stop and search-val without leaks; 0 = all.",
)
@click.option(
    "--max-length",
    type=int,
    default=D.max_length,
    show_default=True,
    help="Tokenizer max length (>= 8).",
)
@click.option("--seed", type=int, default=D.seed, show_default=True)
@click.option(
    "--objectives",
    default=",".join(D.objectives),
    show_default=True,
    callback=_objectives,
    help=f"Comma-separated subset of {','.join(OBJECTIVES)} (score required).",
)
@click.option("--device", type=click.Choice(DEVICES), default=D.device, show_default=True)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Feature cache [default: $MOOHEAD_CACHE_DIR or {default_cache_dir()}].",
)
@click.option(
    "--cache-storage",
    type=click.Choice(CACHE_STORAGES),
    default=D.cache_storage,
    show_default=True,
    help="Token states and pooled vectors in the feature cache: fp16, or int8 with one scale "
    "per token or vector (half the size; validation splits stay fp16).",
)
@click.option(
    "--cache-budget",
    default=None,
    metavar="SIZE",
    help="Most disk the feature cache may take, e.g. 20G [default: half the free disk].",
)
@click.option(
    "--token-states",
    type=click.Choice(TOKEN_STATES),
    default=D.token_states,
    show_default=True,
    help="cache: every token state on disk; subset: token-level heads train on a stratified "
    "subset of search-train that fits --cache-budget; recompute: the cut encoder recomputes "
    "them each batch (pooled vectors only on disk); auto: cache if it fits, else recompute "
    "on a GPU, subset on a CPU.",
)
@click.option(
    "--max-epochs", type=int, default=D.max_epochs, show_default=True, help="Epoch budget per head."
)
@click.option(
    "--fidelity",
    type=click.Choice(FIDELITIES),
    default=D.fidelity,
    show_default=True,
    help="frozen: heads on cached encoder features; finetune: each genome trains its encoder too.",
)
@click.option(
    "--executor",
    type=click.Choice(EXECUTORS),
    default=D.executor,
    show_default=True,
    help="local: train in this process; ray: each generation's genomes as Ray tasks.",
)
@click.option("--ray-address", default=None, help="Ray cluster address [default: a local Ray].")
@click.option(
    "--gpus-per-eval",
    type=float,
    default=D.gpus_per_eval,
    show_default=True,
    help="GPUs per Ray task.",
)
@click.option(
    "--force-new",
    is_flag=True,
    help="If --out holds a run, move it aside (RUN.old-<time>) and start over instead of resuming.",
)
@click.option(
    "--batch-size", type=int, default=D.batch_size, show_default=True, help="Training batch size."
)
@click.option(
    "--patience",
    type=int,
    default=D.patience,
    show_default=True,
    help="Epochs without a better search-stop score before a head stops training.",
)
@click.option(
    "--lr-encoder",
    type=float,
    default=D.lr_encoder,
    show_default=True,
    help="Encoder LR (finetune).",
)
@click.option(
    "--latency-runtime",
    type=click.Choice(LATENCY_RUNTIMES),
    default=D.latency_runtime,
    show_default=True,
    help="ort: latency of the exported graph in ONNX Runtime, as deployed; torch: PyTorch eager.",
)
@click.option(
    "--threads",
    type=int,
    default=None,
    help="CPU threads for training and timing, fixed and recorded "
    "[default: $OMP_NUM_THREADS, else the cores].",
)
@click.option(
    "--budgets",
    default=show_budgets(D.budgets),
    show_default=True,
    callback=lambda ctx, param, value: parse_budgets(value),
    help="Successive halving: each generation's new heads train to the first share of the "
    "data-times-epochs budget, the best by non-dominated rank go on to the next, e.g. "
    "1/9,1/3,1 (1: every head at the full budget).",
)
@click.option(
    "--retime",
    is_flag=True,
    help="Resuming: re-time every archived architecture on this machine first (needed "
    "when the run's latencies were measured on another machine, device or thread count).",
)
def evolve(force_new: bool, max_train: int, **options: Any) -> None:
    """Search head architectures with NSGA-II and write the Pareto front to --out.

    If --out already holds a run (interrupted or finished), the search continues it: every
    finished evaluation is kept and nothing is trained twice.
    """

    from moohead.cli.report import RichReporter, front_table, make_console
    from moohead.rundir import RunDir
    from moohead.search import run_search

    # Every option but these two is a SearchConfig field of the same name.
    out: Path = options["out"]
    cfg = SearchConfig(
        max_train=max_train or None, reference_length=options["max_length"], **options
    )
    console = make_console()
    try:
        doc = run_search(cfg, RichReporter(console), force_new=force_new)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted: every finished evaluation is saved in {RunDir(out).archive.path}; "
            f"run the same command again to resume (moohead evolve ... --out {out})",
            err=True,
        )
        sys.exit(130)
    console.print(front_table(doc))
    console.print(f"run written to {out} ({RunDir(out).describe()})")
