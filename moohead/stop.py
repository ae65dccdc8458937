"""Stopping a search on Ctrl-C between evaluations: one flag the loop and evaluator share."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopFlag:
    """Set by the first Ctrl-C; read before each new evaluation and each generation."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        """Ask the search to stop after the evaluation in progress; a second request
        interrupts at once."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was asked for: every finished evaluation is
        already archived, so stopping here loses nothing."""
        if self.requested:
            raise KeyboardInterrupt


@contextmanager
def stop_on_sigint(flag: StopFlag) -> Iterator[None]:
    """Route Ctrl-C to ``flag`` for the duration, instead of raising inside a library.

    A KeyboardInterrupt raised at an arbitrary point can be swallowed (pymoo hashes
    genomes under a bare ``except``).
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is signal.SIG_IGN:
        yield  # not ours to handle (a thread, or a background job that ignores SIGINT)
        return

    def request_stop(signum: int, frame: Any) -> None:
        flag.request()

    signal.signal(signal.SIGINT, request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
