"""``moohead predict``: labels and probabilities from an exported model, with ONNX Runtime only.

This command imports neither torch nor transformers (a test checks), so it runs where only
``onnxruntime``, ``tokenizers`` and ``numpy`` are installed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from moohead.config import DEVICES
from moohead.errors import MooheadError


@contextlib.contextmanager
def long_csv_fields() -> Iterator[None]:
    """Lift the csv module's field size limit (128 KiB) for one read."""
    old = csv.field_size_limit(sys.maxsize)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def read_inputs(path: Path, columns: list[str]) -> list[Any]:
    """Texts (or pairs) from a tsv/csv file with a header row, or from jsonl objects."""
    if not path.is_file():
        raise MooheadError(f"input file {path} does not exist")
    try:
        if path.suffix == ".jsonl":
            rows = [  # utf-8-sig: a byte-order mark is not part of the first line
                json.loads(line)
                for line in path.read_text(encoding="utf-8-sig").splitlines()
                if line.strip()
            ]
            if any(not isinstance(r, dict) for r in rows):
                raise MooheadError(
                    f"{path}: every line must be a JSON object with {', '.join(columns)}"
                )
            header = set().union(*rows) if rows else set()
        elif path.suffix in (".tsv", ".csv"):
            # newline="" lets csv take CRLF line ends; a field longer than csv's default
            # limit is read whole, and the tokenizer truncates it (with the warning below).
            with open(path, encoding="utf-8-sig", newline="") as f, long_csv_fields():
                reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",")
                rows = list(reader)
                header = set(reader.fieldnames or [])
        else:
            raise MooheadError(f"{path}: input files are .tsv, .csv (header row) or .jsonl")
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
        raise MooheadError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    missing = [c for c in columns if c not in header]
    if rows and missing:
        raise MooheadError(
            f"{path} lacks column(s) {', '.join(missing)}; the model reads {', '.join(columns)}"
        )
    texts = [tuple(str(r[c]) for c in columns) for r in rows]
    return [t[0] for t in texts] if len(columns) == 1 else texts


def from_arguments(texts: tuple[str, ...], columns: list[str]) -> list[Any]:
    if len(columns) == 1:
        return list(texts)
    if len(texts) % 2:
        raise MooheadError(
            f"this model classifies sentence pairs ({', '.join(columns)}): give texts two at a time"
        )
    return list(zip(texts[::2], texts[1::2], strict=True))


def check_texts(texts: list[Any]) -> None:
    if not texts:
        raise MooheadError("no input: give texts as arguments or --input FILE")
    for i, t in enumerate(texts, 1):
        parts = [t] if isinstance(t, str) else list(t)
        if any(not p.strip() for p in parts):
            raise MooheadError(f"input {i} has an empty text; remove it or fill it in")


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    default=None,
    help="A .tsv/.csv (header row) or .jsonl file with the task's text column(s).",
)
@click.option(
    "--variant",
    type=click.Choice(["fp32", "optimized", "int8", "fp16"]),
    default=None,
    help="ONNX variant (default: the fastest exported for the device).",
)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per input instead of a table."
)
def predict(
    model_dir: Path,
    texts: tuple[str, ...],
    input_path: Path | None,
    variant: str | None,
    device: str,
    batch_size: int,
    as_json: bool,
) -> None:
    """Classify TEXTS (pairs: two at a time) or the rows of --input with MODEL_DIR."""
    from moohead.export.runtime import OnnxClassifier

    if texts and input_path is not None:
        raise MooheadError("give texts as arguments or --input FILE, not both")
    model = OnnxClassifier.load(model_dir, variant=variant, device=device)
    columns = list(model.doc["task"]["text_columns"])
    inputs = read_inputs(input_path, columns) if input_path else from_arguments(texts, columns)
    check_texts(inputs)
    predictions = model.predict(inputs, batch_size=batch_size)
    if model.encoder.truncated:
        click.echo(
            f"warning: {model.encoder.truncated} input(s) longer than {model.doc['max_length']} "
            "tokens were truncated, as in training",
            err=True,
        )
    for text, p in zip(inputs, predictions, strict=True):
        shown = text if isinstance(text, str) else " ||| ".join(text)
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "text": text,
                        "label": p.label,
                        "score": p.score,
                        "probabilities": p.probabilities,
                    }
                )
            )
        elif p.label is None:
            click.echo(f"{p.score:.4f}\t{shown}")
        else:
            click.echo(f"{p.label}\t{p.score:.4f}\t{shown}")
