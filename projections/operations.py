"""What an operator sees of the projections, and asks of them (the admin API's port;
infra.operations implements it)."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from commands.ports import NotFound
from domain.common import Conflict
from projections.core import Page, Policy

State = Literal["running", "catching_up", "rebuilding", "stalled"]


class UnknownProjection(NotFound):
    pass


class RebuildRunning(Conflict):
    """Another rebuild of this projection is under way (in this process or another)."""


class DeadLetterFailed(Conflict):
    """A dead letter's retry failed again; it stays a dead letter."""


class Failure(msgspec.Struct):
    event_id: int
    topic: str
    error: str
    at: str | None


class RebuildProgress(msgspec.Struct):
    started: str
    position: int
    head: int
    error: str | None = None


class ProjectionStatus(msgspec.Struct):
    name: str
    store: str
    state: State
    policy: Policy
    position: int
    head: int
    lag_events: int
    lag_seconds: float | None
    generation: int
    dead_letters: int
    last_error: Failure | None
    rebuild: RebuildProgress | None


class DeadLetter(msgspec.Struct):
    id: str
    projection: str
    event_id: int
    topic: str
    aggregate_id: str
    aggregate_version: int
    error: str
    recorded_at: str
    retries: int


class Operations(Protocol):
    def statuses(self) -> list[ProjectionStatus]: ...

    def status(self, name: str) -> ProjectionStatus: ...

    def set_policy(self, name: str, policy: Policy) -> ProjectionStatus: ...

    def start_rebuild(self, name: str) -> None: ...

    def dead_letters(self, name: str, limit: int, offset: int) -> Page[DeadLetter]: ...

    def dead_letter(self, name: str, letter_id: str) -> DeadLetter | None: ...

    def retry(self, name: str, letter_id: str) -> DeadLetter | None: ...
