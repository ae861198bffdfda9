"""Session commands: open, close, and take a user message through the bot.

A message goes, in order, to the dialog waiting at a HEAR, else to the bot's `start` dialog
(on a session's first message), else to the answer pipeline. Everything a turn changes —
the session's events, tasks it created, memory it set — is saved in one transaction, so a
side effect before a HEAR happens exactly once, whatever crashes.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid5

import msgspec
from msgspec import Meta

from commands.fields import Email, InvalidField, parse_when
from commands.idempotency import Claim, save_claimed, save_new
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.basic import (
    BasicSyntaxError,
    PlatformError,
    Program,
    State,
    Turn,
    UnavailablePlatform,
    Value,
    parse,
    resume,
    start,
)
from domain.common import Actor, Forbidden, rfc3339
from domain.sessions import Memory, Session
from domain.tasks import PRIORITIES, Task

log = logging.getLogger("gbserver.dialogs")

BotId = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
START_DIALOG = "start"
APOLOGY = "Sorry, something went wrong on my side. Please try again."
NO_ANSWER = "I'm sorry, I don't know the answer to that yet."
_MEMORY = UUID("0b1c7d1e-6a52-4d7e-9d55-3c1a3f0b8e21")


class OpenSession(msgspec.Struct, forbid_unknown_fields=True):
    bot_id: BotId = "default"
    user_id: Email | None = None
    metadata: dict[str, Any] = {}


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    content: Annotated[str, Meta(min_length=1, max_length=10_000)]
    type: Literal["text"] = "text"


class DialogCatalog(Protocol):
    """The bot's deployed dialogs (the Designer's versions)."""

    def live(self, bot_id: str, name: str) -> tuple[int, str] | None:
        """(version, source) of the dialog's live version, None if never deployed."""
        ...

    def source(self, bot_id: str, name: str, version: int) -> str | None: ...


class Llm(Protocol):
    def complete(self, system: str, prompt: str) -> str: ...


def dialog_name(name: str) -> str:
    """`CALL "Other.bas"` and a dialog named `other` are the same dialog."""
    name = name.strip()
    return (name[:-4] if name.lower().endswith(".bas") else name).lower()


class TurnPlatform(UnavailablePlatform):
    """What a dialog may do during one turn; changes are collected and saved with the turn.

    Areas that have not landed yet (mail, calendar, meet, drive, knowledge base) keep
    UnavailablePlatform's refusal: "the <area> area is not available yet".
    """

    def __init__(
        self,
        store: EventStore,
        session: Session,
        clock: Callable[[], datetime],
        llm: Llm | None,
    ) -> None:
        self.store = store
        self.session = session
        self.clock = clock
        self.llm_port = llm
        self.changed: dict[UUID, Any] = {}

    def now(self) -> datetime:
        return self.clock()

    def random(self) -> float:
        return random.random()

    def new_uuid(self) -> str:
        return str(uuid.uuid4())

    def _memory(self, scope: str) -> Memory:
        memory_id = uuid5(_MEMORY, scope)
        if memory_id in self.changed:
            found: Memory = self.changed[memory_id]
            return found
        try:
            loaded = self.store.get(memory_id)
        except NotFound:
            loaded = Memory(scope=scope, id=memory_id)
        if not isinstance(loaded, Memory):
            raise PlatformError(f"memory {scope} is unreadable")
        return loaded

    def _set(self, scope: str, key: str, value: Value) -> None:
        memory = self._memory(scope)
        memory.set(key=str(key), value=value)
        self.changed[memory.id] = memory

    def _bot_scope(self) -> str:
        return f"bot:{self.session.bot_id}"

    def _user_scope(self) -> str:
        return f"user:{self.session.bot_id}:{self.session.user_id}"

    def get_bot_memory(self, key: str) -> Value:
        value: Value = self._memory(self._bot_scope()).values.get(str(key))
        return value

    def set_bot_memory(self, key: str, value: Value) -> None:
        self._set(self._bot_scope(), key, value)

    def get_user_memory(self, key: str) -> Value:
        value: Value = self._memory(self._user_scope()).values.get(str(key))
        return value

    def set_user_memory(self, key: str, value: Value) -> None:
        self._set(self._user_scope(), key, value)

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        title = str(title).strip()
        if not 1 <= len(title) <= 500:
            raise PlatformError("CREATE TASK needs a title of 1 to 500 characters")
        chosen = (priority or "medium").lower()
        if chosen not in PRIORITIES:
            raise PlatformError(f"CREATE TASK priority must be one of {', '.join(PRIORITIES)}")
        task = Task(
            owner=self.session.user_id,
            title=title,
            description=None,
            due_date=_due(due),
            priority=chosen,
            status="pending",
            assignee=(str(assignee).strip().lower() or None) if assignee else None,
        )
        self.changed[task.id] = task
        return str(task.id)

    def llm(self, prompt: str) -> str:
        if self.llm_port is None:
            raise PlatformError("no LLM is configured (GB_LLM_URL)")
        return self.llm_port.complete("You are a helpful assistant.", str(prompt))

    def log(self, text: str) -> None:
        log.info("session %s: %s", self.session.id, text)

    def wait(self, seconds: float) -> None:
        """WAIT does not hold a server thread: the pause is the client's to render."""


def _due(value: str) -> str | None:
    text = str(value).strip() if value else ""
    if not text:
        return None
    if len(text) == 10:  # YYYY-MM-DD: the end of that day in UTC
        text += "T23:59:59Z"
    try:
        return rfc3339(parse_when(text, "due"))
    except InvalidField:
        raise PlatformError(f"CREATE TASK due date {value!r} is not a date") from None


class SessionCommands:
    def __init__(
        self,
        store: EventStore,
        catalog: DialogCatalog,
        llm: Llm | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.llm = llm
        self.clock = clock
        self._programs: dict[tuple[str, str, int], Program] = {}

    def open(self, actor: Actor, cmd: OpenSession, claim: Claim | None = None) -> tuple[str, Saved]:
        user = (cmd.user_id or actor.email).lower()
        if user != actor.email and not actor.is_admin:
            raise Forbidden("only admins open sessions for other users")
        session = Session(owner=actor.email, bot_id=cmd.bot_id, user_id=user, metadata=cmd.metadata)
        return str(session.id), save_new(self.store, session, claim)

    def close(self, actor: Actor, session_id: UUID) -> Saved:
        session = self._load(actor, session_id)
        session.close(actor.email)
        return self.store.save(session)

    def send(
        self, actor: Actor, session_id: UUID, cmd: SendMessage, claim: Claim | None = None
    ) -> tuple[str, Saved]:
        """Runs one turn; returns the reply's message id. A retried Idempotency-Key runs
        nothing again (AlreadyClaimed names the first reply)."""
        session = self._load(actor, session_id)
        received_id = str(uuid.uuid4())
        session.receive(received_id, cmd.content, cmd.type)
        platform = TurnPlatform(self.store, session, self.clock, self.llm)
        parts, suggestions, source = self._turn(session, cmd.content, platform)
        reply_id = str(uuid.uuid4())
        session.reply(reply_id, received_id, parts, suggestions, source)
        try:
            saved = save_claimed(self.store, claim, reply_id, session, *platform.changed.values())
        except ConcurrencyConflict:
            raise ConcurrencyConflict(
                "another message to this session was being answered; send again"
            ) from None
        return reply_id, saved

    def _turn(
        self, session: Session, text: str, platform: TurnPlatform
    ) -> tuple[list[str], list[dict[str, Any]], str]:
        if session.dialog_state is not None:
            state = State.from_data(session.dialog_state)
            turn = resume(state, self._program_for(session.bot_id), text, platform)
            return self._after(session, turn)
        if not session.started:
            session.dialog_started()
            live = self.catalog.live(session.bot_id, START_DIALOG)
            if live is not None:
                try:
                    program = self._program(session.bot_id, START_DIALOG, live[0], live[1])
                except PlatformError as e:
                    session.dialog_failed(dialog=START_DIALOG, line=0, message=str(e))
                    return [APOLOGY], [], "dialog"
                state = start(
                    program,
                    dialog=START_DIALOG,
                    version=live[0],
                    session={
                        "user_email": session.user_id,
                        "user_name": session.user_id.split("@", 1)[0],
                        "bot_id": session.bot_id,
                    },
                )
                turn = resume(state, self._program_for(session.bot_id), None, platform)
                return self._after(session, turn)
        return self._answer(text, platform)

    def _after(self, session: Session, turn: Turn) -> tuple[list[str], list[dict[str, Any]], str]:
        parts = list(turn.outputs)
        if turn.error is not None:
            session.dialog_failed(
                dialog=turn.error.dialog, line=turn.error.line, message=turn.error.message
            )
            parts.append(APOLOGY)
        elif turn.state is not None and turn.waiting:
            session.suspend(turn.state.to_data())
        else:
            session.dialog_ended()
        return parts, list(turn.suggestions), "dialog"

    def _answer(
        self, text: str, platform: TurnPlatform
    ) -> tuple[list[str], list[dict[str, Any]], str]:
        """No dialog is waiting: the LLM if one is configured, else a polite 'I don't know'."""
        if self.llm is not None:
            try:
                return [self.llm.complete("You are a helpful assistant.", text)], [], "llm"
            except PlatformError as e:
                log.warning("LLM failed: %s", e)
        return [NO_ANSWER], [], "fallback"

    def _program_for(self, bot_id: str) -> Callable[[str, int | None], Program]:
        def program_for(name: str, version: int | None) -> Program:
            key = dialog_name(name)
            if version is None:
                live = self.catalog.live(bot_id, key)
                if live is None:
                    raise PlatformError(f"dialog {key} is not deployed")
                return self._program(bot_id, key, live[0], live[1])
            source = self.catalog.source(bot_id, key, version)
            if source is None:
                raise PlatformError(f"dialog {key} version {version} is not deployed")
            return self._program(bot_id, key, version, source)

        return program_for

    def _program(self, bot_id: str, name: str, version: int, source: str) -> Program:
        """Deployed versions never change, so their parsed programs are kept."""
        key = (bot_id, name, version)
        program = self._programs.get(key)
        if program is None:
            try:
                program = parse(source, dialog=name, version=version)
            except BasicSyntaxError as e:
                raise PlatformError(f"dialog {name} v{version} does not parse: {e}") from e
            if len(self._programs) > 500:
                self._programs.clear()
            self._programs[key] = program
        return program

    def _load(self, actor: Actor, session_id: UUID) -> Session:
        session = self.store.get(session_id)
        if not isinstance(session, Session):
            raise NotFound(str(session_id))
        if not (actor.is_admin or session.may_be_seen_by(actor.email)):
            raise Forbidden(f"session {session_id} belongs to another user")
        return session
