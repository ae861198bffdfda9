"""The baseline for bench.run: a bare Litestar app answering the benchmarked routes with
fixed bodies.

It has no auth, storage, validation or event log, so the numbers it gets are the floor that
Litestar + uvicorn + the benchmark client reach on this machine. Served by bench.run as:

    python -m uvicorn bench.baseline_app:app --host 127.0.0.1 --port PORT --log-level warning
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, get, post

_TASK: dict[str, Any] = {
    "id": "00000000-0000-4000-8000-000000000000",
    "title": "bench task 0",
    "description": None,
    "status": "pending",
    "priority": "high",
    "due_date": "2030-01-01T00:00:00Z",
    "assignee": None,
    "owner": "admin@example.com",
    "created_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-01T00:00:00Z",
    "completed_at": None,
    "version": 1,
}
_PAGE: dict[str, Any] = {
    "data": [_TASK],
    "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False},
}


@post("/api/tasks", status_code=201)
async def create_task() -> dict[str, Any]:
    return _TASK


@get("/api/tasks")
async def list_tasks() -> dict[str, Any]:
    return _PAGE


app = Litestar(route_handlers=[create_task, list_tasks])
