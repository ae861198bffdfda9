"""Idempotency-Key claims: checked before anything else, saved with what the request makes.

A command that takes a claim calls `refuse_reused` first, before loading or checking any
state, so a retry answers with its first result whatever happened since (the session was
closed, the dialog changed, the resource was deleted...); it then saves with
`save_claimed`, whose conflict settles a race between two first uses of one key.
"""

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


def refuse_reused(store: EventStore, claim: Claim | None) -> None:
    """Raises AlreadyClaimed when the key was used before (by this request or another)."""
    if claim is None:
        return
    first = _first_use(store, claim)
    if first is not None:
        raise first


def _first_use(store: EventStore, claim: Claim) -> AlreadyClaimed | None:
    try:
        record = store.get(claim_id(claim.user, claim.key))
    except NotFound:
        return None
    return AlreadyClaimed(record.resource_id, record.fingerprint == claim.fingerprint)


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
        first = _first_use(store, claim)
        if first is None:
            raise conflict from None  # another aggregate's conflict, not the key's
        raise first from None
