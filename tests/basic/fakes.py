"""A fake platform for dialog tests: fixed clock, seeded random, every effect recorded."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

from domain.basic import PlatformError, Value

CLOCK = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=-3)))


def call_text(name: str, *args: object) -> str:
    """How an effect reads in a .chat file: send_mail("a@b.c", "Hi", "Body")."""
    return f"{name}({', '.join(json.dumps(a, ensure_ascii=False) for a in args)})"


class FakePlatform:
    """Implements the Platform port in memory; `failing` names methods that raise."""

    def __init__(self, seed: int = 42, failing: frozenset[str] = frozenset()) -> None:
        self.rng = random.Random(seed)
        self.uuids = 0
        self.failing = failing
        self.effects: list[str] = []
        self.bot_memory: dict[str, Value] = {}
        self.user_memory: dict[str, Value] = {}
        self.files: dict[str, str] = {}
        self.clock = CLOCK

    def _record(self, name: str, *args: object) -> None:
        self.effects.append(call_text(name, *args))
        if name in self.failing:
            raise PlatformError(f"{name} failed")

    def take_effects(self) -> list[str]:
        taken, self.effects = self.effects, []
        return taken

    def now(self) -> datetime:
        return self.clock

    def random(self) -> float:
        return self.rng.random()

    def new_uuid(self) -> str:
        self.uuids += 1
        return f"00000000-0000-4000-8000-{self.uuids:012d}"

    def get_bot_memory(self, key: str) -> Value:
        self._record("get_bot_memory", key)
        return self.bot_memory.get(key)

    def set_bot_memory(self, key: str, value: Value) -> None:
        self._record("set_bot_memory", key, value)
        self.bot_memory[key] = value

    def get_user_memory(self, key: str) -> Value:
        self._record("get_user_memory", key)
        return self.user_memory.get(key)

    def set_user_memory(self, key: str, value: Value) -> None:
        self._record("set_user_memory", key, value)
        self.user_memory[key] = value

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        self._record("create_task", title, assignee, due, priority)
        return {"id": "task-1", "title": title}

    def send_mail(self, to: str, subject: str, body: str) -> None:
        self._record("send_mail", to, subject, body)

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value:
        self._record("book", title, description, start, minutes, location)
        return {"id": "event-1"}

    def start_meet(self, name: str) -> Value:
        self._record("start_meet", name)
        return "https://meet.example/" + name.lower().replace(" ", "-")

    def write_file(self, path: str, content: str) -> None:
        self._record("write_file", path, content)
        self.files[path] = content

    def read_file(self, path: str) -> str:
        self._record("read_file", path)
        if path not in self.files:
            raise PlatformError(f"file {path} not found")
        return self.files[path]

    def list_files(self, folder: str) -> list[str]:
        self._record("list_files", folder)
        prefix = folder.rstrip("/") + "/"
        return sorted(p for p in self.files if p.startswith(prefix))

    def delete_file(self, path: str) -> None:
        self._record("delete_file", path)
        self.files.pop(path, None)

    def send_file(self, path: str, caption: str) -> None:
        self._record("send_file", path, caption)

    def use_kb(self, name: str) -> None:
        self._record("use_kb", name)

    def clear_kb(self) -> None:
        self._record("clear_kb")

    def think_kb(self, question: str) -> Value:
        self._record("think_kb", question)
        return [{"title": "FAQ", "text": "About " + question}]

    def llm(self, prompt: str) -> str:
        self._record("llm", prompt)
        return "LLM: " + prompt

    def set_context(self, name: str, text: str) -> None:
        self._record("set_context", name, text)

    def log(self, text: str) -> None:
        self._record("log", text)

    def wait(self, seconds: float) -> None:
        self._record("wait", seconds)
