"""Idempotency claims: the first POST with a key claims it, atomically with what it creates.

A claim's id is derived from (user, key), so a retry collides with the stored claim
instead of creating a second resource, in one process or across many.
"""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = UUID("6f1c3f0e-3d55-4f4e-9a53-0b8f0f3c1a77")


def claim_id(user: str, key: str) -> UUID:
    return uuid5(_NAMESPACE, f"{user}\n{key}")


class IdempotencyClaim(Aggregate):
    TOPIC = "gbserver.idempotency.IdempotencyClaim"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.idempotency.IdempotencyClaim.Created"

    @event("IdempotencyKeyClaimed", topic="gbserver.idempotency.IdempotencyKeyClaimed")
    def __init__(
        self, user: str, key: str, fingerprint: str, resource_id: str, id: UUID | None = None
    ) -> None:
        self.user = user
        self.key = key
        self.fingerprint = fingerprint
        self.resource_id = resource_id
