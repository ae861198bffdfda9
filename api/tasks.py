"""Tasks endpoints."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Parameter

from api.deps import Provided
from api.errors import ErrorEnvelope, not_found
from api.examples import ANA, BEA, CONDITIONAL, CREATED_AT, IDEMPOTENT, LAGGING, examples
from api.http import (
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
from commands.fields import WHEN_DESCRIPTION, WHEN_PATTERN
from commands.tasks import CreateTask, TaskCommands, UpdateTask
from domain.common import Forbidden
from projections.core import Page, ReadStore
from projections.tasks import TaskFilter, TaskView, get_task, list_tasks

TASK_ID = "7c1e5a2b-3d4f-4a8b-9c6d-1e2f3a4b5c6d"
DUE = "2024-01-15T17:00:00Z"  # WHEN_DESCRIPTION's example, so an error names it once
TASK = {
    "id": TASK_ID,
    "title": "Follow up with client",
    "description": "Send the revised quote",
    "status": "pending",
    "priority": "high",
    "due_date": "2024-01-15T17:00:00.000000Z",
    "assignee": BEA,
    "owner": ANA,
    "created_at": CREATED_AT,
    "updated_at": CREATED_AT,
    "completed_at": None,
    "version": 1,
}
COMPLETED = {
    **TASK,
    "status": "completed",
    "updated_at": "2024-01-12T16:05:43.250000Z",
    "completed_at": "2024-01-12T16:05:43.250000Z",
    "version": 2,
}
PAGE = {"data": [TASK], "pagination": {"total": 1, "limit": 50, "offset": 0, "has_more": False}}

TaskId = Annotated[
    UUID,
    Parameter(
        description="The task's id, as its creation answered (`id`, and the `Location` header)",
        examples=[Example(summary="A task's id", value=TASK_ID)],
    ),
]
WHO_SEES = (
    "A task is seen by its owner (who created it), its assignee and admins; another user's"
    " task is `403`."
)


class TasksController(Controller):
    path = "/api/tasks"
    tags = ["Tasks"]

    @get(
        "/",
        sync_to_thread=True,
        operation_id="listTasks",
        summary="List your tasks",
        description="The tasks you own or are assigned to (an admin: every task), soonest"
        " `due_date` first (tasks without one last), then oldest first. The filters combine;"
        " `limit` and `offset` page through the result, and `pagination.total` counts all"
        " that match.",
        response_description="A page of tasks",
        operation_class=examples(response={"One high-priority task": PAGE}),
    )
    def list_items(
        self,
        request: Request[Any, Any, Any],
        read: Provided[ReadStore],
        status: Annotated[
            Literal["pending", "completed", "cancelled"] | None,
            Parameter(
                description="Only tasks with this status",
                examples=[Example(summary="Still to do", value="pending")],
            ),
        ] = None,
        priority: Annotated[
            Literal["low", "medium", "high"] | None,
            Parameter(
                description="Only tasks with this priority",
                examples=[Example(summary="Urgent ones", value="high")],
            ),
        ] = None,
        due_before: Annotated[
            str | None,
            Parameter(
                pattern=WHEN_PATTERN,
                description=f"{WHEN_DESCRIPTION}; only tasks due strictly before it are listed"
                " (tasks without a due date never are)",
                examples=[Example(summary="Due before 5 pm on the 15th", value=DUE)],
            ),
        ] = None,
        assignee: Annotated[
            str | None,
            Parameter(
                description="Only tasks assigned to this email (compared without case)",
                examples=[Example(summary="Bea's tasks", value=BEA)],
            ),
        ] = None,
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

    @post(
        "/",
        sync_to_thread=True,
        status_code=201,
        operation_id="createTask",
        summary="Create a task",
        description="Creates a task owned by you. Only `title` is required: `priority` defaults"
        " to `medium`, `status` to `pending`; `due_date` is an RFC 3339 date-time with a zone"
        " (kept in UTC), `assignee` the email of the user who works on it (they see the task"
        " and may change its `status` and `description`). Answers `201` with the task, its"
        " `Location` and its `ETag` (version 1). Unknown fields are refused (`400`, one"
        f" entry per bad field in `details`). {IDEMPOTENT} {LAGGING}",
        response_description="The task created",
        operation_class=examples(
            request={
                "A high-priority task with a due date, for a colleague": {
                    "title": "Follow up with client",
                    "description": "Send the revised quote",
                    "due_date": "2024-01-15T17:00:00Z",
                    "priority": "high",
                    "assignee": BEA,
                },
                "Just a title": {"title": "Book the meeting room"},
            },
            response={"The task created": TASK},
        ),
        responses={
            400: ResponseSpec(
                ErrorEnvelope,
                description="A field is missing or invalid: one entry per bad field",
                examples=[
                    Example(
                        summary="A date that is not RFC 3339 and an unknown priority",
                        value={
                            "error": {
                                "code": "BAD_REQUEST",
                                "message": "2 invalid fields: `due_date`: expected an RFC 3339"
                                " date-time such as 2024-01-15T17:00:00Z, got 'tomorrow';"
                                " `priority`: expected one of 'low', 'medium', 'high', got"
                                " 'urgent'",
                                "details": [
                                    {
                                        "field": "due_date",
                                        "source": "body",
                                        "message": "`due_date`: expected an RFC 3339 date-time"
                                        " such as 2024-01-15T17:00:00Z, got 'tomorrow'",
                                    },
                                    {
                                        "field": "priority",
                                        "source": "body",
                                        "message": "`priority`: expected one of 'low',"
                                        " 'medium', 'high', got 'urgent'",
                                    },
                                ],
                            }
                        },
                    )
                ],
            )
        },
    )
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

    @get(
        "/{task_id:uuid}",
        sync_to_thread=True,
        operation_id="getTask",
        summary="Get a task",
        description=f"The task, with its version as `ETag` (send it back in `If-Match` to"
        f" change it safely). {WHO_SEES} A task that does not exist (or was deleted) is `404`.",
        response_description="The task",
        operation_class=examples(response={"A pending task": TASK}),
    )
    def get_item(
        self, request: Request[Any, Any, Any], read: Provided[ReadStore], task_id: TaskId
    ) -> Response[TaskView]:
        task = get_task(read, str(task_id), actor_of(request))
        if task is None:
            raise not_found("task")
        return Response(task, headers=etag(task.version))

    @put(
        "/{task_id:uuid}",
        sync_to_thread=True,
        operation_id="updateTask",
        summary="Change a task",
        description="Changes the fields the body names and keeps the others (`null` clears"
        " `description`, `due_date` or `assignee`). The owner (or an admin) changes any field;"
        " the assignee only `status` and `description` (anything else is `403`, and nothing"
        " is saved). Setting `status` to `completed` sets `completed_at`. Answers with the"
        f" task and its new `ETag`. {CONDITIONAL.format(thing='task')} {LAGGING}",
        response_description="The task as changed",
        operation_class=examples(
            request={
                "Mark it done": {"status": "completed"},
                "Postpone and lower the priority": {
                    "due_date": "2024-01-22T17:00:00Z",
                    "priority": "low",
                },
            },
            response={"The task, completed": COMPLETED},
        ),
        responses={
            204: ResponseSpec(
                None,
                description="Saved, but the task is no longer yours to see: another request"
                " deleted or reassigned it meanwhile",
            ),
            409: ResponseSpec(
                ErrorEnvelope,
                description="`If-Match` names a version the task is no longer at",
                examples=[
                    Example(
                        summary="Changed by someone else since version 1",
                        value={
                            "error": {
                                "code": "CONFLICT",
                                "message": "expected version 1, current version is 2",
                                "details": [{"expected": [1], "actual": 2}],
                            }
                        },
                    )
                ],
            ),
        },
    )
    def update_item(
        self,
        request: Request[Any, Any, Any],
        tasks: Provided[TaskCommands],
        read: Provided[ReadStore],
        writes: Provided[Writes],
        task_id: TaskId,
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

    @delete(
        "/{task_id:uuid}",
        sync_to_thread=True,
        status_code=204,
        operation_id="deleteTask",
        summary="Delete a task",
        description="Deletes the task: it leaves every list and its `GET` is `404` (its events"
        " stay in the log). Only the owner or an admin may (the assignee gets `403`)."
        f" Answers `204` with no body. {CONDITIONAL.format(thing='task')} {LAGGING}",
        response_description="Deleted",
    )
    def delete_item(
        self,
        request: Request[Any, Any, Any],
        tasks: Provided[TaskCommands],
        writes: Provided[Writes],
        task_id: TaskId,
    ) -> Response[None]:
        """Only the owner (or an admin) deletes a task."""
        actor = actor_of(request)
        saved = tasks.delete(actor, task_id, expected_version(request))
        return written(writes, saved, f"/api/tasks/{task_id}", lambda: None)
