"""Prometheus metrics of one proxy process, on a registry of its own (so several apps can live in one test run)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    """The counters and histograms the proxy updates as it works."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("vbp_requests_total", "Passthrough requests by route and status.",
                                ["route", "status"], registry=self.registry)
        self.request_seconds = Histogram("vbp_request_seconds", "Passthrough latency as the client sees it.",
                                         ["route"], registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
