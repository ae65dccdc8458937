"""What ``moohead serve`` serves and how: one frozen config, checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moohead.config import DEVICES
from moohead.errors import MooheadError


@dataclass(frozen=True)
class ServeConfig:
    """An HTTP server for an exported model folder.

    Attributes:
        model_dir: A folder written by ``moohead export``.
        name: The model's name in the URLs (default: the folder's name).
        host: Interface to listen on.
        port: TCP port (0: any free port, printed at start-up).
        variant: ONNX variant (default: the fastest exported for the device).
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: ORT intra-op threads on CPU (default: ORT's choice, all cores).
        max_batch: Texts in one batch at most (run as length groups on CPU).
        max_delay_ms: How long the oldest queued text waits for a batch to fill.
        max_queue: Texts waiting at most; a request that would go past it gets a 503.
        max_texts: Texts (or pairs) in one request at most.
        max_body_bytes: Request body size at most.
        graceful_timeout_s: On SIGTERM, how long requests in flight may still take (0: no
            limit).
    """

    model_dir: Path
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    variant: str | None = None
    device: str = "auto"
    threads: int | None = None
    max_batch: int = 32
    max_delay_ms: float = 5.0
    max_queue: int = 1024
    max_texts: int = 256
    max_body_bytes: int = 1 << 20
    graceful_timeout_s: int = 30

    @property
    def model_name(self) -> str:
        return self.name or self.model_dir.resolve().name

    def validate(self) -> None:
        """Refuse options that cannot work, naming the option.

        Raises:
            MooheadError: An option is out of range.
        """
        if self.device not in DEVICES:
            raise MooheadError(f"--device must be one of {', '.join(DEVICES)}, not {self.device!r}")
        if not 0 <= self.port <= 65535:
            raise MooheadError(f"--port must be in 0..65535, not {self.port}")
        positive = {
            "--max-batch": self.max_batch,
            "--max-queue": self.max_queue,
            "--max-texts": self.max_texts,
            "--max-body-bytes": self.max_body_bytes,
        }
        for option, value in positive.items():
            if value < 1:
                raise MooheadError(f"{option} must be at least 1, not {value}")
        if self.threads is not None and self.threads < 1:
            raise MooheadError(f"--threads must be at least 1, not {self.threads}")
        if self.max_delay_ms < 0 or self.graceful_timeout_s < 0:
            raise MooheadError("--max-delay-ms and --graceful-timeout must not be negative")
        if self.max_texts > self.max_queue:
            # Such a request could never be queued: it would get a 503 however idle we are.
            raise MooheadError(
                f"--max-texts ({self.max_texts}) must not exceed --max-queue ({self.max_queue})"
            )
        name = self.model_name
        if not name or "/" in name or name in (".", ".."):
            raise MooheadError(f"--name must be a non-empty name without '/', not {name!r}")
