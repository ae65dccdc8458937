"""``moohead front``: show a finished run's Pareto front."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--json", "as_json", is_flag=True, help="Print the front document (JSON) instead of a table."
)
def front(run_dir: Path, as_json: bool) -> None:
    """Show the Pareto front of RUN_DIR with the baseline row."""
    from moohead.rundir import RunDir

    doc = RunDir(run_dir).read_front()
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return

    from moohead.cli.report import front_table, make_console

    console = make_console()
    console.print(front_table(doc))
    run = RunDir(run_dir)
    if run.refined_path.is_file():
        refined = run.read_front_refined()
        console.print(
            f"refined: {len(refined['front'])} fine-tuned head(s) on the refined front "
            f"({run.refined_path}); moohead pick and export choose from it, never from the "
            f"{doc.get('fidelity', 'frozen')} scores above",
            highlight=False,
        )
    cache = run.stored("cache") or {}
    subset = cache.get("token_subset")
    if subset:
        console.print(
            f"token states: token-level heads trained on {subset['rows']} of {subset['of']} "
            f"{subset['split']} examples (stratified, within the cache budget); pooled heads "
            "on all",
            highlight=False,
        )
    elif cache.get("token_states") == "recompute":
        console.print(
            "token states: recomputed by the cut encoder batch by batch (the cache holds "
            "pooled vectors only); every head trained on all of search-train",
            highlight=False,
        )
    by_budget = doc.get("evaluations_by_budget") or {}
    if len(by_budget) > 1:
        counts = ", ".join(f"{n} at {b}" for b, n in by_budget.items())
        console.print(
            f"successive halving: {counts} of the training budget; only full-budget heads "
            "are on the front",
            highlight=False,
        )
    if doc.get("failed"):
        reasons = "; ".join(f"{n}x {why}" for why, n in (doc.get("failures") or {}).items())
        console.print(
            f"{doc['failed']} of {doc['evaluations']} evaluations failed"
            + (f": {reasons}" if reasons else "")
            + f" (details in {RunDir(run_dir).archive.path})",
            highlight=False,
        )
