"""Helpers every controller uses: the actor, pagination, versions, idempotency, write replies."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.params import Parameter

from api.deps import Deps
from api.errors import ApiError, bad_request
from commands.fields import WHEN_DESCRIPTION, WHEN_PATTERN, parse_when
from commands.idempotency import AlreadyClaimed, Claim
from commands.ports import Saved
from domain.common import Actor, rfc3339

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size (max 200)")]
Offset = Annotated[int, Parameter(ge=0, le=2_000_000_000, description="Items to skip")]
Position = Annotated[
    int, Parameter(ge=0, le=2**53 - 1, description="Last notification id seen (0: from the start)")
]
DateTimeParam = Annotated[str, Parameter(pattern=WHEN_PATTERN, description=WHEN_DESCRIPTION)]

_IF_MATCH = re.compile(r'^\s*(?:W/)?"?(\d+)"?\s*$')
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    actor = request.user
    if not isinstance(actor, Actor):
        raise ApiError(401, "missing or invalid token")
    return actor


def expected_version(request: Request[Any, Any, Any]) -> int | None:
    """The version a client expects, from `If-Match: "N"`; None when not given."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    match = _IF_MATCH.match(raw)
    if not match:
        raise bad_request('If-Match must be a version tag such as "3"', "If-Match")
    return int(match.group(1))


def claim_of(request: Request[Any, Any, Any], actor: Actor, body: Any) -> Claim | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.match(key):
        raise bad_request(
            "Idempotency-Key must be 1-255 visible ASCII characters", "Idempotency-Key"
        )
    digest = hashlib.sha256(request.url.path.encode() + b"\n" + msgspec.json.encode(body))
    return Claim(user=actor.email, key=key, fingerprint=digest.hexdigest())


def when_param(value: str | None, field: str) -> str | None:
    """A query parameter as an RFC 3339 date-time with a zone, normalised to UTC 'Z'."""
    return None if value is None else rfc3339(parse_when(value, field))


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def written(
    deps: Deps,
    saved: Saved,
    location: str,
    render: Callable[[], T | None],
    status: int = 200,
) -> Response[Any]:
    """Answers a write once its projections have it; 202 + Location if that takes too long."""
    if not deps.consistency.wait(saved, deps.consistency_timeout):
        return Response(
            {"status": "accepted", "location": location},
            status_code=202,
            headers={"Location": location},
        )
    body = render()
    if body is None:
        return Response(None, status_code=204)
    headers = {"Location": location} if status == 201 else {}
    version = getattr(body, "version", None)
    if isinstance(version, int):
        headers.update(etag(version))
    return Response(body, status_code=status, headers=headers)


def create(
    deps: Deps,
    projection: str,
    action: Callable[[], tuple[str, Saved]],
    location_of: Callable[[str], str],
    render: Callable[[str], T | None],
    status: int = 201,
) -> Response[Any]:
    """Runs a create; a retried Idempotency-Key answers with the resource it first created."""
    try:
        resource_id, saved = action()
    except AlreadyClaimed as replay:
        if not replay.same_request:
            raise
        first = replay.resource_id
        # The first request may still be on its way into the read model.
        body = deps.consistency.find([projection], lambda: render(first), deps.consistency_timeout)
        if body is None:
            raise ApiError(
                404, "the resource this Idempotency-Key created no longer exists"
            ) from None
        return Response(
            body,
            status_code=status,
            headers={"Location": location_of(replay.resource_id), "Idempotent-Replayed": "true"},
        )
    return written(deps, saved, location_of(resource_id), lambda: render(resource_id), status)
