"""The read side's database: our SQL layer over the event store library's tracking recorders.

SQLite (embedded) and PostgreSQL (scaled) differ only in placeholders and in how a
database's size is measured; projections see one dialect.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment

from infra.config import Settings
from infra.eventstore import persistence_env, store_errors

_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class SqlCursor:
    """Adapts a DB-API cursor to projections.core.Sql."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cursor = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else sql.replace("?", "%s")

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

    def _tracking_table(self) -> str:
        return "tracking"

    @contextmanager
    def write(self, tracking: Tracking) -> Iterator[SqlCursor]:
        with store_errors(), self.datastore.transaction(commit=True) as c:
            yield SqlCursor(c, self.dialect)
            # The library's own statement: refuses a position that does not advance.
            self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    @contextmanager
    def read(self) -> Iterator[SqlCursor]:
        with store_errors(), self.datastore.transaction(commit=False) as c:
            yield SqlCursor(c, self.dialect)

    def migrate(self, statements: Sequence[str]) -> None:
        with store_errors(), self.datastore.transaction(commit=True) as c:
            for statement in statements:
                c.execute(statement)

    def reset(self, application_name: str, tables: Sequence[str]) -> None:
        with store_errors(), self.datastore.transaction(commit=True) as c:
            for table in tables:
                if not _SAFE_NAME.match(table):
                    raise ValueError(f"unsafe table name {table!r}")
                c.execute(f"DROP TABLE IF EXISTS {table}")
            cursor = SqlCursor(c, self.dialect)
            cursor.execute(
                f"DELETE FROM {self._tracking_table()} WHERE application_name = ?",
                (application_name,),
            )


class SQLiteReadStore(_SqlReadStore, SQLiteTrackingRecorder):
    dialect = "sqlite"

    def size_bytes(self) -> int:
        name = Path(self.datastore.pool.db_name)
        return sum(
            os.path.getsize(p)
            for p in (name, name.with_name(name.name + "-wal"))
            if p.exists()
        )


class PostgresReadStore(_SqlReadStore, PostgresTrackingRecorder):
    dialect = "postgresql"

    def _tracking_table(self) -> str:
        return f"{self.datastore.schema}.{self.tracking_table_name}"

    def size_bytes(self) -> int:
        with self.read() as sql:
            sql.execute("SELECT pg_database_size(current_database()) AS size")
            row = sql.fetchone()
        return int(row["size"]) if row else 0


def open_read_store(settings: Settings) -> SQLiteReadStore | PostgresReadStore:
    env = Environment("gbserver_read", persistence_env(settings, purpose="read"))
    factory = InfrastructureFactory.construct(env)
    cls: type[Any] = PostgresReadStore if settings.uses_postgres else SQLiteReadStore
    store: SQLiteReadStore | PostgresReadStore = factory.tracking_recorder(cls)
    return store
