"""The loop every background worker runs: a named daemon thread that repeats a step.

A worker (a projection over the embedded log, the Kafka relay and projector, the
PostgreSQL listener) implements `_step`, which does the work until it fails or returns.
The loop outlives any one failure: it reports the first failure of a run once (in the
log, and in `error`, which health reads), waits, and steps again. The wait starts small,
doubles up to a cap, and starts small again once a step (or a unit of work inside a long
step, through `_recovered`) goes through.

Failures are classified: an outage (`_is_outage`: the database or Kafka is out of reach)
is waited out, while any other error means the worker is stuck on the log (`stalled`).
Exceptions in `quiet` are not failures: the loop steps again at once, reporting nothing.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from typing import ClassVar

log = logging.getLogger("gbserver.worker")


class Worker(ABC):
    name: str = "worker"
    logger: ClassVar[logging.Logger] = log
    # Exceptions that restart the step at once: no error, no log line, no backoff.
    quiet: ClassVar[tuple[type[BaseException], ...]] = ()
    backoff_start: ClassVar[float] = 0.2  # seconds before the first retry of a run
    backoff_cap: ClassVar[float] = 5.0
    stop_seconds: ClassVar[float] = 15.0  # how long `stop` waits for the thread by default

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.error: str | None = None  # the current failure, until the worker recovers
        self.last_failure: str | None = None  # the latest failure, kept after recovery
        self.outage = False  # the error is the database's or Kafka's, not the log's
        self.restarts = 0  # failures the loop caught before stepping again
        self.ready = threading.Event()  # set once the worker takes part (a projector: joined)
        self._stop = threading.Event()
        self._backoff = self.backoff_start
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @property
    def stalled(self) -> bool:
        """Failing on the log itself (an event it cannot apply), not waiting for storage."""
        return self.error is not None and not self.outage

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._wake()
        if self._thread.ident is not None:  # started
            self._thread.join(self.stop_seconds if timeout is None else timeout)
        self._close()

    # --- what a worker implements ---------------------------------------------------------

    @abstractmethod
    def _step(self) -> None:
        """Does the work until it fails, or returns (the loop steps again unless stopped)."""

    def _wake(self) -> None:  # noqa: B027 - a hook: nothing to do by default
        """Interrupts a wait inside `_step`, so that `stop` is seen at once."""

    def _close(self) -> None:  # noqa: B027 - a hook: nothing to do by default
        """Releases what `_step` holds (a client); called after the thread ends."""

    def _is_outage(self, exc: Exception) -> bool:
        """Whether a failure is the database's or Kafka's (waited out, not stalled)."""
        return False

    def _retry_after(self, exc: Exception) -> float | None:
        """A fixed wait before retrying after this failure; None for the growing backoff."""
        return None

    def _context(self) -> str:
        """Where the worker was, for the log line of a failure (" after 42")."""
        return ""

    # --- the loop -------------------------------------------------------------------------

    def _wait(self, seconds: float) -> bool:
        """Waits, but no longer than until `stop`; True when stopping."""
        return self._stop.wait(seconds)

    def _recovered(self) -> None:
        """Called after each unit of work that went through: clears a reported failure and
        starts the backoff small again."""
        self._backoff = self.backoff_start
        if self.error is not None:
            self.logger.info("%s recovered", self.name)
            self.error = None
            self.outage = False

    def _failed(self, exc: Exception) -> float:
        """Records a failure (logged when it starts a run); returns how long to wait."""
        first = self.error is None
        self.outage = self._is_outage(exc)
        self.error = self.last_failure = f"{type(exc).__name__}: {exc}"
        self.restarts += 1
        if first:
            self.logger.warning(
                "%s failed%s: %s; retrying",
                self.name,
                self._context(),
                exc,
                exc_info=None if self.outage else exc,
            )
        pause = self._retry_after(exc)
        if pause is None:
            pause = self._backoff
            self._backoff = min(self._backoff * 2, self.backoff_cap)
        return pause

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except self.quiet:
                continue  # e.g. a rebuild swapped the tables: start again from the store
            except Exception as e:  # noqa: BLE001 - a worker must outlive any one failure
                self._wait(self._failed(e))
            else:
                if not self._stop.is_set():
                    self._recovered()
