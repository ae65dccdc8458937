"""Train heads: one loop (AdamW, length-bucketed batches, early stopping on search-stop) for
both fidelities; the frozen job reads cached features, the fine-tune job (finetune.py) tokens."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moohead import batching
from moohead.heads import Head
from moohead.metrics import compute_metrics
from moohead.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget, batching and optimiser of one head's training (the same for every genome).

    The defaults are the frozen-fidelity recipe (constant learning rate, no clipping, fp32);
    ``finetune.finetune_config`` gives the fine-tuning one.

    Attributes:
        lr_encoder: Learning rate of the encoder's weights when fine-tuning.
        schedule: ``constant``, or ``linear`` (warm-up over ``warmup_ratio`` of the step
            budget, then linear decay to zero at the end of ``max_epochs``).
        clip_norm: Largest gradient norm (None: no clipping).
        amp: Mixed precision on CUDA: ``bf16``, ``fp16`` (with loss scaling) or None.
        order_seed: Seeds the batch order, the same for every head of a run (a head's own
            seed draws its initial weights and dropout).
        budgets: The search's successive-halving budgets; a head is checked on search-stop
            at the end of each (and of every epoch).
    """

    batch_size: int = 64
    max_epochs: int = 12
    patience: int = 3
    eval_batch_size: int = 512
    device: str = "cpu"
    lr_encoder: float = 2e-5
    schedule: str = "constant"
    warmup_ratio: float = 0.1
    clip_norm: float | None = None
    amp: str | None = None
    order_seed: int = 0
    budgets: tuple[float, ...] = (1.0,)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype of ``amp`` (None: full precision)."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "")


@dataclass
class TrainResult:
    """A trained head and how it scored on search-val (its fitness).

    Attributes:
        encoder: The fine-tuned (truncated) encoder; None for frozen fidelity.
    """

    head: Head
    metrics: dict[str, float]
    epochs: int
    seconds: float
    encoder: Any = None


class TrainingJob(Protocol):
    """What the one training loop needs from a fidelity: parameters, batches, predictions."""

    module: nn.Module  # everything that is trained (and checkpointed at the best check)
    head: Head

    def param_groups(self) -> list[dict[str, Any]]: ...

    def lengths(self) -> np.ndarray: ...

    def forward(self, batch: np.ndarray) -> torch.Tensor: ...

    def predict_stop(self) -> np.ndarray: ...

    def predict(self, module: nn.Module, split: Any) -> np.ndarray: ...


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled batches of similar length: little padding, still random order."""
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def in_length_order(
    lengths: np.ndarray, batch_size: int, run: Callable[[np.ndarray], torch.Tensor]
) -> np.ndarray:
    """``batching.in_length_order`` for a ``run`` returning tensors: the outputs come back
    as float32 rows in the examples' own order."""
    return batching.in_length_order(lengths, batch_size, lambda b: run(b).float().cpu().numpy())


def _loss(task: Task, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels.long())


def _lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup = max(1, math.ceil(cfg.warmup_ratio * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def epoch_batches(lengths: np.ndarray, cfg: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Epoch ``epoch``'s batches (0-based): a function of the run's ``order_seed`` and the
    epoch alone, so every head of a run sees the same batches, a head continued at a later
    rung sees the ones it would have seen had it never paused, and heads trained together
    can share each batch's reads."""
    return bucketed_batches(lengths, cfg.batch_size, np.random.default_rng([cfg.order_seed, epoch]))


def batches_per_epoch(n: int, batch_size: int) -> int:
    """How many batches ``bucketed_batches`` cuts ``n`` examples into."""
    chunk = batch_size * 50
    full, rest = divmod(n, chunk)
    return full * math.ceil(chunk / batch_size) + math.ceil(rest / batch_size)


@dataclass(frozen=True)
class Schedule:
    """Where a head's training stands and where it is checked on search-stop.

    Training is counted in optimiser steps. Budget ``b`` (a fraction of the data-times-
    epochs budget) ends at step ``round(b * total)``. Heads are checked at every epoch's end
    and at every budget's end, whatever budget they are trained to, so a head trained to
    1/3 and then continued to 1 is the head trained to 1 at once.
    """

    per_epoch: int
    max_epochs: int
    budgets: tuple[float, ...] = (1.0,)

    @property
    def total(self) -> int:
        return self.per_epoch * self.max_epochs

    def end(self, budget: float) -> int:
        """The step at which ``budget`` is spent."""
        return min(self.total, max(1, round(budget * self.total)))

    def is_check(self, step: int) -> bool:
        return step % self.per_epoch == 0 or any(step == self.end(b) for b in self.budgets)


class RandomStream:
    """A head's own torch random stream (dropout), swapped in around its steps, so heads
    trained side by side draw what each would have drawn alone."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.state = self._get()

    def _get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None

    @contextmanager
    def active(self) -> Iterator[None]:
        outside = self._get()
        self._set(self.state)
        try:
            yield
        finally:
            self.state = self._get()
            self._set(outside)

    def _set(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1])


class HeadFit:
    """One head's training in progress: the loop of both fidelities (AdamW, optional
    warm-up/decay, clipping and mixed precision, early stopping on search-stop), advanced
    one batch at a time so that heads can train side by side (``drive``) and pause at a
    budget's end to be continued later.

    The fitness is measured afterwards, once, on other data (search-val): the best of a
    dozen noisy checks on the stopping data would flatter every head. Create it right after
    seeding torch and building the head: it takes over torch's random stream from there.
    """

    def __init__(
        self,
        job: TrainingJob,
        task: Task,
        train_labels: np.ndarray,
        stop_labels: np.ndarray,
        cfg: TrainConfig,
    ) -> None:
        self.job, self.task, self.cfg, self.stop_labels = job, task, cfg, stop_labels
        device = torch.device(cfg.device)
        self.random = RandomStream(device)
        self.optimizer = torch.optim.AdamW(
            job.param_groups(),
            weight_decay=job.head.genome.weight_decay,
            fused=device.type in ("cpu", "cuda"),  # one kernel: 4x faster step
        )
        self.scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
        # Regression trains on standardised targets (one scale for every task and learning
        # rate); the scale is folded into the last layer afterwards (label units).
        self.shift, self.scale = target_scale(task, train_labels)
        self.labels = (torch.from_numpy(train_labels) - self.shift) / self.scale
        self.lengths = job.lengths()
        self.schedule = Schedule(
            batches_per_epoch(len(self.lengths), cfg.batch_size), cfg.max_epochs, cfg.budgets
        )
        self.scheduler = None
        if cfg.schedule == "linear":
            factor = _lr_lambda(cfg, self.schedule.total)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.step = 0
        self.best_score = -math.inf
        self.best_state: dict[str, Any] | None = None  # the module at its best check
        self.stale = 0
        self.converged = False  # stopped early: more budget changes nothing
        self.error: BaseException | None = None
        self.seconds = 0.0
        self.final: nn.Module | None = None

    @property
    def live(self) -> bool:
        """Whether more training can change this head."""
        return self.error is None and not self.converged and self.step < self.schedule.total

    @property
    def epochs(self) -> int:
        return math.ceil(self.step / self.schedule.per_epoch)

    def train_step(self, batch: np.ndarray) -> None:
        """One optimiser step on ``batch``, then a check on search-stop where one falls."""
        start = time.perf_counter()
        cfg, device = self.cfg, torch.device(self.cfg.device)
        self.job.module.train()
        with self.random.active():
            with torch.autocast(device.type, dtype=cfg.amp_dtype, enabled=cfg.amp is not None):
                logits = self.job.forward(batch)
            loss = _loss(self.task, logits.float(), self.labels[batch].to(cfg.device))
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} in epoch {self.epochs or 1}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        if cfg.clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.job.module.parameters(), cfg.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.step += 1
        if self.schedule.is_check(self.step):
            self._check()
        self.seconds += time.perf_counter() - start

    def _check(self) -> None:
        score = compute_metrics(self.task, self.job.predict_stop(), self.stop_labels)["score"]
        if score > self.best_score:
            self.best_score, self.stale = score, 0
            self.best_state = copy.deepcopy(self.job.module.state_dict())
        else:
            self.stale += 1
            self.converged = self.stale >= self.cfg.patience

    def best_module(self) -> nn.Module:
        """The module at its best check, in label units, in eval mode: the trained module
        itself once training is over, else a copy (training may continue)."""
        if self.final is not None:
            return self.final
        module = self.job.module if not self.live else copy.deepcopy(self.job.module)
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
        fold_scale(_head_of(module), self.shift, self.scale)
        if not self.live:
            self.final = module  # folded once: asking again gives the same module
        return module.eval()


def _head_of(module: nn.Module) -> Head:
    return module if isinstance(module, Head) else module.head  # type: ignore[return-value]


StartBatch = Callable[[np.ndarray | None], None] | None


def drive(
    fits: list[HeadFit],
    budget: float,
    start_batch: StartBatch = None,
    check_stop: Callable[[], None] | None = None,
) -> None:
    """Train ``fits`` side by side to ``budget``: each batch goes to every live head in
    turn (``start_batch`` is told first, so that reads can be shared, and told None at the
    end, so that nothing read stays in memory). The heads must stand at the same step on
    the same examples. A head whose training fails keeps its exception in ``error`` and
    drops out; the others go on.
    """
    live = [f for f in fits if f.live]
    if not live:
        return
    first = live[0]
    step, schedule = first.step, first.schedule
    if any(f.step != step or not _same(f.lengths, first.lengths) for f in live):
        raise ValueError("heads trained together must stand at one step on the same examples")
    until = schedule.end(budget)
    try:
        _steps(live, step, until, start_batch, check_stop)
    finally:
        if start_batch is not None:
            start_batch(None)


def _steps(
    live: list[HeadFit],
    step: int,
    until: int,
    start_batch: StartBatch,
    check_stop: Callable[[], None] | None,
) -> None:
    first, schedule = live[0], live[0].schedule
    while live and step < until:
        epoch, offset = divmod(step, schedule.per_epoch)
        for batch in epoch_batches(first.lengths, first.cfg, epoch)[offset:]:
            if check_stop is not None:
                check_stop()
            if start_batch is not None:
                start_batch(batch)
            for fit in live:
                try:
                    fit.train_step(batch)
                except TRAINING_FAILURES as exc:
                    fit.error = exc
            step += 1
            live = [f for f in live if f.live]
            if not live or step >= until:
                break


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or np.array_equal(a, b)


# What a head that cannot be trained raises: divergence (a RuntimeError), shapes or values
# that do not work, CUDA's OutOfMemoryError (a RuntimeError), host memory.
TRAINING_FAILURES = (RuntimeError, ValueError, MemoryError)


def started(start: Callable[..., HeadFit], *args: Any) -> HeadFit | BaseException:
    """``start(*args)``, or the exception of a head that cannot even be built."""
    try:
        return start(*args)
    except TRAINING_FAILURES as exc:
        return exc


def train_alone(fit: HeadFit, budget: float = 1.0) -> HeadFit:
    """Train one head to ``budget``; raise what its training raised."""
    drive([fit], budget)
    if fit.error is not None:
        raise fit.error
    return fit


def target_scale(task: Task, train_labels: np.ndarray) -> tuple[float, float]:
    """``(shift, scale)`` of the targets training fits: the labels' mean and standard
    deviation for regression, ``(0, 1)`` (no change) for classification."""
    if not task.is_regression:
        return 0.0, 1.0
    labels = torch.from_numpy(train_labels)
    return float(labels.mean()), float(labels.std()) or 1.0


def fold_scale(head: Head, shift: float, scale: float) -> None:
    """Fold the target scale into the last layer: outputs go from standardised to label
    units. A saved head is in label units."""
    with torch.no_grad():
        head.mlp.classifier.weight.mul_(scale)
        head.mlp.classifier.bias.mul_(scale).add_(shift)


def unfold_scale(head: Head, shift: float, scale: float) -> None:
    """The inverse of ``fold_scale``: a saved head back in the standardised units training
    fits, so training that starts from it starts where it left off."""
    with torch.no_grad():
        head.mlp.classifier.bias.sub_(shift).div_(scale)
        head.mlp.classifier.weight.div_(scale)
