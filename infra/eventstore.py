"""The write side: eventsourcing's Application over SQLite (embedded) or PostgreSQL (scaled)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    Recording,
)

from commands.ports import ConcurrencyConflict, NotFound, Saved, StoreUnavailable
from infra.config import Settings

APP_NAME = "gbserver"


def persistence_env(settings: Settings, *, purpose: str = "events") -> dict[str, str]:
    """The library's settings for one of our stores ('events' or 'read')."""
    if settings.uses_postgres:
        return {"PERSISTENCE_MODULE": "eventsourcing.postgres", **settings.postgres_env()}
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(settings.data_dir / f"{purpose}.sqlite"),
        "SQLITE_LOCK_TIMEOUT": "30",
    }


@contextmanager
def store_errors() -> Iterator[None]:
    """Turns the library's persistence errors into the ports' errors."""
    try:
        yield
    except IntegrityError as e:
        raise ConcurrencyConflict(str(e)) from e
    except (OperationalError, InterfaceError) as e:
        raise StoreUnavailable(str(e)) from e


class GBApplication(Application[UUID]):
    name = APP_NAME

    def __init__(self, settings: Settings) -> None:
        super().__init__(env=persistence_env(settings))
        self._saved_listeners: list[Callable[[int], None]] = []
        self._lock = threading.Lock()

    def on_saved(self, listener: Callable[[int], None]) -> None:
        with self._lock:
            self._saved_listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        if recordings:
            last = max(r.notification.id for r in recordings)
            for listener in list(self._saved_listeners):
                listener(last)


class EventStoreAdapter:
    """Implements commands.ports.EventStore on the application."""

    def __init__(self, app: GBApplication) -> None:
        self.app = app

    def save(self, *aggregates: Any) -> Saved:
        with store_errors():
            recordings = self.app.save(*aggregates)
        return Saved(tuple((r.notification.id, r.notification.topic) for r in recordings))

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        try:
            with store_errors():
                return self.app.repository.get(aggregate_id, version=version)
        except AggregateNotFoundError:
            raise NotFound(str(aggregate_id)) from None

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        with store_errors():
            return list(self.app.events.get(aggregate_id))

    def max_notification_id(self) -> int:
        with store_errors():
            return self.app.recorder.max_notification_id() or 0

    def notifications(
        self, after: int, limit: int, topics: Sequence[str] = ()
    ) -> Sequence[Notification]:
        with store_errors():
            return self.app.recorder.select_notifications(
                start=after, limit=limit, topics=topics, inclusive_of_start=False
            )

    def decode(self, notification: Notification) -> Any:
        return self.app.mapper.to_domain_event(notification)

    def decode_state(self, state: bytes) -> dict[str, Any]:
        data: dict[str, Any] = self.app.mapper.transcoder.decode(state)
        return data
