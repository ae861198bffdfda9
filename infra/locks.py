"""Locks that one process holds at a time, across processes: a PostgreSQL session-level
advisory lock (beside a PostgreSQL store) or an flock (beside a SQLite store). Both are
released when the holding process dies. The Kafka relay holds one per topic; an online
rebuild one per projection."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import psycopg

from infra.config import Settings
from infra.eventstore import connect

log = logging.getLogger("gbserver.locks")


class LockLost(Exception):
    """The lock is no longer held: another process may hold it now."""


class Lock(ABC):
    @abstractmethod
    def acquire(self) -> bool:
        """Takes the lock if free (never waits); True when this process holds it."""

    @abstractmethod
    def check(self) -> None:
        """Raises LockLost unless the lock is still held."""

    @abstractmethod
    def release(self) -> None: ...


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key of the name."""
    digest = hashlib.blake2b(f"gbserver {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresLock(Lock):
    """A session-level advisory lock on a connection of its own: PostgreSQL releases it when
    the session ends (process killed, connection lost, or, with `idle_timeout`, silent for
    that long: for a holder that proves it is alive by using the connection)."""

    def __init__(self, settings: Settings, name: str, idle_timeout: str | None = None) -> None:
        self.settings = settings
        self.key = lock_key(name)
        self.idle_timeout = idle_timeout
        self._mutex = threading.Lock()  # a holder and its heartbeat may share the connection
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False

    def acquire(self) -> bool:
        with self._mutex:
            if self._held:
                return True
            if self._conn is None or self._conn.closed:
                self._conn = connect(self.settings)
                if self.idle_timeout is not None:
                    try:
                        self._conn.execute(f"SET idle_session_timeout = '{self.idle_timeout}'")
                    except psycopg.Error as e:  # PostgreSQL < 14: a hung holder keeps it
                        log.info("lock without idle_session_timeout: %s", e)
            try:
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except psycopg.Error:
                self._drop()
                raise
            self._held = bool(row and row[0])
            return self._held

    def check(self) -> None:
        with self._mutex:
            if not self._held or self._conn is None:
                raise LockLost("the lock is not held")
            try:
                self._conn.execute("SELECT 1")
            except psycopg.Error as e:
                self._drop()
                raise LockLost(f"the lock's session ended: {e}") from e

    def release(self) -> None:
        with self._mutex:
            if self._held and self._conn is not None:
                # At once: closing alone leaves the lock to the backend's exit, which PostgreSQL
                # completes a moment after the client has gone.
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()  # ends the session, which releases the lock
            self._conn = None


class FileLock(Lock):
    """Beside a SQLite store: an exclusive flock, released when the process exits."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.path = data_dir / f"lock-{lock_key(name) & 0xFFFFFFFFFFFFFFFF:x}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def check(self) -> None:
        if self._fd is None:
            raise LockLost("the lock is not held")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def lock_for(settings: Settings, name: str, idle_timeout: str | None = None) -> Lock:
    """The lock called `name` beside the configured store."""
    if settings.uses_postgres:
        return PostgresLock(settings, name, idle_timeout)
    return FileLock(settings.data_dir, name)
