"""Examples in the OpenAPI document: a request body and an answer per operation, as the server
takes and gives them (tests/test_openapi_docs.py sends every example request body to a server
and checks every example against its schema, so they cannot rot).

Litestar puts `Body(examples=...)` into the body's schema (wrapping its `$ref`); these go where
OpenAPI keeps an operation's examples instead, the media types of its request body and of its
success response, through the route's `operation_class`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from litestar.openapi.spec import Operation

# Values the examples share: one user and her colleague, and times as the server writes them.
ANA = "ana@example.com"
BEA = "bea@example.com"
CREATED_AT = "2024-01-10T09:30:12.481516Z"
UPDATED_AT = "2024-01-10T09:42:05.112358Z"


# The key Litestar gives an example without an id ("errorenvelope-example-1").
_NUMBERED = re.compile(r"-example-[0-9]+$")


def _slug(summary: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", summary.lower()).strip("-")


def _named(examples: Mapping[str, Any]) -> dict[str, Any]:
    """Each example keyed by a slug of its summary (the key names it in the docs UI)."""
    return {
        _slug(summary): {
            "summary": summary,
            "value": copy.deepcopy(value),
        }
        for summary, value in examples.items()
    }


def examples(
    request: Mapping[str, Any] | None = None, response: Mapping[str, Any] | None = None
) -> type[Operation]:
    """An operation class (`operation_class=` of a route) adding examples, each given as
    `{summary: value}`: `request` to the request body, `response` to the success answer
    (the operation's first 2xx response with a body).

    They are added to the operation's rendered form: rendering drops the `None`s of the
    spec's own objects, and an example keeps its `null`s (`"completed_at": null`)."""

    class Documented(Operation):
        def to_schema(self) -> dict[str, Any]:
            rendered = super().to_schema()
            if request:
                for media in rendered.get("requestBody", {}).get("content", {}).values():
                    media["examples"] = _named(request)
            answers: dict[str, Any] = rendered.get("responses", {})
            for code in sorted(answers) if response else ():
                if code.startswith("2") and answers[code].get("content"):
                    for media in answers[code]["content"].values():
                        media["examples"] = _named(response or {})
                    break
            for answer in answers.values():  # `ResponseSpec(examples=...)`: named by summary
                for media in answer.get("content", {}).values():
                    if "examples" not in media:
                        continue
                    media["examples"] = {
                        _slug(e["summary"]) if "summary" in e and _NUMBERED.search(key) else key: e
                        for key, e in media["examples"].items()
                    }
            return rendered

    return Documented


# Rules many operations share, as their descriptions state them.
LAGGING = (
    "The answer comes once the read model shows the change (read-your-writes); if that takes"
    " longer than `GB_CONSISTENCY_TIMEOUT` seconds (default 5), the change is saved all the"
    " same and the answer is `202` with a `Location` header to read it from a moment later."
)
IDEMPOTENT = (
    "An `Idempotency-Key` header (1 to 255 visible ASCII characters) makes a retry safe: the"
    " same key with the same body answers with what the first request created (and"
    " `Idempotent-Replayed: true`) instead of creating it again; the same key with another"
    " body is `409`."
)
CONDITIONAL = (
    '`If-Match` with the `ETag` of your last read (`"3"`) makes it conditional: `409` when'
    " the {thing} has changed since; without it (or with `*`) it applies to the current"
    " version."
)
