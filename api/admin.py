"""Admin endpoints (tokens, stats, the event log) and the public health check."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.auth import Authenticator, admin_only
from api.deps import Provided
from api.errors import ApiError, not_found
from api.examples import ANA, CREATED_AT, LAGGING, UPDATED_AT, examples
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
    str,
    Parameter(
        description="A projection's name, as `GET /api/admin/projections` lists them (`tasks`,"
        " `paper`, `designer`, `bots`, `sessions`, `tokens`)",
        examples=[Example(summary="The tasks read model", value="tasks")],
    ),
]
TOKEN_ID = "0e2fd3f0-13dd-576f-ad12-320bb947ddda"
TokenId = Annotated[
    UUID,
    Parameter(
        description="The token's id (not its secret), as its issue answered",
        examples=[Example(summary="A token's id", value=TOKEN_ID)],
    ),
]
LETTER_ID = "5a0d2c9e-8f3b-4e1a-b7c6-2d4e6f8a0b1c"
LetterId = Annotated[
    UUID,
    Parameter(
        description="A dead letter's id, as the projection's dead letters list it",
        examples=[Example(summary="A dead letter's id", value=LETTER_ID)],
    ),
]
TOKEN = {
    "id": TOKEN_ID,
    "user": ANA,
    "role": "user",
    "issued_at": CREATED_AT,
    "issued_by": "admin@localhost",
    "revoked_at": None,
}
RUNNING = {
    "name": "tasks",
    "store": "sqlite",
    "state": "running",
    "policy": "stop",
    "position": 1042,
    "head": 1042,
    "lag_events": 0,
    "lag_seconds": 0.0,
    "generation": 0,
    "dead_letters": 0,
    "last_error": None,
    "rebuild": None,
}
DEAD_LETTER = {
    "id": LETTER_ID,
    "projection": "tasks",
    "event_id": 977,
    "topic": "gbserver.tasks.TaskUpdated",
    "aggregate_id": "7c1e5a2b-3d4f-4a8b-9c6d-1e2f3a4b5c6d",
    "aggregate_version": 3,
    "error": "IntegrityError: NOT NULL constraint failed: tasks.title",
    "recorded_at": UPDATED_AT,
    "retries": 0,
}
ADMINS = "Admins only (`403` for other users)."


REQUIRED = ("database", "event_store", "read_store", "cache", "storage")


@get(
    "/api/health",
    sync_to_thread=True,
    tags=["Health"],
    operation_id="getHealth",
    summary="Check the server's health",
    description="Public (no token needed): `healthy` (`200`) when every store, the cache and"
    " the blob storage answer and every read model keeps up; `degraded` (`503`) while a read"
    " model is stalled behind an event it cannot apply (writes are kept, reads lag; see"
    " `GET /api/admin/projections`); `unhealthy` (`503`) when a store, the cache or the blob"
    " storage fails. `components` gives each part's state (`ok`, `error`; the LLM"
    " `not_configured` without `GB_LLM_URL`); the LLM and the knowledge base's index are"
    " optional: their `error` leaves the server `healthy`.",
    response_description="Healthy",
    operation_class=examples(
        response={
            "Healthy, without an LLM": {
                "status": "healthy",
                "components": {
                    "event_store": "ok",
                    "read_store": "ok",
                    "cache": "ok",
                    "storage": "ok",
                    "database": "ok",
                    "llm": "not_configured",
                    "knowledge_base": "ok",
                    "projections": "ok",
                },
            }
        }
    ),
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
    tags = ["Admin"]
    guards = [admin_only]

    @get(
        "/stats",
        sync_to_thread=True,
        operation_id="getStats",
        summary="Get the server's stats",
        description="This process's uptime and memory, the requests it is serving, the size"
        f" of its stores and the hit rate of its token cache. {ADMINS}",
        response_description="The stats",
        operation_class=examples(
            response={
                "A server up for an hour": {
                    "uptime_seconds": 3600,
                    "memory_used_mb": 73.3,
                    "active_connections": 1,
                    "database_size_mb": 0.64,
                    "cache_hit_rate": 0.9545,
                }
            }
        ),
    )
    def stats(self, monitoring: Provided[Monitor]) -> Stats:
        return msgspec.convert(monitoring.stats(), Stats)

    @get(
        "/events",
        sync_to_thread=True,
        operation_id="listEvents",
        summary="Read the event log",
        description="The event log, the only source of truth, in the order it was written:"
        " up to `limit` events after position `after`. To read it all, pass each answer's"
        " `next_after` as the next `after` until `data` is empty. Each event names its"
        " aggregate (the task, document, ... it belongs to), its version within it, its"
        f" `topic` (its type), when it happened and its data. {ADMINS}",
        response_description="A page of events",
        operation_class=examples(
            response={
                "The first task created": {
                    "data": [
                        {
                            "id": 2,
                            "aggregate_id": "7c1e5a2b-3d4f-4a8b-9c6d-1e2f3a4b5c6d",
                            "aggregate_version": 1,
                            "topic": "gbserver.tasks.TaskCreated",
                            "timestamp": CREATED_AT,
                            "schema_version": 1,
                            "data": {
                                "owner": ANA,
                                "title": "Follow up with client",
                                "description": None,
                                "due_date": "2024-01-15T17:00:00.000000Z",
                                "priority": "high",
                                "status": "pending",
                                "assignee": None,
                            },
                        }
                    ],
                    "next_after": 2,
                }
            }
        ),
    )
    def events(
        self,
        event_log: Provided[EventBrowser],
        after: Position = 0,
        limit: Limit = 50,
    ) -> EventPage:
        records = [msgspec.convert(r, EventRecord) for r in event_log.page(after, limit)]
        return EventPage(records, records[-1].id if records else after)

    @get(
        "/projections",
        sync_to_thread=True,
        operation_id="listProjections",
        summary="List the read models and their lag",
        description="Every projection (read model): where it is in the log (`position`) and"
        " the log's `head`, its lag in events and seconds, its `state` (`running`,"
        " `catching_up`, `rebuilding`, `stalled`), the event it is stalled on and why"
        " (`last_error`), its `policy` for an event it cannot apply, its dead letters and any"
        f" rebuild under way. {ADMINS}",
        response_description="Every projection's status",
        operation_class=examples(response={"All caught up": {"data": [RUNNING]}}),
    )
    def projections(self, operations: Provided[Operations]) -> Projections:
        """Every projection: its position, the log's head, lag in events and seconds, state
        (`running`, `catching_up`, `rebuilding`, `stalled`), the event it is stalled on and
        why, its policy for an event it cannot apply, and its dead letters."""
        return Projections(operations.statuses())

    @get(
        "/projections/{name:str}",
        sync_to_thread=True,
        operation_id="getProjection",
        summary="Get a read model's status",
        description="One projection's status, as the list gives it; an unknown name is `404`"
        f" (its message lists the known ones). {ADMINS}",
        response_description="The projection's status",
        operation_class=examples(response={"Caught up": RUNNING}),
    )
    def projection(
        self, operations: Provided[Operations], name: ProjectionName
    ) -> ProjectionStatus:
        return operations.status(name)

    @put(
        "/projections/{name:str}/policy",
        sync_to_thread=True,
        operation_id="setProjectionPolicy",
        summary="Choose what a read model does with an event it cannot apply",
        description="`stop` (the default): the projection stalls on the event (health turns"
        " `degraded`, reads lag) until a fix; `skip`: the event becomes a dead letter (see"
        f" `.../dead-letters`) and the projection goes on. {ADMINS}",
        response_description="The projection's status, with its new policy",
        operation_class=examples(
            request={"Skip what cannot be applied": {"policy": "skip"}},
            response={"Now skipping": {**RUNNING, "policy": "skip"}},
        ),
    )
    def policy(
        self, operations: Provided[Operations], name: ProjectionName, data: PolicyChange
    ) -> ProjectionStatus:
        """`stop` (default): an event the projection cannot apply stalls it (health is
        `degraded`) until a fix; `skip`: the event becomes a dead letter and it goes on."""
        return operations.set_policy(name, data.policy)

    @post(
        "/projections/{name:str}/rebuild",
        sync_to_thread=True,
        status_code=202,
        operation_id="rebuildProjection",
        summary="Rebuild a read model online",
        description="Starts rebuilding the projection from the log while it keeps serving:"
        " fresh tables are filled beside the old ones, then swapped in atomically. Answers"
        " `202` at once with its status and a `Location` to follow the rebuild at; a rebuild"
        f" of it already under way is `409`. Takes no body. {ADMINS}",
        response_description="Rebuild started",
        operation_class=examples(
            response={
                "Under way": {
                    **RUNNING,
                    "state": "rebuilding",
                    "rebuild": {"started": UPDATED_AT, "position": 0, "head": 1042, "error": None},
                }
            }
        ),
    )
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

    @get(
        "/projections/{name:str}/dead-letters",
        sync_to_thread=True,
        operation_id="listDeadLetters",
        summary="List a read model's dead letters",
        description="The events the projection skipped under the `skip` policy because it"
        " could not apply them, with the error each raised, in log order. Retry one after a"
        f" fix with `POST .../dead-letters/{{letter_id}}/retry`. {ADMINS}",
        response_description="A page of dead letters",
        operation_class=examples(
            response={
                "One event skipped": {
                    "data": [DEAD_LETTER],
                    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
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
        operation_id="retryDeadLetter",
        summary="Apply a dead letter again",
        description="Applies the skipped event to the projection again (after a fix): on"
        " success it leaves the dead letters and is answered as it was; if it fails again it"
        " is `409` with the error, and stays. An unknown id is `404`. Takes no body."
        f" {ADMINS}",
        response_description="The event, applied",
        operation_class=examples(response={"Applied at last": {"retried": DEAD_LETTER}}),
    )
    def retry(
        self, operations: Provided[Operations], name: ProjectionName, letter_id: LetterId
    ) -> Retried:
        """Applies the event again (after a fix). 409 with the error when it fails again."""
        letter = operations.retry(name, str(letter_id))
        if letter is None:
            raise not_found("dead letter")
        return Retried(letter)

    @get(
        "/tokens",
        sync_to_thread=True,
        operation_id="listTokens",
        summary="List the issued tokens",
        description="Every token issued, oldest first: its user, role, who issued it and"
        f" when, and when it was revoked (never its secret). {ADMINS}",
        response_description="A page of tokens",
        operation_class=examples(
            response={
                "Ana's token": {
                    "data": [TOKEN],
                    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
                }
            }
        ),
    )
    def tokens(
        self, read: Provided[ReadStore], limit: Limit = 50, offset: Offset = 0
    ) -> Page[TokenView]:
        return list_tokens(read, limit, offset)

    @post(
        "/tokens",
        sync_to_thread=True,
        status_code=201,
        operation_id="issueToken",
        summary="Issue a token for a user",
        description="Creates a bearer token for the user `user` (an email; there is no other"
        " sign-up) with the role `user` (default) or `admin`. The answer is the only time its"
        " secret (`token`) is shown: the user sends it as `Authorization: Bearer <token>`, and"
        " it works at once. A retry with the same `Idempotency-Key` is `409` naming the token"
        f" already issued, since its secret cannot be shown again. {ADMINS}",
        response_description="The token, with its secret (shown once)",
        operation_class=examples(
            request={
                "A user": {"user": ANA, "role": "user"},
                "Another admin": {"user": "ops@example.com", "role": "admin"},
            },
            response={
                "Ana's token": {
                    "id": TOKEN_ID,
                    "user": ANA,
                    "role": "user",
                    "token": "gb_4vrlnoKZyD7wck3dz7YQBOYxxP0CLDex_zsrkmpqdu4",
                    "issued_at": CREATED_AT,
                }
            },
        ),
    )
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

    @delete(
        "/tokens/{token_id:uuid}",
        sync_to_thread=True,
        status_code=204,
        operation_id="revokeToken",
        summary="Revoke a token",
        description="Revokes the token: from now on it is `401` (at once on this server; other"
        " server processes drop it from their cache within `GB_AUTH_CACHE_TTL` seconds)."
        " It stays listed, with `revoked_at`. An unknown id is `404`. Answers `204` with no"
        f" body. {ADMINS} {LAGGING}",
        response_description="Revoked",
    )
    def revoke(
        self,
        request: Request[Any, Any, Any],
        admin: Provided[AdminCommands],
        writes: Provided[Writes],
        authenticator: Provided[Authenticator],
        token_id: TokenId,
    ) -> Response[None]:
        saved = admin.revoke(actor_of(request), token_id)
        response = written(writes, saved, f"/api/admin/tokens/{token_id}", lambda: None)
        authenticator.forget_all()
        return response

    @get(
        "/tokens/{token_id:uuid}",
        sync_to_thread=True,
        operation_id="getToken",
        summary="Get a token",
        description=f"One token as the list shows it (never its secret). {ADMINS}",
        response_description="The token",
        operation_class=examples(response={"Ana's token": TOKEN}),
    )
    def token(self, read: Provided[ReadStore], token_id: TokenId) -> TokenView:
        view = get_token(read, str(token_id))
        if view is None:
            raise not_found("token")
        return view
