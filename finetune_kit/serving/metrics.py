"""What `/metrics` exposes, in Prometheus' text format: requests by route and status, latency,
errors, micro-batch sizes, chat decode and prefill batch sizes, and the energy and CO2 of serving so
far (codecarbon, offline).

A registry of the server's own, not prometheus_client's global one: two servers in one process
(tests) keep separate counts, and nothing another library registers leaks into the exposition."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finetune_kit.emissions.tracker import RunTracker

PREFIX = "finetune_kit_serve"
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Emissions(Collector):
    """Reads codecarbon's running totals when scraped: the figures are as fresh as the scrape."""

    def __init__(self, tracker: RunTracker) -> None:
        self.tracker = tracker

    def collect(self) -> Iterator[Metric]:
        reading = self.tracker.read()
        energy, grams = (reading.energy_kwh, reading.emissions_g) if reading else (0.0, 0.0)
        yield CounterMetricFamily(f"{PREFIX}_energy_kwh", "Energy used by this server so far (codecarbon)", energy)
        yield CounterMetricFamily(f"{PREFIX}_co2eq_grams", "Grams CO2eq of that energy (codecarbon)", grams)


class ServerMetrics:
    def __init__(self, tracker: RunTracker | None, routes: tuple[str, ...]) -> None:
        self.routes = routes
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{PREFIX}_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time from request to the last byte of the answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Requests answered with an error, by route and error type",
            ["route", "type"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size",
            "Rows per forward pass of /predict, /score and /v1/embeddings (micro-batches)",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.decode_batch_size = Histogram(
            f"{PREFIX}_decode_batch_size",
            "Replies per decoding forward pass of /v1/chat/completions (continuous batching); sum/count is the mean",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.prefill_batch_size = Histogram(
            f"{PREFIX}_prefill_batch_size",
            "Prompts per prefill forward pass of /v1/chat/completions (those arriving together); sum/count is the mean",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        if tracker is not None:
            self.registry.register(_Emissions(tracker))

    def route(self, path: str) -> str:
        """The route label: known routes by name, anything else as `other` (bounded label values)."""
        return path if path in self.routes else "other"

    def count_error(self, path: str, kind: str) -> None:
        self.errors.labels(self.route(path), kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def answered(self, routes: tuple[str, ...]) -> tuple[int, int]:
        """Requests to `routes` answered so far: (successfully, with an error)."""
        ok = failed = 0
        for sample in self.requests.collect()[0].samples:
            if sample.name.endswith("_total") and sample.labels["route"] in routes:
                if sample.labels["status"].startswith("2"):
                    ok += int(sample.value)
                else:
                    failed += int(sample.value)
        return ok, failed

    def batches(self) -> tuple[int, int]:
        """Micro-batched forward passes so far (/predict, /score, /v1/embeddings), and the rows they predicted."""
        samples = {sample.name: sample.value for sample in self.batch_size.collect()[0].samples}
        return int(samples[f"{PREFIX}_batch_size_count"]), int(samples[f"{PREFIX}_batch_size_sum"])


class RequestMetrics:
    """ASGI middleware: counts every answer by route and status, and times it to its last byte
    (a streamed reply is timed to its end, not to its first chunk)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, started, status = self.metrics.route(scope["path"]), time.perf_counter(), [500]

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
