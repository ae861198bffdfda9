"""Wakes this process's feed workers when another process appends to the PostgreSQL log.

The event store library sends `NOTIFY <events table>` with each insert; listening on that
channel lets a relay or projection worker in a process that did not write (API replicas,
`gbserver relay`, the CLI's writes) react at once instead of at its next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from infra.config import Settings
from infra.eventstore import connect

log = logging.getLogger("gbserver.pgnotify")


class LogListener:
    def __init__(self, settings: Settings, channel: str, wake: Callable[[], None]) -> None:
        self.settings = settings
        self.channel = channel
        self.wake = wake
        self.name = "pg-listener"
        self.error: str | None = None
        self.ready = threading.Event()
        self.ready.set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @property
    def stalled(self) -> bool:
        """Never: it only wakes the workers, and fails only when PostgreSQL does."""
        return False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _connect(self) -> psycopg.Connection[Any]:
        conn = connect(self.settings)
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        return conn

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self.error = None
                    backoff = 0.5
                    self.wake()  # whatever was appended while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.wake()
            except psycopg.Error as e:
                if self.error is None:
                    log.warning("listening for new events failed: %s; retrying", e)
                self.error = str(e)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
