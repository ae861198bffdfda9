"""The worker loop (infra.worker.Worker): backoff, failure reports, stop, quiet restarts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eventsourcing.persistence import Tracking

from commands.ports import StoreUnavailable, StoreUnreachable
from infra.runner import LogSignal, Positions, ProjectionWorker
from infra.worker import Worker
from projections.core import Rebuilt

LONG = 10.0  # a generous bound for what should take milliseconds


class Boom(Exception):
    pass


class Down(Exception):
    """Classified as an outage by the workers below."""


class Swapped(Exception):
    """Quiet: the step starts again at once."""


@dataclass(frozen=True)
class Wait:
    """What the loop did after a failure: how long it waited, and what it reported then."""

    seconds: float
    error: str | None
    outage: bool
    stalled: bool


class Recording(Worker):
    """Records the loop's waits (without waiting, unless `real`), so the test reads the
    backoff instead of timing it."""

    real = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[Wait] = []
        self._changed = threading.Condition()

    def _wait(self, seconds: float) -> bool:
        with self._changed:
            self.waits.append(Wait(seconds, self.error, self.outage, self.stalled))
            self._changed.notify_all()
        return super()._wait(seconds) if self.real else self._stop.is_set()

    def until(self, done: Callable[[], bool]) -> None:
        with self._changed:
            assert self._changed.wait_for(done, timeout=LONG)

    def seconds(self) -> list[float]:
        return [w.seconds for w in self.waits]


class Progress:
    """A step that gets a unit of work through, then fails."""

    def __init__(self, then: Exception) -> None:
        self.then = then


Action = Exception | Progress | None


class Scripted(Recording):
    """Each step takes the next action: raise it, or (None) return; when the script is done,
    the step waits for `stop`."""

    backoff_start = 0.01
    backoff_cap = 0.04
    quiet = (Swapped,)

    def __init__(self, *script: Action) -> None:
        super().__init__("scripted")
        self.script = list(script)
        self.steps = 0
        self.done = threading.Event()

    def _is_outage(self, exc: Exception) -> bool:
        return isinstance(exc, Down)

    def _step(self) -> None:
        self.steps += 1
        if not self.script:
            self.done.set()
            self._stop.wait()
            return
        action = self.script.pop(0)
        if isinstance(action, Progress):
            self._recovered()
            raise action.then
        if action is not None:
            raise action


@pytest.fixture
def run() -> Iterator[Callable[[Scripted], Scripted]]:
    """Starts a worker and waits until its script is done; stops it at the end."""
    started: list[Worker] = []

    def go(worker: Scripted) -> Scripted:
        started.append(worker)
        worker.start()
        assert worker.done.wait(LONG)
        return worker

    yield go
    for worker in started:
        worker.stop(LONG)


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_success(
    run: Callable[[Scripted], Scripted],
) -> None:
    w = run(Scripted(*[Boom("x")] * 5, None, Boom("y"), Boom("y")))
    assert w.seconds() == [0.01, 0.02, 0.04, 0.04, 0.04, 0.01, 0.02]
    assert w.restarts == 7
    assert w.error == w.last_failure == "Boom: y"


def test_a_unit_of_work_inside_a_step_resets_the_backoff(
    run: Callable[[Scripted], Scripted],
) -> None:
    w = run(Scripted(Boom(), Boom(), Boom(), Progress(Boom()), Boom()))
    assert w.seconds() == [0.01, 0.02, 0.04, 0.01, 0.02]


def test_recovery_clears_the_error_but_keeps_the_last_failure(
    run: Callable[[Scripted], Scripted],
) -> None:
    w = run(Scripted(Boom("first"), Down("second"), None))
    assert w.restarts == 2
    assert w.error is None and not w.outage and not w.stalled
    assert w.last_failure == "Down: second"


def test_an_outage_is_not_a_stall(run: Callable[[Scripted], Scripted]) -> None:
    w = run(Scripted(Down("db gone"), Boom("bad event"), Down("db gone again")))
    assert w.waits == [
        Wait(0.01, "Down: db gone", outage=True, stalled=False),
        Wait(0.02, "Boom: bad event", outage=False, stalled=True),
        Wait(0.04, "Down: db gone again", outage=True, stalled=False),
    ]
    assert w.error == "Down: db gone again" and w.outage and not w.stalled
    w.stop(LONG)  # a step that returns because the worker stops has not recovered
    assert w.error == "Down: db gone again"


def test_a_run_of_failures_is_logged_once_and_so_is_the_recovery(
    run: Callable[[Scripted], Scripted], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gbserver.worker")
    run(Scripted(Boom("1"), Boom("2"), Boom("3"), None, Down("4"), Down("5"), None))
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        ("WARNING", "scripted failed: 1; retrying", True),  # unexpected: with its traceback
        ("INFO", "scripted recovered", False),
        ("WARNING", "scripted failed: 4; retrying", False),  # an outage: no traceback
        ("INFO", "scripted recovered", False),
    ]


def test_quiet_exceptions_restart_the_step_at_once_without_an_error(
    run: Callable[[Scripted], Scripted], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gbserver.worker")
    w = run(Scripted(Swapped(), Swapped(), Boom("b"), Swapped(), Boom("c")))
    assert w.steps == 6  # five actions, then the step that waits for stop
    assert w.seconds() == [0.01, 0.02]  # no wait for a quiet one, and no doubling either
    assert w.restarts == 2
    assert w.error == "Boom: c"  # a quiet restart neither reports nor clears an error
    mine = [r.getMessage() for r in caplog.records if r.name == "gbserver.worker"]
    assert mine == ["scripted failed: b; retrying"]


def test_stop_interrupts_the_backoff_wait() -> None:
    class Failing(Recording):
        real = True
        backoff_start = 60.0

        def _step(self) -> None:
            raise Boom("again")

    w = Failing("failing")
    w.start()
    w.until(lambda: len(w.waits) == 1)  # the loop is in (or entering) its 60 s wait
    began = time.monotonic()
    w.stop(LONG)
    assert not w._thread.is_alive()
    assert time.monotonic() - began < LONG
    assert w.seconds() == [60.0]


def test_stop_wakes_a_step_and_closes_after_the_thread_ends() -> None:
    calls: list[str] = []

    class Sleeper(Worker):
        def __init__(self) -> None:
            super().__init__("sleeper")
            self.bell = threading.Event()

        def _step(self) -> None:
            self.ready.set()
            self.bell.wait()  # sees no stop flag: only `_wake` ends it
            calls.append("step returned")

        def _wake(self) -> None:
            calls.append("wake")
            self.bell.set()

        def _close(self) -> None:
            calls.append("close")

    w = Sleeper()
    w.start()
    assert w.ready.wait(LONG)
    w.stop(LONG)
    assert not w._thread.is_alive()
    assert calls == ["wake", "step returned", "close"]
    assert w.error is None and w.restarts == 0


def test_a_worker_never_started_stops() -> None:
    closed: list[bool] = []

    class Idle(Worker):
        def _step(self) -> None:
            raise AssertionError("never runs")

        def _close(self) -> None:
            closed.append(True)

    Idle().stop(LONG)
    assert closed == [True]


# --- the projection worker over the embedded log ---------------------------------------------


@dataclass(frozen=True)
class Note:
    id: int


class FakeEvents:
    def __init__(self, size: int) -> None:
        self.log = [Note(i) for i in range(1, size + 1)]

    def max_notification_id(self) -> int:
        return len(self.log)

    def notifications(self, after: int, limit: int, topics: Sequence[str]) -> list[Note]:
        return [n for n in self.log if n.id > after][:limit]

    def decode(self, n: Note) -> Note:
        return n


class FakeView:
    def __init__(self) -> None:
        self.tracked: dict[str, int] = {}

    def max_tracking_id(self, name: str) -> int | None:
        return self.tracked.get(name)


class FakeProjection:
    """Fails with each of `failures` in turn, then applies every batch; counts the reads of
    its generation (which must come before each read of its position)."""

    name = "fake"
    topics = ("T",)

    def __init__(self, *failures: Exception) -> None:
        self.view = FakeView()
        self.failures = list(failures)
        self.applied: list[int] = []
        self.generations = 0

    def load_generation(self) -> None:
        self.generations += 1

    def process_batch(self, batch: Sequence[tuple[Note, Tracking]]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.applied += [n.id for n, _ in batch]
        self.view.tracked[self.name] = batch[-1][1].notification_id


class RecordingProjectionWorker(Recording, ProjectionWorker):
    pass


def _projection_worker(projection: FakeProjection, size: int) -> RecordingProjectionWorker:
    events, positions = FakeEvents(size), Positions()
    return RecordingProjectionWorker(projection, events, LogSignal(), positions)


def test_projection_worker_retries_storage_soon_and_backs_off_on_the_log() -> None:
    projection = FakeProjection(
        StoreUnreachable("connection lost"),
        StoreUnreachable("connection lost"),
        StoreUnavailable("lock timeout"),
        ValueError("cannot apply"),
        ValueError("cannot apply"),
    )
    w = _projection_worker(projection, 3)
    w.start()
    try:
        # the error clears as the batch applies, before the position advances
        assert w.positions.wait_for({"fake": 3}, time.monotonic() + LONG)
        assert w.error is None
    finally:
        w.stop(LONG)
    unreachable = "StoreUnreachable: connection lost"
    assert w.waits == [
        # an outage: not stalled, retried after 0.2 s every time, the backoff untouched
        Wait(0.2, unreachable, outage=True, stalled=False),
        Wait(0.2, unreachable, outage=True, stalled=False),
        # the store failing a statement: soon again, but reported as stalled
        Wait(0.2, "StoreUnavailable: lock timeout", outage=False, stalled=True),
        # an event it cannot apply: the growing backoff
        Wait(0.1, "ValueError: cannot apply", outage=False, stalled=True),
        Wait(0.2, "ValueError: cannot apply", outage=False, stalled=True),
    ]
    assert projection.applied == [1, 2, 3]
    assert w.restarts == 5 and w.last_failure == "ValueError: cannot apply"
    assert not w.stalled


def test_projection_worker_reads_its_position_again_after_a_rebuild(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    projection = FakeProjection(Rebuilt("fake"), Rebuilt("fake"))
    w = _projection_worker(projection, 3)
    w.start()
    try:
        assert w.positions.wait_for({"fake": 3}, time.monotonic() + LONG)
    finally:
        w.stop(LONG)
    assert projection.applied == [1, 2, 3]
    assert projection.generations == 3  # the first step, and once after each swap
    assert w.waits == [] and w.restarts == 0
    assert w.error is None and w.last_failure is None
    assert [r for r in caplog.records if r.name.startswith("gbserver")] == []
