"""``moohead refine``: fine-tune the front's best heads end to end and re-measure them.

Cheap search, expensive confirmation: the frozen search finds candidates in minutes; here
the K best front heads (by search-val score) and the baseline are fine-tuned with their
encoders, each starting from its searched head weights (linear probe, then fine-tune), on
the same search-train/search-val cut as the search, then scored on the official
validation split and re-timed together. ``RUN_DIR/refined.json`` holds the result and
``RUN_DIR/refined/<id>.pt`` the fine-tuned models; ``pick`` and ``export`` use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moohead.config import deterministic_cuda, resolve_device
from moohead.data import load_split, search_splits
from moohead.encoder import load_encoder
from moohead.errors import MooheadError
from moohead.evaluate import genome_seed
from moohead.files import atomic_torch_save, atomic_write_json
from moohead.finetune import finetune_head, score_model
from moohead.front import REFINED_FILE, nondominated, read_front
from moohead.fused import FusedModel, head_state, reference_inputs
from moohead.genome import Genome
from moohead.measure import measure_latency_interleaved
from moohead.rundir import read_run_config, read_weights, run_data_dir, task_from_config
from moohead.tokens import tokenize_split
from moohead.train import TrainConfig, finetune_config, state_dict_cpu

REFINED_DIR = "refined"


@dataclass(frozen=True)
class RefineConfig:
    """How to refine a run.

    Attributes:
        run_dir: A finished run.
        top: How many front heads to fine-tune (best search-val score first).
        max_epochs: Fine-tuning epochs per head (early stopping may end sooner).
        patience: Epochs without search-val improvement before stopping.
        lr_encoder: Encoder learning rate (the head keeps its genome's).
        device: ``auto``, ``cpu`` or ``cuda``.
        data_dir: The task's data (default: the run's ``--data-dir``).
    """

    run_dir: Path
    top: int = 3
    max_epochs: int = 3
    patience: int = 1
    lr_encoder: float = 2e-5
    device: str = "auto"
    data_dir: Path | None = None

    def validate(self) -> None:
        if self.top < 1:
            raise MooheadError(f"--top must be at least 1, got {self.top}")
        if self.max_epochs < 1 or self.patience < 1:
            raise MooheadError("--max-epochs and --patience must be at least 1")
        if not 0 < self.lr_encoder < 1:
            raise MooheadError(f"--lr-encoder must be in (0, 1), got {self.lr_encoder}")


def refine(cfg: RefineConfig, log: Any = print) -> dict[str, Any]:
    """Fine-tune the top heads and the baseline; write ``refined.json``; return it."""
    cfg.validate()
    front = read_front(cfg.run_dir)
    run = read_run_config(cfg.run_dir)
    search = run["config"]
    task = task_from_config(run)
    device = resolve_device(cfg.device)
    if device == "cuda":
        deterministic_cuda()
    data_dir = run_data_dir(run, cfg.data_dir)
    train, val = search_splits(
        load_split(task, "train", data_dir),
        search["max_train"],
        search["val_fraction"],
        search["seed"],
    )
    entries = sorted(front["front"], key=lambda e: -e["score"])[: cfg.top]
    chosen = [*entries, front["baseline"]]
    encoder, tokenizer, info = load_encoder(run["encoder"]["path"])
    if info.fingerprint != run["encoder"]["fingerprint"]:
        raise MooheadError(
            f"the encoder at {info.path} changed since the search; restore it or search again"
        )
    encoder.to(device)
    max_length = int(search["max_length"])

    def tokens(split: Any) -> Any:
        return tokenize_split(tokenizer, task, split, max_length, info.uses_token_type_ids)

    train_t, val_t = tokens(train), tokens(val)
    valid_t = {s: tokens(load_split(task, s, data_dir)) for s in task.validation_splits}
    base = TrainConfig(
        search["batch_size"], cfg.max_epochs, cfg.patience, device=device, lr_encoder=cfg.lr_encoder
    )
    tcfg = finetune_config(base)
    out_dir = cfg.run_dir / REFINED_DIR
    out_dir.mkdir(exist_ok=True)
    refined: list[dict[str, Any]] = []
    models: list[FusedModel] = []
    for entry in chosen:
        genome = Genome.from_dict(entry["genome"])
        init = head_state(read_weights(cfg.run_dir, entry))
        result = finetune_head(
            genome, task, encoder, info, train_t, val_t, tcfg,
            genome_seed(int(search["seed"]), genome), head_init=init,
        )  # fmt: skip
        model = FusedModel(result.encoder, result.head, info.uses_token_type_ids).eval()
        scores = score_model(task, model, genome, valid_t, tcfg)
        weights = out_dir / f"{entry['id']}.pt"
        atomic_torch_save(weights, state_dict_cpu(model))
        refined.append(
            {
                **entry,
                "frozen_score": entry["score"],
                "frozen_validation": entry["validation"],
                "score": result.metrics["score"],
                "search_val_metrics": result.metrics,
                "validation": scores["score"],
                "validation_metrics": scores["splits"],
                "weights": f"{REFINED_DIR}/{entry['id']}.pt",
                "refined": True,
                "epochs": result.epochs,
                "train_seconds": round(result.seconds, 2),
            }
        )
        models.append(model)
        log(
            f"  #{entry['id']:<4} search-val {entry['score']:.4f} -> {result.metrics['score']:.4f}, "
            f"validation {entry['validation']:.4f} -> {refined[-1]['validation']:.4f} "
            f"({result.seconds:.0f}s, {entry['summary']})"
        )
    latencies = measure_latency_interleaved(
        models, [reference_inputs(m, 1, int(search["reference_length"]), device) for m in models],
        runs=int(search["latency_runs"]),
    )  # fmt: skip
    for e, ms in zip(refined, latencies, strict=True):
        e["latency_ms"] = ms
    heads, baseline = refined[:-1], refined[-1]
    rows = np.array([[-e["score"], e["flops"], e["latency_ms"]] for e in heads])
    doc = {
        "task": front["task"],
        "metric": front["metric"],
        "fidelity": "finetune",
        "train": {"max_epochs": cfg.max_epochs, "patience": cfg.patience, "lr_encoder": cfg.lr_encoder,
                  "schedule": tcfg.schedule, "clip_norm": tcfg.clip_norm, "amp": tcfg.amp, "device": device},
        "baseline": baseline,
        "refined": heads,
        "front": [e for e, keep in zip(heads, nondominated(rows), strict=True) if keep],
    }  # fmt: skip
    atomic_write_json(cfg.run_dir / REFINED_FILE, doc)
    return doc
