"""A small Prometheus text-format registry: counters and histograms with labels.

Kept in-process (per server worker); thread-safe. The exposition follows the Prometheus text
format 0.0.4: ``# HELP``/``# TYPE`` lines, ``_bucket{le=..}``/``_sum``/``_count`` for histograms.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._values: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def inc(self, *label_values: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[tuple(label_values)] += amount

    def value(self, *label_values: str) -> float:
        return self._values.get(tuple(label_values), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for key, v in sorted(self._values.items()):
                lines.append(f"{self.name}{_labels(self.label_names, key)} {v:g}")
        return lines


class Histogram:
    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS_S
    ) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = defaultdict(float)
        self._lock = threading.Lock()

    def observe(self, value: float, *label_values: str) -> None:
        key = tuple(label_values)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sums[key] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for key, counts in sorted(self._counts.items()):
                running = 0
                for bound, c in zip(self.buckets, counts):
                    running += c
                    le = f'le="{bound:g}"'
                    lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
                running += counts[-1]
                inf = _labels(self.label_names, key, 'le="+Inf"')
                lines.append(f"{self.name}_bucket{inf} {running}")
                lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {self._sums[key]:g}")
                lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


class Gauge:
    """A value read when the metrics are scraped."""

    def __init__(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.name, self.help, self.read = name, help, read

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {self.read():g}"]


class ChatMetrics:
    """The service's metrics."""

    def __init__(self, kb_size: Callable[[], float]) -> None:
        self.requests = Counter("alime_http_requests_total", "HTTP requests", ("endpoint", "status"))
        self.errors = Counter("alime_http_errors_total", "HTTP responses with status >= 400", ("endpoint", "status"))
        self.latency = Histogram("alime_http_request_seconds", "HTTP request latency", ("endpoint",))
        self.stage = Histogram("alime_stage_seconds", "Time per engine stage", ("stage",))
        self.replies = Counter("alime_replies_total", "Chat replies by source", ("source",))
        self.kb_pairs = Gauge("alime_kb_pairs", "QA pairs in the knowledge base", kb_size)

    def render(self) -> str:
        out: list[str] = []
        for metric in (self.requests, self.errors, self.latency, self.stage, self.replies, self.kb_pairs):
            out.extend(metric.render())
        return "\n".join(out) + "\n"
