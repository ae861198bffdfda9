"""The Litestar application: controllers, auth, errors, OpenAPI; wrapped for request ids."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin  # no public handle on the served dict (2.x)
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.admin import AdminController, health
from api.auth import PUBLIC_PATHS, TokenAuthMiddleware
from api.bots import BotsController
from api.deps import Deps, InFlight
from api.designer import DesignerController
from api.errors import bad_request, handle_exception
from api.openapi import complete
from api.paper import PaperController
from api.sessions import SessionsController
from api.tasks import TasksController

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    """Outermost ASGI layer: an X-Request-ID on every response, and the in-flight count."""

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        self.in_flight.count += 1
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.in_flight.count -= 1


async def refuse_nul_characters(request: Request[Any, Any, Any]) -> None:
    """Text with U+0000 is refused: PostgreSQL cannot store it, and a read model that cannot
    take an event would stop behind it. (A raw NUL byte is already invalid JSON.)"""
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        if b"\\u0000" in body:
            raise bad_request("text may not contain the NUL character (\\u0000)")


def create_app(deps: Deps, on_shutdown: Sequence[Callable[[], None]] = ()) -> Litestar:
    app = Litestar(
        on_shutdown=list(on_shutdown),
        route_handlers=[
            health,
            TasksController,
            PaperController,
            DesignerController,
            BotsController,
            SessionsController,
            AdminController,
        ],
        dependencies={"deps": Provide(lambda: deps, use_cache=True, sync_to_thread=False)},
        middleware=[DefineMiddleware(TokenAuthMiddleware, authenticator=deps.authenticator)],
        exception_handlers={Exception: handle_exception},
        before_request=refuse_nul_characters,
        request_max_body_size=deps.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="gbserver",
            version="0.1.0",
            description="General Bots REST API, event-sourced.",
            path="/schema",
        ),
        debug=False,
    )
    complete(app.plugins.get(OpenAPIPlugin).provide_openapi_schema(), PUBLIC_PATHS)
    _true_allow_headers(app)
    return app


def _true_allow_headers(app: Litestar) -> None:
    """Points each route's automatic OPTIONS handler at its final route.

    Litestar 2.x builds the OPTIONS handler when a path's first method is registered and keeps
    it when later methods merge into a new route object, so `Allow` lists only some methods.
    """
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            fn = getattr(handler, "fn", None)
            cells: tuple[Any, ...] = getattr(fn, "__closure__", None) or ()
            if getattr(fn, "__name__", "") == "options_handler" and len(cells) == 1:
                cells[0].cell_contents = route


def asgi(deps: Deps, on_shutdown: Sequence[Callable[[], None]] = ()) -> RequestContext:
    """The served application; `on_shutdown` runs when the server stops (also on SIGTERM)."""
    return RequestContext(create_app(deps, on_shutdown), deps.in_flight)
