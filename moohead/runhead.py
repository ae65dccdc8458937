"""A front head rebuilt from its run: the encoder cut to its depth plus the trained head."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moohead.encoder import EncoderInfo, load_encoder, truncate
from moohead.errors import MooheadError
from moohead.fused import FusedModel, load_trained_state
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.rundir import RunDir, first_line, task_from_config
from moohead.tasks import Task


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


def load_run_encoder(config: dict[str, Any]) -> tuple[Any, Any, EncoderInfo]:
    """The run's encoder, refused if its weights changed since the search."""
    recorded = config["encoder"]
    encoder, tokenizer, info = load_encoder(recorded["path"])
    if info.fingerprint != recorded["fingerprint"]:
        raise MooheadError(
            f"the encoder at {recorded['path']} changed since the search (fingerprint "
            f"{info.fingerprint}, run has {recorded['fingerprint']}); restore it or search again"
        )
    return encoder, tokenizer, info


def load_run_head(run_dir: Path, entry: dict[str, Any]) -> RunHead:
    """The encoder cut to the head's depth plus the trained head: exactly what was scored.

    Raises:
        MooheadError: the weights are missing, or the encoder is not the one searched with.
    """
    run = RunDir(run_dir)
    config = run.read_config()
    state = run.read_weights(entry)
    encoder, tokenizer, info = load_run_encoder(config)
    task = task_from_config(config)
    genome = Genome.from_dict(entry["genome"])
    head = build_head(genome, info.hidden_size, task.num_labels)
    model = FusedModel(truncate(encoder, genome.depth), head, info.uses_token_type_ids)
    try:
        load_trained_state(model, state)
    except RuntimeError as exc:  # keys or shapes that do not fit the genome
        raise MooheadError(
            f"head weights of {entry['id']} do not fit its genome ({first_line(exc)})"
        ) from exc
    model.eval()
    return RunHead(model, tokenizer, info, task, genome, entry, config)
