"""Where genomes train: in this process (the default), or as Ray tasks across a cluster.

The Ray executor trains each generation's new genomes in parallel, one task each (one GPU
each where the cluster has GPUs). Tasks read the search's data without recomputing it:
frozen-fidelity features through the feature cache's path (a shared filesystem on a
multi-node cluster), token ids for fine-tune fidelity through Ray's object store. Only
training is remote; the driver measures cost, saves weights and archives each result in
the order the search asked, so a Ray search gives the local search's front for the same
seed. A task whose worker dies is retried; if it keeps dying, the genome is recorded as
failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from moohead.errors import MooheadError
from moohead.features import FeatureStore, SplitFeatures
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.tasks import Task
from moohead.tokens import TokenSplit
from moohead.train import TrainConfig, TrainResult, state_dict_cpu

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray and what each evaluation asks for.

    Attributes:
        address: A running cluster (``ray://host:10001`` or ``auto``); None starts a local
            Ray instance on this machine's cores.
        gpus_per_eval: GPUs per task where the cluster has GPUs (0: CPU tasks).
        cpus_per_eval: CPU cores per task (and the task's torch threads).
        max_retries: Retries of a task whose worker died, before the genome fails.
    """

    address: str | None = None
    gpus_per_eval: float = 1.0
    cpus_per_eval: int = 1
    max_retries: int = 2


def _split_spec(split: SplitFeatures | TokenSplit, put: Any) -> dict[str, Any]:
    """What a task needs to open a split: cache paths, or an object-store reference."""
    if isinstance(split, SplitFeatures):
        return {"paths": {k: str(s.path) for k, s in split.views.items()}, "labels": split.labels}
    return {"tokens": put(split)}


def _open_split(spec: dict[str, Any]) -> SplitFeatures | TokenSplit:
    if "tokens" in spec:
        import ray

        split: TokenSplit = ray.get(spec["tokens"])
        return split
    from pathlib import Path

    views = {k: FeatureStore.open(Path(p)) for k, p in spec["paths"].items()}
    return SplitFeatures(views, np.asarray(spec["labels"]))


_ENCODERS: dict[str, Any] = {}  # per worker process: the encoder is loaded once


def train_task(
    genome: dict[str, Any],
    seed: int,
    task: Task,
    encoder_path: str,
    train_spec: dict[str, Any],
    val_spec: dict[str, Any],
    cfg: TrainConfig,
    threads: int,
) -> dict[str, Any]:
    """Train one genome (in a Ray worker); return its metrics and weights on the CPU."""
    from moohead.encoder import load_encoder
    from moohead.evaluate import train_genome

    torch.set_num_threads(threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        cfg = replace(cfg, device="cpu", amp=None)
    train, val = _open_split(train_spec), _open_split(val_spec)
    g = Genome.from_dict(genome)
    if encoder_path not in _ENCODERS:
        _ENCODERS[encoder_path] = load_encoder(encoder_path)
    encoder, _, info = _ENCODERS[encoder_path]
    if isinstance(train, TokenSplit):  # fine-tuning runs the encoder; frozen heads do not
        encoder.to(cfg.device)
    result = train_genome(g, task, encoder, info, train, val, cfg, seed)
    return {
        "metrics": result.metrics,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "head": state_dict_cpu(result.head),
        "encoder": None if result.encoder is None else state_dict_cpu(result.encoder),
    }


class RayExecutor:
    """Submits training tasks to Ray and turns their answers back into TrainResults."""

    def __init__(self, cfg: RayConfig) -> None:
        try:
            import ray
        except ImportError:
            raise MooheadError(
                "--executor ray needs Ray: pip install 'moohead[ray]' (or pip install ray)"
            ) from None
        self.ray, self.cfg = ray, cfg
        if not ray.is_initialized():
            try:
                if cfg.address:
                    ray.init(address=cfg.address, log_to_driver=False)
                else:
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            except Exception as exc:  # ConnectionError, RuntimeError, ...
                where = cfg.address or "a local instance"
                raise MooheadError(f"cannot start Ray at {where}: {exc}".splitlines()[0]) from exc
        self.gpus = cfg.gpus_per_eval if ray.cluster_resources().get("GPU", 0) > 0 else 0
        self.remote = ray.remote(train_task)
        self._specs: dict[int, Any] = {}

    def submit(self, evaluator: Any, genomes: list[Genome]) -> list[Any]:
        """Start one task per genome; returns handles in the same order."""
        data = evaluator.data
        key = id(data)
        if key not in self._specs:  # put the search's data in the object store once
            self._specs = {
                key: (_split_spec(data.train, self.ray.put), _split_spec(data.val, self.ray.put))
            }
        train_spec, val_spec = self._specs[key]
        cfg = evaluator.train_cfg
        if self.gpus:
            cfg = replace(cfg, device="cuda")
        options = {"num_cpus": self.cfg.cpus_per_eval, "num_gpus": self.gpus,
                   "max_retries": self.cfg.max_retries, "retry_exceptions": False}  # fmt: skip
        from moohead.evaluate import genome_seed

        return [
            self.remote.options(**options).remote(
                g.to_dict(),
                genome_seed(evaluator.seed, g),
                data.task,
                data.info.path,
                train_spec,
                val_spec,
                cfg,
                self.cfg.cpus_per_eval,
            )
            for g in genomes
        ]

    def result(self, evaluator: Any, genome: Genome, handle: Any) -> TrainResult | BaseException:
        """The task's TrainResult, or the exception that stands for its failure."""
        from ray.exceptions import RayError, RayTaskError

        try:
            out = self.ray.get(handle)
        except RayTaskError as exc:  # the training itself raised: fail like a local genome
            cause = exc.cause
            return cause if isinstance(cause, BaseException) else RuntimeError(str(exc))
        except RayError as exc:  # the worker died, retries exhausted
            return RuntimeError(
                f"Ray worker died ({type(exc).__name__}); retried {self.cfg.max_retries} times"
            )
        data = evaluator.data
        head = build_head(genome, data.info.hidden_size, data.task.num_labels)
        head.load_state_dict(out["head"])
        encoder = None
        if out["encoder"] is not None:
            from moohead.encoder import truncate

            encoder = truncate(data.encoder, genome.depth)
            encoder.load_state_dict(out["encoder"])
        head.to(evaluator.train_cfg.device).eval()
        return TrainResult(head, out["metrics"], out["epochs"], out["seconds"], encoder)
