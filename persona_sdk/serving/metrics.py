"""Prometheus metrics of one server (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from persona_sdk.serving.engine import Engine


class Metrics:
    """Requests, tokens, queue depth, batch size and step time."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("persona_requests", "HTTP requests", ["route", "status"],
                                registry=self.registry)  # fmt: skip
        self.tokens = Counter("persona_tokens", "Tokens processed", ["kind"],
                              registry=self.registry)  # fmt: skip
        self.queue = Gauge("persona_queue_depth", "Requests waiting to join the batch",
                           registry=self.registry)  # fmt: skip
        self.batch = Gauge("persona_batch_rows", "Rows decoding in the batch",
                           registry=self.registry)  # fmt: skip
        self.cancelled = Counter("persona_cancelled_rows", "Rows dropped for gone clients",
                                 registry=self.registry)  # fmt: skip
        self.step = Histogram("persona_step_seconds", "Time per engine step",
                              buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
                              registry=self.registry)  # fmt: skip
        # engine counter -> the metric that follows it
        self._follow = {"prompt_tokens": self.tokens.labels("prompt"),
                        "completion_tokens": self.tokens.labels("completion"),
                        "cancelled_rows": self.cancelled}  # fmt: skip
        self._seen = dict.fromkeys(self._follow, 0)

    def on_step(self, engine: Engine, seconds: float) -> None:
        """The engine's per-step hook (engine thread)."""
        self.step.observe(seconds)
        stats = engine.stats()
        self.queue.set(stats["waiting"])
        self.batch.set(stats["active_rows"])
        for name, metric in self._follow.items():
            if stats[name] > self._seen[name]:
                metric.inc(stats[name] - self._seen[name])
                self._seen[name] = stats[name]

    def render(self) -> bytes:
        return generate_latest(self.registry)
