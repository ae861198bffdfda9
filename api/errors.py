"""The error envelope: {"error": {"code", "message", "details"}} with the reference's codes.

Messages are sentences for the person who sent the request: a validation error names every
bad field and what it expects (commands.validation), a 404 names what was not found (or the
route that was meant), a 405 the methods that are allowed.
"""

from __future__ import annotations

import difflib
import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.routes import HTTPRoute

from commands.fields import InvalidField
from commands.idempotency import AlreadyClaimed
from commands.ports import (
    MAX_EVENT_BYTES,
    BlobTooLarge,
    ConcurrencyConflict,
    EventTooLarge,
    KbIndexUnavailable,
    NotFound,
    StoreUnavailable,
    UnstorableText,
)
from commands.validation import UUID_EXAMPLE, FieldProblem, explain, explain_value, summary
from domain.common import Conflict, DomainError, Forbidden, Gone, VersionMismatch

log = logging.getLogger("gbserver.api")

CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    416: "RANGE_NOT_SATISFIABLE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


class ErrorBody(msgspec.Struct):
    code: str
    message: str
    details: list[Any] = []


class ErrorEnvelope(msgspec.Struct):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, message, [{"field": field, "message": message}] if field else None)


class ResourceNotFound(ApiError):
    """404 for a resource the route names; the id in the request's path is added to `what`."""

    def __init__(self, what: str) -> None:
        super().__init__(404, f"{what} not found")
        self.what = what


def not_found(what: str) -> ApiError:
    return ResourceNotFound(what)


# The request's JSON body, once decoded (api.app's before-request check), in the scope's state:
# an exception handler explains a body that did not convert from it.
BODY_STATE_KEY = "gb_json_body"
# Kinds of resource by the name of their path parameter, where the name alone does not say.
_KINDS = {"doc": "document", "letter": "dead letter"}
_PARAM = re.compile(r"^{(\w+)(?::(\w+))?}$")


def envelope(
    status: int,
    message: str,
    details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorEnvelope]:
    return Response(
        ErrorEnvelope(ErrorBody(CODES.get(status, "ERROR"), message, details or [])),
        status_code=status,
        headers=headers,
    )


def kind_of(parameter: str) -> str:
    """`task_id` -> task, `doc_id` -> document: the kind of resource a path parameter names."""
    base = parameter.removesuffix("_id")
    return _KINDS.get(base, base.replace("_", " "))


def _path_id(request: Request[Any, Any, Any]) -> tuple[str, str] | None:
    """(kind, id) of the path parameter naming the request's resource (the last `*_id`)."""
    params = request.scope.get("path_params") or {}
    named = [(name, value) for name, value in params.items() if name.endswith("_id")]
    if not named:
        return None
    name, value = named[-1]
    return kind_of(name), str(value)


def _resource_not_found(request: Request[Any, Any, Any], what: str | None, text: str) -> str:
    """ "task 3fa8... not found": the kind (`what`, or the path parameter's) and the id."""
    found = _path_id(request)
    if found is None:
        return f"{what or text} not found"
    kind, ident = found
    if what is None:  # a command's NotFound carries the id alone
        return f"{kind} {text} not found" if text == ident else f"{text} not found"
    if ident in what:
        return f"{what} not found"
    head, sep, tail = what.partition(" version ")
    return f"{head} {ident}{sep}{tail} not found"


def _body_problems(request: Request[Any, Any, Any]) -> list[dict[str, Any]] | None:
    """Every bad field of the request's JSON body (None: no body, or the handler takes none)."""
    state = request.scope.get("state") or {}
    if BODY_STATE_KEY not in state:
        return None
    data_type = _parameter_type(request, "data")
    if not (isinstance(data_type, type) and issubclass(data_type, msgspec.Struct)):
        return None
    problems = explain(data_type, state[BODY_STATE_KEY])
    return [{"field": p.field, "source": "body", "message": p.message} for p in problems] or None


def _parameter_type(request: Request[Any, Any, Any], name: str) -> Any:
    """The type the route handler's signature model converts `name` to (None: no such)."""
    model = getattr(request.scope.get("route_handler"), "signature_model", None)
    if model is None:
        return None
    for info in msgspec.structs.fields(model):
        if info.name == name:
            return info.type
    return None


def _parameter_problem(request: Request[Any, Any, Any], item: dict[str, Any]) -> dict[str, Any]:
    """A query, path or header parameter's error, said as a sentence."""
    key, source = str(item.get("key")), item.get("source")
    raw: Any = None
    if source == "query":
        raw = request.query_params.get(key)
    elif source == "path":
        raw = (request.scope.get("path_params") or {}).get(key)
    elif source == "header":
        raw = request.headers.get(key)
    annotation = _parameter_type(request, key)
    message = f"`{key}`: {_sentence(str(item.get('message')))}"
    if raw is None and "issing" in message:
        message = f"`{key}` is required"
    elif annotation is not None and raw is not None:
        found = explain_value(annotation, raw, key)
        if found is not None:
            message = found.message
    return {"field": key, "source": source, "message": message}


def _sentence(text: str) -> str:
    """A library's message as the end of a sentence: without its `$.path`, lower case first."""
    text = text.split(" - at `$", 1)[0]
    return text[:1].lower() + text[1:]


def _validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorEnvelope]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    items = [item for item in extra if isinstance(item, dict)]
    body = [item for item in items if item.get("source") == "body"]
    details: list[dict[str, Any]] = []
    if body:
        explained = _body_problems(request)
        details += explained or [
            {
                "field": None,
                "source": "body",
                "message": f"the body: {_sentence(str(i.get('message')))}",
            }
            for i in body
        ]
    params = [_parameter_problem(request, item) for item in items if item.get("source") != "body"]
    details += params
    if not details:
        return envelope(400, _sentence(exc.detail or "invalid request"))
    message = summary_of(details)
    return envelope(400, message, details)


def summary_of(details: list[dict[str, Any]]) -> str:
    """The top-level message of a 400: the one sentence, or "N invalid fields: ...; ..."."""
    return summary([FieldProblem(d.get("field"), str(d.get("message"))) for d in details])


def _template(route: HTTPRoute) -> str:
    """A route's path as the docs show it: `/api/tasks/{task_id}`."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", route.path)


def _id_problem(request: Request[Any, Any, Any], route: HTTPRoute) -> dict[str, Any] | None:
    """The path parameter of `route` that the request's path fails to fill (an id that is not a
    UUID); None when the path does not have this route's shape."""
    asked = request.url.path.rstrip("/").split("/")
    shape = route.path.rstrip("/").split("/")
    if len(asked) != len(shape):
        return None
    parsers = route.path_parameters
    bad: dict[str, Any] | None = None
    for segment, template in zip(asked, shape, strict=True):
        param = _PARAM.match(template)
        if param is None:
            if segment != template:
                return None
            continue
        definition = parsers.get(param.group(1))
        if definition is None or definition.parser is None or bad is not None:
            continue
        try:
            definition.parser(segment)
        except ValueError:
            kind = kind_of(definition.name)
            expected = {"UUID": f"a UUID such as {UUID_EXAMPLE}", "int": "an integer"}.get(
                definition.type.__name__, f"a {definition.type.__name__}"
            )
            bad = {
                "field": definition.name,
                "source": "path",
                "message": f"{kind} {segment} is not a valid id (expected {expected})",
            }
    return bad


def _routes(request: Request[Any, Any, Any]) -> list[HTTPRoute]:
    return [route for route in request.app.routes if isinstance(route, HTTPRoute)]


def _closest(request: Request[Any, Any, Any], routes: list[HTTPRoute]) -> str | None:
    """The route the request most likely meant: its template, ids filled from the request."""
    asked = request.url.path.rstrip("/") or "/"
    segments = asked.split("/")
    candidates: dict[str, str] = {}
    for route in routes:
        shown = _template(route)
        candidates.setdefault(shown, shown)
        shape = shown.split("/")
        if len(shape) == len(segments):
            filled = "/".join(
                given if _PARAM.match(part) else part
                for part, given in zip(shape, segments, strict=True)
            )
            candidates.setdefault(filled, filled)
    close = difflib.get_close_matches(asked, list(candidates), n=1, cutoff=0.6)
    return candidates[close[0]] if close and close[0] != asked else None


def _route_not_found(request: Request[Any, Any, Any]) -> Response[ErrorEnvelope]:
    routes = _routes(request)
    for route in routes:
        problem = _id_problem(request, route)
        if problem is not None:
            return envelope(404, problem["message"], [problem])
    method, path = request.method, request.url.path
    serving = [r for r in routes if method in r.methods]
    hint = _closest(request, serving) or _closest(request, routes)
    if hint:
        return envelope(404, f"no route {method} {path}; did you mean {hint}?")
    return envelope(404, f"no route {method} {path}; the API's routes are listed at /docs")


def _method_not_allowed(
    request: Request[Any, Any, Any], exc: MethodNotAllowedException
) -> Response[ErrorEnvelope]:
    headers = dict(exc.headers or {})
    allowed = headers.get("allow") or headers.get("Allow") or ""
    method, path = request.method, request.url.path
    methods = ", ".join(m.strip() for m in allowed.split(",") if m.strip())
    message = f"{method} is not allowed on {path}; it allows {methods}"
    elsewhere = _closest(request, [r for r in _routes(request) if method in r.methods])
    if elsewhere:
        message += f" ({method} is on {elsewhere})"
    return envelope(405, message, headers=headers)


def invalid_json(exc: Exception) -> str:
    """What is wrong with a body that is not JSON, in words."""
    text = _sentence(str(exc))
    words = {
        "input data was truncated": "it ends before the JSON value does",
        "number out of range": "a number is out of range",
        "integer value out of range": "a number is out of range",
        "invalid UTF-8 encoded string": "it is not valid UTF-8",
    }
    return f"the body is not valid JSON: {words.get(text, text)}"


def _validation_details(extra: Any) -> list[Any]:
    details = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            field = item.get("key") or item.get("field")
            source = item.get("source")
            details.append({"field": field, "source": source, "message": item.get("message")})
    return details


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    if isinstance(exc, ResourceNotFound):
        return envelope(404, _resource_not_found(request, exc.what, exc.what), exc.details)
    if isinstance(exc, ApiError):
        return envelope(exc.status, exc.message, exc.details)
    if isinstance(exc, ValidationException):
        return _validation(request, exc)
    if isinstance(exc, MethodNotAllowedException):
        return _method_not_allowed(request, exc)
    if isinstance(exc, NotFoundException):
        return _route_not_found(request)
    if isinstance(exc, HTTPException) and isinstance(exc.__cause__, SerializationException):
        return envelope(400, invalid_json(exc.__cause__))
    if isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})
        return envelope(exc.status_code, exc.detail, _validation_details(exc.extra), headers)
    if isinstance(exc, InvalidField):
        return envelope(400, str(exc), [{"field": exc.field, "message": str(exc)}])
    if isinstance(exc, NotFound):
        return envelope(404, _resource_not_found(request, None, str(exc)))
    if isinstance(exc, Conflict):
        return envelope(409, str(exc))
    if isinstance(exc, Gone):
        return envelope(404, str(exc))
    if isinstance(exc, Forbidden):
        return envelope(403, str(exc))
    if isinstance(exc, VersionMismatch):
        return envelope(409, str(exc), [{"expected": exc.expected, "actual": exc.actual}])
    if isinstance(exc, ConcurrencyConflict):
        return envelope(409, "the resource was changed by another request; reload and retry")
    if isinstance(exc, AlreadyClaimed):
        return envelope(409, "this Idempotency-Key was already used with a different request")
    if isinstance(exc, DomainError):
        return envelope(400, str(exc))
    if isinstance(exc, EventTooLarge):
        return envelope(413, str(exc), [{"size": exc.size, "limit": MAX_EVENT_BYTES}])
    if isinstance(exc, BlobTooLarge):  # the areas say which limit; this is the fallback
        return envelope(413, str(exc), [{"limit": exc.limit}])
    if isinstance(exc, UnstorableText):
        return envelope(400, str(exc), [{"field": exc.path, "message": str(exc)}])
    if isinstance(exc, RecursionError):  # never expected past api.app's depth limit
        log.warning("recursion error on %s %s", request.method, request.url.path)
        return envelope(400, "the request is nested too deeply to handle")
    if isinstance(exc, KbIndexUnavailable):
        log.warning("knowledge-base index unavailable: %s", exc)
        return envelope(
            503, "the knowledge base is unavailable; retry later", headers={"Retry-After": "1"}
        )
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return envelope(503, "storage is unavailable; retry later", headers={"Retry-After": "1"})
    request_id = request.scope.get("state", {}).get("request_id", "-")
    log.exception(
        "unhandled error on %s %s (request %s)", request.method, request.url.path, request_id
    )
    return envelope(500, f"internal error; request id {request_id}")
