"""The server documents itself: `/` links the docs, the health and the OpenAPI document; `/docs`
(and `/schema`) is Swagger UI from packaged files, loading nothing from another origin; the
OpenAPI document states every refusal the server makes; docs/api.md is what api.guide renders
from the served document, with every operation, and links nothing outside the repository.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from api import guide, openapi
from api.docs import CONTENT_SECURITY_POLICY
from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def served(server: ServerProcess) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/schema/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method])
        for path, item in doc["paths"].items()
        for method in METHODS
        if method in item
    ]


# --- `/` and `/docs` -----------------------------------------------------------------------


def test_home_links_the_docs_the_health_and_the_openapi_document(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/")  # no token: public
    assert r.status_code == 200, r.text
    home = r.json()
    assert home["name"] == "gbserver" and home["version"]
    assert home["links"] == {
        "docs": "/docs",
        "health": "/api/health",
        "openapi": "/schema/openapi.json",
    }
    docs = httpx.get(f"{server.url}{home['links']['docs']}")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert httpx.get(f"{server.url}{home['links']['health']}").json()["status"] == "healthy"
    spec = httpx.get(f"{server.url}{home['links']['openapi']}").json()
    assert spec["openapi"].startswith("3.1")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []  # (tag, address)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.found.append((tag, value))


_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*))\s*\)""")
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""")


def _css_addresses(css: str) -> list[str]:
    found = []
    for pattern in (_CSS_URL, _CSS_IMPORT):
        for match in pattern.finditer(css):
            found.append(next(group for group in match.groups() if group is not None).strip())
    return found


def _same_origin_or_inline(base: str, address: str) -> bool:
    if address.startswith("data:"):
        return True  # inline: nothing is fetched
    target = urlsplit(urljoin(base, address))
    origin = urlsplit(base)
    return (target.scheme, target.netloc) == (origin.scheme, origin.netloc)


@pytest.mark.parametrize("page", ["/docs", "/schema"])
def test_the_docs_page_loads_nothing_from_another_origin(server: ServerProcess, page: str) -> None:
    base = f"{server.url}{page}"
    r = httpx.get(base)  # no token: public
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    parser = _Links()
    parser.feed(r.text)
    addresses = [address for _, address in parser.found]
    scripts = [address for tag, address in parser.found if tag == "script"]
    styles = [a for a in addresses if a.endswith(".css")]
    assert scripts and styles, r.text  # the page does load its script and stylesheet
    for css in styles:
        sheet = httpx.get(urljoin(base, css))
        assert sheet.status_code == 200 and sheet.headers["content-type"].startswith("text/css")
        found = _css_addresses(sheet.text)
        assert found  # the stylesheet's icons: inline
        addresses += [urljoin(urljoin(base, css), a) for a in found]
    for address in addresses:
        assert _same_origin_or_inline(base, address), address
        if not address.startswith("data:"):
            got = httpx.get(urljoin(base, address))
            assert got.status_code == 200, (address, got.status_code)
    # The page's own script points Swagger UI at this server and off the online validator.
    init = [s for s in scripts if "gbserver" in s]
    assert init, scripts
    script = httpx.get(urljoin(base, init[0])).text
    assert '"/schema/openapi.json"' in script and "validatorUrl: null" in script
    assert "http" not in script


@pytest.mark.parametrize("page", ["/docs", "/schema"])
def test_the_docs_page_tells_the_browser_to_load_from_its_origin_only(
    server: ServerProcess, page: str
) -> None:
    policy = httpx.get(f"{server.url}{page}").headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    for sources in directives.values():
        assert "http" not in sources and "*" not in sources


def test_only_the_page_files_are_served(server: ServerProcess) -> None:
    assets = f"{server.url}/docs/assets"
    assert httpx.get(f"{assets}/swagger-ui-bundle.js").status_code == 200
    for name in ("swagger-editor.js", "index.html", "LICENSE", "..%2F__init__.py", "nothing"):
        r = httpx.get(f"{assets}/{name}")
        assert r.status_code == 404, name
        assert r.json()["error"]["code"] == "NOT_FOUND"


def test_public_paths_are_exactly_the_public_routes(server: ServerProcess) -> None:
    for path in ("/", "/docs", "/schema", "/schema/openapi.json", "/api/health"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
    # A path that merely contains a public one still needs a token.
    for path in ("/api/bots/schema/owners", "/api/bots/docs/owners", "/api/tasks"):
        assert httpx.get(f"{server.url}{path}").status_code == 401, path


# --- the OpenAPI document states every refusal -----------------------------------------------


def test_every_operation_states_its_refusals(served: dict[str, Any]) -> None:
    assert served["components"]["securitySchemes"][openapi.SECURITY_SCHEME]["scheme"] == "bearer"
    for path, method, operation in operations(served):
        where = f"{method.upper()} {path}"
        answers = operation["responses"]
        public = not operation["security"]
        assert public == (path in ("/", "/api/health")), where
        assert "503" in answers, where
        if not public:
            assert {"401", "403"} <= set(answers), where
        if "{" in path:
            assert "not a valid id" in answers["404"]["description"], where
        if method == "get":
            continue
        assert {"202", "400", "409"} <= set(answers), where
        refusal = answers["400"]["description"]
        assert "If-Match" in refusal and "Idempotency-Key" in refusal, where
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            for reason in ("U+0000", "surrogate", "nested deeper than 64", "repeats a key"):
                assert reason in refusal, (where, reason)
            assert "GB_MAX_BODY_BYTES" in answers["413"]["description"], where
            assert "512 KiB" in answers["413"]["description"], where
            assert "Content-Type: application/json" in answers["415"]["description"], where
        elif "multipart/form-data" in operation.get("requestBody", {}).get("content", {}):
            assert "multipart body is malformed" in refusal, where
            assert "GB_MAX_UPLOAD_MB" in answers["413"]["description"], where
            assert "multipart/form-data" in answers["415"]["description"], where
        else:
            assert "takes none" in refusal, where
            assert "415" not in answers, where
    deploy = served["paths"]["/api/designer/dialogs/{dialog_id}/deploy"]["post"]
    assert "has errors" in deploy["responses"]["400"]["description"]


def _documented(served: dict[str, Any], method: str, path: str, status: int) -> bool:
    return str(status) in served["paths"][path][method]["responses"]


def test_the_refusals_the_server_makes_are_the_documented_ones(
    served: dict[str, Any], admin: httpx.Client
) -> None:
    """The statuses the server answers to each kind of refused request are in the document."""
    json_type = {"Content-Type": "application/json"}
    tries: list[tuple[str, str, str, dict[str, Any], int]] = [
        ("post", "/api/tasks", "/api/tasks", {"content": b'{"title": "a\\u0000b"}'}, 400),
        ("post", "/api/tasks", "/api/tasks", {"content": b'{"title": "x", "title": "y"}'}, 400),
        ("post", "/api/tasks", "/api/tasks", {"content": b"[" * 100 + b"]" * 100}, 400),
        ("post", "/api/tasks", "/api/tasks", {"content": b"title=x", "plain": True}, 415),
        ("post", "/api/tasks", "/api/tasks", {"content": b"{" + b" " * 1_100_000 + b"}"}, 413),
        ("get", "/api/tasks/{task_id}", "/api/tasks/123", {}, 404),
        (
            "post",
            "/api/sessions/{session_id}/close",
            "/api/sessions/3fa85f64-5717-4562-b3fc-2c963f66afa6/close",
            {"content": b"{}"},
            400,
        ),
    ]
    for method, template, path, how, status in tries:
        headers = {"Content-Type": "text/plain"} if how.get("plain") else json_type
        r = admin.request(method.upper(), path, content=how.get("content"), headers=headers)
        assert r.status_code == status, (path, how, r.text[:300])
        assert _documented(served, method, template, status), (method, template, status)
    # A deploy of a dialog whose draft has errors: 400, with the errors as details.
    bot = "docs-bot"
    created = admin.post(
        "/api/designer/dialogs",
        json={"name": "broken", "bot_id": bot, "content": 'TALK "unclosed\nIF x THEN\n'},
    )
    assert created.status_code == 201, created.text
    r = admin.post(f"/api/designer/dialogs/{created.json()['id']}/deploy")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"] and "line" in r.json()["error"]["details"][0]
    assert _documented(served, "post", "/api/designer/dialogs/{dialog_id}/deploy", 400)


# --- docs/api.md -----------------------------------------------------------------------------


def test_the_guide_is_generated_from_the_served_document(served: dict[str, Any]) -> None:
    written = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert written == guide.render(served), (
        "docs/api.md is out of date: run `.venv/bin/python -m api.guide --write`"
    )
    # The generator's own document (built without a server) is the served one.
    assert guide.document() == served


def test_the_guide_has_every_operation_with_its_errors(served: dict[str, Any]) -> None:
    text = guide.render(served)
    for path, method, operation in operations(served):
        heading = f"### {operation['summary']}: {method.upper()} {path}"
        assert heading in text, heading
        section = text.split(heading, 1)[1].split("\n### ", 1)[0]
        assert f"`{method.upper()} {path}`" in section
        assert "**Example request**" in section and "curl -s" in section
        for code in operation["responses"]:
            assert f"| `{code}`" in section, (heading, code)
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body:
            schema = served["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[1]]
            for name in schema["properties"]:
                assert f"| `{name}` |" in section, (heading, name)
    for topic in ("Authentication", "Errors", "Pages", "If-Match", "Idempotency-Key", "Limits"):
        assert f"## {topic}" in text or topic in text, topic


def test_the_guide_links_nothing_outside_the_repository() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert "https://" not in text
    anchors = {
        guide._anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")
    }
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, link
        else:
            assert not urlsplit(link).scheme, link
            assert (ROOT / "docs" / link.split("#", 1)[0]).is_file(), link
