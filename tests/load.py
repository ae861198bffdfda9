"""Writes many events fast, straight through the write side (no HTTP), for crash tests."""

from __future__ import annotations

from domain.tasks import Task
from infra.bootstrap import Services
from infra.config import Settings


def write_tasks(env: dict[str, str], count: int, batch: int = 500, title: str = "load") -> None:
    """Saves `count` tasks (each created and then renamed: two events) in large transactions."""
    services = Services.open(Settings.from_env(env))
    try:
        for start in range(0, count, batch):
            tasks = []
            for i in range(start, min(count, start + batch)):
                task = Task(
                    owner="load@example.com",
                    title=f"{title} {i}",
                    description=None,
                    due_date=None,
                    priority="low",
                    status="pending",
                    assignee=None,
                )
                task.change("load@example.com", {"title": f"{title} {i} renamed"})
                tasks.append(task)
            services.events.save(*tasks)
    finally:
        services.close()
