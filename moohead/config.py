"""The search's configuration: one frozen dataclass, checked before any work starts."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

from moohead.errors import MooheadError

# The one list of each choice: the CLI, validation and the registries read these.
OBJECTIVES = ("score", "flops", "latency")
DEVICES = ("auto", "cpu", "cuda")
FIDELITIES = ("frozen", "finetune")  # each registered in fidelity.FIDELITY_CLASSES
EXECUTORS = ("local", "ray")
LATENCY_RUNTIMES = ("ort", "torch")  # ONNX Runtime on the exported graph; PyTorch eager


CACHE_STORAGES = ("fp16", "int8")  # token states in the feature cache (cache_store.STORAGES)
TOKEN_STATES = ("auto", "cache", "subset", "recompute")  # cache_plan.TOKEN_STATES
INITIAL_RANDOM = ("population", "fill")  # named --initial-random values (besides a count)


BUDGETS_USAGE = "--budgets takes increasing fractions in (0, 1] ending at 1, e.g. 1/9,1/3,1"


def parse_budgets(text: str) -> tuple[float, ...]:
    """``"1/9,1/3,1"`` -> ``(0.111..., 0.333..., 1.0)``.

    Raises:
        MooheadError: unless they are fractions in (0, 1], increasing, ending at 1.
    """
    try:
        values = [Fraction(part.strip()) for part in text.split(",")]
    except (ValueError, ZeroDivisionError):
        raise MooheadError(f"{BUDGETS_USAGE}; got {text!r}") from None
    check_budgets(values, text)
    return tuple(float(v) for v in values)


def check_budgets(values: Sequence[float | Fraction], text: str) -> None:
    """Raise MooheadError unless ``values`` are increasing, in (0, 1] and end at 1."""
    if not values or any(not 0 < v <= 1 for v in values):
        raise MooheadError(f"{BUDGETS_USAGE}; got {text!r} (each must be in (0, 1])")
    if any(b <= a for a, b in pairwise(values)):
        raise MooheadError(f"{BUDGETS_USAGE}; got {text!r} (not increasing)")
    if values[-1] != 1:
        raise MooheadError(f"{BUDGETS_USAGE}; got {text!r} (the last must be 1)")


def show_budgets(budgets: Sequence[float]) -> str:
    """``(1/9, 1/3, 1)`` as the user writes them."""
    return ",".join(str(Fraction(b).limit_denominator(1000)) for b in budgets)


def default_cache_dir() -> Path:
    """``$MOOHEAD_CACHE_DIR``, else ``~/.cache/moohead``."""
    env = os.environ.get("MOOHEAD_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "moohead"


def default_data_dir() -> Path | None:
    """``$GLUE_DIR`` when set; otherwise None, meaning the Hugging Face hub."""
    env = os.environ.get("GLUE_DIR")
    return Path(env) if env else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes of a size such as ``20G``, ``512M``, ``1.5T`` or ``1000000`` (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise MooheadError(f"--cache-budget {text!r} is not a size: give e.g. 20G, 512M or 1.5T")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** "_KMGT".index(unit or "_"))


@dataclass(frozen=True)
class SearchConfig:
    """Everything ``moohead evolve`` needs.

    Attributes:
        task: GLUE task name, or a custom task folder under ``data_dir``.
        model: Hub id or local folder of the encoder; None = packaged all-MiniLM-L6-v2.
        data_dir: Folder with ``<task>/{train,validation}.<ext>``; None = the hub.
        out: Run directory.
        population: NSGA-II population size.
        offspring: New genomes NSGA-II asks for each generation after the first (pymoo's
            ``n_offsprings``); None = the population. With ``budgets``, ``offspring`` times
            the first budget of them reach the full budget each generation.
        initial_random: Random genomes beside the references in the first population: a
            count, ``population`` (as many as the population) or ``fill`` (as many as
            fill the population, none when the references do; what runs did before
            ``population`` became the default, ``benchmarks/search_vs_random.py``).
        generations: NSGA-II generations (the first is the initial population).
        max_train: Training examples used (search-train, search-stop and search-val): the
            first N of one fixed shuffle, whatever the seed; None = all.
        val_fraction: Share of them held out as search-val, the fitness (raised towards
            2,000 examples where the data allows; see splits.py).
        stop_fraction: Share of them held out as search-stop, for early stopping.
        max_length: Tokenizer truncation length.
        seed: The one seed of the run.
        objectives: Subset of ``score``, ``flops``, ``latency`` (score is required).
        device: ``auto``, ``cpu`` or ``cuda``.
        cache_dir: Feature cache folder; None = ``default_cache_dir()``.
        cache_storage: Token states and pooled vectors in the cache: ``fp16``, or ``int8``
            (one scale per token and per vector, half the size; not the default: on CoLA
            its effect on the best head is not shown within 0.3 points,
            ``benchmarks/cache_int8.py``). Validation splits are fp16 either way.
        cache_budget: Most disk the run's feature caches may take (``20G``, ``512M``);
            None = half the free disk.
        token_states: What the run does with token states (``cache_plan.py``): ``cache``
            them all, train token-level heads on a stratified ``subset`` that fits, or
            ``recompute`` them with the cut encoder batch by batch; ``auto``: cache when
            they fit the budget, else recompute on a GPU and take the subset on a CPU.
        batch_size: Head training batch size.
        max_epochs: Epoch budget per head (early stopping may end sooner).
        patience: Epochs without search-stop improvement before stopping.
        reference_length: Tokens of the reference input for FLOPs and latency.
        latency_runs: Timed runs per latency measurement (after warm-up).
        latency_runtime: ``ort``: latency of the graph ``moohead export`` writes, built in
            memory and run by ONNX Runtime (what users deploy); ``torch``: PyTorch eager.
        fidelity: ``frozen`` (heads on cached features) or ``finetune`` (each genome trains
            its truncated encoder end to end).
        lr_encoder: Encoder learning rate when fine-tuning.
        executor: ``local`` (train in this process) or ``ray`` (Ray tasks).
        ray_address: Ray cluster address; None starts a local Ray instance.
        gpus_per_eval: GPUs per Ray task where the cluster has GPUs.
        threads: CPU threads for training and timing, fixed for the whole run and recorded
            with its machine; None = PyTorch's default (``OMP_NUM_THREADS`` or the cores).
        retime: On resume, re-time every archived architecture on this machine first
            (required when the run's latencies were measured on another machine).
        budgets: Successive-halving budgets, shares of the data-times-epochs budget,
            increasing and ending at 1 (``halving.parse_budgets``); ``(1.0,)``: none.
    """

    task: str = "sst2"
    model: str | None = None
    data_dir: Path | None = None
    out: Path = Path("runs/latest")
    population: int = 16
    offspring: int | None = None
    initial_random: int | str = "population"
    generations: int = 8
    max_train: int | None = 8000
    val_fraction: float = 0.15
    stop_fraction: float = 0.1
    max_length: int = 128
    seed: int = 0
    objectives: tuple[str, ...] = OBJECTIVES
    device: str = "auto"
    cache_dir: Path | None = None
    cache_storage: str = "fp16"
    cache_budget: str | None = None
    token_states: str = "auto"
    batch_size: int = 64
    max_epochs: int = 12
    patience: int = 3
    reference_length: int = 128
    latency_runs: int = 20
    latency_runtime: str = "ort"
    fidelity: str = "frozen"
    lr_encoder: float = 2e-5
    executor: str = "local"
    ray_address: str | None = None
    gpus_per_eval: float = 1.0
    threads: int | None = None
    retime: bool = False
    budgets: tuple[float, ...] = (1.0,)

    def validate(self) -> None:
        """Raise MooheadError naming the first invalid value and the valid range."""
        checks = [
            (self.population >= 4, f"--population must be at least 4, got {self.population}"),
            (
                self.offspring is None or self.offspring >= 1,
                f"--offspring must be at least 1, got {self.offspring}",
            ),
            (
                self.initial_random in INITIAL_RANDOM
                or (isinstance(self.initial_random, int) and self.initial_random >= 0),
                "--initial-random must be at least 0, or one of "
                f"{', '.join(INITIAL_RANDOM)}, got {self.initial_random}",
            ),
            (self.generations >= 1, f"--generations must be at least 1, got {self.generations}"),
            (self.max_length >= 8, f"--max-length must be at least 8, got {self.max_length}"),
            (
                self.max_train is None or self.max_train >= 20,
                f"--max-train must be at least 20, got {self.max_train}",
            ),
            (0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}"),
            (
                0 < self.stop_fraction < 1 and self.val_fraction + self.stop_fraction < 1,
                f"stop_fraction must be in (0, 1 - val_fraction), got {self.stop_fraction}",
            ),
            (
                self.device in DEVICES,
                f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}",
            ),
            (
                self.reference_length >= 4,
                f"reference length must be at least 4, got {self.reference_length}",
            ),
            (
                self.fidelity in FIDELITIES,
                f"--fidelity must be one of {', '.join(FIDELITIES)}, got {self.fidelity!r}",
            ),
            (0 < self.lr_encoder < 1, f"--lr-encoder must be in (0, 1), got {self.lr_encoder}"),
            (
                self.executor in EXECUTORS,
                f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}",
            ),
            (self.gpus_per_eval >= 0, f"--gpus-per-eval must be >= 0, got {self.gpus_per_eval}"),
            (self.max_epochs >= 1, f"--max-epochs must be at least 1, got {self.max_epochs}"),
            (self.patience >= 1, f"--patience must be at least 1, got {self.patience}"),
            (
                self.cache_storage in CACHE_STORAGES,
                f"--cache-storage must be one of {', '.join(CACHE_STORAGES)}, "
                f"got {self.cache_storage!r}",
            ),
            (
                self.token_states in TOKEN_STATES,
                f"--token-states must be one of {', '.join(TOKEN_STATES)}, "
                f"got {self.token_states!r}",
            ),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (
                self.latency_runtime in LATENCY_RUNTIMES,
                f"--latency-runtime must be one of {', '.join(LATENCY_RUNTIMES)}, "
                f"got {self.latency_runtime!r}",
            ),
            (
                self.threads is None or self.threads >= 1,
                f"--threads must be at least 1, got {self.threads}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise MooheadError(message)
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if (
            unknown
            or "score" not in self.objectives
            or len(set(self.objectives)) != len(self.objectives)
        ):
            raise MooheadError(
                f"--objectives {','.join(self.objectives)} is invalid: give score plus any of "
                "flops, latency, comma-separated, each once (e.g. score,flops)"
            )
        check_budgets(self.budgets, show_budgets(self.budgets))
        if self.cache_budget is not None:
            parse_size(self.cache_budget)
        if self.data_dir is not None and not self.data_dir.is_dir():
            raise MooheadError(f"--data-dir {self.data_dir} is not a folder")

    @property
    def cpu_threads(self) -> int:
        """The run's fixed CPU thread count: ``threads``, else PyTorch's own default (every
        physical core, or ``OMP_NUM_THREADS`` where that is set)."""
        import torch

        return self.threads if self.threads is not None else torch.get_num_threads()

    @property
    def first_random(self) -> int | None:
        """``initial_random`` as ``make_nsga2`` takes it: a count, or None to fill."""
        if self.initial_random == "fill":
            return None
        if self.initial_random == "population":
            return self.population
        return int(self.initial_random)

    @property
    def features_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else default_cache_dir()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("data_dir", "out", "cache_dir"):  # absolute: a run works from any folder
            d[key] = None if d[key] is None else str(Path(d[key]).resolve())
        d["objectives"] = list(self.objectives)
        d["budgets"] = list(self.budgets)
        return d


@dataclass(frozen=True)
class RefineConfig:
    """How to refine a run.

    Attributes:
        run_dir: A finished run.
        top: How many front heads to fine-tune (best search-val score first).
        max_epochs: Fine-tuning epochs per head (early stopping may end sooner).
        patience: Epochs without a better search-stop score before stopping.
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


def deterministic_cuda() -> None:
    """Same seed, same numbers on a GPU: deterministic kernels where PyTorch has them.

    Without this, atomics in some backward kernels make two runs of the same search on the
    same GPU train slightly different heads, and the search then follows different paths
    (seen on an H100). cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG), which PyTorch
    asks for, is left alone: it only matters when several streams share cuBLAS, and moohead
    uses one, while it tripled the GPU latency that the search measures
    (benchmarks/results/gpu_latency_modes.json). The warning about it is silenced.
    """
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*CUBLAS_WORKSPACE_CONFIG.*")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def resolve_device(requested: str) -> str:
    """``auto`` -> cuda when available; ``cuda`` without a GPU is an input error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise MooheadError(
            "--device cuda was given but no CUDA GPU is available; use --device cpu or auto"
        )
    return requested


def parse_initial_random(text: str | int) -> int | str:
    """``--initial-random``'s value: a count (validated with the config), or a name."""
    text = str(text).strip()
    return int(text) if text.lstrip("-").isdigit() else text
