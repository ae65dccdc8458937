"""Reading a finished run back: its config, its task, and a front head as a fused model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from moohead.encoder import EncoderInfo, load_encoder, truncate
from moohead.errors import MooheadError
from moohead.fused import FusedModel, load_trained_state
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.tasks import Task

CONFIG_FILE = "config.json"
HEADS_DIR = "heads"


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/config.json``: the search config, encoder, task and versions."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise MooheadError(f"{run_dir} has no {CONFIG_FILE}; it is not a moohead run directory")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc["config"], doc["encoder"], doc["task"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise MooheadError(f"{path} is corrupted ({exc}); the run cannot be read back") from exc
    return dict(doc)


def run_data_dir(config: dict[str, Any], override: Path | None = None) -> Path | None:
    """Where the run's task data is: ``override``, else the run's ``--data-dir`` (None: hub)."""
    if override is not None:
        return override
    recorded = config["config"].get("data_dir")
    return Path(recorded) if recorded else None


def task_from_config(doc: dict[str, Any]) -> Task:
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in doc["task"].items()
    }
    return Task(**fields)


@dataclass
class RunHead:
    """A front head rebuilt from its run: the fused model and what it needs around it."""

    model: FusedModel
    tokenizer: Any
    info: EncoderInfo
    task: Task
    genome: Genome
    entry: dict[str, Any]
    config: dict[str, Any]

    @property
    def max_length(self) -> int:
        return int(self.config["config"]["max_length"])


def read_weights(run_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """The saved weights of a front (or refined) entry: a head, or a whole fused model.

    Raises:
        MooheadError: the file is missing or damaged.
    """
    weights = run_dir / entry.get("weights", f"{HEADS_DIR}/{entry['id']}.pt")
    if not weights.is_file():
        raise MooheadError(
            f"{weights} is missing: the run kept no weights for head {entry['id']}; "
            "pick a head on the front (moohead front RUN_DIR)"
        )
    try:
        state: dict[str, Any] = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises unpickling, runtime and OS errors
        raise MooheadError(
            f"cannot load head weights {weights} ({exc}); the file is damaged".splitlines()[0]
        ) from exc
    return state


def load_run_head(run_dir: Path, entry: dict[str, Any]) -> RunHead:
    """The encoder cut to the head's depth plus the trained head: exactly what was scored.

    Raises:
        MooheadError: the weights are missing, or the encoder is not the one searched with.
    """
    config = read_run_config(run_dir)
    state = read_weights(run_dir, entry)
    recorded = config["encoder"]
    encoder, tokenizer, info = load_encoder(recorded["path"])
    if info.fingerprint != recorded["fingerprint"]:
        raise MooheadError(
            f"the encoder at {recorded['path']} changed since the search (fingerprint "
            f"{info.fingerprint}, run has {recorded['fingerprint']}); restore it or search again"
        )
    task = task_from_config(config)
    genome = Genome.from_dict(entry["genome"])
    head = build_head(genome, info.hidden_size, task.num_labels)
    model = FusedModel(truncate(encoder, genome.depth), head, info.uses_token_type_ids)
    try:
        load_trained_state(model, state)
    except RuntimeError as exc:  # keys or shapes that do not fit the genome
        raise MooheadError(
            f"head weights of {entry['id']} do not fit its genome ({exc})".splitlines()[0]
        ) from exc
    model.eval()
    return RunHead(model, tokenizer, info, task, genome, entry, config)
