"""The server's own pages, public and offline: `/` links the docs, the health and the OpenAPI
document; `/docs` (and `/schema`, api.openapi) is Swagger UI, whose script, stylesheet and icon
are the static files of the `swagger-ui-py` package, served from here. Nothing on the page
loads from another origin: the Content-Security-Policy says so to the browser too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.openapi.plugins import OpenAPIRenderPlugin
from litestar.response import File

from api.examples import examples

NAME = "gbserver"
VERSION = "0.1.0"
DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/schema/openapi.json"
HEALTH_PATH = "/api/health"
GUIDE_PATH = "docs/api.md"  # in the repository

# The page's own script: Swagger UI reads the OpenAPI document from this server. No validator
# badge (its default asks validator.swagger.io), no "try it out" until the reader asks.
_INIT_JS = f"""window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
"""

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{NAME} API</title>
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" sizes="32x32" href="{ASSETS_PATH}/favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{ASSETS_PATH}/favicon-16x16.png">
</head>
<body>
<noscript>This page needs JavaScript. The same reference is in the repository's
{GUIDE_PATH}, and the OpenAPI document is at <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</noscript>
<div id="swagger-ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{ASSETS_PATH}/gbserver-docs.js"></script>
</body>
</html>
"""

# Same origin only. Swagger UI styles its elements inline and draws some icons as data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)
_PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY}

# The package's files that the page uses (the package also ships Swagger Editor: not served).
_STATIC_FILES = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_ASSET_CACHE = "public, max-age=86400"


def swagger_ui_static() -> Path:
    """The `static` folder of the installed swagger-ui-py package (not imported: its module
    pulls in template machinery the page does not need)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("the swagger-ui-py package is not installed (pip install -e .)")
    return Path(spec.origin).parent / "static"


class Links(msgspec.Struct):
    docs: str
    openapi: str
    health: str


class Home(msgspec.Struct):
    name: str
    version: str
    description: str
    links: Links


@get(
    "/",
    sync_to_thread=False,
    tags=["Docs"],
    operation_id="getHome",
    operation_class=examples(
        response={
            "Where to start": {
                "name": NAME,
                "version": VERSION,
                "description": "General Bots REST API, event-sourced."
                " The API's reference is at /docs.",
                "links": {"docs": DOCS_PATH, "openapi": OPENAPI_PATH, "health": HEALTH_PATH},
            }
        }
    ),
    summary="Links to the docs, the health check and the OpenAPI document",
    description="Where to start: the API's reference at `/docs` (Swagger UI, served by this"
    " server, no internet needed), the health check and the OpenAPI document. Public.",
)
def home() -> Home:
    return Home(
        name=NAME,
        version=VERSION,
        description="General Bots REST API, event-sourced. The API's reference is at /docs.",
        links=Links(docs=DOCS_PATH, openapi=OPENAPI_PATH, health=HEALTH_PATH),
    )


@get(DOCS_PATH, sync_to_thread=False, include_in_schema=False)
def docs_page() -> Response[str]:
    return Response(_PAGE, media_type="text/html", headers=_PAGE_HEADERS)


@get(f"{ASSETS_PATH}/{{name:str}}", sync_to_thread=False, include_in_schema=False)
def docs_asset(name: str) -> Response[Any]:
    if name == "gbserver-docs.js":
        return Response(
            _INIT_JS,
            media_type="text/javascript",
            headers={"Cache-Control": "no-cache"},
        )
    media = _STATIC_FILES.get(name)
    if media is None:
        raise NotFoundException(f"no file {name} in {ASSETS_PATH}")
    return File(
        swagger_ui_static() / name,
        content_disposition_type="inline",
        media_type=media,
        headers={"Cache-Control": _ASSET_CACHE},
    )


class DocsPage(OpenAPIRenderPlugin):
    """`/schema` itself: the same page as `/docs` (Litestar's default is ReDoc from a CDN)."""

    def __init__(self) -> None:
        super().__init__(path="/")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _PAGE.encode()


ROUTES = (home, docs_page, docs_asset)
