"""Completes Litestar's generated OpenAPI document so that it tells the whole truth:
every operation documents the error envelope for each status it can answer and why (every
refusal the server makes: api.app's body checks, api.errors' mapping of the commands'
errors), 204s have no body, writes document their 202, request bodies refuse unknown fields
as the server does, and the bearer token is the security scheme of every non-public route.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Router
from litestar.openapi import OpenAPIConfig

from api.docs import CONTENT_SECURITY_POLICY, VERSION, DocsPage
from api.errors import ErrorEnvelope
from commands.fields import WHEN_PATTERN
from commands.ports import MAX_EVENT_BYTES

REF = "#/components/schemas/{name}"
SECURITY_SCHEME = "bearerToken"
MAX_JSON_DEPTH = 64  # levels of a JSON body; api.app refuses deeper ones

DESCRIPTION = (
    "General Bots REST API, event-sourced: every write appends events to a log, every read"
    " comes from a read model of it. Send `Authorization: Bearer <token>` (an admin issues"
    " tokens with `POST /api/admin/tokens`); errors answer"
    ' `{"error": {"code", "message", "details"}}` with one entry in `details` per bad field.'
    " The repository's docs/api.md is this reference as one page."
)

_KIB = MAX_EVENT_BYTES // 1024

# Why a request is refused, by status; a route adds its own reasons with `responses=`.
_BODY_400 = (
    "The body is refused: it is not valid JSON (invalid UTF-8, a lone surrogate escape"
    f" such as `\\ud800`), is nested deeper than {MAX_JSON_DEPTH} levels, repeats a key in"
    " an object, or has a field that is missing, unknown, of the wrong type or out of range"
    " (`details` has one entry per bad field, naming it). Text holding U+0000 (NUL) anywhere,"
    " keys included, is refused too: no store can keep it."
)
_NO_BODY_400 = "The request has a body: this route takes none."
_HEADERS_400 = (
    'A malformed `If-Match` (it must be `*` or quoted entity tags such as `"3"`) or'
    " `Idempotency-Key` (1 to 255 visible ASCII characters) header."
)
_UPLOAD_400 = (
    "The upload is refused: the multipart body is malformed, holds a field that is not a file,"
    " no file or more than 100 files, several files for one file path, or a name or path that"
    " is not allowed (the `message` says which)."
)
_UPLOAD_413 = (
    "Too large: a file (or the whole upload) is over `GB_MAX_UPLOAD_MB` (1 GiB by default)"
)
_UPLOAD_415 = "The body is not `multipart/form-data` (each file a part with a filename)"
_QUERY_400 = "A query parameter is malformed or out of range (`details` names it)."
_DESCRIPTIONS = {
    "401": "Missing, malformed, unknown or revoked bearer token (`Authorization: Bearer <token>`)",
    "403": "Not yours: another user's resource, or a bot you do not own",
    "404": "No such resource (or it was deleted), or an id in the path that is not valid"
    " (`task 123 is not a valid id (expected a UUID such as …)`)",
    "409": "Conflict: the resource changed since the version `If-Match` names (`details`"
    " give the expected and the actual version), an `Idempotency-Key` already used with"
    " another body, or a change the resource's state refuses (a name already taken)",
    "503": "A store is unavailable; nothing was changed, retry later",
}
_ADMIN_403 = "The token is not an admin's: admin-only route"
_BODY_413 = (
    "Too large: the body is over `GB_MAX_BODY_BYTES` (1 MiB by default), or the change"
    f" would be recorded as an event over {_KIB} KiB once encoded"
)
_EVENT_413 = f"Too large: the change would be recorded as an event over {_KIB} KiB once encoded"
_415 = (
    "The body is not labelled as JSON: send it with `Content-Type: application/json`"
    " (or a `+json` type)"
)
_202 = (
    "Saved, but the read model has not shown the change within `GB_CONSISTENCY_TIMEOUT`:"
    " read it a moment later from the `Location` header"
)
# Refusals only one route makes.
_OWN_400 = {
    ("post", "/api/designer/dialogs/{dialog_id}/deploy"): (
        "The dialog's draft has errors: none is deployed, and `details` lists them, each with"
        " its `line`, `column` and `message` (as `validate` shows them)."
    ),
}


class Accepted(msgspec.Struct):
    status: str
    location: str


def openapi_config() -> OpenAPIConfig:
    """The app's OpenAPI settings: the document at /schema/openapi.json, and /schema itself
    the same offline page as /docs (api.docs)."""
    return OpenAPIConfig(
        title="gbserver",
        version=VERSION,
        description=DESCRIPTION,
        render_plugins=[DocsPage()],
        openapi_router=Router(
            "/schema",
            route_handlers=[],
            include_in_schema=False,
            response_headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        ),
    )


def _takes_body(operation: dict[str, Any]) -> bool:
    return bool(operation.get("requestBody", {}).get("content", {}).get("application/json"))


def _takes_upload(operation: dict[str, Any]) -> bool:
    return bool(operation.get("requestBody", {}).get("content", {}).get("multipart/form-data"))


def _reasons_400(path: str, method: str, operation: dict[str, Any]) -> str:
    if method == "get":
        return _QUERY_400
    if _takes_upload(operation):
        body = _UPLOAD_400
    else:
        body = _BODY_400 if _takes_body(operation) else _NO_BODY_400
    reasons = [body, _HEADERS_400]
    own = _OWN_400.get((method, path))
    return " ".join([own, *reasons] if own else reasons)


def _errors_for(path: str, method: str, operation: dict[str, Any], public: bool) -> dict[str, str]:
    """Each status the server may answer this operation with an error, and why."""
    codes = {"400": _reasons_400(path, method, operation), "503": _DESCRIPTIONS["503"]}
    if not public:
        codes["401"] = _DESCRIPTIONS["401"]
        codes["403"] = _ADMIN_403 if path.startswith("/api/admin/") else _DESCRIPTIONS["403"]
    if "{" in path:
        codes["404"] = _DESCRIPTIONS["404"]
    if method in ("post", "put", "delete"):
        codes["409"] = _DESCRIPTIONS["409"]
    if method in ("post", "put"):
        codes["413"] = _BODY_413 if _takes_body(operation) else _EVENT_413
    if _takes_upload(operation):
        codes["413"] = _UPLOAD_413
        codes["415"] = _UPLOAD_415
    elif _takes_body(operation):
        codes["415"] = _415
    return codes


def _declared(response: Any) -> bool:
    """A response a route declares with a schema of its own (Litestar's default 400 is inline)."""
    content = (response or {}).get("content", {}).get("application/json", {})
    return bool(content.get("schema", {}).get("$ref"))


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=ref)}}}


def _joined(own: str, general: str) -> str:
    """A route's own description of a status, then the reasons every such route has."""
    own = own.strip()
    if not own or general in own:
        return own or general
    return f"{own if own.endswith('.') else own + '.'} {general}"


def _mark_date_times(node: Any) -> None:
    """Strings constrained to RFC 3339 date-times are also tagged with their JSON Schema format."""
    if isinstance(node, dict):
        if node.get("pattern") == WHEN_PATTERN:
            node["format"] = "date-time"
        for value in node.values():
            _mark_date_times(value)
    elif isinstance(node, list):
        for value in node:
            _mark_date_times(value)


def complete(schema: dict[str, Any], public_paths: tuple[str, ...]) -> None:
    """`public_paths`: the patterns of the paths served without a token (api.auth)."""
    _, components = msgspec.json.schema_components([ErrorEnvelope, Accepted], ref_template=REF)
    parts = schema.setdefault("components", {})
    parts.setdefault("schemas", {}).update(components)
    parts.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A token an admin issued (`POST /api/admin/tokens`), or the admin"
        " token the server printed at its first start (`GB_ADMIN_TOKEN`)",
    }
    schemas = parts["schemas"]
    _mark_date_times(schema)
    for path, item in schema.get("paths", {}).items():
        public = any(re.search(pattern, path) for pattern in public_paths)
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            operation["security"] = [] if public else [{SECURITY_SCHEME: []}]
            responses = operation.setdefault("responses", {})
            for code, why in _errors_for(path, method, operation, public).items():
                if _declared(responses.get(code)):
                    if code == "400":  # the route's own reasons, and the general ones
                        responses[code]["description"] = _joined(
                            responses[code].get("description", ""), why
                        )
                    continue  # the route documents this status itself (health's 503)
                responses[code] = {"description": why, "content": _json("ErrorEnvelope")}
            if "204" in responses:
                responses["204"].pop("content", None)
            if method in ("post", "put", "delete") and not _declared(responses.get("202")):
                responses["202"] = {
                    "description": _202,
                    "headers": {
                        "Location": {
                            "description": "Where to read the change once it shows",
                            "schema": {"type": "string"},
                        }
                    },
                    "content": _json("Accepted"),
                }
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            ref = (body or {}).get("schema", {}).get("$ref", "")
            if ref:
                schemas[ref.rsplit("/", 1)[-1]]["additionalProperties"] = False
