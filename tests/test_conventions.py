"""DESIGN.md's HTTP conventions: request ids, envelopes, OpenAPI, health, stats, the event log."""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg

from projections.paper import PaperProjection
from tests.server import ServerProcess, UserClient


def test_every_response_has_a_request_id(server: ServerProcess, admin: httpx.Client) -> None:
    responses = [
        admin.get("/api/health"),
        admin.get("/api/tasks"),
        admin.get("/api/nowhere"),
        admin.post("/api/tasks", content=b"{"),
        httpx.get(f"{server.url}/api/tasks"),
    ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)
    echoed = admin.get("/api/health", headers={"X-Request-ID": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    unsafe = admin.get("/api/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_unknown_route_and_method_use_the_envelope(admin: httpx.Client) -> None:
    r = admin.get("/api/nowhere")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = admin.patch("/api/tasks", json={})
    assert r.status_code == 405 and r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_head_answers_as_get_without_a_body(server: ServerProcess, admin: httpx.Client) -> None:
    for path in ("/api/health", "/api/tasks", "/docs", "/"):
        got, head = admin.get(path), admin.head(path)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == str(len(got.content)), path
    assert httpx.head(f"{server.url}/api/tasks").status_code == 401
    assert admin.head("/api/admin/events/1").status_code in (404, 405)


def test_errors_never_carry_a_traceback(admin: httpx.Client) -> None:
    r = admin.post(
        "/api/tasks", content=b'{"title": [1,2,3]}', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert set(r.json()["error"]) == {"code", "message", "details"}


def test_openapi_describes_the_api(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/schema/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/api/tasks",
        "/api/tasks/{task_id}",
        "/api/paper",
        "/api/paper/{doc_id}",
        "/api/paper/{doc_id}/history",
        "/api/health",
        "/api/admin/stats",
        "/api/admin/events",
        "/api/admin/tokens",
        "/api/admin/tokens/{token_id}",
    ):
        assert path in spec["paths"], path
    create = spec["paths"]["/api/tasks"]["post"]
    assert "201" in create["responses"]
    schema_names = set(spec["components"]["schemas"])
    assert {"CreateTask", "UpdateTask", "TaskView"} <= schema_names


def test_health_reports_components(server: ServerProcess) -> None:
    body = httpx.get(f"{server.url}/api/health").json()
    assert body["status"] == "healthy"
    for name in ("database", "event_store", "read_store", "cache", "storage"):
        assert body["components"][name] == "ok"
    assert body["components"]["llm"] == "not_configured"


def test_health_is_503_when_storage_fails(
    fresh_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    srv = fresh_server(tmp_path / "data", GB_S3_ENDPOINT="")  # the data-dir blob store
    blobs = tmp_path / "data" / "blobs"
    for child in blobs.iterdir():
        child.unlink()
    blobs.rmdir()
    blobs.write_text("a file where the blob directory should be")
    r = httpx.get(f"{srv.url}/api/health")
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    assert r.json()["components"]["storage"] == "error"
    assert r.json()["components"]["event_store"] == "ok"


def test_admin_stats_are_real(admin: httpx.Client, make_user: Callable[..., UserClient]) -> None:
    user = make_user()
    for _ in range(5):
        user.get("/api/tasks")
    stats = admin.get("/api/admin/stats").json()
    assert set(stats) == {
        "uptime_seconds",
        "memory_used_mb",
        "active_connections",
        "database_size_mb",
        "cache_hit_rate",
    }
    assert stats["uptime_seconds"] >= 0
    assert 10 < stats["memory_used_mb"] < 4096
    assert stats["active_connections"] >= 1
    assert stats["database_size_mb"] > 0
    assert 0 < stats["cache_hit_rate"] <= 1


def test_admin_event_log_pages(admin: httpx.Client, make_user: Callable[..., UserClient]) -> None:
    user = make_user()
    task = user.post("/api/tasks", json={"title": "logged"}).json()
    user.put(f"/api/tasks/{task['id']}", json={"status": "completed"})
    first = admin.get("/api/admin/events", params={"limit": 200}).json()
    assert first["data"] and first["next_after"] == first["data"][-1]["id"]
    ids = [e["id"] for e in first["data"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    after = admin.get("/api/admin/events", params={"after": ids[0], "limit": 2}).json()["data"]
    assert [e["id"] for e in after] == ids[1:3]
    everything = []
    cursor = 0
    while True:
        page = admin.get("/api/admin/events", params={"after": cursor, "limit": 200}).json()
        if not page["data"]:
            break
        everything += page["data"]
        cursor = page["next_after"]
    mine = [e for e in everything if e["aggregate_id"] == task["id"]]
    assert [e["topic"] for e in mine] == [
        "gbserver.tasks.TaskCreated",
        "gbserver.tasks.TaskCompleted",
    ]
    assert mine[0]["data"]["title"] == "logged" and mine[0]["aggregate_version"] == 1
    assert mine[0]["timestamp"].endswith("Z")
    assert admin.get("/api/admin/events", params={"limit": 201}).status_code == 400
    assert admin.get("/api/admin/events", params={"after": -1}).status_code == 400
    json.dumps(everything)


MALFORMED_IF_MATCH = [
    '"2',
    "abc",
    "2",
    '"1" "2"',
    'W/ "1"',
    'w/"1"',
    '"1 "',
    '*, "1"',
    "",
    ", ,",
    "'1'",
]


def _resources(client: httpx.Client) -> list[tuple[str, Callable[[int], dict[str, str]]]]:
    """One resource of each kind whose writes take If-Match, at version 1, with an edit that
    changes it (each call a new value)."""
    task = client.post("/api/tasks", json={"title": "t"}).json()
    doc = client.post("/api/paper", json={"title": "d"}).json()
    dialog = client.post(
        "/api/designer/dialogs",
        json={"name": "d", "content": 'TALK "hi"', "bot_id": f"bot-{uuid.uuid4().hex[:8]}"},
    ).json()
    return [
        (f"/api/tasks/{task['id']}", lambda n: {"title": f"edit {n}"}),
        (f"/api/paper/{doc['id']}", lambda n: {"title": f"edit {n}"}),
        (f"/api/designer/dialogs/{dialog['id']}", lambda n: {"content": f'TALK "{n}"'}),
    ]


def test_if_match_is_parsed_as_rfc_9110_says(make_user: Callable[..., UserClient]) -> None:
    """Issue 7, reproduction 13: `W/"1"` matched as a strong tag, `"2` was accepted and a list
    answered 400. Strong comparison, lists, `*`; malformed is 400, no match is 409."""
    c = make_user()
    edits = itertools.count()
    for url, edit in _resources(c):
        version = c.get(url).json()["version"]
        assert version == 1, url

        def put(
            if_match: str | list[str],
            url: str = url,
            edit: Callable[[int], dict[str, str]] = edit,
        ) -> Any:
            values = [if_match] if isinstance(if_match, str) else if_match
            return c.put(url, json=edit(next(edits)), headers=[("If-Match", v) for v in values])

        for bad in MALFORMED_IF_MATCH:
            r = put(bad)
            assert r.status_code == 400, (url, bad, r.text)
            assert r.json()["error"]["code"] == "BAD_REQUEST" and "If-Match" in r.text
        for never in ['W/"1"', 'W/"1", W/"2"', '"abc"', '"01"', '"", "x1"']:
            r = put(never)
            assert r.status_code == 409, (url, never, r.text)
            assert r.json()["error"]["code"] == "CONFLICT"
        assert c.get(url).json()["version"] == 1  # none of those changed anything

        assert put('"7", "1"').status_code == 200  # a list matches any of its tags
        assert put('W/"2", "9"').status_code == 409  # a weak tag never matches
        assert put(['"9"', '"2"']).status_code == 200  # several fields are one list
        assert put('"5" ,, "3"').status_code == 200  # white space and empty elements
        assert put("*").status_code == 200  # any current version
        assert c.get(url).json()["version"] == 5
        assert c.delete(url, headers={"If-Match": '"4", "6"'}).status_code == 409
        assert c.delete(url, headers={"If-Match": '"4", "5"'}).status_code == 204
        assert c.delete(url, headers={"If-Match": "*"}).status_code == 404  # gone: no match


def _read_store_sql(srv: ServerProcess, statement: str) -> None:
    """Runs one statement on a server's read-model database, from outside the server."""
    url = srv.env.get("GB_DATABASE_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(statement)
        return
    with contextlib.closing(sqlite3.connect(srv.data_dir / "read.sqlite", timeout=30)) as db:
        db.execute(statement)
        db.commit()


def _health_until(srv: ServerProcess, status: str) -> httpx.Response:
    """The health answer, once its status is `status` (a projection fails, or recovers, on
    its worker's next attempt; attempts back off to a few seconds)."""
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{srv.url}/api/health")
        if r.json()["status"] == status or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def test_health_is_degraded_while_a_projection_is_stalled(
    fresh_server: Callable[..., ServerProcess],
) -> None:
    """Issue 7, reproduction 14: health said `healthy` while a projection was in error."""
    srv = fresh_server(GB_CONSISTENCY_TIMEOUT="1")
    with srv.client() as c:
        assert c.post("/api/paper", json={"title": "before"}).status_code in (201, 202)
        assert _health_until(srv, "healthy").status_code == 200
        _read_store_sql(srv, "DROP TABLE paper_documents")
        # Saved, but the paper projection cannot apply it: the write answers 202.
        assert c.post("/api/paper", json={"title": "after"}).status_code == 202

        r = _health_until(srv, "degraded")
        body = r.json()
        assert (r.status_code, body["status"]) == (503, "degraded"), body
        assert body["components"]["projections"] == "error"
        for name in ("database", "event_store", "read_store", "cache", "storage"):
            assert body["components"][name] == "ok", body

        for statement in PaperProjection.schema:
            _read_store_sql(srv, statement)
        r = _health_until(srv, "healthy")
        assert r.status_code == 200 and r.json()["components"]["projections"] == "ok", r.text
        titles = [d["title"] for d in c.get("/api/paper").json()["data"]]
        assert titles == ["after"]  # applied once its table was back (the other was dropped)
