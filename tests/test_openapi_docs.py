"""The OpenAPI document explains the API to a newcomer (issue 9): every operation has a real
summary, a description, a tag of its area and a stable id; every parameter is described;
every request body and every answer has examples. The examples cannot rot: each one is
checked against its schema, and each example request body is sent to a server of its own,
which must accept it (and answer with the fields the example answer shows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from tests.server import ServerProcess

AREAS = {
    "Tasks",
    "Paper",
    "Sessions",
    "Designer",
    "Bots",
    "Drive",
    "Email",
    "Knowledge base",
    "Admin",
    "Health",
    "Metrics",
    "Docs",
}
METHODS = ("get", "post", "put", "patch", "delete")

# Every operation that takes a body, in the order a newcomer would call them: each one's
# example bodies are sent as written; `admin` says who sends them (else the user the first
# example token is issued for). Path ids come from what the creates answered, other path
# parameters from their examples.
WRITES: list[tuple[str, str, bool]] = [
    ("post", "/api/admin/tokens", True),
    ("post", "/api/tasks", False),
    ("put", "/api/tasks/{task_id}", False),
    ("post", "/api/paper", False),
    ("put", "/api/paper/{doc_id}", False),
    ("post", "/api/designer/dialogs", False),
    ("put", "/api/designer/dialogs/{dialog_id}", False),
    ("put", "/api/bots/{bot_id}/owners", False),
    ("post", "/api/sessions", False),
    ("post", "/api/sessions/{session_id}/messages", False),
    ("post", "/api/email/send", False),
    ("post", "/api/email/drafts", False),
    ("put", "/api/email/drafts/{mail_id}", False),
    ("post", "/api/email/accounts", False),
    ("put", "/api/admin/projections/{name}/policy", True),
    ("post", "/api/kb/reindex", True),
]


def _spec(server: ServerProcess) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/schema/openapi.json", timeout=30)
    assert r.status_code == 200, r.text
    spec: dict[str, Any] = r.json()
    return spec


@pytest.fixture(scope="module")
def spec(server: ServerProcess) -> dict[str, Any]:
    return _spec(server)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _json_content(part: dict[str, Any]) -> dict[str, Any] | None:
    content: dict[str, Any] | None = part.get("content", {}).get("application/json")
    return content


def _example_values(media: dict[str, Any]) -> list[Any]:
    return [e["value"] for e in media.get("examples", {}).values()]


def test_every_operation_has_a_summary_description_tag_and_id(spec: dict[str, Any]) -> None:
    problems: list[str] = []
    ids: list[str] = []
    for method, path, op in _operations(spec):
        where = f"{method.upper()} {path}"
        summary = op.get("summary", "")
        # Litestar's default is the handler's name in CamelCase ("ListItems", "CreateItem").
        if not re.fullmatch(r"[A-Z][a-z']*( [^ ]+)+", summary):
            problems.append(f"{where}: summary {summary!r} is not a sentence")
        description = op.get("description") or ""
        if len(description) < 60 or description == summary:
            problems.append(f"{where}: description {description!r} explains nothing")
        tags = op.get("tags") or []
        if not tags or not set(tags) <= AREAS:
            problems.append(f"{where}: tags {tags} are not areas ({sorted(AREAS)})")
        operation_id = op.get("operationId", "")
        if path.startswith("/api/") and not re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)+", operation_id):
            problems.append(f"{where}: operationId {operation_id!r} is not a stable camelCase id")
        ids.append(operation_id)
    assert not problems, "\n".join(problems)
    assert len(ids) == len(set(ids)), sorted(ids)
    tagged = {tag for _, _, op in _operations(spec) for tag in op["tags"]}
    assert tagged >= AREAS - {"Metrics", "Docs"}, tagged  # /metrics: Prometheus text, kept out


def test_every_parameter_is_described_with_an_example(spec: dict[str, Any]) -> None:
    problems: list[str] = []
    for method, path, op in _operations(spec):
        for parameter in op.get("parameters", []):
            where = f"{method.upper()} {path} {parameter['in']} {parameter['name']}"
            if len(parameter.get("description") or "") < 10:
                problems.append(f"{where}: no description")
            if parameter["name"] not in ("limit", "offset", "after") and not parameter.get(
                "examples"
            ):
                problems.append(f"{where}: no example")
            # A value that does not match the pattern is refused with "expected <the
            # description's first clause>" (commands.validation): it must read as a noun.
            if "pattern" in str(parameter["schema"]) and not re.match(
                r"An? ", parameter.get("description") or ""
            ):
                problems.append(f"{where}: the description does not name what it expects")
    assert not problems, "\n".join(problems)


def test_every_body_and_answer_has_examples(spec: dict[str, Any]) -> None:
    problems: list[str] = []
    for method, path, op in _operations(spec):
        where = f"{method.upper()} {path}"
        body = _json_content(op.get("requestBody", {}))
        if body is not None and body.get("schema") and not _example_values(body):
            problems.append(f"{where}: request body without an example")
        successes = {code for code in op["responses"] if code.startswith("2")}
        answers = {
            code: media
            for code, response in op["responses"].items()
            if code in successes
            and (media := _json_content(response)) is not None
            # a write's 202 (its read model lagging) has its own answer elsewhere: a delete's
            # is its 204, with no body
            and (code != "202" or successes == {"202"})
        }
        if answers and not any(_example_values(media) for media in answers.values()):
            problems.append(f"{where}: no example answer ({sorted(answers)})")
    assert not problems, "\n".join(problems)
    bodies = {
        (method, path)
        for method, path, op in _operations(spec)
        if _json_content(op.get("requestBody", {}))
    }
    assert bodies == {(method, path) for method, path, _ in WRITES}, (
        "the operations taking a body changed: list them in WRITES so their examples are sent"
    )


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A validator of `schema` whose `#/components/...` references resolve in the document."""
    return jsonschema_rs.Draft202012Validator(
        {**schema, "components": spec["components"]}, validate_formats=True
    )


def test_every_example_matches_its_schema(spec: dict[str, Any]) -> None:
    checked = 0
    problems: list[str] = []

    def check(where: str, schema: dict[str, Any], values: list[Any]) -> None:
        nonlocal checked
        validator = _validator(spec, schema)
        for value in values:
            checked += 1
            errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(value)]
            if errors:
                problems.append(f"{where}: {value!r}: {errors}")

    for method, path, op in _operations(spec):
        where = f"{method.upper()} {path}"
        for parameter in op.get("parameters", []):
            values = [e["value"] for e in (parameter.get("examples") or {}).values()]
            check(f"{where} {parameter['name']}", parameter["schema"], values)
        body = _json_content(op.get("requestBody", {}))
        if body is not None:
            check(f"{where} body", body["schema"], _example_values(body))
        for code, response in op["responses"].items():
            media = _json_content(response)
            if media is not None and "schema" in media:
                check(f"{where} {code}", media["schema"], _example_values(media))
    assert not problems, "\n".join(problems)
    assert checked > 80, checked


def _path(spec: dict[str, Any], method: str, path: str, ids: dict[str, str]) -> str:
    """The path with each parameter filled: an id a create answered, else its example."""
    op = spec["paths"][path][method]
    for parameter in op.get("parameters", []):
        if parameter["in"] != "path":
            continue
        name = parameter["name"]
        value = ids.get(name)
        if value is None:
            value = str(next(iter(parameter["examples"].values()))["value"])
        path = path.replace("{" + name + "}", value)
    return path


def _item_id_parameter(spec: dict[str, Any], collection: str) -> str | None:
    """`task_id` for `/api/tasks`: the parameter of the collection's item path."""
    for path in spec["paths"]:
        found = re.fullmatch(re.escape(collection) + r"/\{(\w+)\}", path)
        if found:
            return found.group(1)
    return None


def test_every_example_body_is_accepted(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    server = fresh_server()
    spec = _spec(server)
    admin = server.client()
    user: httpx.Client | None = None
    ids: dict[str, str] = {}
    sent = 0
    try:
        for method, template, as_admin in WRITES:
            op = spec["paths"][template][method]
            body = _json_content(op["requestBody"])
            assert body is not None
            for name, example in body["examples"].items():
                client = admin if as_admin or user is None else user
                url = _path(spec, method, template, ids)
                r = client.request(method.upper(), url, json=example["value"])
                where = f"{method.upper()} {url} example {name!r}"
                assert 200 <= r.status_code < 300, f"{where}: {r.status_code} {r.text}"
                sent += 1
                if r.status_code in (200, 201):
                    answer = _json_content(op["responses"][str(r.status_code)]) or {}
                    shown = _example_values(answer)
                    assert shown, f"{where}: answered {r.status_code}, which has no example"
                    assert set(r.json()) == set(shown[0]), f"{where}: {r.text} vs {shown[0]}"
                if method == "post" and "{" not in template:
                    item = _item_id_parameter(spec, template)
                    location = r.headers.get("location", "")
                    if item is not None and item not in ids:
                        ids[item] = location.rsplit("/", 1)[-1]
                if template == "/api/admin/tokens" and user is None:
                    # The first example token's user sends everything else.
                    user = server.client(r.json()["token"], r.json()["user"])
            if template == "/api/designer/dialogs/{dialog_id}":
                # The example sources are valid dialogs: they deploy.
                assert user is not None
                deploy = f"/api/designer/dialogs/{ids['dialog_id']}/deploy"
                r = user.post(deploy)
                assert r.status_code == 201, r.text
        assert sent >= len(WRITES), sent
        assert user is not None
        # The example conversation is the real one: the deployed example dialog asks what
        # the example reply says.
        messages = f"/api/sessions/{ids['session_id']}/messages"
        replies = [m for m in user.get(messages).json()["data"] if m["role"] == "assistant"]
        op = spec["paths"]["/api/sessions/{session_id}/messages"]["post"]
        shown = _example_values(_json_content(op["responses"]["200"]) or {})
        assert replies[0]["content"] == shown[0]["content"], (replies, shown)
    finally:
        admin.close()
        if user is not None:
            user.close()
