"""``moohead pick``: choose a trade-off point from a run's front."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--recommended",
    is_flag=True,
    help="The head the search recommends: its best search-val head if it leads the "
    "reference significantly on search-val, else the reference.",
)
@click.option("--knee", is_flag=True, help="The front's knee point in score vs FLOPs.")
@click.option(
    "--id",
    "head_id",
    type=int,
    default=None,
    help="A front head (or the baseline, or a reference) by id.",
)
@click.option("--max-latency-ms", type=float, default=None, help="Best score with latency <= this.")
@click.option(
    "--max-flops", type=float, default=None, help="Best score with FLOPs <= this (e.g. 1e9)."
)
@click.option(
    "--min-score", type=float, default=None, help="Cheapest head with search-val score >= this."
)
def pick(
    run_dir: Path,
    recommended: bool,
    knee: bool,
    head_id: int | None,
    max_latency_ms: float | None,
    max_flops: float | None,
    min_score: float | None,
) -> None:
    """Choose a head from RUN_DIR's front and record it in RUN_DIR/pick.json."""

    from moohead.cli.report import make_console, pick_table
    from moohead.pick import PickConfig
    from moohead.pick import pick as run_pick
    from moohead.rundir import RunDir

    cfg = PickConfig(
        recommended=recommended,
        knee=knee,
        id=head_id,
        max_latency_ms=max_latency_ms,
        max_flops=max_flops,
        min_score=min_score,
    )
    record = run_pick(run_dir, cfg)
    console = make_console()
    console.print(pick_table(record))
    console.print(f"recorded in {RunDir(run_dir).pick_path}")
