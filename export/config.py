"""One frozen config per export stage: what ``moohead export`` and ``moohead bench`` do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moohead.errors import MooheadError
from moohead.export.model_dir import VARIANT_FILES
from moohead.export.triton import MAX_BATCH_SIZE, check_name

QUANTIZE_MODES = ("int8",)


@dataclass(frozen=True)
class ExportConfig:
    """How to turn a run's head into a model folder.

    Attributes:
        run_dir: The run (``moohead evolve --out``).
        out: The model folder to write (refused if it exists, unless ``overwrite``).
        id: A head by evaluation id; default (with ``knee`` and ``recommended`` False) the
            recorded pick.
        knee: The front's knee point.
        recommended: The head the search recommends (``moohead pick --recommended``).
        optimize: Also write ORT's transformer-optimised graph.
        quantize: ``"int8"``: also write a dynamically int8-quantised graph (CPU).
        fp16: Also write a float16 graph (GPU).
        data_dir: Where the task's validation split is (default: the run's ``--data-dir``).
        overwrite: Replace an existing model folder (only once the new one passed the gate).
        atol: Largest allowed |ORT - PyTorch| logit difference of the fp32 graph.
        max_metric_drop: Largest allowed validation-metric loss of int8/fp16 (metric units).
        min_label_agreement: Smallest allowed share of validation predictions of int8/fp16
            (and optimized) that agree with PyTorch's labels (classification tasks).
        triton: Also write the model into this Triton model repository.
        triton_name: The Triton model's name (default: the model folder's name).
        triton_variant: The exported variant Triton serves (``fp32`` by default).
        triton_max_batch_size: The largest batch Triton's dynamic batcher forms.
    """

    run_dir: Path
    out: Path
    id: int | None = None
    knee: bool = False
    recommended: bool = False
    optimize: bool = False
    quantize: str | None = None
    fp16: bool = False
    data_dir: Path | None = None
    overwrite: bool = False
    atol: float = 1e-4
    max_metric_drop: float = 0.01
    min_label_agreement: float = 0.98
    triton: Path | None = None
    triton_name: str | None = None
    triton_variant: str = "fp32"
    triton_max_batch_size: int = MAX_BATCH_SIZE

    @property
    def triton_model(self) -> Path | None:
        """``REPO_DIR/<name>``: the Triton model folder to write, or None."""
        if self.triton is None:
            return None
        return self.triton / (self.triton_name or self.out.resolve().name)

    def validate(self) -> None:
        if int(self.id is not None) + int(self.knee) + int(self.recommended) > 1:
            raise MooheadError("choose one of --id N, --knee and --recommended, not several")
        if self.quantize is not None and self.quantize not in QUANTIZE_MODES:
            raise MooheadError(
                f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, not {self.quantize!r}"
            )
        if self.out.resolve() == self.run_dir.resolve():
            raise MooheadError("--out must be a new folder, not the run directory itself")
        if self.out.exists() and not self.overwrite:
            raise MooheadError(
                f"{self.out} already exists; choose another --out or pass --overwrite to replace it"
            )
        self._validate_triton()

    def _validate_triton(self) -> None:
        if self.triton is None:
            if self.triton_name is not None or self.triton_variant != "fp32":
                raise MooheadError("--triton-name and --triton-variant need --triton REPO_DIR")
            return
        if self.triton_variant not in VARIANT_FILES:
            raise MooheadError(
                f"--triton-variant must be one of {', '.join(VARIANT_FILES)}, "
                f"not {self.triton_variant!r}"
            )
        needs = {"optimized": self.optimize, "int8": self.quantize == "int8", "fp16": self.fp16}
        if not needs.get(self.triton_variant, True):
            flag = {"optimized": "--optimize", "int8": "--quantize int8", "fp16": "--fp16"}
            raise MooheadError(
                f"--triton-variant {self.triton_variant} is not exported; add "
                f"{flag[self.triton_variant]} or choose fp32"
            )
        if self.triton_max_batch_size < 1:
            raise MooheadError("--triton-max-batch-size must be at least 1")
        if self.triton.exists() and not self.triton.is_dir():
            raise MooheadError(f"--triton {self.triton} is a file, not a model repository folder")
        model = self.triton_model
        assert model is not None
        check_name(model.name)
        out, where = self.out.resolve(), model.resolve()
        if out == where or out in where.parents:
            raise MooheadError(
                "the Triton model folder must be outside --out and not --out itself; "
                "choose another --triton or --triton-name"
            )
        if model.exists() and not self.overwrite:
            raise MooheadError(
                f"Triton model {model} already exists; choose another --triton-name or pass "
                "--overwrite to replace it"
            )


@dataclass(frozen=True)
class BenchConfig:
    """What ``moohead bench`` times.

    Attributes:
        model_dir: An exported model folder.
        batch_sizes: Batch sizes to time.
        seq_lens: Sequence lengths to time (tokens, capped at the model's max length).
        device: ``auto``, ``cpu`` or ``cuda``.
        warmup: Untimed runs before each measurement.
        min_runs: Timed runs at least; more until ``min_seconds`` is spent.
        min_seconds: Time spent on each measurement at least.
        threads: CPU threads for PyTorch and ORT (default: all cores).
        variants: ONNX variants to time (default: all in the folder).
        torch: Also time PyTorch eager (needs the run folder the model came from).
    """

    model_dir: Path
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    seq_lens: tuple[int, ...] = (16, 64, 128)
    device: str = "auto"
    warmup: int = 5
    min_runs: int = 20
    min_seconds: float = 1.0
    threads: int | None = None
    variants: tuple[str, ...] | None = None
    torch: bool = True

    def validate(self) -> None:
        for name, values in (("--batch-sizes", self.batch_sizes), ("--seq-lens", self.seq_lens)):
            if not values or any(v < 1 for v in values):
                raise MooheadError(f"{name} takes positive integers, e.g. 1,8,32")
        if self.min_runs < 1 or self.warmup < 0:
            raise MooheadError("--runs must be at least 1 and --warmup at least 0")
        if self.threads is not None and self.threads < 1:
            raise MooheadError("--threads must be at least 1")


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``, or a one-line error naming the option."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise MooheadError(
            f"{option} takes comma-separated integers, e.g. 1,8,32, not {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise MooheadError(f"{option} takes positive integers, e.g. 1,8,32, not {text!r}")
    return values
