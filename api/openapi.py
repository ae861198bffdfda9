"""Completes Litestar's generated OpenAPI document so that it tells the whole truth:
every operation documents the error envelope for each status it can answer, 204s have no
body, writes document their 202, and request bodies refuse unknown fields as the server does.
"""

from __future__ import annotations

from typing import Any

import msgspec

from api.errors import ErrorEnvelope
from commands.fields import WHEN_PATTERN

REF = "#/components/schemas/{name}"

_DESCRIPTIONS = {
    "400": "Malformed or invalid input (the details name the field)",
    "401": "Missing or invalid bearer token",
    "403": "Another user's resource, or an admin-only route",
    "404": "No such resource",
    "405": "Method not allowed on this path",
    "409": "Version conflict, or an Idempotency-Key reused for a different request",
    "413": "Request body larger than GB_MAX_BODY_BYTES",
    "503": "A store is unavailable; retry later",
}


class Accepted(msgspec.Struct):
    status: str
    location: str


def _errors_for(path: str, method: str, public: bool) -> list[str]:
    codes = ["400", "503"]
    if not public:
        codes += ["401", "403"]
    if "{" in path:
        codes.append("404")
    if method in ("post", "put", "delete"):
        codes.append("409")
    if method in ("post", "put"):
        codes.append("413")
    return codes


def _declared(response: Any) -> bool:
    """A response a route declares with a schema of its own (Litestar's default 400 is inline)."""
    content = (response or {}).get("content", {}).get("application/json", {})
    return bool(content.get("schema", {}).get("$ref"))


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=ref)}}}


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
    _, components = msgspec.json.schema_components([ErrorEnvelope, Accepted], ref_template=REF)
    schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
    schemas = schema["components"]["schemas"]
    _mark_date_times(schema)
    for path, item in schema.get("paths", {}).items():
        public = path.startswith(public_paths)
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code in _errors_for(path, method, public):
                if _declared(responses.get(code)):
                    continue  # the route documents this status itself (health's 503)
                responses[code] = {
                    "description": _DESCRIPTIONS[code],
                    "content": _json("ErrorEnvelope"),
                }
            if "204" in responses:
                responses["204"].pop("content", None)
            if method in ("post", "put", "delete") and not _declared(responses.get("202")):
                responses["202"] = {
                    "description": "Saved; the read model has not caught up yet (see Location)",
                    "content": _json("Accepted"),
                }
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            ref = (body or {}).get("schema", {}).get("$ref", "")
            if ref:
                schemas[ref.rsplit("/", 1)[-1]]["additionalProperties"] = False
