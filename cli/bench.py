"""``moohead bench``: latency and throughput of PyTorch eager and each ONNX variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from moohead.config import DEVICES
from moohead.export.config import BenchConfig, parse_ints

D = BenchConfig(model_dir=Path())  # every default below is the config's own


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--batch-sizes",
    default=",".join(map(str, D.batch_sizes)),
    show_default=True,
    help="Comma-separated batch sizes.",
)
@click.option(
    "--seq-lens",
    default=",".join(map(str, D.seq_lens)),
    show_default=True,
    help="Comma-separated lengths (tokens).",
)
@click.option("--device", type=click.Choice(DEVICES), default=D.device, show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: all cores).")
@click.option(
    "--runs",
    "min_runs",
    type=int,
    default=D.min_runs,
    show_default=True,
    help="Timed runs at least (and 1 s at least).",
)
@click.option("--warmup", type=int, default=D.warmup, show_default=True, help="Untimed runs first.")
@click.option("--no-torch", is_flag=True, help="Time the ONNX variants only.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the results here.",
)
def bench(
    batch_sizes: str, seq_lens: str, no_torch: bool, json_path: Path | None, **options: Any
) -> None:
    """Benchmark MODEL_DIR: p50/p95/p99 latency and throughput per batch size and length."""
    from moohead.cli.report import make_console
    from moohead.export.bench import bench as run_bench
    from moohead.files import atomic_write_json

    cfg = BenchConfig(
        batch_sizes=parse_ints(batch_sizes, "--batch-sizes"),
        seq_lens=parse_ints(seq_lens, "--seq-lens"),
        torch=not no_torch,
        **options,  # the other options are BenchConfig fields of the same name
    )
    report = run_bench(cfg, log=lambda line: None)
    make_console().print(bench_table(report))
    for note in report["notes"]:
        click.echo(note)
    if json_path is not None:
        atomic_write_json(json_path, report)
        click.echo(f"wrote {json_path}")


def bench_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(
        title=f"{report['model_dir']} on {report['device']} ({', '.join(report['providers'])}), "
        f"{report['threads']} threads",
    )
    flops = any("gflops_per_s" in r for r in report["rows"])
    columns = ["runtime", "batch", "length", "p50 ms", "p95 ms", "p99 ms", "seq/s", "speed-up"]
    for col in [*columns, "GFLOP/s"] if flops else columns:
        table.add_column(col, justify="left" if col == "runtime" else "right")
    torch_p50 = {
        (r["batch"], r["length"]): r["p50_ms"] for r in report["rows"] if r["runtime"] == "pytorch"
    }
    for r in report["rows"]:
        base = torch_p50.get((r["batch"], r["length"]))
        cells = [
            r["runtime"],
            str(r["batch"]),
            str(r["length"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p95_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['throughput']:.0f}",
            f"{base / r['p50_ms']:.2f}x" if base else "",
        ]
        table.add_row(*cells, *([f"{r.get('gflops_per_s', 0):.0f}"] if flops else []))
    return table
