"""Saving a new aggregate under an Idempotency-Key: the claim and the aggregate land together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.idempotency import IdempotencyClaim, claim_id


@dataclass(frozen=True)
class Claim:
    user: str
    key: str
    fingerprint: str


class AlreadyClaimed(Exception):
    """The key was used before: by the same request (a retry) or by a different one."""

    def __init__(self, resource_id: str, same_request: bool) -> None:
        super().__init__(f"idempotency key already used for {resource_id}")
        self.resource_id = resource_id
        self.same_request = same_request


def save_new(store: EventStore, aggregate: Any, claim: Claim | None) -> Saved:
    return save_claimed(store, claim, str(aggregate.id), aggregate)


def save_claimed(
    store: EventStore, claim: Claim | None, resource_id: str, *aggregates: Any
) -> Saved:
    """Saves the aggregates, and the claim naming `resource_id` with them when there is one."""
    if claim is None:
        return store.save(*aggregates)
    record = IdempotencyClaim(
        user=claim.user,
        key=claim.key,
        fingerprint=claim.fingerprint,
        resource_id=resource_id,
        id=claim_id(claim.user, claim.key),
    )
    try:
        return store.save(*aggregates, record)
    except ConcurrencyConflict as conflict:
        try:
            first = store.get(claim_id(claim.user, claim.key))
        except NotFound:
            raise conflict from None  # another aggregate's conflict, not the key's
        raise AlreadyClaimed(first.resource_id, first.fingerprint == claim.fingerprint) from None
