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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from moohead.errors import MooheadError
from moohead.fidelity import SearchData, get_fidelity
from moohead.fused import trained_state
from moohead.genome import Genome
from moohead.heads import build_head
from moohead.tasks import Task
from moohead.train import TrainConfig, TrainResult
from moohead.trainer import Outcome, genome_seed, train_to


@dataclass(frozen=True)
class RayConfig:
    """How to reach Ray and what each evaluation asks for.

    Attributes:
        address: A running cluster (``ray://host:10001`` or ``auto``); None starts a local
            Ray instance on this machine's cores.
        gpus_per_eval: GPUs per task where the cluster has GPUs (0: CPU tasks).
        cpus_per_eval: CPU cores per task (and the task's torch threads).
        max_retries: Retries of a task whose worker died, before the genome fails.
        quiet_timing: Hand back no outcome before every task of the batch has finished, so
            that the driver times latency on a machine no task trains on (set when latency
            is an objective; otherwise outcomes come back as soon as each is done).
    """

    address: str | None = None
    gpus_per_eval: float = 1.0
    cpus_per_eval: int = 1
    max_retries: int = 2
    quiet_timing: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """What every task of a search shares: the fidelity, the task, the encoder's path, the
    three search splits as the fidelity ships them, and the training recipe."""

    fidelity: str
    task: Task
    encoder_path: str
    train: Any
    stop: Any
    val: Any
    cfg: TrainConfig
    threads: int


_ENCODERS: dict[str, Any] = {}  # per worker process: the encoder is loaded once


def train_task(
    genome: dict[str, Any], seed: int, spec: TaskSpec, budget: float = 1.0
) -> dict[str, Any]:
    """Train one genome to ``budget`` (in a Ray worker); return its metrics and weights on
    the CPU. A head promoted to a higher budget trains again from its start: the same head
    as a continued one (``train.Schedule``), at the cost of the lower budget's steps."""
    from moohead.encoder import load_encoder

    torch.set_num_threads(spec.threads)
    cfg = spec.cfg
    if cfg.device == "cuda" and not torch.cuda.is_available():
        cfg = replace(cfg, device="cpu", amp=None)
    fidelity = get_fidelity(spec.fidelity)
    if spec.encoder_path not in _ENCODERS:
        _ENCODERS[spec.encoder_path] = load_encoder(spec.encoder_path)
    encoder, _, info = _ENCODERS[spec.encoder_path]
    if fidelity.runs_encoder:  # fine-tuning runs the encoder; frozen heads do not
        encoder.to(cfg.device)
    train, stop, val = (fidelity.receive(s) for s in (spec.train, spec.stop, spec.val))
    data = SearchData(spec.task, encoder, info, train, stop, val)
    result = train_to(fidelity, Genome.from_dict(genome), data, cfg, seed, budget)
    return {
        "metrics": result.metrics,
        "epochs": result.epochs,
        "seconds": result.seconds,
        "head": trained_state(result.head),
        "encoder": None if result.encoder is None else trained_state(result.encoder),
    }


class RayTrainer:
    """Starts one Ray task per new genome and turns their answers back into TrainResults."""

    def __init__(
        self,
        cfg: RayConfig,
        fidelity: str,
        data: SearchData,
        train_cfg: TrainConfig,
        seed: int,
        task: Callable[..., dict[str, Any]] = train_task,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise MooheadError(
                "--executor ray needs Ray: pip install 'moohead[ray]' (or pip install ray)"
            ) from None
        self.ray, self.cfg, self.data, self.seed = ray, cfg, data, seed
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
        self.remote = ray.remote(task)  # what each task runs: train_task (a test passes its own)
        self.device = train_cfg.device  # where results are used (the driver)
        ship = get_fidelity(fidelity).ship
        # The search's data goes to the object store (or is named by path) once.
        self.spec = TaskSpec(
            fidelity=fidelity,
            task=data.task,
            encoder_path=data.info.path,
            train=ship(data.train, ray.put),
            stop=ship(data.stop, ray.put),
            val=ship(data.val, ray.put),
            cfg=replace(train_cfg, device="cuda") if self.gpus else train_cfg,
            threads=cfg.cpus_per_eval,
        )

    def train(self, genomes: list[Genome], budget: float = 1.0) -> Iterator[Outcome]:
        """Start every genome's task now; the outcomes come back in order as asked for."""
        options = {"num_cpus": self.cfg.cpus_per_eval, "num_gpus": self.gpus,
                   "max_retries": self.cfg.max_retries, "retry_exceptions": False}  # fmt: skip
        handles = [
            self.remote.options(**options).remote(
                g.to_dict(), genome_seed(self.seed, g), self.spec, budget
            )
            for g in genomes
        ]
        if self.cfg.quiet_timing and handles:  # the evaluator times each outcome it gets
            self.ray.wait(handles, num_returns=len(handles), fetch_local=False)
        return (self._outcome(g, h) for g, h in zip(genomes, handles, strict=True))

    def keep_paused(self, keys: set[str]) -> None:
        pass  # workers keep no heads between tasks

    def _outcome(self, genome: Genome, handle: Any) -> Outcome:
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
        data = self.data
        head = build_head(genome, data.info.hidden_size, data.task.num_labels)
        head.load_state_dict(out["head"])
        encoder = None
        if out["encoder"] is not None:
            from moohead.encoder import truncate

            encoder = truncate(data.encoder, genome.depth)
            encoder.load_state_dict(out["encoder"])
        head.to(self.device).eval()
        return TrainResult(head, out["metrics"], out["epochs"], out["seconds"], encoder)
