"""The Litestar application: the areas' controllers and named dependencies (as the
composition root wires them, api.deps.Wiring), auth, errors, OpenAPI; wrapped for request
ids, metrics and request logs (api.observability)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin  # no public handle on the served dict (2.x)
from litestar.di import Provide
from litestar.middleware.base import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from api.auth import PUBLIC_PATHS, TokenAuthMiddleware
from api.deps import Wiring
from api.errors import bad_request, handle_exception
from api.observability import RequestContext, metrics_route
from api.openapi import complete

# `\u0000` as a JSON escape: after an even number of backslashes (`\\u0000` is a backslash
# followed by the text "u0000", which is storable).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


async def refuse_nul_characters(request: Request[Any, Any, Any]) -> None:
    """Text with U+0000 is refused: PostgreSQL cannot store it, and a read model that cannot
    take an event would stop behind it. (A raw NUL byte is already invalid JSON.)"""
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        if b"\\u0000" in body and _NUL_ESCAPE.search(body):
            raise bad_request("text may not contain the NUL character (\\u0000)")


def _provide(value: object) -> Provide:
    """`value` itself, to every handler that names it (one object for the app's life)."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def create_app(wiring: Wiring, on_shutdown: Sequence[Callable[[], None]] = ()) -> Litestar:
    handlers: list[Any] = list(wiring.route_handlers)
    if wiring.metrics is not None:
        handlers.append(metrics_route(wiring.metrics))
    app = Litestar(
        on_shutdown=list(on_shutdown),
        route_handlers=handlers,
        dependencies={name: _provide(value) for name, value in wiring.dependencies.items()},
        middleware=[DefineMiddleware(TokenAuthMiddleware, authenticator=wiring.authenticator)],
        exception_handlers={Exception: handle_exception},
        before_request=refuse_nul_characters,
        request_max_body_size=wiring.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="gbserver",
            version="0.1.0",
            description="General Bots REST API, event-sourced.",
            path="/schema",
        ),
        debug=False,
        logging_config=None,  # the process's logging is set up once (infra.logs), not here
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


def asgi(wiring: Wiring, on_shutdown: Sequence[Callable[[], None]] = ()) -> RequestContext:
    """The served application; `on_shutdown` runs when the server stops (also on SIGTERM)."""
    return RequestContext(create_app(wiring, on_shutdown), wiring.in_flight, wiring.metrics)
