"""One turn of a dialog, as the areas of keywords see it.

A turn is bounded (TurnLimits, the GB_TURN_* settings): the bytes of every value it stores,
of the state it keeps and of all it writes, its outside calls (LLM...) and its wall time.
Each area of keywords other than the core (domain.basic.platform.AREAS) comes as a
KeywordProvider: a factory that, given the TurnContext, makes the area's provider for that
turn. A provider that writes adds what it makes to the turn's TurnWrites, which counts its
bytes, so it is saved with the turn (exactly once, whatever crashes); a provider that leaves
the server charges each call to the turn's TurnBudget (`budget.outside_call`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from commands.ports import EventStore
from domain.basic import BudgetExceeded, Limits, Value
from domain.sessions import Session

# What an event adds around the values a turn writes (ids, topic, timestamp, names).
EVENT_OVERHEAD = 256


@dataclass(frozen=True)
class TurnLimits:
    """What one message may spend (the GB_TURN_* settings); sizes are bytes of JSON."""

    max_state_bytes: int = 256 * 1024  # the dialog state kept at a HEAR
    max_value_bytes: int = 64 * 1024  # one value a dialog stores (variable, memory...)
    max_event_bytes: int = 384 * 1024  # all a turn writes: replies, state, memory, tasks
    max_calls: int = 10  # outside calls (LLM, ...) in one turn, re-runs included
    seconds: float = 10.0  # wall time of one turn, re-runs included

    def machine(self) -> Limits:
        return Limits(
            max_value_bytes=self.max_value_bytes,
            max_state_bytes=self.max_state_bytes,
            max_output_bytes=self.max_event_bytes,
        )


class TurnBudget:
    """The outside calls and wall time one message has left, across re-runs of its turn."""

    def __init__(self, limits: TurnLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.deadline = clock() + limits.seconds
        self.calls = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def check_time(self) -> None:
        if self.clock() > self.deadline:
            raise BudgetExceeded(
                f"the turn ran longer than {self.limits.seconds:g} seconds"
                " (the limit is GB_TURN_SECONDS)"
            )

    def outside_call(self, what: str) -> None:
        """Counts a call that leaves the server; refuses it once the budget is spent."""
        self.check_time()
        if self.calls >= self.limits.max_calls:
            raise BudgetExceeded(
                f"the turn made more than {self.limits.max_calls} outside calls ({what})"
                " (the limit is GB_TURN_MAX_CALLS)"
            )
        self.calls += 1


class TurnWrites:
    """What one attempt of a turn writes besides its session: the memory values it set (by
    scope and key) and the aggregates its keywords made, in order. Everything is counted
    against TurnLimits.max_event_bytes as it is made."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.memory: dict[tuple[str, str], tuple[Value, int]] = {}
        self.aggregates: list[Any] = []

    def charge(self, size: int) -> None:
        """Adds `size` bytes (a negative size gives some back); refuses past the limit."""
        self.size += size
        if self.size > self.limit:
            raise BudgetExceeded(
                f"the turn's changes are larger than {self.limit:,} bytes"
                " (the limit is GB_TURN_MAX_EVENT_BYTES)"
            )

    def add(self, aggregate: Any, size: int) -> None:
        """An aggregate to save with the turn, `size` bytes of events; refused past the limit."""
        self.charge(size)
        self.aggregates.append(aggregate)

    def discard(self) -> None:
        """Nothing of this turn is written (it grew past the turn's limit)."""
        self.memory.clear()
        self.aggregates.clear()
        self.size = 0


@dataclass
class TurnContext:
    """One attempt of a turn: where it reads, whose session, its clock, its budget (shared by
    the attempts of one message) and what it writes (fresh for each attempt)."""

    store: EventStore
    session: Session
    clock: Callable[[], datetime]
    budget: TurnBudget
    writes: TurnWrites = field(init=False)

    def __post_init__(self) -> None:
        self.writes = TurnWrites(self.budget.limits.max_event_bytes)

    @property
    def limits(self) -> TurnLimits:
        return self.budget.limits


# Makes an area's provider (domain.basic.platform: TaskKeywords, MailKeywords...) for a turn.
KeywordProvider = Callable[[TurnContext], object]
