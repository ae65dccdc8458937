"""``moohead serve``: an HTTP server (uvicorn + Starlette) for an exported model.

Like ``predict``, it imports neither torch nor transformers (a test checks). The model
folder is checked against ``moohead.json`` and the port bound before anything listens, so
a bad folder or a taken port is one line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from moohead.config import DEVICES
from moohead.export.serve_config import ServeConfig

D = ServeConfig(model_dir=Path())  # every default below is the config's own


@click.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--name", default=None, help="The model's name in URLs (default: the folder's name).")
@click.option("--host", default=D.host, show_default=True, help="Interface to listen on.")
@click.option("--port", type=int, default=D.port, show_default=True, help="0: any free port.")
@click.option(
    "--variant",
    type=click.Choice(["fp32", "optimized", "int8", "fp16"]),
    default=None,
    help="ONNX variant (default: the fastest exported for the device).",
)
@click.option("--device", type=click.Choice(DEVICES), default=D.device, show_default=True)
@click.option("--threads", type=int, default=None, help="ORT CPU threads (default: all cores).")
@click.option(
    "--max-batch", type=int, default=D.max_batch, show_default=True, help="Texts per batch."
)
@click.option(
    "--max-delay-ms",
    type=float,
    default=D.max_delay_ms,
    show_default=True,
    help="How long the oldest queued text waits for a batch to fill.",
)
@click.option(
    "--max-queue",
    type=int,
    default=D.max_queue,
    show_default=True,
    help="Queued texts at most; past it requests get 503 + Retry-After.",
)
@click.option(
    "--max-texts",
    type=int,
    default=D.max_texts,
    show_default=True,
    help="Texts (or pairs) per request at most.",
)
@click.option(
    "--max-body-bytes",
    type=int,
    default=D.max_body_bytes,
    show_default=True,
    help="Request body size at most.",
)
@click.option(
    "--graceful-timeout",
    "graceful_timeout_s",
    type=int,
    default=D.graceful_timeout_s,
    show_default=True,
    help="Seconds requests in flight may take after SIGTERM (0: no limit).",
)
def serve(model_dir: Path, **options: Any) -> None:
    """Serve MODEL_DIR over HTTP: Open Inference Protocol (v2), /predict and /metrics."""
    from moohead.export import server
    from moohead.export.runtime import OnnxClassifier
    from moohead.export.serve_app import ServeApp

    cfg = ServeConfig(model_dir=model_dir, **options)
    cfg.validate()
    model = OnnxClassifier.load(cfg.model_dir, cfg.variant, cfg.device, cfg.threads)
    sock = server.bind(cfg.host, cfg.port)
    app = ServeApp(model, cfg)
    click.echo(
        f"serving {cfg.model_name} ({model.doc['task']['name']}, {model.variant}) at "
        f"{server.url(sock)}: batches of up to {cfg.max_batch} texts, {cfg.max_delay_ms:g} ms "
        f"delay, queue of {cfg.max_queue}",
        err=True,
    )
    # On SIGTERM the queue is run at once, without waiting for batches to fill.
    server.run(app.asgi(), sock, cfg.graceful_timeout_s, app.batcher.stop_accepting)
    click.echo("stopped", err=True)
