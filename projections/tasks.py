"""Tasks read model: one row per live task, indexed for every filter the list offers."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.common import Actor, Forbidden, rfc3339
from domain.tasks import EDITABLE
from projections.core import Listing, Page, Projection, ReadStore, Sql, Where, handles

COLUMNS = (
    "id, owner, title, description, status, priority, due_date, assignee, "
    "created_at, updated_at, completed_at, version"
)


class TaskView(msgspec.Struct, omit_defaults=False):
    id: str
    title: str
    description: str | None
    status: str
    priority: str
    due_date: str | None
    assignee: str | None
    owner: str
    created_at: str
    updated_at: str
    completed_at: str | None
    version: int


LISTING = Listing(TaskView, COLUMNS, "tasks", "due_date IS NULL, due_date, created_at, id")


class TaskFilter(msgspec.Struct, frozen=True):
    status: str | None = None
    priority: str | None = None
    due_before: str | None = None
    assignee: str | None = None


class TasksProjection(Projection):
    name = "tasks"
    tables = ("tasks",)
    schema = (
        "CREATE TABLE IF NOT EXISTS tasks ("
        " id TEXT PRIMARY KEY, owner TEXT NOT NULL, title TEXT NOT NULL, description TEXT,"
        " status TEXT NOT NULL, priority TEXT NOT NULL, due_date TEXT, assignee TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, completed_at TEXT,"
        " version BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS tasks_order ON tasks (due_date, created_at, id)",
        "CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner)",
        "CREATE INDEX IF NOT EXISTS tasks_assignee ON tasks (assignee)",
        "CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status)",
        "CREATE INDEX IF NOT EXISTS tasks_priority ON tasks (priority)",
    )

    @handles("gbserver.tasks.TaskCreated")
    def created(self, sql: Sql, e: Any) -> None:
        at = rfc3339(e.timestamp)
        sql.execute(
            f"INSERT INTO tasks ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                str(e.originator_id),
                e.owner,
                e.title,
                e.description,
                e.status,
                e.priority,
                e.due_date,
                e.assignee,
                at,
                at,
                at if e.status == "completed" else None,
                e.originator_version,
            ),
        )

    @handles("gbserver.tasks.TaskUpdated")
    def updated(self, sql: Sql, e: Any) -> None:
        fields = sorted(f for f in e.changes if f in EDITABLE)
        assignments = "".join(f"{f} = ?, " for f in fields)
        sql.execute(
            f"UPDATE tasks SET {assignments}updated_at = ?, version = ? WHERE id = ?",
            (
                *(e.changes[f] for f in fields),
                rfc3339(e.timestamp),
                e.originator_version,
                str(e.originator_id),
            ),
        )

    @handles("gbserver.tasks.TaskCompleted")
    def completed(self, sql: Sql, e: Any) -> None:
        self._status(sql, e, "completed", rfc3339(e.timestamp))

    @handles("gbserver.tasks.TaskCancelled")
    def cancelled(self, sql: Sql, e: Any) -> None:
        self._status(sql, e, "cancelled", None)

    @handles("gbserver.tasks.TaskReopened")
    def reopened(self, sql: Sql, e: Any) -> None:
        self._status(sql, e, "pending", None)

    @handles("gbserver.tasks.TaskDeleted")
    def deleted(self, sql: Sql, e: Any) -> None:
        sql.execute("DELETE FROM tasks WHERE id = ?", (str(e.originator_id),))

    @staticmethod
    def _status(sql: Sql, e: Any, status: str, completed_at: str | None) -> None:
        sql.execute(
            "UPDATE tasks SET status = ?, completed_at = ?, updated_at = ?, version = ?"
            " WHERE id = ?",
            (
                status,
                completed_at,
                rfc3339(e.timestamp),
                e.originator_version,
                str(e.originator_id),
            ),
        )


def get_task(store: ReadStore, task_id: str, actor: Actor) -> TaskView | None:
    """The task, None when there is none, Forbidden when it is someone else's."""
    with store.read() as sql:
        sql.execute(f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        row = sql.fetchone()
    if row is None:
        return None
    if not (actor.is_admin or actor.email in (row["owner"], row["assignee"])):
        raise Forbidden(f"task {task_id} belongs to another user")
    return msgspec.convert(row, TaskView, strict=False)


def list_tasks(
    store: ReadStore, actor: Actor, where: TaskFilter, limit: int, offset: int
) -> Page[TaskView]:
    condition = Where()
    if not actor.is_admin:
        condition.add("(owner = ? OR assignee = ?)", actor.email, actor.email)
    for column in ("status", "priority", "assignee"):
        condition.equal(column, getattr(where, column))
    if where.due_before is not None:
        condition.add("due_date < ?", where.due_before)
    with store.read() as sql:
        return LISTING.fetch(sql, limit, offset, condition)
