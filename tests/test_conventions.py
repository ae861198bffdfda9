"""DESIGN.md's HTTP conventions: request ids, envelopes, OpenAPI, health, stats, the event log."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.server import ServerProcess


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
    srv = fresh_server(tmp_path / "data")
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


def test_admin_stats_are_real(admin: httpx.Client, make_user: Callable[..., httpx.Client]) -> None:
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


def test_admin_event_log_pages(admin: httpx.Client, make_user: Callable[..., httpx.Client]) -> None:
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
