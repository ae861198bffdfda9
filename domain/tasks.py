"""Tasks: a to-do with an owner, an optional assignee, a priority, a due date and a status."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate, event

from domain.common import Gone

PRIORITIES = ("low", "medium", "high")
STATUSES = ("pending", "completed", "cancelled")
EDITABLE = ("title", "description", "due_date", "priority", "assignee")
# What an assignee (who is not the owner) may change; the rest, and deleting, is the owner's.
ASSIGNEE_MAY_CHANGE = ("description", "status")


class Task(Aggregate):
    TOPIC = "gbserver.tasks.Task"

    class Created(Aggregate.Created):
        TOPIC = "gbserver.tasks.Task.Created"

    @event("TaskCreated", topic="gbserver.tasks.TaskCreated")
    def __init__(
        self,
        owner: str,
        title: str,
        description: str | None,
        due_date: str | None,
        priority: str,
        status: str,
        assignee: str | None,
    ) -> None:
        self.owner = owner
        self.title = title
        self.description = description
        self.due_date = due_date
        self.priority = priority
        self.status = status
        self.assignee = assignee
        self.deleted = False

    def may_be_seen_by(self, email: str) -> bool:
        return email in (self.owner, self.assignee)

    def is_owned_by(self, email: str) -> bool:
        return email == self.owner

    def changes(self, fields: dict[str, Any]) -> set[str]:
        """The names of the given fields whose value differs from the task's."""
        return {
            name
            for name, value in fields.items()
            if name in (*EDITABLE, "status") and getattr(self, name) != value
        }

    def refused_to_assignee(self, fields: dict[str, Any]) -> list[str]:
        """The changes among `fields` that only the owner may make (values that stay the
        same are no change: a client may send the whole task back with a new status)."""
        return sorted(self.changes(fields) - set(ASSIGNEE_MAY_CHANGE))

    def change(self, actor: str, fields: dict[str, Any]) -> None:
        """Applies the given fields; the status moves through its own events."""
        self._ensure_alive()
        edits = {k: v for k, v in fields.items() if k in EDITABLE and getattr(self, k) != v}
        if edits:
            self._updated(actor=actor, changes=edits)
        status = fields.get("status")
        if status is not None and status != self.status:
            if status == "completed":
                self._completed(actor=actor)
            elif status == "cancelled":
                self._cancelled(actor=actor)
            else:
                self._reopened(actor=actor)

    def delete(self, actor: str) -> None:
        self._ensure_alive()
        self._deleted(actor=actor)

    def _ensure_alive(self) -> None:
        if self.deleted:
            raise Gone(f"task {self.id} was deleted")

    @event("TaskUpdated", topic="gbserver.tasks.TaskUpdated")
    def _updated(self, actor: str, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            setattr(self, name, value)

    @event("TaskCompleted", topic="gbserver.tasks.TaskCompleted")
    def _completed(self, actor: str) -> None:
        self.status = "completed"

    @event("TaskCancelled", topic="gbserver.tasks.TaskCancelled")
    def _cancelled(self, actor: str) -> None:
        self.status = "cancelled"

    @event("TaskReopened", topic="gbserver.tasks.TaskReopened")
    def _reopened(self, actor: str) -> None:
        self.status = "pending"

    @event("TaskDeleted", topic="gbserver.tasks.TaskDeleted")
    def _deleted(self, actor: str) -> None:
        self.deleted = True
