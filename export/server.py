"""Running the app under uvicorn: the listening socket, signals and graceful shutdown.

The socket is bound before uvicorn starts, so that a taken port is a one-line error
(exit 2) and ``--port 0`` can report the port it got. On SIGTERM or Ctrl-C uvicorn stops
accepting connections and the batcher runs what is queued at once (no waiting for batches
to fill); the requests in flight finish (at most ``graceful_timeout_s``), then the app's
lifespan stops the batcher; SIGTERM then ends the process normally (exit 0).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from moohead.errors import MooheadError

BACKLOG = 2048


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        MooheadError: The address cannot be resolved or is in use.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise MooheadError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now: connections made while uvicorn starts wait in the backlog.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise MooheadError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(
    app: Any,
    sock: socket.socket,
    graceful_timeout_s: int,
    on_exit_signal: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or Ctrl-C, then shut down gracefully.

    Args:
        app: The ASGI app.
        sock: A listening socket (``bind``).
        graceful_timeout_s: Seconds requests in flight may take after the signal (0: no limit).
        on_exit_signal: Called on SIGTERM or Ctrl-C, before uvicorn starts shutting down
            (the app stops queueing and runs what is queued without waiting).
    """
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful_timeout_s or None,
    )
    server = _Server(config, on_exit_signal)
    main = threading.current_thread() is threading.main_thread()
    # uvicorn re-raises the signal it shut down for once it is done; with this handler a
    # SIGTERM ends in a normal exit (0) after the drain instead of a kill.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None) if main else None
    try:
        server.run(sockets=[sock])
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


class _Server(uvicorn.Server):
    """uvicorn's server, telling the app as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, on_exit_signal: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_exit_signal = on_exit_signal

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.on_exit_signal is not None:
            self.on_exit_signal()
