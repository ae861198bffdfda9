"""Prometheus metrics: one registry per `Services` (never the process-wide default one).

Requests per route template and status, with latency; events appended per topic; writes
that answered 202 because their projections were late; and, read at each scrape, the
projections' lag and state and the workers' restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

log = logging.getLogger("gbserver.metrics")

PREFIX = "gbserver_"
PROJECTION_STATES = ("running", "catching_up", "rebuilding", "stalled")


class Metrics:
    """What `/metrics` answers. `projections` gives objects with `name`, `state` (one of
    PROJECTION_STATES), `lag_events`, `lag_seconds` (None when unknown) and `position`;
    `workers` gives the process's workers (`name`, and `restarts` when they count them)."""

    def __init__(
        self,
        projections: Callable[[], Iterable[Any]] = lambda: (),
        workers: Callable[[], Iterable[Any]] = lambda: (),
    ) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            f"{PREFIX}http_requests_total",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._durations = Histogram(
            f"{PREFIX}http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer",
            ["method", "route"],
            registry=self.registry,
        )
        self._events = Counter(
            f"{PREFIX}events_appended_total",
            "Events appended to the log by this process, by topic",
            ["topic"],
            registry=self.registry,
        )
        self._timeouts = Counter(
            f"{PREFIX}consistency_timeouts_total",
            "Writes answered 202: their projections did not have them within the timeout",
            registry=self.registry,
        )
        self.registry.register(_ProjectionCollector(projections))
        self.registry.register(_WorkerCollector(workers))

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method, route, str(status)).inc()
        self._durations.labels(method, route).observe(seconds)

    def appended(self, notification_id: int, topics: Mapping[str, int]) -> None:
        """A `GBApplication.on_saved` listener: counts the events of one save by topic."""
        for topic, count in topics.items():
            self._events.labels(topic).inc(count)

    def consistency_timed_out(self) -> None:
        self._timeouts.inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition in Prometheus' text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _ProjectionCollector:
    """Each projection's lag, position and state, read when scraped."""

    def __init__(self, source: Callable[[], Iterable[Any]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield from _projection_families()

    def collect(self) -> Iterator[Metric]:
        lag, lag_seconds, position, state = families = _projection_families()
        try:
            projections = list(self._source())
        except Exception:  # noqa: BLE001 - the scrape still answers the other families
            log.warning("reading the projections' state for /metrics failed", exc_info=True)
            projections = []
        for p in projections:
            name = str(p.name)
            lag.add_metric([name], float(p.lag_events))
            if p.lag_seconds is not None:
                lag_seconds.add_metric([name], float(p.lag_seconds))
            position.add_metric([name], float(p.position))
            current = str(p.state)
            states: tuple[str, ...] = PROJECTION_STATES
            if current not in states:
                states = (*states, current)
            for s in states:
                state.add_metric([name, s], 1.0 if s == current else 0.0)
        yield from families


def _projection_families() -> tuple[
    GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
]:
    return (
        GaugeMetricFamily(
            f"{PREFIX}projection_lag_events",
            "Events in the log the projection has not applied yet",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            f"{PREFIX}projection_lag_seconds",
            "Age of the oldest event the projection has not applied yet",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            f"{PREFIX}projection_position",
            "Notification id of the last event the projection applied",
            labels=["projection"],
        ),
        GaugeMetricFamily(
            f"{PREFIX}projection_state",
            "1 for the projection's current state (" + ", ".join(PROJECTION_STATES) + ")",
            labels=["projection", "state"],
        ),
    )


class _WorkerCollector:
    """Failures each background worker's loop caught and stepped again after."""

    def __init__(self, source: Callable[[], Iterable[Any]]) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        restarts: dict[str, float] = {}
        for worker in list(self._source()):
            name = str(getattr(worker, "name", type(worker).__name__))
            restarts[name] = restarts.get(name, 0.0) + float(getattr(worker, "restarts", 0))
        for name, count in sorted(restarts.items()):
            family.add_metric([name], count)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{PREFIX}worker_restarts",
            "Failures a background worker's loop caught before stepping again",
            labels=["worker"],
        )
