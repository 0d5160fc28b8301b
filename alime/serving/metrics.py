"""The service's Prometheus metrics, on prometheus_client, summed over every server worker.

``alime serve`` runs several gunicorn workers; a scrape reaches one of them, so each worker's own
counters would be a fraction of the truth. prometheus_client's multiprocess mode fixes that: with
``PROMETHEUS_MULTIPROC_DIR`` set (by :func:`alime.serving.server.serve`, before any worker starts
and before prometheus_client is imported), every process writes its values to memory-mapped files
in that folder and a scrape adds up all of them, including those of workers that have exited
(their requests happened). Without the variable (tests, ``gunicorn app:app``, the Flask dev server)
each app has its own registry.
"""

from __future__ import annotations

import os
from collections.abc import Callable

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess folder, when this process writes its metrics there."""
    return os.environ.get(MULTIPROC_ENV) or None


class ChatMetrics:
    """The counters and histograms the app updates, and their exposition.

    Names (unchanged since the hand-written registry): ``alime_http_requests_total`` and
    ``alime_http_errors_total`` by endpoint and status, ``alime_http_request_seconds`` by endpoint,
    ``alime_stage_seconds`` by engine stage, ``alime_replies_total`` by source, ``alime_kb_pairs``.

    Args:
        kb_size: Reads the KB's size at scrape time; None while the bot is still loading.
    """

    def __init__(self, kb_size: Callable[[], float | None]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self._kb_size = kb_size
        # A registry per app: two apps in one process (tests) must not collide in the global one.
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "alime_http_requests", "HTTP requests", ("endpoint", "status"), registry=reg
        )
        self.errors = Counter(
            "alime_http_errors",
            "HTTP responses with status >= 400",
            ("endpoint", "status"),
            registry=reg,
        )
        self.latency = Histogram(
            "alime_http_request_seconds",
            "HTTP request latency",
            ("endpoint",),
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.stage = Histogram(
            "alime_stage_seconds",
            "Time per engine stage",
            ("stage",),
            buckets=LATENCY_BUCKETS_S,
            registry=reg,
        )
        self.replies = Counter("alime_replies", "Chat replies by source", ("source",), registry=reg)
        # Every worker sees the same KB, so the most recently read value is the answer (not a sum).
        self.kb_pairs = Gauge(
            "alime_kb_pairs",
            "QA pairs in the knowledge base",
            registry=reg,
            multiprocess_mode="mostrecent",
        )

        # Labelled children by label values: ``labels()`` validates and locks on every call, and
        # a request updates several series; the children themselves are thread-safe.
        self._children: dict[tuple, object] = {}

    def _child(self, metric, *values: str):
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, metric.labels(*values))
        return child

    def count_request(self, endpoint: str, status: int, seconds: float) -> None:
        """One HTTP request: its count by status, its latency, and an error count when >= 400."""
        code = str(status)
        self._child(self.requests, endpoint, code).inc()
        self._child(self.latency, endpoint).observe(seconds)
        if status >= 400:
            self._child(self.errors, endpoint, code).inc()

    def count_reply(self, source: str, timings_ms: dict[str, float]) -> None:
        """One chat reply: its count by source and the time of each engine stage but the total."""
        self._child(self.replies, source).inc()
        for stage, ms in timings_ms.items():
            if stage != "total":
                self._child(self.stage, stage).observe(ms / 1000.0)

    def render(self) -> tuple[bytes, str]:
        """The exposition text of every worker's metrics, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        size = self._kb_size()
        if size is not None:
            self.kb_pairs.set(size)
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)
        return generate_latest(merged), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int) -> None:
    """Called by the gunicorn master when a worker exits: drops its live-only gauge files."""
    if multiprocess_dir() is None:
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
