"""The Litestar application: the areas' controllers and named dependencies (as the
composition root wires them, api.deps.Wiring), auth, errors, OpenAPI; wrapped for request
ids, metrics and request logs (api.observability)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from litestar import Litestar, Request
from litestar._openapi.plugin import OpenAPIPlugin  # no public handle on the served dict (2.x)
from litestar.di import Provide
from litestar.exceptions import SerializationException
from litestar.middleware.base import DefineMiddleware

from api.auth import PUBLIC_PATHS, TokenAuthMiddleware
from api.deps import Wiring
from api.docs import ROUTES as DOCS_ROUTES
from api.errors import BODY_STATE_KEY, ApiError, bad_request, handle_exception, invalid_json
from api.observability import RequestContext, metrics_route
from api.openapi import MAX_JSON_DEPTH, complete, openapi_config

# `\u0000` as a JSON escape: after an even number of backslashes (`\\u0000` is a backslash
# followed by the text "u0000", which is storable).
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# A `\uD800`-`\uDFFF` escape that is not half of a pair: no text holds it (UTF-8 cannot).
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(?:\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)


# Deeper JSON (MAX_JSON_DEPTH, which the OpenAPI document states) is refused before it is
# decoded: the decoder recurses once per level.
_JSON_MEDIA = re.compile(r"application/(?:[\w.-]+\+)?json", re.IGNORECASE)
# A JSON string (its escapes included), whose brackets and colons are text.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")


async def check_request_body(request: Request[Any, Any, Any]) -> None:
    """A write's body, checked before anything decodes it: a route that takes none gets none;
    one that takes JSON gets a non-empty body labelled `application/json` (415 otherwise),
    nested at most MAX_JSON_DEPTH levels, decodable, without a key twice in an object, and
    with no U+0000 (PostgreSQL cannot store it, and a read model that cannot take an event
    would stop behind it; a raw NUL byte is already invalid JSON). The decoded value is kept
    for the handler and for the explanation of a body that does not convert (api.errors)."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if request.route_handler.opt.get("streamed_body"):
        return  # the handler streams its body and checks it as it goes (api.drive's upload)
    body = await request.body()
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    where = f"{request.method} {request.url.path}"
    if data is None:
        if body.strip():
            raise ApiError(400, f"{where} takes no request body; send it without one")
        return
    if not body.strip():
        raise ApiError(400, f"{where} needs a JSON body (Content-Type: application/json)")
    media = request.headers.get("content-type", "").split(";", 1)[0].strip()
    if not _JSON_MEDIA.fullmatch(media):
        raise ApiError(
            415,
            f"the body must be JSON, sent with Content-Type: application/json"
            f" (got {media or 'no Content-Type'})",
        )
    if _nested_deeper(body, MAX_JSON_DEPTH):
        raise bad_request(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels")
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        raise bad_request("text may not contain the NUL character (\\u0000)")
    if (b"\\ud" in body or b"\\uD" in body) and _LONE_SURROGATE.search(body):
        raise bad_request("text may not contain a lone surrogate (\\ud800 to \\udfff unpaired)")
    try:
        value = await request.json()
    except SerializationException as exc:
        raise ApiError(400, invalid_json(exc)) from None
    except RecursionError:
        raise bad_request(f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    repeated = _repeated_key(body, value)
    if repeated is not None:
        raise bad_request(f"the key `{repeated}` appears twice in one object of the body")
    request.scope.setdefault("state", {})[BODY_STATE_KEY] = value


def _nested_deeper(body: bytes, limit: int) -> bool:
    """Whether the JSON text opens more than `limit` arrays or objects at once (cheap: the
    brackets are counted first, and walked only when there are more than `limit`)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    if b"(" * (limit + 1) in brackets:
        return True
    # Each pass takes away the innermost level of every nest (at C speed).
    for passes in range(limit + 1):
        shorter = brackets.replace(b"()", b"")
        if shorter == brackets:  # what is left is unmatched: opens never closed, nested
            return brackets.count(b"(") + passes > limit
        brackets = shorter
    return True


def _repeated_key(body: bytes, value: Any) -> str | None:
    """A key that one object of the body holds twice (the decoder keeps the last silently):
    the text's members, counted by their colons outside strings, outnumber the value's keys."""
    keys = 0
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            keys += len(current)
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)
    if body.count(b":") == keys or _JSON_STRING.sub(b"", body).count(b":") == keys:
        return None
    repeated: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except ValueError:
        return "?"
    return repeated[0] if repeated else None


def _provide(value: object) -> Provide:
    """`value` itself, to every handler that names it (one object for the app's life)."""
    return Provide(lambda: value, use_cache=True, sync_to_thread=False)


def create_app(wiring: Wiring, on_shutdown: Sequence[Callable[[], None]] = ()) -> Litestar:
    handlers: list[Any] = [*wiring.route_handlers, *DOCS_ROUTES]  # `/`, `/docs` (api.docs)
    if wiring.metrics is not None:
        handlers.append(metrics_route(wiring.metrics))
    app = Litestar(
        on_shutdown=list(on_shutdown),
        route_handlers=handlers,
        dependencies={name: _provide(value) for name, value in wiring.dependencies.items()},
        middleware=[DefineMiddleware(TokenAuthMiddleware, authenticator=wiring.authenticator)],
        exception_handlers={Exception: handle_exception},
        before_request=check_request_body,
        request_max_body_size=wiring.max_body_bytes,
        openapi_config=openapi_config(),
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
