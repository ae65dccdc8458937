"""Rich progress and tables for the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from moohead.config import show_budgets
from moohead.evaluation import Evaluation
from moohead.progress import GenerationStats, Reporter

# Width of output that goes to a file or a CI log: wide enough that no table row or
# per-head line wraps (rich would otherwise assume 80 columns and fold every row).
PIPE_WIDTH = 1000


def make_console() -> Console:
    """A console for the terminal, or, when output is piped, one that keeps each row on
    one line."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=PIPE_WIDTH)
    return console


class RichReporter(Reporter):
    """Feature-cache progress bars, a line per evaluation and per generation."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def cache(self, description: str, total: int) -> Callable[[int], None]:
        progress = Progress(
            TextColumn(f"encoding {description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        task = progress.add_task(description, total=total)
        progress.start()
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            progress.update(task, advance=n)
            if done[0] >= total:
                progress.stop()

        return tick

    def evaluated(self, evaluation: Evaluation) -> None:
        e = evaluation
        budget = "" if e.full else f" [dim]@{show_budgets([e.budget])}[/]"
        if e.ok and e.cost is not None:
            self.console.print(
                f"  [dim]#{e.id:<4}[/] {e.score:7.4f}  {e.cost.flops / 1e9:6.2f} GFLOPs  "
                f"{e.train_seconds:5.1f}s  [dim]{e.genome.describe()}[/]{budget}",
                highlight=False,
            )
        else:
            self.console.print(f"  [dim]#{e.id:<4}[/] [red]failed[/] {e.reason}", highlight=False)

    def generation(self, stats: GenerationStats) -> None:
        s = stats
        self.console.print(
            f"[bold]generation {s.generation}/{s.generations}[/]: {s.evaluations} evaluations "
            f"({s.new} new, {s.failed} failed), best score {s.best_score:.4f}, "
            f"hypervolume {s.hypervolume:.4f}, {s.seconds:.0f}s",
            highlight=False,
        )

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)


def front_table(doc: dict[str, Any]) -> Table:
    """The front, with the baseline and the references (the best one in bold) first."""
    table = Table(title=f"{doc['task']} front ({doc['metric']}), {len(doc['front'])} heads")
    for name, justify in (
        ("id", "right"),
        ("head", "left"),
        ("search-val", "right"),
        ("validation", "right"),
        ("GFLOPs", "right"),
        ("latency ms", "right"),
        ("params", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]

    def row(e: dict[str, Any], style: str | None = None, label: str | None = None) -> None:
        table.add_row(
            str(e["id"]),
            label or e["summary"],
            f"{e['score']:.4f}",
            f"{e['validation']:.4f}",
            f"{e['flops'] / 1e9:.3f}",
            f"{e['latency_ms']:.2f}",
            f"{e['params'] / 1e6:.2f}M",
            style=style,
        )

    references = doc.get("references", [])  # absent from fronts written before references
    if not any(e["name"] == "hf-head" for e in references):
        row(doc["baseline"], "yellow", f"baseline: {doc['baseline']['summary']}")
    for e in references:
        style = "bold yellow" if e["name"] == doc.get("reference") else "yellow"
        name = "hf-head (baseline)" if e["name"] == "hf-head" else e["name"]
        row(e, style, f"{name}: {e['summary']}")
    table.add_section()
    for e in doc["front"]:
        row(e)
    table.caption = front_caption(doc)
    return table


def front_caption(doc: dict[str, Any]) -> str | None:
    """Gains of the best search-val head on validation, the recommended head and why,
    and the references skipped."""
    lines = []
    gains = doc.get("gains")
    if gains:
        ref = (
            f"{gains['vs_reference']:+.4f} over {doc['reference']} (the reference), "
            if ("vs_reference" in gains)
            else ""
        )
        lines.append(
            f"best search-val head #{gains['head']} on validation: "
            f"{ref}{gains['vs_hf_head']:+.4f} over hf-head"
        )
    rec = doc.get("recommended")  # absent from fronts written before the recommendation
    if rec:
        lines.append(f"recommended: #{rec['id']}, {rec['why']}")
    for name, why in (doc.get("skipped_references") or {}).items():
        lines.append(f"{name} skipped: {why}")
    return "\n".join(lines) or None


def pick_table(record: dict[str, Any]) -> Table:
    """The picked head beside the baseline, with the difference."""
    e, b = record["entry"], record["baseline"]
    fidelity = e.get("fidelity", "frozen")  # both rows are at the same fidelity
    table = Table(
        title=f"picked by {record['rule']}: id {e['id']} ({e['summary']}), {fidelity} scores"
    )
    for name in ("", "picked", "baseline", "difference"):
        table.add_column(name, justify="left" if not name else "right")
    rows = (
        ("search-val score", "score", "{:.4f}", 1.0),
        ("validation score", "validation", "{:.4f}", 1.0),
        ("GFLOPs", "flops", "{:.3f}", 1e-9),
        ("latency ms", "latency_ms", "{:.2f}", 1.0),
        ("params (M)", "params", "{:.2f}", 1e-6),
    )
    for label, key, fmt, scale in rows:
        diff = (e[key] - b[key]) * scale
        table.add_row(
            label,
            fmt.format(e[key] * scale),
            fmt.format(b[key] * scale),
            ("+" if diff >= 0 else "") + fmt.format(diff),
        )
    return table
