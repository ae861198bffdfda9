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


# pg_advisory_lock key ("gbserver" in ASCII) held while tables are created: PostgreSQL's
# CREATE TABLE/TYPE IF NOT EXISTS is not safe against a concurrent creator (the loser gets
# a unique violation on pg_type), which two processes starting on a new database hit.
SCHEMA_LOCK = 0x6762736572766572


@contextmanager
def schema_lock(settings: Settings) -> Iterator[None]:
    """Serialises schema creation across processes (PostgreSQL only; SQLite locks itself).

    Connecting first also turns the pool's opaque "couldn't get a connection after 5.00 sec"
    into the server's own reason (wrong password, no such database, refused...).
    """
    if not settings.uses_postgres:
        yield
        return
    import psycopg

    env = settings.postgres_env()
    where = (
        f"{env['POSTGRES_USER']}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        f"/{env['POSTGRES_DBNAME']}"
    )
    try:
        conn = psycopg.connect(
            dbname=env["POSTGRES_DBNAME"],
            host=env["POSTGRES_HOST"],
            port=env["POSTGRES_PORT"],
            user=env["POSTGRES_USER"],
            password=env["POSTGRES_PASSWORD"],
            connect_timeout=int(env["POSTGRES_CONNECT_TIMEOUT"]),
            autocommit=True,
        )
    except psycopg.Error as e:
        raise StoreUnavailable(f"cannot connect to PostgreSQL {where}: {e}") from e
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
        yield
    finally:
        conn.close()  # ends the session, which releases the lock


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
        with schema_lock(settings):  # the library creates its tables here
            super().__init__(env=persistence_env(settings))
        self._saved_listeners: list[Callable[[int, set[str]], None]] = []
        self._lock = threading.Lock()

    def on_saved(self, listener: Callable[[int, set[str]], None]) -> None:
        """Calls listener(last notification id, topics) after each save in this process."""
        with self._lock:
            self._saved_listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        if recordings:
            last = max(r.notification.id for r in recordings)
            topics = {r.notification.topic for r in recordings}
            for listener in list(self._saved_listeners):
                listener(last, topics)


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
