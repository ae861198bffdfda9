"""Dialog keywords by area (issue 8): the platform a dialog runs on is assembled from the
areas' providers; an area plugged in makes its keywords work, an area left out refuses them
with "the <area> area is not available yet"."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from commands.ports import Saved
from commands.sessions import APOLOGY, Deployed, SendMessage, SessionCommands
from commands.tasks import DialogTasks
from commands.turn import TurnContext
from domain.basic import Platform, parse, resume, start
from domain.basic.platform import AREAS, LLM, TASKS, UnavailableCore
from domain.common import Actor
from domain.sessions import Session
from domain.tasks import Task
from infra.config import Settings
from infra.eventstore import EventStoreAdapter, GBApplication
from tests.basic.fakes import FakePlatform

# A line using each area's keywords, and the effect its provider records.
USES = {
    "tasks": ('CREATE TASK "t", "a@example.com", "2025-01-01"', "create_task"),
    "email": ('SEND MAIL "a@b.c", "s", "b"', "send_mail"),
    "calendar": ('BOOK "t", "d", "2025-01-01", 30, "here"', "book"),
    "meet": ('x = START MEET "m"', "start_meet"),
    "drive": ('WRITE "a.txt", "x"', "write_file"),
    "kb": ('USE KB "faq"', "use_kb"),
    "llm": ('x = LLM "hi"', "llm"),
}


def run(source: str, platform: Platform) -> tuple[list[str], str | None]:
    program = parse(source, dialog="m", version=1)
    turn = resume(start(program, dialog="m", version=1), lambda n, v: program, None, platform)
    return turn.outputs, turn.error.message if turn.error else None


def test_every_area_has_a_line_here() -> None:
    assert set(USES) == set(AREAS)


@pytest.mark.parametrize("area", sorted(USES))
def test_an_area_plugged_in_runs_its_keywords_and_left_out_refuses_them(area: str) -> None:
    line, effect = USES[area]
    source = f'TALK "before"\n{line}\nTALK "after"\n'

    only = FakePlatform(areas=[area])
    assert run(source, only) == (["before", "after"], None)
    assert [e.split("(", 1)[0] for e in only.take_effects()] == [effect]

    others = FakePlatform(areas=[a for a in AREAS if a != area])
    assert run(source, others) == (["before"], f"the {area} area is not available yet")
    assert others.take_effects() == []


def test_the_platform_refuses_an_unknown_area_or_a_provider_without_its_keywords() -> None:
    with pytest.raises(ValueError, match="no area of keywords is named 'mail'"):
        Platform(UnavailableCore(), {"mail": object()})

    class Half:
        def use_kb(self, name: str) -> None: ...

    with pytest.raises(TypeError, match="Half lacks the kb area's keywords"):
        Platform(UnavailableCore(), {"kb": Half()})


# --- the server's turn: SessionCommands with and without the tasks area -------------------


class OneDialog:
    """A catalog with one deployed `start` dialog."""

    def __init__(self, source: str) -> None:
        self.deployed = Deployed("dialog-1", 1, source)

    def live(self, bot_id: str, name: str) -> Deployed | None:
        return self.deployed if name == "start" else None

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        return self.live(bot_id, name)

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        return self.deployed


class Recording:
    """An event store that keeps what each save was given."""

    def __init__(self, store: EventStoreAdapter) -> None:
        self.store = store
        self.saved: list[tuple[Any, ...]] = []

    def save(self, *aggregates: Any) -> Saved:
        self.saved.append(aggregates)
        return self.store.save(*aggregates)

    def get(self, aggregate_id: UUID, version: int | None = None) -> Any:
        return self.store.get(aggregate_id, version)

    def history(self, aggregate_id: UUID) -> Sequence[Any]:
        return self.store.history(aggregate_id)


@pytest.fixture
def event_store(tmp_path: Path) -> Iterator[EventStoreAdapter]:
    app = GBApplication(Settings(data_dir=tmp_path))
    yield EventStoreAdapter(app)
    app.close()


WITH_TASK = 'CREATE TASK "Call back", "Ops@Example.com", "2030-01-15", "high"\nTALK "made"\n'
ACTOR = Actor("a@example.com")


def first_message(
    event_store: EventStoreAdapter, commands: SessionCommands, store: Recording
) -> tuple[list[Any], list[Any]]:
    """Sends "hi" to a new session; returns its events of the turn and what the turn saved."""
    session = Session(owner=ACTOR.email, bot_id="b", user_id=ACTOR.email, metadata={})
    event_store.save(session)
    before = len(event_store.history(session.id))
    commands.send(ACTOR, session.id, SendMessage(content="hi"))
    (turn_saved,) = store.saved
    return list(event_store.history(session.id))[before:], list(turn_saved)


def test_with_the_tasks_area_create_task_saves_a_task_with_the_turn(
    event_store: EventStoreAdapter,
) -> None:
    store = Recording(event_store)
    commands = SessionCommands(store, OneDialog(WITH_TASK), keywords={TASKS: DialogTasks})
    events, saved = first_message(event_store, commands, store)
    assert [e.parts for e in events if type(e).__name__ == "ReplySent"] == [["made"]]
    assert not [e for e in events if type(e).__name__ == "DialogFailed"]
    (task,) = [a for a in saved if isinstance(a, Task)]
    stored = event_store.get(task.id)
    assert (stored.owner, stored.title, stored.assignee, stored.priority) == (
        ACTOR.email,
        "Call back",
        "ops@example.com",
        "high",
    )
    assert stored.due_date.startswith("2030-01-15T23:59:59")  # the end of that day, UTC


def test_without_the_tasks_area_create_task_fails_the_dialog(
    event_store: EventStoreAdapter,
) -> None:
    store = Recording(event_store)
    commands = SessionCommands(store, OneDialog(WITH_TASK))
    events, saved = first_message(event_store, commands, store)
    assert [e.parts for e in events if type(e).__name__ == "ReplySent"] == [[APOLOGY]]
    failed = [(e.line, e.message) for e in events if type(e).__name__ == "DialogFailed"]
    assert failed == [(1, "the tasks area is not available yet")]
    assert not [a for a in saved if isinstance(a, Task)]


def test_the_llm_area_comes_from_the_llm_given(event_store: EventStoreAdapter) -> None:
    """No LLM configured: LLM says so; SET CONTEXT has not landed in the llm area."""
    for source, refusal in (
        ('x = LLM "hi"\n', "no LLM is configured (GB_LLM_URL)"),
        ('SET CONTEXT "c" AS "text"\n', "the llm area is not available yet"),
    ):
        store = Recording(event_store)
        events, _ = first_message(event_store, SessionCommands(store, OneDialog(source)), store)
        failed = [(e.line, e.message) for e in events if type(e).__name__ == "DialogFailed"]
        assert failed == [(1, refusal)], source


def test_session_commands_refuse_keywords_of_no_area_and_a_second_llm(
    event_store: EventStoreAdapter,
) -> None:
    def tasks(turn: TurnContext) -> object:
        return DialogTasks(turn)

    with pytest.raises(ValueError, match="no area of keywords is named mail"):
        SessionCommands(event_store, OneDialog(""), keywords={"mail": tasks})
    with pytest.raises(ValueError, match="the llm area's keywords come from the LLM"):
        SessionCommands(event_store, OneDialog(""), keywords={LLM: tasks})
