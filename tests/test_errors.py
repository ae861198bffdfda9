"""Errors a person can act on: validation errors name every bad field with a sentence (never
a regex), 404s name what was not found or the route that was meant, 405s the allowed methods,
a body that is not JSON is 415 or 400 with a reason.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from commands.admin import IssueToken
from commands.bots import SetOwners
from commands.tasks import CreateTask, UpdateTask
from commands.validation import FieldProblem, explain, summary
from tests.server import UserClient
from tests.test_hostile import Schemas, write_routes

JSON = {"Content-Type": "application/json"}
DATE_TIME = "expected an RFC 3339 date-time such as 2024-01-15T17:00:00Z"
TASK_FIELDS = "title, description, due_date, priority, status, assignee"
# What a message must never show: a pattern, or msgspec's wording for programmers.
LEAKS = re.compile(r"regex|\^\[|\[\^|Expected `|\\\\[tnrfv]|\$\.")


def error_of(r: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    assert not LEAKS.search(r.text), r.text
    return dict(error)


# --- the reproduced cases, word for word -------------------------------------------------


def test_an_invalid_email_says_what_an_email_is(admin: httpx.Client) -> None:
    error = error_of(admin.post("/api/admin/tokens", json={"user": "bob"}))
    sentence = "`user`: expected an email address such as ana@example.com, got 'bob'"
    assert error["message"] == sentence
    assert error["details"] == [{"field": "user", "source": "body", "message": sentence}]


def test_every_bad_field_is_reported(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    body = {"title": "x", "due_date": "tomorrow", "priority": "urgent"}
    error = error_of(c.post("/api/tasks", json=body))
    due = f"`due_date`: {DATE_TIME}, got 'tomorrow'"
    priority = "`priority`: expected one of 'low', 'medium', 'high', got 'urgent'"
    assert error["message"] == f"2 invalid fields: {due}; {priority}"
    assert error["details"] == [
        {"field": "due_date", "source": "body", "message": due},
        {"field": "priority", "source": "body", "message": priority},
    ]
    four = {"title": "", "status": "done", "assignee": "nobody", "colour": "red"}
    error = error_of(c.post("/api/tasks", json=four))
    assert [d["field"] for d in error["details"]] == ["title", "status", "assignee", "colour"]
    assert error["message"].startswith("4 invalid fields: `title`: may not be empty; ")


def test_a_missing_field_is_named(make_user: Callable[..., UserClient]) -> None:
    error = error_of(make_user().post("/api/tasks", json={}))
    assert error["message"] == "`title` is required"
    assert error["details"] == [
        {"field": "title", "source": "body", "message": "`title` is required"}
    ]


def test_an_unknown_field_lists_the_fields(make_user: Callable[..., UserClient]) -> None:
    error = error_of(make_user().post("/api/tasks", json={"title": "t", "colour": "red"}))
    assert error["message"] == f"`colour` is not a field of this request (fields: {TASK_FIELDS})"
    assert error["details"][0]["field"] == "colour"


@pytest.mark.parametrize(("body", "shown"), [([1], "an array"), (None, "null"), ("x", "'x'")])
def test_a_body_that_is_not_an_object_says_so(
    make_user: Callable[..., UserClient], body: object, shown: str
) -> None:
    raw = json.dumps(body).encode()  # (httpx sends no body for json=None)
    error = error_of(make_user().post("/api/tasks", content=raw, headers=JSON))
    assert error["message"] == (
        f"the body must be a JSON object with the fields {TASK_FIELDS}; got {shown}"
    )


def test_lengths_numbers_and_lists_are_worded(
    make_user: Callable[..., UserClient], admin: httpx.Client
) -> None:
    c = make_user()
    error = error_of(c.post("/api/tasks", json={"title": "x" * 501, "description": 7}))
    assert error["message"] == (
        "2 invalid fields: `title`: expected at most 500 characters, got 501;"
        " `description`: expected a string of at most 20000 characters or null, got 7"
    )
    error = error_of(admin.put("/api/bots/default/owners", json={"owners": ["a@b.co", "bob"]}))
    assert error["details"][0]["field"] == "owners[1]"
    assert "expected an owner's email such as ana@example.com, got 'bob'" in error["message"]
    error = error_of(admin.put("/api/bots/default/owners", json={"owners": []}))
    assert error["message"] == "`owners`: may not be empty"


def test_query_parameters_get_sentences(make_user: Callable[..., UserClient]) -> None:
    r = make_user().get("/api/tasks", params={"limit": "abc", "status": "nope"})
    error = error_of(r)
    status = "`status`: expected one of 'pending', 'completed', 'cancelled', got 'nope'"
    limit = "`limit`: expected an integer from 1 to 200, got 'abc'"
    assert error["message"] == f"2 invalid fields: {status}; {limit}"
    assert {(d["field"], d["source"]) for d in error["details"]} == {
        ("status", "query"),
        ("limit", "query"),
    }
    error = error_of(make_user().get("/api/tasks", params={"due_before": "tomorrow"}))
    assert error["message"] == f"`due_before`: {DATE_TIME}, got 'tomorrow'"


def test_no_message_on_any_write_route_shows_a_pattern(
    admin: httpx.Client, make_user: Callable[..., UserClient]
) -> None:
    """Every field of every JSON body, given a value of the wrong shape: 400, a sentence naming
    the field, and no regex in sight."""
    doc = admin.get("/schema/openapi.json").json()
    schemas = Schemas(doc)
    user = make_user()
    checked = 0
    for method, path, operation in write_routes(doc):
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if not schema:
            continue
        client = admin if path.startswith("/api/admin") else user
        filled = path.replace("{bot_id}", "default").replace("{name}", "tasks")
        url = re.sub(r"{[^}]+}", str(uuid.uuid4()), filled)
        for name, field in schemas.resolve(schema["schema"]).get("properties", {}).items():
            wrong = 12345 if schemas.kind(field) in ("string", "enum") else "not \t this"
            r = client.request(method, url, json={name: wrong})
            if r.status_code in (401, 403, 404):  # an id of nothing: checked before the body
                continue
            error = error_of(r)
            fields = [d["field"] for d in error["details"]]
            assert name in fields, (method, path, name, error)
            checked += 1
    assert checked >= 15


# --- what the CLI and other callers use ------------------------------------------------


def test_explain_lists_every_problem_in_field_order() -> None:
    problems = explain(CreateTask, {"priority": "urgent", "due_date": "soon", "x": 1})
    assert [p.field for p in problems] == ["title", "due_date", "priority", "x"]
    assert problems[0] == FieldProblem("title", "`title` is required")
    assert summary(problems).startswith("4 invalid fields: `title` is required; `due_date`: ")
    assert explain(CreateTask, {"title": "fine", "priority": "high"}) == []
    assert explain(UpdateTask, {}) == []
    assert explain(IssueToken, {"user": "bob"}) == [
        FieldProblem("user", "`user`: expected an email address such as ana@example.com, got 'bob'")
    ]
    owners = explain(SetOwners, {"owners": ["ok@example.com", 3]})
    assert [p.field for p in owners] == ["owners[1]"]
    assert (
        owners[0].message == "`owners[1]`: expected an owner's email such as ana@example.com, got 3"
    )


def test_explain_value_words_parameters_with_their_examples() -> None:
    from typing import Annotated, Literal

    from litestar.openapi.spec import Example
    from msgspec import Meta

    from commands.validation import explain_value

    code = Annotated[
        str, Meta(pattern="^[a-z]+$", description="A code", examples=[Example(value="abc")])
    ]
    found = explain_value(code, "A B", "code")
    assert found == FieldProblem("code", "`code`: expected a code such as abc, got 'A B'")
    status = Annotated[Literal["b", "a"], Meta(examples=[Example(value="a")])]
    found = explain_value(status, "c", "status")
    assert found is not None and found.message == "`status`: expected one of 'b', 'a', got 'c'"
    assert explain_value(int, "12", "limit") is None
    assert explain_value(int, "12", "limit", strict=True) is not None


def test_explain_words_bot_ids_and_free_form_objects() -> None:
    from commands.sessions import OpenSession

    assert explain(OpenSession, {"bot_id": "a b"})[0].message.startswith(
        "`bot_id`: expected a bot id of letters, digits"
    )
    assert not any(LEAKS.search(p.message) for p in explain(OpenSession, {"metadata": [1]}))


# --- 404 and 405 -----------------------------------------------------------------------


def test_an_unknown_route_suggests_the_closest(admin: httpx.Client) -> None:
    error = error_of(admin.get("/api/taks"), 404)
    assert error["message"] == "no route GET /api/taks; did you mean /api/tasks?"
    some = uuid.uuid4()
    error = error_of(admin.get(f"/api/task/{some}"), 404)
    assert error["message"] == f"no route GET /api/task/{some}; did you mean /api/tasks/{some}?"
    error = error_of(admin.get("/zzzzzzzzzzzzzzzzzzzzzzzz"), 404)
    assert error["message"].startswith("no route GET /zzzzzzzzzzzzzzzzzzzzzzzz; ")


def test_an_id_that_is_not_a_uuid_is_named(admin: httpx.Client) -> None:
    example = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    for path, kind, bad in [
        ("/api/tasks/123", "task", "123"),
        ("/api/paper/abc/history", "document", "abc"),
        ("/api/sessions/zz/messages", "session", "zz"),
    ]:
        error = error_of(admin.get(path), 404)
        assert error["message"] == (
            f"{kind} {bad} is not a valid id (expected a UUID such as {example})"
        )
        assert error["details"][0]["source"] == "path"


def test_a_missing_resource_is_named_with_its_id(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    unknown = uuid.uuid4()
    assert error_of(c.get(f"/api/tasks/{unknown}"), 404)["message"] == f"task {unknown} not found"
    put = c.put(f"/api/tasks/{unknown}", json={"title": "x"})
    assert error_of(put, 404)["message"] == f"task {unknown} not found"
    deploy = c.post(f"/api/designer/dialogs/{unknown}/deploy")
    assert error_of(deploy, 404)["message"] == f"dialog {unknown} not found"
    old = c.get(f"/api/paper/{unknown}", params={"version": 2})
    assert error_of(old, 404)["message"] == f"document {unknown} version 2 not found"


def test_a_method_not_allowed_names_the_allowed_ones(admin: httpx.Client) -> None:
    r = admin.patch("/api/tasks", json={})
    error = error_of(r, 405)
    assert error["message"].startswith("PATCH is not allowed on /api/tasks; it allows ")
    allowed = set(error["message"].split("it allows ", 1)[1].split(", "))
    assert {"GET", "POST"} <= allowed
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["allow"].split(",")}
    # The README's old slip: PUT on the collection points at the item.
    error = error_of(admin.put("/api/tasks/", json={}), 405)
    assert error["message"].endswith("(PUT is on /api/tasks/{task_id})")


# --- bodies that are not JSON ----------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "got"),
    [
        ({"Content-Type": "text/plain"}, "text/plain"),
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            "application/x-www-form-urlencoded",
        ),
        ({}, "no Content-Type"),
    ],
)
def test_a_body_not_labelled_json_is_415(
    make_user: Callable[..., UserClient], headers: dict[str, str], got: str
) -> None:
    c = make_user()
    r = c.post("/api/tasks", content=b'{"title": "t"}', headers=headers)
    error = error_of(r, 415)
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert error["message"] == (
        f"the body must be JSON, sent with Content-Type: application/json (got {got})"
    )
    assert c.get("/api/tasks").json()["pagination"]["total"] == 0
    ok = c.post(
        "/api/tasks",
        content=b'{"title": "t"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert ok.status_code == 201, ok.text


LONE_SURROGATE = "text may not contain a lone surrogate (\\ud800 to \\udfff unpaired)"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "POST /api/tasks needs a JSON body (Content-Type: application/json)"),
        (b"{", "the body is not valid JSON: it ends before the JSON value does"),
        (b'{"title": "\xff"}', "the body is not valid JSON: it is not valid UTF-8"),
        (
            b'{"title": "t", "priority": 1e999999}',
            "the body is not valid JSON: a number is out of range",
        ),
        (
            b'{"title": "a", "title": "b"}',
            "the key `title` appears twice in one object of the body",
        ),
        (b"[" * 65 + b"]" * 65, "the JSON body is nested deeper than 64 levels"),
        (b'{"title": "a\\ud800b"}', LONE_SURROGATE),
        (b'{"title": "\\uDC00"}', LONE_SURROGATE),
        (b'{"title": "\\ud83d\\ude00\\udc00"}', LONE_SURROGATE),
    ],
)
def test_malformed_bodies_say_what_is_wrong(
    make_user: Callable[..., UserClient], raw: bytes, message: str
) -> None:
    error = error_of(make_user().post("/api/tasks", content=raw, headers=JSON))
    assert error["message"] == message


def test_nesting_up_to_the_limit_is_accepted(admin: httpx.Client) -> None:
    deep: Any = "leaf"
    for _ in range(62):  # with the body and `metadata`: 64 levels
        deep = [deep]
    r = admin.post("/api/sessions", json={"metadata": {"deep": deep}})
    assert r.status_code == 201, r.text
    siblings = {"rows": [[[i], {"k": [i]}] for i in range(300)]}  # many brackets, shallow
    r = admin.post("/api/sessions", json={"metadata": siblings})
    assert r.status_code == 201, r.text
    # Brackets and colons inside strings are text: neither nesting nor a repeated key.
    text = "[[[[" * 100 + ': "x": '
    r = admin.post("/api/tasks", json={"title": "t", "description": text})
    assert r.status_code == 201, r.text


def test_the_depth_check_counts_levels_not_brackets() -> None:
    from api.app import _nested_deeper
    from api.openapi import MAX_JSON_DEPTH

    assert MAX_JSON_DEPTH == 64
    at_limit = b'{"a":' * 63 + b"[]" + b"}" * 63
    assert not _nested_deeper(at_limit, 64)
    assert _nested_deeper(b'{"a":' * 64 + b"[]" + b"}" * 64, 64)
    assert not _nested_deeper(b"[" + b",".join([b"[[]]"] * 10_000) + b"]", 64)
    in_strings = json.dumps(["[" * 1000 + '\\"', '"[' + "{" * 100]).encode()  # escapes too
    assert not _nested_deeper(in_strings, 64)
    assert _nested_deeper(b"[1," * 65 + b"]" * 65, 64)
    assert _nested_deeper(b"[" * 100_000, 64)  # never closed: still too deep to decode


def test_a_route_without_a_body_refuses_one(make_user: Callable[..., UserClient]) -> None:
    c = make_user()
    task = c.post("/api/tasks", json={"title": "t"}).json()
    error = error_of(c.request("DELETE", f"/api/tasks/{task['id']}", json={"really": True}))
    assert error["message"] == (
        f"DELETE /api/tasks/{task['id']} takes no request body; send it without one"
    )
    assert c.get(f"/api/tasks/{task['id']}").status_code == 200
