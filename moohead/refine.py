"""``moohead refine``: fine-tune the front's best heads end to end and re-measure them.

Cheap search, expensive confirmation: the frozen search finds candidates in minutes; here
the K best front heads (by search-val score) and the baseline are fine-tuned with their
encoders, each starting from its searched head weights (linear probe, then fine-tune), on
the same search-train/search-val cut as the search, then scored on the official
validation split and re-timed together. ``RUN_DIR/refined.json`` holds the result and
``RUN_DIR/refined/<id>.pt`` the fine-tuned models; ``pick`` and ``export`` use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moohead.config import RefineConfig, default_cache_dir, deterministic_cuda, resolve_device
from moohead.costs import CostConfig
from moohead.data import load_split
from moohead.errors import MooheadError
from moohead.features import CacheConfig, PrepareContext
from moohead.fidelity import prepare_search_data, score_model
from moohead.finetune import FinetuneFidelity, finetune_head
from moohead.front import nondominated
from moohead.fused import FusedModel, head_state, reference_inputs, trained_state
from moohead.genome import Genome
from moohead.rundir import RunDir, run_data_dir, task_from_config
from moohead.runhead import load_run_encoder
from moohead.splits import search_splits
from moohead.train import TrainConfig
from moohead.trainer import genome_seed


def refine(cfg: RefineConfig, log: Any = print) -> dict[str, Any]:
    """Fine-tune the top heads and the baseline; write ``refined.json``; return it."""
    cfg.validate()
    run_dir = RunDir(cfg.run_dir)
    front = run_dir.read_front()
    run = run_dir.read_config()
    search = run["config"]
    task = task_from_config(run)
    device = resolve_device(cfg.device)
    if device == "cuda":
        deterministic_cuda()
    data_dir = run_data_dir(run, cfg.data_dir)
    if "stop_fraction" not in search:
        raise MooheadError(
            f"{cfg.run_dir} was searched by an older moohead whose search splits this one "
            "cannot cut again; search again to refine"
        )
    cut = search_splits(
        load_split(task, "train", data_dir),
        task.is_regression,
        search["max_train"],
        search["val_fraction"],
        search["stop_fraction"],
        search["seed"],
    )
    entries = sorted(front["front"], key=lambda e: -e["score"])[: cfg.top]
    chosen = [*entries, front["baseline"]]
    encoder, tokenizer, info = load_run_encoder(run)
    encoder.to(device)
    fidelity = FinetuneFidelity()
    # Fine-tuning reads token ids, cut at the run's max length; it writes no feature cache.
    cache = CacheConfig(default_cache_dir(), int(search["max_length"]), device=device)
    ctx = PrepareContext(encoder, tokenizer, info, task, cache)
    data = prepare_search_data(fidelity, ctx, cut)
    valid_t = {
        s: fidelity.prepare(ctx, s, load_split(task, s, data_dir)) for s in task.validation_splits
    }
    base = TrainConfig(
        batch_size=search["batch_size"],
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        device=device,
        lr_encoder=cfg.lr_encoder,
    )
    tcfg = fidelity.train_config(base)
    store = run_dir.refined_heads
    refined: list[dict[str, Any]] = []
    models: list[FusedModel] = []
    for entry in chosen:
        genome = Genome.from_dict(entry["genome"])
        init = head_state(run_dir.read_weights(entry))
        seed = genome_seed(int(search["seed"]), genome)
        result = finetune_head(genome, data, tcfg, seed, head_init=init)
        model = FusedModel(result.encoder, result.head, info.uses_token_type_ids).eval()
        scores = score_model(fidelity, task, model, genome, valid_t, tcfg)
        store.save(entry["id"], trained_state(result.head, result.encoder))
        refined.append(
            {
                **entry,
                "frozen_score": entry["score"],
                "frozen_validation": entry["validation"],
                "score": result.metrics["score"],
                "search_val_metrics": result.metrics,
                "validation": scores["score"],
                "validation_metrics": scores["splits"],
                "weights": store.name(entry["id"]),
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
    timing = CostConfig(
        int(search["reference_length"]), int(search["latency_runs"]),
        search.get("latency_runtime", "torch"), run.get("timing", {}).get("threads"),
    )  # the search's runtime (runs older than the option timed PyTorch eager)  # fmt: skip
    latencies = timing.time(
        models, [reference_inputs(m, 1, timing.reference_length, device) for m in models]
    )
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
    run_dir.write_refined(doc)
    return doc
