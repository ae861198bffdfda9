"""Admin endpoints (tokens, stats, the event log) and the public health check."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi import ResponseSpec

from api.auth import admin_only
from api.deps import Deps
from api.errors import ApiError, not_found
from api.http import Limit, Offset, Position, actor_of, claim_of, written
from commands.admin import IssueToken
from commands.idempotency import AlreadyClaimed
from projections.admin import TokenView, get_token, list_tokens
from projections.core import Page


class IssuedToken(msgspec.Struct):
    id: str
    user: str
    role: str
    token: str
    issued_at: str | None


class Health(msgspec.Struct):
    status: Literal["healthy", "degraded", "unhealthy"]
    components: dict[str, str]


class Stats(msgspec.Struct):
    uptime_seconds: int
    memory_used_mb: float
    active_connections: int
    database_size_mb: float
    cache_hit_rate: float


class EventRecord(msgspec.Struct):
    id: int
    aggregate_id: str
    aggregate_version: int
    topic: str
    timestamp: str | None
    data: dict[str, Any]


class EventPage(msgspec.Struct):
    data: list[EventRecord]
    next_after: int


REQUIRED = ("database", "event_store", "read_store", "cache", "storage")


@get(
    "/api/health",
    sync_to_thread=True,
    tags=["admin"],
    responses={
        503: ResponseSpec(
            Health,
            description="`unhealthy` (a required component fails) or `degraded` (a read model"
            " is stalled: writes are kept, reads lag)",
        )
    },
)
def health(deps: Deps) -> Response[Health]:
    """`healthy` (200), `degraded` (503: a projection is stalled behind an error, so reads
    lag the log) or `unhealthy` (503: a store, the cache or the blob storage fails)."""
    components = deps.health()
    status: Literal["healthy", "degraded", "unhealthy"]
    if not all(components.get(name) == "ok" for name in REQUIRED):
        status = "unhealthy"
    elif components.get("projections", "ok") != "ok":
        status = "degraded"
    else:
        status = "healthy"
    return Response(Health(status, components), status_code=200 if status == "healthy" else 503)


class AdminController(Controller):
    path = "/api/admin"
    tags = ["admin"]
    guards = [admin_only]

    @get("/stats", sync_to_thread=True)
    def stats(self, deps: Deps) -> Stats:
        return msgspec.convert({**deps.stats(), "active_connections": deps.in_flight.count}, Stats)

    @get("/events", sync_to_thread=True)
    def events(
        self,
        deps: Deps,
        after: Position = 0,
        limit: Limit = 50,
    ) -> EventPage:
        records = [msgspec.convert(r, EventRecord) for r in deps.event_log(after, limit)]
        return EventPage(records, records[-1].id if records else after)

    @get("/tokens", sync_to_thread=True)
    def tokens(self, deps: Deps, limit: Limit = 50, offset: Offset = 0) -> Page[TokenView]:
        return list_tokens(deps.read, limit, offset)

    @post("/tokens", sync_to_thread=True, status_code=201)
    def issue(
        self, request: Request[Any, Any, Any], deps: Deps, data: IssueToken
    ) -> Response[IssuedToken]:
        actor = actor_of(request)
        try:
            token_id, secret, saved = deps.admin.issue(actor, data, claim_of(request, actor, data))
        except AlreadyClaimed as replay:
            raise ApiError(
                409,
                "a token was already issued for this Idempotency-Key; its secret is shown once",
                [{"token_id": replay.resource_id}],
            ) from None

        # The token authenticates at once (read by id); wait so that the token list and
        # GET show it too. Its secret is answered either way: it is shown only here.
        deps.consistency.wait(saved, deps.consistency_timeout)
        view = get_token(deps.read, token_id)
        return Response(
            IssuedToken(
                token_id, data.user.lower(), data.role, secret, view.issued_at if view else None
            ),
            status_code=201,
            headers={"Location": f"/api/admin/tokens/{token_id}"},
        )

    @delete("/tokens/{token_id:uuid}", sync_to_thread=True, status_code=204)
    def revoke(self, request: Request[Any, Any, Any], deps: Deps, token_id: UUID) -> Response[None]:
        saved = deps.admin.revoke(actor_of(request), token_id)
        response = written(deps, saved, f"/api/admin/tokens/{token_id}", lambda: None)
        deps.authenticator.forget_all()
        return response

    @get("/tokens/{token_id:uuid}", sync_to_thread=True)
    def token(self, deps: Deps, token_id: UUID) -> TokenView:
        view = get_token(deps.read, str(token_id))
        if view is None:
            raise not_found("token")
        return view
