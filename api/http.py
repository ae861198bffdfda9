"""Helpers every controller uses: the actor, pagination, versions, idempotency, write replies."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from litestar import Request, Response
from litestar.params import Parameter

from api.errors import ApiError, bad_request
from api.observability import RequestMetrics
from commands.fields import WHEN_DESCRIPTION, WHEN_PATTERN, parse_when
from commands.idempotency import AlreadyClaimed, Claim
from commands.ports import Saved
from domain.common import Actor, IfMatch, rfc3339

T = TypeVar("T")

Limit = Annotated[int, Parameter(ge=1, le=200, description="Page size (max 200)")]
Offset = Annotated[int, Parameter(ge=0, le=2_000_000_000, description="Items to skip")]
Position = Annotated[
    int, Parameter(ge=0, le=2**53 - 1, description="Last notification id seen (0: from the start)")
]
DateTimeParam = Annotated[str, Parameter(pattern=WHEN_PATTERN, description=WHEN_DESCRIPTION)]

# RFC 9110's If-Match: "*", or a list of entity tags ([W/]"opaque", etagc = %x21 / %x23-7E /
# obs-text) separated by commas and optional white space; empty list elements are ignored.
_IF_MATCH_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(?:,|\Z)')
_VERSION_TAG = re.compile(r"[1-9][0-9]{0,17}")  # the ETags we send: "N", the version
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class WaitsForProjections(Protocol):
    def wait(self, saved: Saved, timeout: float) -> bool: ...

    def find(
        self, names: Iterable[str], probe: Callable[[], T | None], timeout: float
    ) -> T | None: ...


@dataclass(frozen=True)
class Writes:
    """How a write is answered (read-your-writes): its projections are waited for, up to
    `timeout` seconds; `written` answers 202 past that, and counts it in `metrics`."""

    consistency: WaitsForProjections
    timeout: float
    metrics: RequestMetrics | None = None

    def wait(self, saved: Saved) -> bool:
        """Whether the projections of `saved` have it (False: not within the timeout)."""
        return self.consistency.wait(saved, self.timeout)

    def find(self, names: Iterable[str], probe: Callable[[], T | None]) -> T | None:
        """`probe`'s answer once these projections give one (None: not within the timeout)."""
        return self.consistency.find(names, probe, self.timeout)

    def timed_out(self) -> None:
        if self.metrics is not None:
            self.metrics.consistency_timed_out()


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    actor = request.user
    if not isinstance(actor, Actor):
        raise ApiError(401, "missing or invalid token")
    return actor


def expected_version(request: Request[Any, Any, Any]) -> IfMatch | None:
    """The versions a write's `If-Match` accepts, compared strongly as RFC 9110 says: None
    when absent or `*` (whatever the current version is; a missing resource stays 404); a
    weak `W/"1"` never matches; a malformed header is 400. Several If-Match fields are one
    list."""
    fields = request.headers.getall("if-match", [])
    if not fields:
        return None
    raw = ", ".join(fields)
    if raw.strip(" \t") == "*":
        return None
    tags: list[tuple[bool, str]] = []
    at = 0
    while at < len(raw):
        element = _IF_MATCH_ELEMENT.match(raw, at)
        if element is None:
            raise bad_request(
                'If-Match must be * or a list of quoted entity tags such as "3"', "If-Match"
            )
        if element.group(2) is not None:
            tags.append((element.group(1) is not None, element.group(2)))
        at = element.end()
    if not tags:
        raise bad_request('If-Match names no entity tag; send one such as "3"', "If-Match")
    return IfMatch(
        frozenset(
            int(opaque) for weak, opaque in tags if not weak and _VERSION_TAG.fullmatch(opaque)
        )
    )


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
    writes: Writes,
    saved: Saved,
    location: str,
    render: Callable[[], T | None],
    status: int = 200,
) -> Response[Any]:
    """Answers a write once its projections have it; 202 + Location if that takes too long."""
    if not writes.wait(saved):
        writes.timed_out()
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
    writes: Writes,
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
        body = writes.find([projection], lambda: render(first))
        if body is None:
            raise ApiError(
                404, "the resource this Idempotency-Key created no longer exists"
            ) from None
        return Response(
            body,
            status_code=status,
            headers={"Location": location_of(replay.resource_id), "Idempotent-Replayed": "true"},
        )
    return written(writes, saved, location_of(resource_id), lambda: render(resource_id), status)
