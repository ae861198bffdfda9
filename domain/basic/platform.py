"""The port through which a running dialog reaches the world, assembled from areas of keywords.

The domain does no I/O: the clock, randomness, memory, mail, tasks, calendar, meet, drive,
knowledge base and LLM all come in from the caller. Every turn has the core (CoreKeywords:
clock, random source, UUIDs, bot and user memory, PRINT, WAIT); every other area of keywords
(tasks, email, calendar, meet, drive, kb, llm: AREAS) is a provider the caller plugs in, one
Protocol per area, or leaves out. Platform is what the machine calls: it hands each keyword
to its area's provider, and a dialog that uses an area without one fails with a clear
message, "the <area> area is not available yet". Any keyword may raise PlatformError; the
machine turns it into a runtime error at the line that made the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from domain.basic.errors import PlatformError
from domain.basic.values import Value


class CoreKeywords(Protocol):
    """What every turn has."""

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

    def log(self, text: str) -> None:
        """PRINT: for the bot's log, never shown to the user."""
        ...

    def wait(self, seconds: float) -> None:
        """WAIT: an adapter may sleep, or record the pause and return at once."""
        ...


@runtime_checkable
class TaskKeywords(Protocol):
    """CREATE TASK."""

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value: ...


@runtime_checkable
class MailKeywords(Protocol):
    """SEND MAIL."""

    def send_mail(self, to: str, subject: str, body: str) -> None: ...


@runtime_checkable
class CalendarKeywords(Protocol):
    """BOOK."""

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value: ...


@runtime_checkable
class MeetKeywords(Protocol):
    """START MEET."""

    def start_meet(self, name: str) -> Value: ...


@runtime_checkable
class DriveKeywords(Protocol):
    """WRITE, READ, LIST, DELETE FILE, SEND FILE."""

    def write_file(self, path: str, content: str) -> None: ...

    def read_file(self, path: str) -> str: ...

    def list_files(self, folder: str) -> list[str]: ...

    def delete_file(self, path: str) -> None: ...

    def send_file(self, path: str, caption: str) -> str:
        """The message that sends the file (its caption and a link to it)."""
        ...


@runtime_checkable
class KnowledgeKeywords(Protocol):
    """USE KB, CLEAR KB, THINK KB."""

    def use_kb(self, name: str) -> None: ...

    def clear_kb(self) -> None: ...

    def think_kb(self, question: str) -> Value: ...


@runtime_checkable
class LlmKeywords(Protocol):
    """LLM, SET CONTEXT."""

    def llm(self, prompt: str) -> str: ...

    def set_context(self, name: str, text: str) -> None: ...


# The areas, by the name their refusal gives ("the email area is not available yet").
TASKS = "tasks"
EMAIL = "email"
CALENDAR = "calendar"
MEET = "meet"
DRIVE = "drive"
KB = "kb"
LLM = "llm"

AREAS: Mapping[str, type[Any]] = {
    TASKS: TaskKeywords,
    EMAIL: MailKeywords,
    CALENDAR: CalendarKeywords,
    MEET: MeetKeywords,
    DRIVE: DriveKeywords,
    KB: KnowledgeKeywords,
    LLM: LlmKeywords,
}


def unavailable(area: str) -> PlatformError:
    """The refusal of an area (or of one keyword of it) that has not landed."""
    return PlatformError(f"the {area} area is not available yet")


class Platform:
    """The core, and a provider per area that has one (`areas`: area name -> provider).

    A name outside AREAS, or a provider without its area's keywords, is refused here, when
    the platform is assembled, rather than at the first dialog that uses it.
    """

    def __init__(self, core: CoreKeywords, areas: Mapping[str, object] | None = None) -> None:
        areas = areas or {}
        for area, provider in areas.items():
            kind = AREAS.get(area)
            if kind is None:
                names = ", ".join(AREAS)
                raise ValueError(f"no area of keywords is named {area!r} (the areas: {names})")
            if not isinstance(provider, kind):
                raise TypeError(
                    f"{type(provider).__name__} lacks the {area} area's keywords ({kind.__name__})"
                )
        self.core = core
        found = areas.get
        self._tasks = p if isinstance(p := found(TASKS), TaskKeywords) else None
        self._mail = p if isinstance(p := found(EMAIL), MailKeywords) else None
        self._calendar = p if isinstance(p := found(CALENDAR), CalendarKeywords) else None
        self._meet = p if isinstance(p := found(MEET), MeetKeywords) else None
        self._drive = p if isinstance(p := found(DRIVE), DriveKeywords) else None
        self._kb = p if isinstance(p := found(KB), KnowledgeKeywords) else None
        self._llm = p if isinstance(p := found(LLM), LlmKeywords) else None

    # --- the core ------------------------------------------------------------------------

    def now(self) -> datetime:
        return self.core.now()

    def random(self) -> float:
        return self.core.random()

    def new_uuid(self) -> str:
        return self.core.new_uuid()

    def get_bot_memory(self, key: str) -> Value:
        return self.core.get_bot_memory(key)

    def set_bot_memory(self, key: str, value: Value) -> None:
        self.core.set_bot_memory(key, value)

    def get_user_memory(self, key: str) -> Value:
        return self.core.get_user_memory(key)

    def set_user_memory(self, key: str, value: Value) -> None:
        self.core.set_user_memory(key, value)

    def log(self, text: str) -> None:
        self.core.log(text)

    def wait(self, seconds: float) -> None:
        self.core.wait(seconds)

    # --- the areas -----------------------------------------------------------------------

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        if self._tasks is None:
            raise unavailable(TASKS)
        return self._tasks.create_task(title, assignee, due, priority)

    def send_mail(self, to: str, subject: str, body: str) -> None:
        if self._mail is None:
            raise unavailable(EMAIL)
        self._mail.send_mail(to, subject, body)

    def book(
        self, title: str, description: str, start: str, minutes: float, location: str
    ) -> Value:
        if self._calendar is None:
            raise unavailable(CALENDAR)
        return self._calendar.book(title, description, start, minutes, location)

    def start_meet(self, name: str) -> Value:
        if self._meet is None:
            raise unavailable(MEET)
        return self._meet.start_meet(name)

    def write_file(self, path: str, content: str) -> None:
        self._drive_area().write_file(path, content)

    def read_file(self, path: str) -> str:
        return self._drive_area().read_file(path)

    def list_files(self, folder: str) -> list[str]:
        return self._drive_area().list_files(folder)

    def delete_file(self, path: str) -> None:
        self._drive_area().delete_file(path)

    def send_file(self, path: str, caption: str) -> str:
        return str(self._drive_area().send_file(path, caption))

    def use_kb(self, name: str) -> None:
        self._kb_area().use_kb(name)

    def clear_kb(self) -> None:
        self._kb_area().clear_kb()

    def think_kb(self, question: str) -> Value:
        return self._kb_area().think_kb(question)

    def llm(self, prompt: str) -> str:
        return self._llm_area().llm(prompt)

    def set_context(self, name: str, text: str) -> None:
        self._llm_area().set_context(name, text)

    def _drive_area(self) -> DriveKeywords:
        if self._drive is None:
            raise unavailable(DRIVE)
        return self._drive

    def _kb_area(self) -> KnowledgeKeywords:
        if self._kb is None:
            raise unavailable(KB)
        return self._kb

    def _llm_area(self) -> LlmKeywords:
        if self._llm is None:
            raise unavailable(LLM)
        return self._llm


class UnavailableCore:
    """A core that refuses the clock, the random source, UUIDs and memory: the domain never
    invents them. PRINT and WAIT do nothing."""

    def now(self) -> datetime:
        raise unavailable("clock")

    def random(self) -> float:
        raise unavailable("random")

    def new_uuid(self) -> str:
        raise unavailable("uuid")

    def get_bot_memory(self, key: str) -> Value:
        raise unavailable("memory")

    def set_bot_memory(self, key: str, value: Value) -> None:
        raise unavailable("memory")

    def get_user_memory(self, key: str) -> Value:
        raise unavailable("memory")

    def set_user_memory(self, key: str, value: Value) -> None:
        raise unavailable("memory")

    def log(self, text: str) -> None:
        return None

    def wait(self, seconds: float) -> None:
        return None


class UnavailablePlatform(Platform):
    """No area at all and an UnavailableCore: everything a dialog asks of the world refuses
    with "the <area> area is not available yet"."""

    def __init__(self) -> None:
        super().__init__(UnavailableCore())
