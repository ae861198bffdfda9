"""The port through which a running dialog reaches the world.

The domain does no I/O: the clock, randomness, memory, mail, tasks, calendar, meet, drive,
knowledge base and LLM all come in through this Protocol, implemented by the caller. Any
method may raise PlatformError; the machine turns it into a runtime error at the line that
made the call. UnavailablePlatform is a base whose areas all refuse, so an adapter can be
built one area at a time and a dialog that uses a missing area fails with a clear message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from domain.basic.errors import PlatformError
from domain.basic.values import Value


class Platform(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (NOW, TODAY, HEAR AS DATE 'today')."""
        ...

    def random(self) -> float:
        """A number in [0, 1) (RANDOM, RND)."""
        ...

    def new_uuid(self) -> str: ...

    def get_bot_memory(self, key: str) -> Value: ...

    def set_bot_memory(self, key: str, value: Value) -> None: ...

    def get_user_memory(self, key: str) -> Value:
        """Also what RECALL reads."""
        ...

    def set_user_memory(self, key: str, value: Value) -> None:
        """Also what REMEMBER writes."""
        ...

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value: ...

    def send_mail(self, to: str, subject: str, body: str) -> None: ...

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value: ...

    def start_meet(self, name: str) -> Value: ...

    def write_file(self, path: str, content: str) -> None: ...

    def read_file(self, path: str) -> str: ...

    def list_files(self, folder: str) -> list[str]: ...

    def delete_file(self, path: str) -> None: ...

    def send_file(self, path: str, caption: str) -> None: ...

    def use_kb(self, name: str) -> None: ...

    def clear_kb(self) -> None: ...

    def think_kb(self, question: str) -> Value: ...

    def llm(self, prompt: str) -> str: ...

    def set_context(self, name: str, text: str) -> None: ...

    def log(self, text: str) -> None:
        """PRINT: for the bot's log, never shown to the user."""
        ...

    def wait(self, seconds: float) -> None:
        """WAIT: an adapter may sleep, or record the pause and return at once."""
        ...


def _unavailable(area: str) -> PlatformError:
    return PlatformError(f"the {area} area is not available yet")


class UnavailablePlatform:
    """Every area refuses; subclass it and override the areas that exist.

    The clock, random source and UUID source refuse too: the domain never invents them.
    PRINT and WAIT do nothing.
    """

    def now(self) -> datetime:
        raise _unavailable("clock")

    def random(self) -> float:
        raise _unavailable("random")

    def new_uuid(self) -> str:
        raise _unavailable("uuid")

    def get_bot_memory(self, key: str) -> Value:
        raise _unavailable("memory")

    def set_bot_memory(self, key: str, value: Value) -> None:
        raise _unavailable("memory")

    def get_user_memory(self, key: str) -> Value:
        raise _unavailable("memory")

    def set_user_memory(self, key: str, value: Value) -> None:
        raise _unavailable("memory")

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        raise _unavailable("tasks")

    def send_mail(self, to: str, subject: str, body: str) -> None:
        raise _unavailable("email")

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value:
        raise _unavailable("calendar")

    def start_meet(self, name: str) -> Value:
        raise _unavailable("meet")

    def write_file(self, path: str, content: str) -> None:
        raise _unavailable("drive")

    def read_file(self, path: str) -> str:
        raise _unavailable("drive")

    def list_files(self, folder: str) -> list[str]:
        raise _unavailable("drive")

    def delete_file(self, path: str) -> None:
        raise _unavailable("drive")

    def send_file(self, path: str, caption: str) -> None:
        raise _unavailable("drive")

    def use_kb(self, name: str) -> None:
        raise _unavailable("kb")

    def clear_kb(self) -> None:
        raise _unavailable("kb")

    def think_kb(self, question: str) -> Value:
        raise _unavailable("kb")

    def llm(self, prompt: str) -> str:
        raise _unavailable("llm")

    def set_context(self, name: str, text: str) -> None:
        raise _unavailable("llm")

    def log(self, text: str) -> None:
        return None

    def wait(self, seconds: float) -> None:
        return None
