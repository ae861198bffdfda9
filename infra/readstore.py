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

import contextlib
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import psycopg
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder
from eventsourcing.utils import Environment
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from infra.config import Settings
from infra.eventstore import (
    SCHEMA_LOCK,
    Breaker,
    breaker_for,
    connect,
    persistence_env,
    schema_lock,
    single_attempt,
    store_errors,
)
from projections.core import Guard, Rebuilt

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
    def write(self, tracking: Tracking | None, guard: Guard | None = None) -> Iterator[SqlCursor]:
        with store_errors(self.breaker), self.datastore.transaction(commit=True) as c:
            if guard is not None:
                self._check_guard(c, guard)
            yield SqlCursor(c, self.dialect)
            if tracking is not None:
                # The library's own statement: refuses a position that does not advance.
                self._insert_tracking(c, tracking)  # type: ignore[attr-defined]

    def _check_guard(self, cursor: Any, guard: Guard) -> None:
        # A write first: it takes SQLite's write lock, so a swap (which bumps the generation
        # in its own write transaction) is either wholly before this batch or after it.
        cursor.execute(
            "UPDATE gbserver_projections SET generation = generation"
            " WHERE name = ? AND generation = ?",
            (guard.name, guard.generation),
        )
        if cursor.sqlite_cursor.rowcount != 1:
            raise Rebuilt(guard.name)

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

    def _lock_schema(self, cursor: Any) -> None:
        # The transaction began deferred, so DDL would take the write lock only at its first
        # change, after reading the schema; SQLite refuses such an upgrade at once (no wait)
        # while another process commits, so two processes starting on one data directory
        # failed with "database is locked". Begun again IMMEDIATE, it waits for the lock.
        cursor.execute("COMMIT")
        cursor.execute("BEGIN IMMEDIATE")

    def shadow(self, name: str) -> ShadowStore:
        return _sqlite_shadow(self, name)

    def swap(
        self, name: str, tables: Sequence[str], shadow: ShadowStore, catch_up: Callable[[], int]
    ) -> int:
        """Replaces the projection's tables with the shadow's in one transaction, after
        `catch_up` brought the shadow to the log's head while live writes wait."""
        return _sqlite_swap(self, name, tables, shadow, catch_up)

    def discard(self, shadow: ShadowStore) -> None:
        shadow.close()
        Path(shadow.where).unlink(missing_ok=True)

    def size_bytes(self) -> int:
        name = Path(self.datastore.pool.db_name)
        return sum(
            os.path.getsize(p) for p in (name, name.with_name(name.name + "-wal")) if p.exists()
        )


class PostgresReadStore(_SqlReadStore, PostgresTrackingRecorder):
    """Read models in the event store's database and schema, beside the library's tables."""

    dialect = "postgresql"
    settings: Settings  # set by open_read_store: a rebuild's connections are our own

    def shadow(self, name: str) -> ShadowStore:
        return _postgres_shadow(self.settings, name)

    def swap(
        self, name: str, tables: Sequence[str], shadow: ShadowStore, catch_up: Callable[[], int]
    ) -> int:
        """As SQLiteReadStore.swap; the shadow's tables move into the live schema."""
        return _postgres_swap(self.settings, self, name, tables, shadow, catch_up)

    def discard(self, shadow: ShadowStore) -> None:
        shadow.close()
        with contextlib.suppress(psycopg.Error), connect(self.settings) as conn:
            conn.execute(
                pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(shadow.where))
            )

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
    def write(self, tracking: Tracking | None, guard: Guard | None = None) -> Iterator[SqlCursor]:
        with store_errors(self.breaker), self.datastore.transaction(commit=True) as c:
            if guard is not None:
                self._check_guard(c, guard)
            # Pipeline mode sends a batch's statements without waiting for each reply: a
            # projection's many small UPDATEs cost one round trip instead of one each.
            with c.connection.pipeline():
                yield SqlCursor(c, self.dialect)
                if tracking is not None:
                    # A cursor of its own: in pipeline mode a fetch on the projection's cursor
                    # could read an earlier statement's result instead of this INSERT.
                    with c.connection.cursor() as own:
                        self._insert_tracking(own, tracking)

    def _check_guard(self, cursor: Any, guard: Guard) -> None:
        # A shared row lock: batches of one projection (on several Kafka partitions) run
        # side by side, while a swap's UPDATE of the row waits for them and holds them off.
        cursor.execute(
            "SELECT generation FROM gbserver_projections WHERE name = %s FOR SHARE",
            (guard.name,),
        )
        row = cursor.fetchone()
        if row is None or int(row["generation"]) != guard.generation:
            raise Rebuilt(guard.name)

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
        store.settings = settings
        store.breaker = breaker_for(settings)  # the event store's: one database
        if store.breaker is not None:
            store.breaker.guard(store.datastore.pool)
        store.check_collation()
    return store


# --- online rebuild: a shadow store to build into, and the swap -----------------------------


class ShadowStore:
    """An empty place beside the live read store where a projection is rebuilt while the
    live tables keep serving: a SQLite file of its own, or a PostgreSQL schema of its own.
    One connection, one writer; its position is kept in memory (it is only ever built
    from the log's start). `swap` moves what it holds into the live store."""

    def __init__(self, conn: Any, dialect: str, where: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.where = where  # the file (SQLite) or schema (PostgreSQL)
        self.position = 0

    def _cursor(self) -> Any:
        return self.conn.cursor()

    @contextmanager
    def write(self, tracking: Tracking | None, guard: Guard | None = None) -> Iterator[SqlCursor]:
        cursor = self._cursor()
        try:
            yield SqlCursor(cursor, self.dialect)
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            cursor.close()
        if tracking is not None:
            self.position = max(self.position, tracking.notification_id)

    @contextmanager
    def read(self) -> Iterator[SqlCursor]:
        with self.write(None) as sql:
            yield sql

    def migrate(self, statements: Sequence[str]) -> None:
        with self.write(None) as sql:
            for statement in statements:
                sql.execute(statement)

    def max_tracking_id(self, application_name: str) -> int | None:
        return self.position or None

    def insert_tracking(self, tracking: Tracking) -> None:
        self.position = max(self.position, tracking.notification_id)

    def reset(self, application_name: str, tables: Sequence[str]) -> None:
        with self.write(None) as sql:
            for table in tables:
                sql.execute(f"DROP TABLE IF EXISTS {_safe(table)}")
        self.position = 0

    def size_bytes(self) -> int:
        return 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


def _safe(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe table name {name!r}")
    return name


def _sqlite_shadow(live: SQLiteReadStore, name: str) -> ShadowStore:
    path = Path(f"{live.datastore.pool.db_name}.rebuild-{_safe(name)}")
    for stale in (path, path.with_name(path.name + "-journal")):
        stale.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # Disposable until the swap copies it (in the live store's own durable transaction).
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.isolation_level = "DEFERRED"  # commit() ends each write's implicit transaction
    return ShadowStore(conn, "sqlite", str(path))


def _sqlite_swap(
    live: SQLiteReadStore,
    name: str,
    tables: Sequence[str],
    shadow: ShadowStore,
    catch_up: Callable[[], int],
) -> int:
    conn = sqlite3.connect(live.datastore.pool.db_name, isolation_level=None, timeout=10)
    try:
        conn.execute("ATTACH DATABASE ? AS shadow", (shadow.where,))
        conn.execute("BEGIN")
        # The write lock first: the live workers' next batch waits, then sees a new generation.
        conn.execute(
            "UPDATE gbserver_projections SET generation = generation + 1 WHERE name = ?", (name,)
        )
        position = catch_up()  # the shadow's own connection: another file, not locked
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS main.{_safe(table)}")
        marks = ",".join("?" * len(tables))
        created = conn.execute(
            "SELECT sql FROM shadow.sqlite_master WHERE tbl_name IN"
            f" ({marks}) AND sql IS NOT NULL ORDER BY type = 'index', rowid",
            tuple(tables),
        ).fetchall()
        for (statement,) in created:
            conn.execute(statement)  # unqualified: creates in main
        for table in tables:
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM shadow.{table}")
        _move_control(conn, "?", live._tracking_table(), "shadow", name, position)
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE shadow")
    except BaseException as e:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
            raise SwapBusy(str(e)) from e
        raise
    finally:
        conn.close()
    return position


def _move_control(
    cursor: Any, mark: str, tracking: str, shadow: str, name: str, position: int
) -> None:
    """In the swap's transaction: the projection's positions become the shadow's (one, of
    the whole log), its dead letters the shadow's, and whatever it was stalled on is gone."""
    cursor.execute(
        f"DELETE FROM {tracking} WHERE application_name = {mark} OR application_name LIKE {mark}",
        (name, f"{name}:%"),
    )
    if position:
        cursor.execute(
            f"INSERT INTO {tracking} (application_name, notification_id) VALUES ({mark}, {mark})",
            (name, position),
        )
    cursor.execute(f"DELETE FROM gbserver_dead_letters WHERE projection = {mark}", (name,))
    cursor.execute(
        f"INSERT INTO gbserver_dead_letters SELECT * FROM {shadow}.gbserver_dead_letters"
        f" WHERE projection = {mark}",
        (name,),
    )
    cursor.execute(
        "UPDATE gbserver_projections SET stalled_on = NULL, stalled_topic = NULL, error = NULL,"
        f" failed_at = NULL WHERE name = {mark}",
        (name,),
    )


def _postgres_shadow(settings: Settings, name: str) -> ShadowStore:
    schema = f"gbserver_rebuild_{_safe(name)}"
    conn = connect(settings)
    conn.row_factory = dict_row
    ident = pgsql.Identifier(schema)
    conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
    conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(ident))
    conn.execute(pgsql.SQL("SET search_path TO {}").format(ident))
    conn.autocommit = False
    return ShadowStore(conn, "postgresql", schema)


SWAP_LOCK_TIMEOUT = "500ms"  # below deadlock_timeout: the swap gives way, not a reader


class SwapBusy(Exception):
    """The swap could not take its locks in time (long reads or batches): try again."""


@contextmanager
def _busy_as(error: type[Exception]) -> Iterator[None]:
    try:
        yield
    except (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected) as e:
        raise error(str(e)) from e


def _postgres_swap(
    settings: Settings,
    live: PostgresReadStore,
    name: str,
    tables: Sequence[str],
    shadow: ShadowStore,
    catch_up: Callable[[], int],
) -> int:
    with connect(settings) as conn, _busy_as(SwapBusy):
        conn.autocommit = False
        with conn.transaction(), conn.cursor() as c:
            c.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")
            c.execute(
                "UPDATE gbserver_projections SET generation = generation + 1 WHERE name = %s",
                (name,),
            )
            position = catch_up()
            c.execute("SELECT current_schema()")
            target = pgsql.Identifier(str(c.fetchone()[0]))  # type: ignore[index]
            source = pgsql.Identifier(shadow.where)
            for table in tables:
                t = pgsql.Identifier(_safe(table))
                c.execute(pgsql.SQL("DROP TABLE IF EXISTS {}.{}").format(target, t))
                c.execute(pgsql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(source, t, target))
            _move_control(c, "%s", live._tracking_table(), f'"{shadow.where}"', name, position)
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(source))
        conn.commit()
    return position
