"""The read side's database: our SQL layer over the event store library's tracking recorders.

SQLite (embedded) and PostgreSQL (scaled) differ in placeholders, in how a database's size
is measured and, for PostgreSQL, in an advisory lock around DDL and a snapshot per read;
projections see one dialect.

In PostgreSQL the read models live in the event store's database and schema: the library's
objects (gbserver_events, gbserver_read_tracking, stored_event_uuid, ...) and the
projections' (tasks, api_tokens, paper_documents and their indexes) do not collide, and no
transaction touches both sides. Text sorts by the database's collation, so give it a
code-point one (C, C.UTF-8) to order as SQLite does; scripts/services does.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment

from infra.config import Settings
from infra.eventstore import (
    SCHEMA_LOCK,
    Breaker,
    breaker_for,
    persistence_env,
    schema_lock,
    single_attempt,
    store_errors,
)

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")

log = logging.getLogger("gbserver")


class SqlCursor:
    """Adapts a DB-API cursor to projections.core.Sql."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        # psycopg takes %s placeholders and so reads a literal % (LIKE 'a%') as one too:
        # double it first. A '?' inside a string literal would be rewritten: bind it instead.
        if self.dialect == "sqlite":
            return sql
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._sql(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), [tuple(r) for r in rows])

    def fetchone(self) -> dict[str, Any] | None:
        row = self._cursor.fetchone()
        return None if row is None else dict(row)

    def fetchall(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._cursor.fetchall()]


class _SqlReadStore:
    dialect = "sqlite"
    datastore: Any
    breaker: Breaker | None = None  # PostgreSQL's: see infra.eventstore.Breaker

    def _tracking_table(self) -> str:
        return "tracking"

    def _lock_schema(self, cursor: Any) -> None:
        """Taken before DDL, in its transaction; PostgreSQL needs it (SQLite's writes lock)."""

    @contextmanager
    def write(self, tracking: Tracking) -> Iterator[SqlCursor]:
        with store_errors(self.breaker), self.datastore.transaction(commit=True) as c:
            yield SqlCursor(c, self.dialect)
            # The library's own statement: refuses a position that does not advance.
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    @contextmanager
    def read(self) -> Iterator[SqlCursor]:
        with store_errors(self.breaker), self.datastore.transaction(commit=False) as c:
            yield SqlCursor(c, self.dialect)

    def migrate(self, statements: Sequence[str]) -> None:
        with store_errors(self.breaker), self.datastore.transaction(commit=True) as c:
            self._lock_schema(c)
            for statement in statements:
                c.execute(statement)

    def reset(self, application_name: str, tables: Sequence[str]) -> None:
        with store_errors(self.breaker), self.datastore.transaction(commit=True) as c:
            self._lock_schema(c)
            for table in tables:
                if not _SAFE_NAME.match(table):
                    raise ValueError(f"unsafe table name {table!r}")
                c.execute(f"DROP TABLE IF EXISTS {table}")
            cursor = SqlCursor(c, self.dialect)
            cursor.execute(
                f"DELETE FROM {self._tracking_table()}"
                " WHERE application_name = ? OR application_name LIKE ?",
                (application_name, f"{application_name}:%"),
            )


class SQLiteReadStore(_SqlReadStore, SQLiteTrackingRecorder):
    dialect = "sqlite"

    def size_bytes(self) -> int:
        name = Path(self.datastore.pool.db_name)
        return sum(
            os.path.getsize(p) for p in (name, name.with_name(name.name + "-wal")) if p.exists()
        )


class PostgresReadStore(_SqlReadStore, PostgresTrackingRecorder):
    """Read models in the event store's database and schema, beside the library's tables."""

    dialect = "postgresql"

    # Each operation tried once and behind the breaker, as the event store's are.
    insert_tracking = single_attempt(PostgresTrackingRecorder.insert_tracking)
    has_tracking_id = single_attempt(PostgresTrackingRecorder.has_tracking_id)
    _max_tracking_id_once = single_attempt(PostgresTrackingRecorder.max_tracking_id)

    def max_tracking_id(self, application_name: str) -> int | None:
        with store_errors(self.breaker):
            position: int | None = self._max_tracking_id_once(application_name)
            return position

    def _tracking_table(self) -> str:
        return f'"{self.datastore.schema}"."{self.tracking_table_name}"'

    @contextmanager
    def write(self, tracking: Tracking) -> Iterator[SqlCursor]:
        # Pipeline mode sends a batch's statements without waiting for each reply: a
        # projection's many small UPDATEs cost one round trip instead of one each.
        with (
            store_errors(self.breaker),
            self.datastore.transaction(commit=True) as c,
            c.connection.pipeline(),
        ):
            yield SqlCursor(c, self.dialect)
            # A cursor of its own: in pipeline mode a fetch on the projection's cursor could
            # read an earlier statement's result instead of this INSERT ... RETURNING.
            with c.connection.cursor() as own:
                self._insert_tracking(own, tracking)

    def _lock_schema(self, cursor: Any) -> None:
        # Two processes creating the same table or index at once: one would fail (see
        # infra.eventstore.SCHEMA_LOCK). Released when the transaction ends.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))

    @contextmanager
    def read(self) -> Iterator[SqlCursor]:
        # One snapshot for the whole read, as in SQLite: under PostgreSQL's default READ
        # COMMITTED a page's COUNT(*) and its rows could see different commits.
        with store_errors(self.breaker), self.datastore.transaction(commit=False) as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield SqlCursor(c, self.dialect)

    def size_bytes(self) -> int:
        with self.read() as sql:
            sql.execute("SELECT pg_database_size(current_database()) AS size")
            row = sql.fetchone()
        return int(row["size"]) if row else 0

    def check_collation(self) -> None:
        """Warns when text will not sort by code point (orders would differ from SQLite's)."""
        with self.read() as sql:
            # Asks the collation itself (libc or ICU): linguistic ones put 'a' before 'B'
            # and skip punctuation ('a0' before 'a-b').
            sql.execute("SELECT 'B' < 'a' AND 'a-b' < 'a0' AS code_point")
            row = sql.fetchone()
        if row is not None and not row["code_point"]:
            log.warning(
                "the database's collation does not sort text by code point: lists ordered"
                " by text columns may differ from SQLite's; create the database with"
                " TEMPLATE template0 LC_COLLATE 'C' (as scripts/services and tests/pg.py do)"
            )


def open_read_store(settings: Settings) -> SQLiteReadStore | PostgresReadStore:
    env = Environment("gbserver_read", persistence_env(settings, purpose="read"))
    cls: type[Any] = PostgresReadStore if settings.uses_postgres else SQLiteReadStore
    with schema_lock(settings):  # the library creates its tracking table here
        factory = InfrastructureFactory.construct(env)
        store = cast(SQLiteReadStore | PostgresReadStore, factory.tracking_recorder(cls))
    if isinstance(store, PostgresReadStore):
        store.breaker = breaker_for(settings)  # the event store's: one database
        if store.breaker is not None:
            store.breaker.guard(store.datastore.pool)
        store.check_collation()
    return store
