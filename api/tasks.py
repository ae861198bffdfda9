"""Tasks endpoints."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec

from api.deps import Provided
from api.errors import not_found
from api.http import (
    DateTimeParam,
    Limit,
    Offset,
    Writes,
    actor_of,
    claim_of,
    create,
    etag,
    expected_version,
    when_param,
    written,
)
from commands.tasks import CreateTask, TaskCommands, UpdateTask
from domain.common import Forbidden
from projections.core import Page, ReadStore
from projections.tasks import TaskFilter, TaskView, get_task, list_tasks


class TasksController(Controller):
    path = "/api/tasks"
    tags = ["tasks"]

    @get("/", sync_to_thread=True)
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        status: Literal["pending", "completed", "cancelled"] | None = None,
        priority: Literal["low", "medium", "high"] | None = None,
        due_before: DateTimeParam | None = None,
        assignee: str | None = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[TaskView]:
        where = TaskFilter(
            status=status,
            priority=priority,
            due_before=when_param(due_before, "due_before"),
            assignee=assignee.lower() if assignee else None,
        )
        return list_tasks(read, actor_of(request), where, limit, offset)

    @post("/", sync_to_thread=True, status_code=201)
    def create_item(
        self,
        request: Request[Any, Any, Any],
        tasks: Provided[TaskCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        data: CreateTask,
    ) -> Response[TaskView]:
        actor = actor_of(request)
        claim = claim_of(request, actor, data)
        return create(
            writes,
            "tasks",
            lambda: tasks.create(actor, data, claim),
            lambda task_id: f"/api/tasks/{task_id}",
            lambda task_id: get_task(read, task_id, actor),
        )

    @get("/{task_id:uuid}", sync_to_thread=True)
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], task_id: UUID
    ) -> Response[TaskView]:
        task = get_task(read, str(task_id), actor_of(request))
        if task is None:
            raise not_found("task")
        return Response(task, headers=etag(task.version))

    @put(
        "/{task_id:uuid}",
        sync_to_thread=True,
        responses={
            204: ResponseSpec(
                None,
                description="Saved, but the task is no longer yours to see: another request"
                " deleted or reassigned it meanwhile",
            )
        },
    )
    def update_item(
        self,
        request: Request[Any, Any, Any],
        tasks: Provided[TaskCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        task_id: UUID,
        data: UpdateTask,
    ) -> Response[TaskView]:
        """The owner (or an admin) changes any field; an assignee only status and
        description (403 otherwise, and nothing is saved)."""
        actor = actor_of(request)
        saved = tasks.update(actor, task_id, data, expected_version(request))

        def render() -> TaskView | None:
            # The write was allowed and is saved: it never answers an error, even when another
            # request took the task out of the caller's sight since (204, nothing to show).
            try:
                return get_task(read, str(task_id), actor)
            except Forbidden:
                return None

        return written(writes, saved, f"/api/tasks/{task_id}", render)

    @delete("/{task_id:uuid}", sync_to_thread=True, status_code=204)
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        tasks: Provided[TaskCommands],
        writes: Provided[Writes],
        task_id: UUID,
    ) -> Response[None]:
        """Only the owner (or an admin) deletes a task."""
        actor = actor_of(request)
        saved = tasks.delete(actor, task_id, expected_version(request))
        return written(writes, saved, f"/api/tasks/{task_id}", lambda: None)
