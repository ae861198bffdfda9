"""PostgreSQL databases for tests: one fresh database per caller, dropped afterwards.

Set GB_TEST_DATABASE_URL to an admin URL (a role with CREATEDB), e.g. the one
`scripts/services up postgres` prints. Without it, fresh_database_url() returns None
and callers fall back to (or skip in favour of) the embedded SQLite profile.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ENV = "GB_TEST_DATABASE_URL"
DROP_PATIENCE = 30.0  # seconds a drop waits for processes the test role may not end
PREFIX = "gbtest_"
ROOT = Path(__file__).resolve().parents[1]


def _with_database(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, parts.fragment))


def _database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ValueError(f"database URL names no database: {url!r}")
    return name


def _admin_connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the server's maintenance database (CREATE/DROP DATABASE
    cannot run inside a transaction block, nor while connected to the target database)."""
    return psycopg.connect(
        _with_database(url.replace("postgres://", "postgresql://", 1), "postgres"),
        autocommit=True,
        connect_timeout=5,
    )


def fresh_database_url() -> str | None:
    """A new, empty database's URL on the GB_TEST_DATABASE_URL server; None when unset."""
    admin = os.environ.get(ENV, "").strip()
    if not admin:
        return None
    name = f"{PREFIX}{uuid.uuid4().hex[:16]}"
    with _admin_connect(admin) as conn:
        # template0 + C collation: text orders by code point, as it does in SQLite.
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    return _with_database(admin, name)


def drop_database(url: str) -> None:
    """Drops the database a fresh_database_url() returned, even with clients still attached."""
    admin = os.environ.get(ENV, "").strip() or url
    name = _database_name(url)
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    deadline = time.monotonic() + DROP_PATIENCE
    with _admin_connect(admin) as conn:
        # WITH (FORCE) (PostgreSQL 13+) ends the sessions of servers that were killed
        # rather than stopped, whose connections may linger for a moment. An autovacuum
        # worker in the database is a process the test role may not end (it is no member of
        # pg_signal_backend): it finishes in moments, so the drop is tried again meanwhile.
        while True:
            try:
                conn.execute(drop)
                return
            except psycopg.errors.InsufficientPrivilege:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def service(action: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Runs `scripts/services ACTION postgres` (up, down, status) on GB_TEST_DATABASE_URL's
    local cluster: the port comes from the URL, the cluster name from GB_PG_CLUSTER (main)."""
    admin = os.environ.get(ENV, "").strip()
    env = dict(os.environ)
    if admin:
        env["GB_PG_PORT"] = str(urlsplit(admin).port or 5432)
    return subprocess.run(
        [str(ROOT / "scripts" / "services"), action, "postgres"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
