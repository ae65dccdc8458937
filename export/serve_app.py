"""The ASGI app of ``moohead serve``: Starlette routes over one dynamic batcher.

Routes (``{name}`` is the served model's name):

- ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``,
  ``/v2/models/{name}/ready``; ``POST /v2/models/{name}/infer``: the Open Inference
  Protocol (KServe v2), JSON tensor form (see ``serve_protocol``).
- ``POST /predict``: ``{"texts": [...]}`` -> ``{"predictions": [...]}``.
- ``GET /metrics``: Prometheus text format.

Every error is a 4xx/5xx with a one-line JSON body ``{"error": "..."}``. Bodies are read
up to ``max_body_bytes`` and refused past it; past ``max_queue`` queued texts a request
gets 503 with ``Retry-After``. This module imports no torch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Protocol

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import moohead
from moohead.export.batcher import BatcherConfig, Closed, DynamicBatcher, QueueFull
from moohead.export.serve_config import ServeConfig
from moohead.export.serve_metrics import ServeMetrics
from moohead.export.serve_protocol import (
    Item,
    ModelSpec,
    RequestError,
    model_metadata,
    parse_json,
    predict_items,
    predictions,
    v2_items,
    v2_outputs,
)

log = logging.getLogger("moohead.serve")

RETRY_AFTER_S = 1
# Past the limit the rest of a body is read and dropped (so that the client, still sending,
# gets the 413 rather than a reset connection), up to this much; then the connection closes.
DISCARD_LIMIT = 64 << 20
JSON_TYPES = ("application/json",)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class Model(Protocol):
    """What the server needs of a model: ``OnnxClassifier`` has it."""

    doc: dict[str, Any]
    variant: str

    def logits(self, texts: list[Item], batch_size: int = 32) -> np.ndarray: ...


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 415 unless JSON and with 413 past ``limit`` bytes."""
    ctype = request.headers.get("content-type")
    if ctype is not None:
        media = ctype.split(";")[0].strip().lower()
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise RequestError(
                415, f"content type {media!r} is not supported; send application/json"
            )
    too_big = RequestError(413, f"the request body is over the limit of {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DISCARD_LIMIT:
        raise too_big  # not worth reading: the connection closes after the answer
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > DISCARD_LIMIT:
                break
            if size <= limit:
                chunks.append(chunk)
    except ClientDisconnect:  # the answer goes nowhere; keep it out of the error log
        raise RequestError(400, "the client disconnected while sending the body") from None
    if size > limit:
        raise too_big
    return b"".join(chunks)


class ServeApp:
    """The routes and their state: the model, its batcher and its metrics.

    Args:
        model: The model to serve (an ``OnnxClassifier``).
        cfg: The server's options (limits, batching, the model's name).
    """

    def __init__(self, model: Model, cfg: ServeConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.spec = ModelSpec.from_manifest(cfg.model_name, model.variant, model.doc, cfg.max_texts)
        batching = BatcherConfig(cfg.max_batch, cfg.max_delay_ms / 1000, cfg.max_queue)
        self.batcher = DynamicBatcher(self._run_batch, batching)
        self.metrics = ServeMetrics(lambda: self.batcher.depth)
        self.batcher.on_batch = self.metrics.observe_batch

    def _run_batch(self, items: list[Item]) -> np.ndarray:
        # One ONNX Runtime call for the whole batch (the worker thread runs this).
        return self.model.logits(items, batch_size=len(items))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.batcher.start()
        try:
            yield
        finally:
            # Runs once uvicorn has finished the requests in flight: drain what is queued.
            await self.batcher.close()

    def starlette(self) -> Starlette:
        routes = [
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2/models/{name}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/predict", self.predict, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
        ]
        handlers: dict[Any, Any] = {
            HTTPException: self._http_error,
            RequestError: self._request_error,
            Exception: self._server_error,
        }
        return Starlette(routes=routes, exception_handlers=handlers, lifespan=self.lifespan)

    def asgi(self) -> ASGIApp:
        """The app, wrapped so that every request is counted and timed."""
        return observed(self.starlette(), self.metrics)

    # --- routes ---------------------------------------------------------------------------

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "moohead", "version": moohead.__version__, "extensions": []})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ok = self.batcher.accepting
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def model_metadata(self, request: Request) -> Response:
        self._check_name(request)
        return JSONResponse(model_metadata(self.spec))

    async def model_ready(self, request: Request) -> Response:
        self._check_name(request)
        return await self.ready(request)

    async def infer(self, request: Request) -> Response:
        self._check_name(request)
        doc = parse_json(await read_body(request, self.cfg.max_body_bytes))
        items, outputs = v2_items(doc, self.spec)
        logits = await self._submit(items)
        answer: dict[str, Any] = {"model_name": self.spec.name}
        if isinstance(doc.get("id"), str):
            answer["id"] = doc["id"]
        answer["outputs"] = v2_outputs(logits, self.spec, outputs)
        return JSONResponse(answer)

    async def predict(self, request: Request) -> Response:
        doc = parse_json(await read_body(request, self.cfg.max_body_bytes))
        logits = await self._submit(predict_items(doc, self.spec))
        return JSONResponse(
            {"model_name": self.spec.name, "predictions": predictions(logits, self.spec)}
        )

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- helpers ----------------------------------------------------------------------------

    def _check_name(self, request: Request) -> None:
        name = request.path_params["name"]
        if name != self.spec.name:
            raise RequestError(
                404, f"unknown model {name!r}; this server serves {self.spec.name!r}"
            )

    async def _submit(self, items: list[Item]) -> np.ndarray:
        try:
            return await self.batcher.submit(items)
        except (QueueFull, Closed) as exc:
            raise RequestError(503, f"{exc}; retry later") from None
        except RequestError:
            raise
        except Exception as exc:  # the model call failed: logged by the batcher
            raise RequestError(500, f"inference failed: {type(exc).__name__}: {exc}") from None

    async def _request_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else None
        return error(exc.status, exc.message, headers)

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error(exc.status_code, message, dict(exc.headers or {}))

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        log.exception("error answering %s %s", request.method, request.url.path)
        return error(500, f"internal error: {type(exc).__name__}")


def observed(app: ASGIApp, metrics: ServeMetrics) -> ASGIApp:
    """``app`` with each HTTP request counted by route and status, and timed."""

    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        start = time.perf_counter()

        async def send_observed(message: Any) -> None:
            if message["type"] == "http.response.start":
                seconds = time.perf_counter() - start
                metrics.observe_request(endpoint_name(scope), int(message["status"]), seconds)
            await send(message)

        await app(scope, receive, send_observed)

    return wrapped


def endpoint_name(scope: Scope) -> str:
    """The matched route's handler name (the router puts it in the scope), a bounded label."""
    endpoint = scope.get("endpoint")
    return str(getattr(endpoint, "__name__", "unmatched")) if endpoint else "unmatched"


def build_app(model: Model, cfg: ServeConfig) -> ASGIApp:
    """The ASGI app serving ``model`` with ``cfg``'s limits and batching."""
    return ServeApp(model, cfg).asgi()
