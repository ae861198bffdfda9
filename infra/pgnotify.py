"""Wakes this process's feed workers when another process appends to the PostgreSQL log.

The event store library sends `NOTIFY <events table>` with each insert; listening on that
channel lets a relay or projection worker in a process that did not write (API replicas,
`gbserver relay`, the CLI's writes) react at once instead of at its next poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from infra.config import Settings
from infra.eventstore import connect
from infra.worker import Worker

log = logging.getLogger("gbserver.pgnotify")


class LogListener(Worker):
    logger = log
    backoff_start = 0.5
    stop_seconds = 5.0

    def __init__(self, settings: Settings, channel: str, wake: Callable[[], None]) -> None:
        super().__init__("pg-listener")
        self.settings = settings
        self.channel = channel
        self.wake = wake
        self.ready.set()

    @property
    def stalled(self) -> bool:
        """Never: it only wakes the workers, and fails only when PostgreSQL does."""
        return False

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, psycopg.Error)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.settings)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return conn

    def _step(self) -> None:
        with self._connect() as conn:
            self._recovered()
            self.wake()  # whatever was appended while we were not listening
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    self.wake()
