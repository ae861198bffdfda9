"""Task commands: create, change, delete; and the tasks area of dialog keywords (CREATE TASK)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, Meta, UnsetType

from commands.fields import Email, InvalidField, Title, When, parse_when
from commands.idempotency import Claim, save_new
from commands.ports import EventStore, NotFound, Saved
from commands.turn import EVENT_OVERHEAD, TurnContext
from domain.basic import PlatformError, Value
from domain.basic.values import encoded_size
from domain.common import Actor, Forbidden, IfMatch, check_version, rfc3339
from domain.tasks import ASSIGNEE_MAY_CHANGE, PRIORITIES, Task
from domain.text import clean

Description = Annotated[str, Meta(max_length=20_000)]
Priority = Literal["low", "medium", "high"]
Status = Literal["pending", "completed", "cancelled"]


class CreateTask(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    description: Description | None = None
    due_date: When | None = None
    priority: Priority = "medium"
    status: Status = "pending"
    assignee: Email | None = None


class UpdateTask(msgspec.Struct, forbid_unknown_fields=True):
    title: Title | UnsetType = UNSET
    description: Description | None | UnsetType = UNSET
    due_date: When | None | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    status: Status | UnsetType = UNSET
    assignee: Email | None | UnsetType = UNSET


def _normal(name: str, value: object) -> object:
    if name == "due_date" and isinstance(value, str):
        return rfc3339(parse_when(value, name))
    if name == "assignee" and isinstance(value, str):
        return value.lower()
    if name == "title" and isinstance(value, str):
        return value.strip()
    return value


class TaskCommands:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def create(
        self, actor: Actor, cmd: CreateTask, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        task = Task(
            owner=actor.email,
            title=cmd.title.strip(),
            description=cmd.description,
            due_date=rfc3339(parse_when(cmd.due_date, "due_date")) if cmd.due_date else None,
            priority=cmd.priority,
            status=cmd.status,
            assignee=cmd.assignee.lower() if cmd.assignee else None,
        )
        return str(task.id), save_new(self.store, task, claim)

    def update(
        self, actor: Actor, task_id: UUID, cmd: UpdateTask, expected_version: IfMatch | None
    ) -> Saved:
        """The owner (or an admin) changes anything; an assignee only status and description."""
        task = self._load(actor, task_id)
        fields = {
            name: _normal(name, value)
            for name in cmd.__struct_fields__
            if (value := getattr(cmd, name)) is not UNSET
        }
        if not _manages(actor, task):
            refused = task.refused_to_assignee(fields)
            if refused:
                raise Forbidden(
                    f"only the task's owner or an admin may change {', '.join(refused)};"
                    f" as its assignee you may change {' and '.join(ASSIGNEE_MAY_CHANGE)}"
                )
        check_version(expected_version, task.version)
        task.change(actor.email, fields)
        return self.store.save(task)

    def delete(self, actor: Actor, task_id: UUID, expected_version: IfMatch | None) -> Saved:
        """Only the owner (or an admin) deletes a task."""
        task = self._load(actor, task_id)
        if not _manages(actor, task):
            raise Forbidden(f"only the owner of task {task_id} or an admin may delete it")
        check_version(expected_version, task.version)
        task.delete(actor.email)
        return self.store.save(task)

    def _load(self, actor: Actor, task_id: UUID) -> Task:
        task = self.store.get(task_id)
        if not isinstance(task, Task) or task.deleted:
            raise NotFound(str(task_id))
        if not (actor.is_admin or task.may_be_seen_by(actor.email)):
            raise Forbidden(f"task {task_id} belongs to another user")
        return task


def _manages(actor: Actor, task: Task) -> bool:
    return actor.is_admin or task.is_owned_by(actor.email)


class DialogTasks:
    """The tasks area of dialog keywords for one turn (its KeywordProvider is the class).

    CREATE TASK makes a task owned by the session's user, saved with the turn.
    """

    def __init__(self, turn: TurnContext) -> None:
        self.turn = turn

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        title = clean(str(title)).strip()
        if not 1 <= len(title) <= 500:
            raise PlatformError("CREATE TASK needs a title of 1 to 500 characters")
        chosen = (priority or "medium").lower()
        if chosen not in PRIORITIES:
            raise PlatformError(f"CREATE TASK priority must be one of {', '.join(PRIORITIES)}")
        who = clean(str(assignee)).strip().lower()[:320] if assignee else ""
        task = Task(
            owner=self.turn.session.user_id,
            title=title,
            description=None,
            due_date=_due(due),
            priority=chosen,
            status="pending",
            assignee=who or None,
        )
        size = encoded_size([title, who, task.due_date, chosen]) + EVENT_OVERHEAD
        self.turn.writes.add(task, size)
        return str(task.id)


def _due(value: str) -> str | None:
    text = str(value).strip() if value else ""
    if not text:
        return None
    if len(text) == 10:  # YYYY-MM-DD: the end of that day in UTC
        text += "T23:59:59Z"
    try:
        return rfc3339(parse_when(text, "due"))
    except InvalidField:
        shown = clean(str(value))[:40]
        raise PlatformError(f"CREATE TASK due date {shown!r} is not a date") from None
