"""What every projection shares: the read-store port and event dispatch by topic.

A projection writes its tables and its tracking position in one transaction, so a
batch that is delivered twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection as LibraryProjection

Row = dict[str, Any]


class Sql(Protocol):
    """One SQL dialect for SQLite and PostgreSQL: '?' placeholders, rows as dicts."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...


class ReadStore(Protocol):
    """The read-model database, with the event store library's tracking table."""

    def write(self, tracking: Tracking) -> AbstractContextManager[Sql]: ...

    def read(self) -> AbstractContextManager[Sql]: ...

    def migrate(self, statements: Sequence[str]) -> None: ...

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def insert_tracking(self, tracking: Tracking) -> None: ...

    def reset(self, application_name: str, tables: Sequence[str]) -> None: ...

    def size_bytes(self) -> int: ...


Handler = Callable[[Any, Sql, Any], None]
F = TypeVar("F", bound=Handler)


def handles(*topics: str) -> Callable[[F], F]:
    """Marks a projection method as the handler of events with these topics."""

    def mark(method: F) -> F:
        method.__handles__ = topics  # type: ignore[attr-defined]
        return method

    return mark


class Projection(LibraryProjection[Any]):
    """A read model fed by the notification log; subclasses declare schema and handlers."""

    schema: ClassVar[tuple[str, ...]] = ()
    tables: ClassVar[tuple[str, ...]] = ()
    _handlers: ClassVar[dict[str, Handler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[str, Handler] = {}
        for attr in vars(cls).values():
            for topic in getattr(attr, "__handles__", ()):
                handlers[topic] = attr
        cls._handlers = handlers
        cls.topics = tuple(handlers)

    def __init__(self, view: ReadStore) -> None:
        super().__init__(view)
        self.create_schema()

    def create_schema(self) -> None:
        self.view.migrate(self.schema)

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.process_batch([(domain_event, tracking)])

    def process_batch(
        self, batch: Sequence[tuple[Any, Tracking]], tracking_name: str | None = None
    ) -> None:
        """Applies events in order and records the last position, in one transaction.

        The position is kept under the projection's name, or under `tracking_name` for a
        feed that delivers the log in several ordered parts (one per Kafka partition).
        """
        if not batch:
            return
        last = batch[-1][1].notification_id
        with self.view.write(Tracking(tracking_name or self.name, last)) as sql:
            for domain_event, _ in batch:
                self._handlers[type(domain_event).TOPIC](self, sql, domain_event)

    def reset(self) -> None:
        """Drops this projection's tables and positions, then creates them empty."""
        self.view.reset(self.name, self.tables)
        self.create_schema()


T = TypeVar("T")


class Pagination(msgspec.Struct):
    total: int
    limit: int
    offset: int
    has_more: bool


class Page(msgspec.Struct, Generic[T]):
    data: list[T]
    pagination: Pagination


def page(items: list[T], total: int, limit: int, offset: int) -> Page[T]:
    return Page(items, Pagination(total, limit, offset, offset + len(items) < total))
