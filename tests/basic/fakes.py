"""A fake platform for dialog tests: fixed clock, seeded random, every effect recorded.

It is assembled as the server's is (domain.basic.platform.Platform): a fake core and a fake
provider per area of keywords, all recording into one list, in call order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from domain.basic import Platform, PlatformError, Value
from domain.basic.platform import AREAS, CALENDAR, DRIVE, EMAIL, KB, LLM, MEET, TASKS

CLOCK = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=-3)))


def call_text(name: str, *args: object) -> str:
    """How an effect reads in a .chat file: send_mail("a@b.c", "Hi", "Body")."""
    return f"{name}({', '.join(json.dumps(a, ensure_ascii=False) for a in args)})"


class Recorder:
    """The effects of a turn, in order; a call named in `failing` raises after it is recorded."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.failing = failing
        self.effects: list[str] = []

    def __call__(self, name: str, *args: object) -> None:
        self.effects.append(call_text(name, *args))
        if name in self.failing:
            raise PlatformError(f"{name} failed")


class FakeCore:
    def __init__(self, record: Recorder, seed: int = 42) -> None:
        self.record = record
        self.rng = random.Random(seed)
        self.uuids = 0
        self.bot_memory: dict[str, Value] = {}
        self.user_memory: dict[str, Value] = {}
        self.clock = CLOCK

    def now(self) -> datetime:
        return self.clock

    def random(self) -> float:
        return self.rng.random()

    def new_uuid(self) -> str:
        self.uuids += 1
        return f"00000000-0000-4000-8000-{self.uuids:012d}"

    def get_bot_memory(self, key: str) -> Value:
        self.record("get_bot_memory", key)
        return self.bot_memory.get(key)

    def set_bot_memory(self, key: str, value: Value) -> None:
        self.record("set_bot_memory", key, value)
        self.bot_memory[key] = value

    def get_user_memory(self, key: str) -> Value:
        self.record("get_user_memory", key)
        return self.user_memory.get(key)

    def set_user_memory(self, key: str, value: Value) -> None:
        self.record("set_user_memory", key, value)
        self.user_memory[key] = value

    def log(self, text: str) -> None:
        self.record("log", text)

    def wait(self, seconds: float) -> None:
        self.record("wait", seconds)


class FakeTasks:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        self.record("create_task", title, assignee, due, priority)
        return {"id": "task-1", "title": title}


class FakeMail:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def send_mail(self, to: str, subject: str, body: str) -> None:
        self.record("send_mail", to, subject, body)


class FakeCalendar:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value:
        self.record("book", title, description, start, minutes, location)
        return {"id": "event-1"}


class FakeMeet:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def start_meet(self, name: str) -> Value:
        self.record("start_meet", name)
        return "https://meet.example/" + name.lower().replace(" ", "-")


class FakeDrive:
    def __init__(self, record: Recorder) -> None:
        self.record = record
        self.files: dict[str, str] = {}

    def write_file(self, path: str, content: str) -> None:
        self.record("write_file", path, content)
        self.files[path] = content

    def read_file(self, path: str) -> str:
        self.record("read_file", path)
        if path not in self.files:
            raise PlatformError(f"file {path} not found")
        return self.files[path]

    def list_files(self, folder: str) -> list[str]:
        self.record("list_files", folder)
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def delete_file(self, path: str) -> None:
        self.record("delete_file", path)
        self.files.pop(path, None)

    def send_file(self, path: str, caption: str) -> str:
        self.record("send_file", path, caption)
        return f"{caption}: {path}" if caption else path


class FakeKnowledge:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def use_kb(self, name: str) -> None:
        self.record("use_kb", name)

    def clear_kb(self) -> None:
        self.record("clear_kb")

    def think_kb(self, question: str) -> Value:
        self.record("think_kb", question)
        return [{"title": "FAQ", "text": "About " + question}]


class FakeLlmKeywords:
    def __init__(self, record: Recorder) -> None:
        self.record = record

    def llm(self, prompt: str) -> str:
        self.record("llm", prompt)
        return "LLM: " + prompt

    def set_context(self, name: str, text: str) -> None:
        self.record("set_context", name, text)


class FakePlatform(Platform):
    """The fake core and the fake providers of `areas` (all of them unless told); `failing`
    names calls that raise. bot_memory, user_memory and files are the fakes' own."""

    def __init__(
        self,
        seed: int = 42,
        failing: frozenset[str] = frozenset(),
        areas: Iterable[str] = AREAS,
    ) -> None:
        self.record = Recorder(failing)
        core = FakeCore(self.record, seed)
        drive = FakeDrive(self.record)
        providers: dict[str, object] = {
            TASKS: FakeTasks(self.record),
            EMAIL: FakeMail(self.record),
            CALENDAR: FakeCalendar(self.record),
            MEET: FakeMeet(self.record),
            DRIVE: drive,
            KB: FakeKnowledge(self.record),
            LLM: FakeLlmKeywords(self.record),
        }
        super().__init__(core, {area: providers[area] for area in areas})
        # What a test may set up before the dialog runs (tests.basic.chat: "setup").
        self.bot_memory = core.bot_memory
        self.user_memory = core.user_memory
        self.files = drive.files

    def take_effects(self) -> list[str]:
        taken, self.record.effects = self.record.effects, []
        return taken
