"""What the HTTP layer is given by the composition root (infra/bootstrap.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from api.auth import Authenticator
from commands.admin import AdminCommands
from commands.bots import BotCommands
from commands.designer import DesignerCommands
from commands.paper import PaperCommands
from commands.ports import Saved
from commands.sessions import SessionCommands
from commands.tasks import TaskCommands
from projections.core import ReadStore
from projections.paper import EventHistory

T = TypeVar("T")


class WaitsForProjections(Protocol):
    def wait(self, saved: Saved, timeout: float) -> bool: ...

    def find(
        self, names: Iterable[str], probe: Callable[[], T | None], timeout: float
    ) -> T | None: ...


@dataclass
class InFlight:
    """HTTP requests being served right now (the outermost ASGI layer counts them)."""

    count: int = 0


@dataclass
class Deps:
    read: ReadStore
    history: EventHistory
    tasks: TaskCommands
    paper: PaperCommands
    designer: DesignerCommands
    bots: BotCommands
    sessions: SessionCommands
    admin: AdminCommands
    consistency: WaitsForProjections
    consistency_timeout: float
    authenticator: Authenticator
    health: Callable[[], dict[str, str]]
    stats: Callable[[], dict[str, Any]]
    event_log: Callable[[int, int], list[dict[str, Any]]]
    max_body_bytes: int
    in_flight: InFlight
