"""What every projection shares: the read-store port, event dispatch by topic, and how a
projection fails.

A projection writes its tables and its tracking position in one transaction, so a
batch that is delivered twice changes nothing the second time.

Each projection has a control row (`gbserver_projections`): its generation, bumped when an
online rebuild swaps freshly built tables in (a worker that read its positions before the
swap gets `Rebuilt` and reads them again), its policy for an event it cannot apply
(`stop`: it stalls on that event until fixed; `skip`: the event goes to the dead letters,
`gbserver_dead_letters`, and the projection goes on), and the event it is stalled on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import msgspec
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection as LibraryProjection

from commands.ports import ConcurrencyConflict, StoreUnavailable

Row = dict[str, Any]
Policy = Literal["stop", "skip"]
POLICIES: tuple[Policy, ...] = ("stop", "skip")

log = logging.getLogger("gbserver.projections")

# The projections' control tables, in every read store (both dialects).
CONTROL_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gbserver_projections ("
    " name TEXT PRIMARY KEY, generation BIGINT NOT NULL DEFAULT 0,"
    " policy TEXT NOT NULL DEFAULT 'stop', stalled_on BIGINT, stalled_topic TEXT,"
    " error TEXT, failed_at TEXT, rebuild_started TEXT, rebuild_beat TEXT,"
    " rebuild_position BIGINT, rebuild_head BIGINT, rebuild_error TEXT)",
    "CREATE TABLE IF NOT EXISTS gbserver_dead_letters ("
    " id TEXT PRIMARY KEY, projection TEXT NOT NULL, notification_id BIGINT NOT NULL,"
    " topic TEXT NOT NULL, aggregate_id TEXT NOT NULL, aggregate_version BIGINT NOT NULL,"
    " error TEXT NOT NULL, recorded_at TEXT NOT NULL, retries BIGINT NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS gbserver_dead_letters_projection"
    " ON gbserver_dead_letters (projection, notification_id)",
)


class Sql(Protocol):
    """One SQL dialect for SQLite and PostgreSQL: '?' placeholders, rows as dicts."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    def fetchone(self) -> Row | None: ...

    def fetchall(self) -> list[Row]: ...


class Guard(msgspec.Struct, frozen=True):
    """What a projection's write checks first: that its tables are still the generation it
    read its positions for (an online rebuild may have swapped them since)."""

    name: str
    generation: int


class ReadStore(Protocol):
    """The read-model database, with the event store library's tracking table."""

    def write(
        self, tracking: Tracking | None, guard: Guard | None = None
    ) -> AbstractContextManager[Sql]:
        """One transaction: checks the guard first (raising `Rebuilt`), records the
        tracking position last (refusing one that does not advance)."""
        ...

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


class Rebuilt(Exception):
    """An online rebuild swapped this projection's tables in since its worker read its
    positions: the worker reads them again (nothing failed)."""


class Redelivered(ConcurrencyConflict):
    """A failed batch held an event the projection had already applied (a feed delivering
    twice): not the event's fault, so never a stall or a dead letter; positions are re-read."""


class Stalled(Exception):
    """The projection cannot apply this event and its policy is `stop`."""

    def __init__(self, projection: str, notification_id: int, topic: str, error: str) -> None:
        super().__init__(f"{projection} cannot apply event {notification_id} ({topic}): {error}")
        self.projection = projection
        self.notification_id = notification_id
        self.topic = topic
        self.error = error


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


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
        self.generation: int | None = None  # the tables' generation the positions are for
        self._stall_seen = False  # a stall is recorded: clear it once an event applies

    def create_schema(self) -> None:
        self.view.migrate((*CONTROL_SCHEMA, *self.schema))
        with self.view.write(None) as sql:
            sql.execute(
                "INSERT INTO gbserver_projections (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                (self.name,),
            )

    def load_generation(self) -> None:
        """Reads the tables' generation; call it BEFORE reading positions, so that a swap in
        between shows as `Rebuilt` at the next write instead of going unseen."""
        with self.view.read() as sql:
            sql.execute(
                "SELECT generation, stalled_on FROM gbserver_projections WHERE name = ?",
                (self.name,),
            )
            row = sql.fetchone()
        self.generation = int(row["generation"]) if row else 0
        self._stall_seen = bool(row and row["stalled_on"] is not None)

    def _guard(self) -> Guard:
        if self.generation is None:
            self.load_generation()
        assert self.generation is not None
        return Guard(self.name, self.generation)

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
        try:
            self._apply(batch, tracking_name)
        except (StoreUnavailable, Rebuilt):
            raise  # storage trouble or a swap: not this batch's fault
        except Exception:  # noqa: BLE001 - one event of the batch is poison: find it
            for one in batch:
                try:
                    self._apply([one], tracking_name)
                except (StoreUnavailable, Rebuilt):
                    raise
                except Exception as e:  # noqa: BLE001 - applied by the policy
                    self._failed(one, tracking_name, e)
        if self._stall_seen:
            self._clear_stall()

    def _apply(self, batch: Sequence[tuple[Any, Tracking]], tracking_name: str | None) -> None:
        last = batch[-1][1].notification_id
        with self.view.write(Tracking(tracking_name or self.name, last), self._guard()) as sql:
            for domain_event, _ in batch:
                self._handlers[type(domain_event).TOPIC](self, sql, domain_event)

    def apply_again(self, domain_event: Any) -> None:
        """Applies one event outside the feed's order (a dead letter's retry): no position
        moves; the guard, at the tables' current generation, holds off a swap meanwhile.
        (Not `self.generation`: that is the worker's, for the positions it read.)"""
        for attempt in (1, 2):
            with self.view.read() as sql:
                sql.execute(
                    "SELECT generation FROM gbserver_projections WHERE name = ?", (self.name,)
                )
                row = sql.fetchone()
            guard = Guard(self.name, int(row["generation"]) if row else 0)
            try:
                with self.view.write(None, guard) as sql:
                    self._handlers[type(domain_event).TOPIC](self, sql, domain_event)
                return
            except Rebuilt:
                if attempt == 2:
                    raise

    def _failed(
        self, item: tuple[Any, Tracking], tracking_name: str | None, error: Exception
    ) -> None:
        domain_event, tracking = item
        nid, topic = tracking.notification_id, type(domain_event).TOPIC
        view = self.view
        applied = max(
            view.max_tracking_id(tracking_name or self.name) or 0,
            view.max_tracking_id(self.name) or 0,
        )
        if nid <= applied:
            raise Redelivered(f"{self.name} already applied event {nid}") from error
        if self._policy() == "skip":
            log.warning("%s skips event %d (%s): %s", self.name, nid, topic, error)
            with self.view.write(Tracking(tracking_name or self.name, nid), self._guard()) as sql:
                sql.execute(
                    "INSERT INTO gbserver_dead_letters (id, projection, notification_id, topic,"
                    " aggregate_id, aggregate_version, error, recorded_at)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (
                        str(uuid.uuid4()),
                        self.name,
                        nid,
                        topic,
                        str(domain_event.originator_id),
                        domain_event.originator_version,
                        describe(error),
                        now_text(),
                    ),
                )
            return
        with self.view.write(None) as sql:
            sql.execute(
                "UPDATE gbserver_projections SET stalled_on = ?, stalled_topic = ?, error = ?,"
                " failed_at = ? WHERE name = ?",
                (nid, topic, describe(error), now_text(), self.name),
            )
        self._stall_seen = True
        raise Stalled(self.name, nid, topic, describe(error)) from error

    def _policy(self) -> Policy:
        with self.view.read() as sql:
            sql.execute("SELECT policy FROM gbserver_projections WHERE name = ?", (self.name,))
            row = sql.fetchone()
        return "skip" if row and row["policy"] == "skip" else "stop"

    def _clear_stall(self) -> None:
        with self.view.write(None) as sql:
            sql.execute(
                "UPDATE gbserver_projections SET stalled_on = NULL, stalled_topic = NULL,"
                " error = NULL, failed_at = NULL WHERE name = ?",
                (self.name,),
            )
        self._stall_seen = False

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


class Where:
    """A WHERE clause built a condition at a time, with its '?' parameters in order."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, *params: Any) -> Where:
        """ANDs a condition on, e.g. add("(owner = ? OR assignee = ?)", email, email)."""
        self.clauses.append(clause)
        self.params.extend(params)
        return self

    def equal(self, column: str, value: Any) -> Where:
        """ANDs `column = value` on, unless the value is None (the filter was not given)."""
        return self if value is None else self.add(f"{column} = ?", value)

    @property
    def sql(self) -> str:
        return f" WHERE {' AND '.join(self.clauses)}" if self.clauses else ""


class Listing(msgspec.Struct, Generic[T], frozen=True):
    """One paged list: `SELECT columns FROM from_ [WHERE ...] ORDER BY order`, and its count.

    `from_` may be a join that does not multiply the rows counted. A msgspec Struct `view`
    takes each row by column name (alias a column in `columns` where the names differ),
    leniently: SQLite's 0/1 for a boolean will do. Any other `view` is a function from a
    row to its view, for what a row holds encoded (JSON text).
    """

    view: type[T] | Callable[[Row], T]
    columns: str
    from_: str
    order: str

    def fetch(self, sql: Sql, limit: int, offset: int, where: Where | None = None) -> Page[T]:
        """The page and the count of all rows that match, on the caller's `store.read()`:
        one snapshot for both and for any check made before (the session exists...)."""
        where = Where() if where is None else where
        sql.execute(f"SELECT COUNT(*) AS n FROM {self.from_}{where.sql}", where.params)
        counted = sql.fetchone()
        sql.execute(
            f"SELECT {self.columns} FROM {self.from_}{where.sql} ORDER BY {self.order}"
            " LIMIT ? OFFSET ?",
            (*where.params, limit, offset),
        )
        rows = sql.fetchall()
        view = self.view
        if isinstance(view, type):
            items = [msgspec.convert(row, view, strict=False) for row in rows]
        else:
            items = [view(row) for row in rows]
        return page(items, int(counted["n"]) if counted else 0, limit, offset)
