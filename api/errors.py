"""The error envelope: {"error": {"code", "message", "details"}} with the reference's codes."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from commands.fields import InvalidField
from commands.idempotency import AlreadyClaimed
from commands.ports import (
    MAX_EVENT_BYTES,
    ConcurrencyConflict,
    EventTooLarge,
    NotFound,
    StoreUnavailable,
    UnstorableText,
)
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


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


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


def _validation_details(extra: Any) -> list[Any]:
    details = []
    for item in extra if isinstance(extra, list) else []:
        if isinstance(item, dict):
            field = item.get("key") or item.get("field")
            source = item.get("source")
            details.append({"field": field, "source": source, "message": item.get("message")})
    return details


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    if isinstance(exc, ApiError):
        return envelope(exc.status, exc.message, exc.details)
    if isinstance(exc, ValidationException):
        details = _validation_details(exc.extra)
        message = exc.detail or "invalid request"
        if details and details[0].get("message"):
            message = f"{details[0]['message']}"
        return envelope(400, message, details)
    if isinstance(exc, HTTPException):
        headers = dict(exc.headers or {})
        return envelope(exc.status_code, exc.detail, _validation_details(exc.extra), headers)
    if isinstance(exc, InvalidField):
        return envelope(400, str(exc), [{"field": exc.field, "message": str(exc)}])
    if isinstance(exc, NotFound):
        return envelope(404, f"{exc} not found")
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
    if isinstance(exc, UnstorableText):
        return envelope(400, str(exc), [{"field": exc.path, "message": str(exc)}])
    if isinstance(exc, StoreUnavailable):
        log.warning("store unavailable: %s", exc)
        return envelope(503, "storage is unavailable; retry later", headers={"Retry-After": "1"})
    request_id = request.scope.get("state", {}).get("request_id", "-")
    log.exception(
        "unhandled error on %s %s (request %s)", request.method, request.url.path, request_id
    )
    return envelope(500, f"internal error; request id {request_id}")
