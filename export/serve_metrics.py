"""The server's Prometheus metrics, in a registry of its own (one per app, not global)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServeMetrics:
    """Counters and histograms of one server, exposed at ``/metrics``.

    Label values are bounded: ``endpoint`` is a route's name (``infer``, ``predict``, ...,
    or ``unmatched``), never the raw path, and ``status`` an HTTP status code.

    Args:
        queue_depth: Reads the batcher's queue depth when Prometheus scrapes.
    """

    def __init__(self, queue_depth: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "moohead_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "moohead_request_errors",
            "Requests answered with an error, by endpoint and kind.",
            ["endpoint", "kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "moohead_request_duration_seconds",
            "Time from request start to the response's start, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "moohead_batch_size",
            "Inputs per ONNX Runtime call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "moohead_batch_duration_seconds",
            "Time of one batch: tokenising and the ONNX Runtime call.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inputs = Counter(
            "moohead_inferred_inputs", "Inputs (texts or pairs) run.", registry=self.registry
        )
        depth = Gauge("moohead_queue_depth", "Inputs waiting for a batch.", registry=self.registry)
        depth.set_function(queue_depth)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.inputs.inc(size)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)
        if status >= 400:
            kind = "overloaded" if status == 503 else "client" if status < 500 else "server"
            self.errors.labels(endpoint, kind).inc()
