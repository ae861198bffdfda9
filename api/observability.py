"""The HTTP side of observability: the outermost ASGI layer (request id, in-flight count,
request metrics, one log line per request) and the admin-only `GET /metrics`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any, Protocol

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import admin_only
from domain.common import Actor

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Any other method is counted as "other": a client must not be able to add label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a path no handler serves

access_log = logging.getLogger("gbserver.http")


class InFlightCount(Protocol):
    count: int


class RequestMetrics(Protocol):
    """What the HTTP layer records and serves (infra.metrics.Metrics)."""

    def request(self, method: str, route: str, status: int, seconds: float) -> None: ...

    def consistency_timed_out(self) -> None: ...

    def render(self) -> tuple[bytes, str]: ...


class RequestContext:
    """Outermost ASGI layer: an X-Request-ID on every response, the in-flight count, and once
    the answer is sent, the request's metrics and its log line (no bodies, no tokens)."""

    def __init__(
        self, app: ASGIApp, in_flight: InFlightCount, metrics: RequestMetrics | None = None
    ) -> None:
        self.app = app
        self.in_flight = in_flight
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500  # unless the application answers
        method = scope["method"]
        if method == "HEAD":  # RFC 9110 9.3.2: as GET would answer (the server drops the body)
            scope = {**scope, "method": "GET"}

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        self.in_flight.count += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.in_flight.count -= 1
            self._observe(scope, method, request_id, status, time.perf_counter() - started)

    def _observe(
        self, scope: Scope, method: str, request_id: str, status: int, seconds: float
    ) -> None:
        method = method if method in _METHODS else "other"
        # The template Litestar matched (ids in the path would make a series per resource).
        route = scope.get("path_template") or UNMATCHED
        if self.metrics is not None:
            self.metrics.request(method, route, status, seconds)
        actor = scope.get("user")
        duration_ms = round(seconds * 1000, 3)
        access_log.info(
            "%s %s %s %.1fms",
            method,
            route,
            status,
            duration_ms,
            extra={
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
                "user": actor.email if isinstance(actor, Actor) else None,
            },
        )


def metrics_route(metrics: RequestMetrics) -> HTTPRouteHandler:
    """`GET /metrics` for admins, in Prometheus' text format (not in the OpenAPI document)."""

    @get(
        "/metrics",
        guards=[admin_only],
        include_in_schema=False,  # Prometheus' text, not JSON (tests/test_observability.py)
        sync_to_thread=True,  # the projections' lag is read from the stores
        tags=["Metrics"],
        operation_id="getMetrics",
        summary="Scrape the Prometheus metrics",
        description="Requests by method, route and status with their durations, events"
        " appended by topic, writes answered 202, each projection's lag, position and state,"
        " and background workers' restarts, in Prometheus' text format. Admins only;"
        " `GB_METRICS_LISTEN` serves the same without auth on an address of its own.",
        response_description="The metrics, in Prometheus' text exposition format",
    )
    def serve_metrics() -> Response[Any]:
        body, content_type = metrics.render()
        return Response(body, headers={"content-type": content_type})

    return serve_metrics
