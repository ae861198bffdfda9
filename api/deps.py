"""What the HTTP layer is given by the composition root (infra/bootstrap.py, infra/areas.py).

Handlers declare what they use by name and type (`tasks: Provided[TaskCommands]`); the
composition root provides each name once, app-wide (`Wiring.dependencies`). A handler that
declares a name nobody provides stops the app at start-up (Litestar checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from litestar.di import NamedDependency
from litestar.params import SkipValidation
from litestar.types import ControllerRouterHandler

from api.auth import Authenticator
from api.observability import RequestMetrics

T = TypeVar("T")

# A dependency injected by its parameter's name. Not validated per request: the values are
# the composition root's own objects, and many are typed by a Protocol (ReadStore,
# EventHistory, Operations...), which an isinstance check cannot test.
Provided: TypeAlias = NamedDependency[SkipValidation[T]]


@dataclass
class InFlight:
    """HTTP requests being served right now (the outermost ASGI layer counts them)."""

    count: int = 0


@dataclass(frozen=True)
class Wiring:
    """The app as the composition root assembles it from its areas."""

    route_handlers: Sequence[ControllerRouterHandler]
    dependencies: Mapping[str, object]  # name -> the object every handler naming it gets
    authenticator: Authenticator
    max_body_bytes: int
    in_flight: InFlight
    metrics: RequestMetrics | None = None  # /metrics and request metrics when set
