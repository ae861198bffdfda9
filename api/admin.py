"""Admin endpoints (tokens, stats, the event log) and the public health check."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from api.auth import Authenticator, admin_only
from api.deps import Provided
from api.errors import ApiError, not_found
from api.http import Limit, Offset, Position, Writes, actor_of, claim_of, written
from commands.admin import AdminCommands, IssueToken
from commands.idempotency import AlreadyClaimed
from projections.admin import TokenView, get_token, list_tokens
from projections.core import Page, Policy, ReadStore
from projections.operations import DeadLetter, Operations, ProjectionStatus


class Monitor(Protocol):
    """The health checks and the process's stats (infra.monitoring.Monitoring)."""

    def health(self) -> dict[str, str]:
        """Each component's state: "ok", "error", or for the LLM "not_configured"."""
        ...

    def stats(self) -> dict[str, Any]:
        """The fields of `Stats`."""
        ...


class EventBrowser(Protocol):
    """The event log as plain records (infra.monitoring.EventLog)."""

    def page(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` events after notification id `after`, as `EventRecord` fields."""
        ...


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
    schema_version: int  # the event class's version when it was stored (see domain/common)
    data: dict[str, Any]


class EventPage(msgspec.Struct):
    data: list[EventRecord]
    next_after: int


class Projections(msgspec.Struct):
    data: list[ProjectionStatus]


class PolicyChange(msgspec.Struct, forbid_unknown_fields=True):
    policy: Policy


class Retried(msgspec.Struct):
    retried: DeadLetter


ProjectionName = Annotated[
    str, Parameter(description="a projection's name, as `GET /api/admin/projections` lists them")
]


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
def health(monitoring: Provided[Monitor]) -> Response[Health]:
    """`healthy` (200), `degraded` (503: a projection is stalled behind an error, so reads
    lag the log) or `unhealthy` (503: a store, the cache or the blob storage fails)."""
    components = monitoring.health()
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
    def stats(self, monitoring: Provided[Monitor]) -> Stats:
        return msgspec.convert(monitoring.stats(), Stats)

    @get("/events", sync_to_thread=True)
    def events(
        self,
        event_log: Provided[EventBrowser],
        after: Position = 0,
        limit: Limit = 50,
    ) -> EventPage:
        records = [msgspec.convert(r, EventRecord) for r in event_log.page(after, limit)]
        return EventPage(records, records[-1].id if records else after)

    @get("/projections", sync_to_thread=True)
    def projections(self, operations: Provided[Operations]) -> Projections:
        """Every projection: its position, the log's head, lag in events and seconds, state
        (`running`, `catching_up`, `rebuilding`, `stalled`), the event it is stalled on and
        why, its policy for an event it cannot apply, and its dead letters."""
        return Projections(operations.statuses())

    @get("/projections/{name:str}", sync_to_thread=True)
    def projection(
        self, operations: Provided[Operations], name: ProjectionName
    ) -> ProjectionStatus:
        return operations.status(name)

    @put("/projections/{name:str}/policy", sync_to_thread=True)
    def policy(
        self, operations: Provided[Operations], name: ProjectionName, data: PolicyChange
    ) -> ProjectionStatus:
        """`stop` (default): an event the projection cannot apply stalls it (health is
        `degraded`) until a fix; `skip`: the event becomes a dead letter and it goes on."""
        return operations.set_policy(name, data.policy)

    @post("/projections/{name:str}/rebuild", sync_to_thread=True, status_code=202)
    def rebuild(
        self, operations: Provided[Operations], name: ProjectionName
    ) -> Response[ProjectionStatus]:
        """Rebuilds the projection online: fresh tables are built from the log while the
        old ones serve, then swapped in atomically. 409 while one is running."""
        operations.start_rebuild(name)
        return Response(
            operations.status(name),
            status_code=202,
            headers={"Location": f"/api/admin/projections/{name}"},
        )

    @get("/projections/{name:str}/dead-letters", sync_to_thread=True)
    def dead_letters(
        self,
        operations: Provided[Operations],
        name: ProjectionName,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[DeadLetter]:
        return operations.dead_letters(name, limit, offset)

    @post(
        "/projections/{name:str}/dead-letters/{letter_id:uuid}/retry",
        sync_to_thread=True,
        status_code=200,
    )
    def retry(
        self, operations: Provided[Operations], name: ProjectionName, letter_id: UUID
    ) -> Retried:
        """Applies the event again (after a fix). 409 with the error when it fails again."""
        letter = operations.retry(name, str(letter_id))
        if letter is None:
            raise not_found("dead letter")
        return Retried(letter)

    @get("/tokens", sync_to_thread=True)
    def tokens(
        self, read: Provided[ReadStore], limit: Limit = 50, offset: Offset = 0
    ) -> Page[TokenView]:
        return list_tokens(read, limit, offset)

    @post("/tokens", sync_to_thread=True, status_code=201)
    def issue(
        self,
        request: Request[Any, Any, Any],
        admin: Provided[AdminCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: IssueToken,
    ) -> Response[IssuedToken]:
        actor = actor_of(request)
        try:
            token_id, secret, saved = admin.issue(actor, data, claim_of(request, actor, data))
        except AlreadyClaimed as replay:
            raise ApiError(
                409,
                "a token was already issued for this Idempotency-Key; its secret is shown once",
                [{"token_id": replay.resource_id}],
            ) from None

        # The token authenticates at once (read by id); wait so that the token list and
        # GET show it too. Its secret is answered either way: it is shown only here.
        writes.wait(saved)
        view = get_token(read, token_id)
        return Response(
            IssuedToken(
                token_id, data.user.lower(), data.role, secret, view.issued_at if view else None
            ),
            status_code=201,
            headers={"Location": f"/api/admin/tokens/{token_id}"},
        )

    @delete("/tokens/{token_id:uuid}", sync_to_thread=True, status_code=204)
    def revoke(
        self,
        request: Request[Any, Any, Any],
        admin: Provided[AdminCommands],
        writes: Provided[Writes],
        authenticator: Provided[Authenticator],
        token_id: UUID,
    ) -> Response[None]:
        saved = admin.revoke(actor_of(request), token_id)
        response = written(writes, saved, f"/api/admin/tokens/{token_id}", lambda: None)
        authenticator.forget_all()
        return response

    @get("/tokens/{token_id:uuid}", sync_to_thread=True)
    def token(self, read: Provided[ReadStore], token_id: UUID) -> TokenView:
        view = get_token(read, str(token_id))
        if view is None:
            raise not_found("token")
        return view
