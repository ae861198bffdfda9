"""Session commands: open, close, and take a user message through the bot.

A message goes, in order, to the dialog waiting at a HEAR, else to the bot's `start` dialog
(on a session's first message), else to the answer pipeline. Everything a turn changes —
the session's events, tasks it created, memory it set — is saved in one transaction, so a
side effect before a HEAR happens exactly once, whatever crashes.

A turn is bounded (TurnLimits, the GB_TURN_* settings): the bytes of every value it stores,
of the state it keeps and of all it writes, its outside calls (LLM...) and its wall time. A
limit hit ends the turn as a dialog error (DialogFailed naming the limit; the user gets the
apology), so nothing large is ever written. Text a dialog makes is normalised
(domain.text) before it goes into an event: every store can hold it.

Shared state (bot memory, a user's memory across sessions) never fails one user's message
because of another's: a turn that loses the race on it is re-run from freshly loaded state,
a bounded number of times; its outside calls and wall time count across the re-runs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid5

import msgspec
from msgspec import Meta

from commands.fields import Email, InvalidField, parse_when
from commands.idempotency import Claim, refuse_reused, save_claimed, save_new
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from domain.basic import (
    BasicSyntaxError,
    BudgetExceeded,
    Limits,
    PlatformError,
    Program,
    RuntimeFailure,
    State,
    Turn,
    UnavailablePlatform,
    Value,
    parse,
    resume,
    start,
)
from domain.basic.values import encoded_size
from domain.common import Actor, Forbidden, rfc3339
from domain.sessions import Memory, Session
from domain.tasks import PRIORITIES, Task
from domain.text import clean, clean_value

log = logging.getLogger("gbserver.dialogs")

BotId = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
START_DIALOG = "start"
APOLOGY = "Sorry, something went wrong on my side. Please try again."
NO_ANSWER = "I'm sorry, I don't know the answer to that yet."
SYSTEM_PROMPT = "You are a helpful assistant."
_MEMORY = UUID("0b1c7d1e-6a52-4d7e-9d55-3c1a3f0b8e21")

# A turn that lost a race on shared state runs again, at most this many times in all.
MAX_ATTEMPTS = 10
# Parsed programs kept, least recently used dropped first.
PROGRAM_CACHE = 500
# What an event adds around the values a turn writes (ids, topic, timestamp, names).
EVENT_OVERHEAD = 256


class OpenSession(msgspec.Struct, forbid_unknown_fields=True):
    bot_id: BotId = "default"
    user_id: Email | None = None
    metadata: dict[str, Any] = {}


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    content: Annotated[str, Meta(min_length=1, max_length=10_000)]
    type: Literal["text"] = "text"


@dataclass(frozen=True)
class TurnLimits:
    """What one message may spend (the GB_TURN_* settings); sizes are bytes of JSON."""

    max_state_bytes: int = 256 * 1024  # the dialog state kept at a HEAR
    max_value_bytes: int = 64 * 1024  # one value a dialog stores (variable, memory...)
    max_event_bytes: int = 384 * 1024  # all a turn writes: replies, state, memory, tasks
    max_calls: int = 10  # outside calls (LLM, ...) in one turn, re-runs included
    seconds: float = 10.0  # wall time of one turn, re-runs included

    def machine(self) -> Limits:
        return Limits(
            max_value_bytes=self.max_value_bytes,
            max_state_bytes=self.max_state_bytes,
            max_output_bytes=self.max_event_bytes,
        )


class TurnBudget:
    """The outside calls and wall time one message has left, across re-runs of its turn."""

    def __init__(self, limits: TurnLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.deadline = clock() + limits.seconds
        self.calls = 0

    def remaining(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def check_time(self) -> None:
        if self.clock() > self.deadline:
            raise BudgetExceeded(
                f"the turn ran longer than {self.limits.seconds:g} seconds"
                " (the limit is GB_TURN_SECONDS)"
            )

    def outside_call(self, what: str) -> None:
        """Counts a call that leaves the server; refuses it once the budget is spent."""
        self.check_time()
        if self.calls >= self.limits.max_calls:
            raise BudgetExceeded(
                f"the turn made more than {self.limits.max_calls} outside calls ({what})"
                " (the limit is GB_TURN_MAX_CALLS)"
            )
        self.calls += 1


@dataclass(frozen=True)
class Deployed:
    """A deployed version of a dialog: which dialog (its id), which version, its source."""

    dialog_id: str
    version: int
    source: str


class DialogCatalog(Protocol):
    """The bot's deployed dialogs (the Designer's versions)."""

    def live(self, bot_id: str, name: str) -> Deployed | None:
        """The live version of the dialog holding the name now; None if never deployed."""
        ...

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        """Version N of the dialog the bot knows by this name (now or last)."""
        ...

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        """Version N of that very dialog, even if it was deleted or renamed since."""
        ...


class Llm(Protocol):
    def complete(self, system: str, prompt: str, timeout: float | None = None) -> str:
        """The model's answer; `timeout` (seconds) shortens the port's own when given."""
        ...


def dialog_name(name: str) -> str:
    """`CALL "Other.bas"` and a dialog named `other` are the same dialog."""
    name = name.strip()
    return (name[:-4] if name.lower().endswith(".bas") else name).lower()


def memory_id(scope: str) -> UUID:
    """The Memory aggregate of a scope ("bot:<bot>" or "user:<bot>:<user>")."""
    return uuid5(_MEMORY, scope)


def _source_key(name: str, version: int) -> str:
    return f"{dialog_name(name)}@{version}"


def _same(a: Value, b: Value) -> bool:
    """Equal as stored: 1, 1.0 and TRUE differ."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class TurnPlatform(UnavailablePlatform):
    """What a dialog may do during one turn; changes are collected and saved with the turn.

    Memory is read once per turn and written at its end, one MemorySet per key whose value
    changed. Everything written is counted against TurnLimits.max_event_bytes as it is made.
    Areas that have not landed yet (mail, calendar, meet, drive, knowledge base) keep
    UnavailablePlatform's refusal: "the <area> area is not available yet"; when they land,
    each call goes through `budget.outside_call` like the LLM's.
    """

    def __init__(
        self,
        store: EventStore,
        session: Session,
        clock: Callable[[], datetime],
        llm: Llm | None,
        budget: TurnBudget,
    ) -> None:
        self.store = store
        self.session = session
        self.clock = clock
        self.llm_port = llm
        self.budget = budget
        self.limits = budget.limits
        self.written = 0
        self._loaded: dict[str, Memory] = {}
        self._writes: dict[tuple[str, str], tuple[Value, int]] = {}
        self._tasks: list[Task] = []

    def now(self) -> datetime:
        return self.clock()

    def random(self) -> float:
        return random.random()

    def new_uuid(self) -> str:
        return str(uuid.uuid4())

    # --- what the turn writes ----------------------------------------------------------------

    def _charge(self, size: int) -> None:
        self.written += size
        limit = self.limits.max_event_bytes
        if self.written > limit:
            raise BudgetExceeded(
                f"the turn's changes are larger than {limit:,} bytes"
                " (the limit is GB_TURN_MAX_EVENT_BYTES)"
            )

    def changes(self) -> list[Any]:
        """The aggregates to save with the turn (memory is loaded now if it was not read)."""
        changed: dict[UUID, Memory] = {}
        for (scope, key), (value, _) in self._writes.items():
            memory = self._memory(scope)
            if key in memory.values and _same(memory.values[key], value):
                continue
            memory.set(key=key, value=value)
            changed[memory.id] = memory
        return [*changed.values(), *self._tasks]

    def discard(self) -> None:
        """Nothing of this turn is written (it grew past the turn's limit)."""
        self._writes.clear()
        self._tasks.clear()
        self.written = 0

    # --- memory --------------------------------------------------------------------------

    def _memory(self, scope: str) -> Memory:
        found = self._loaded.get(scope)
        if found is not None:
            return found
        try:
            loaded = self.store.get(memory_id(scope))
        except NotFound:
            loaded = Memory(scope=scope, id=memory_id(scope))
        if not isinstance(loaded, Memory):
            raise PlatformError(f"memory {scope} is unreadable")
        self._loaded[scope] = loaded
        return loaded

    def _get(self, scope: str, key: str) -> Value:
        name = clean(str(key))
        pending = self._writes.get((scope, name))
        if pending is not None:
            return pending[0]
        value: Value = self._memory(scope).values.get(name)
        return value

    def _set(self, scope: str, key: str, value: Value) -> None:
        name = clean(str(key))
        stored = clean_value(value)
        limit = self.limits.max_value_bytes
        size = encoded_size(stored, limit)
        if size > limit:
            raise PlatformError(
                f"a memory value larger than {limit:,} bytes (the limit is GB_TURN_MAX_VALUE_BYTES)"
            )
        cost = size + encoded_size([scope, name]) + EVENT_OVERHEAD
        previous = self._writes.get((scope, name))
        self._charge(cost - (previous[1] if previous else 0))
        self._writes[(scope, name)] = (stored, cost)

    def _bot_scope(self) -> str:
        return f"bot:{self.session.bot_id}"

    def _user_scope(self) -> str:
        return f"user:{self.session.bot_id}:{self.session.user_id}"

    def get_bot_memory(self, key: str) -> Value:
        return self._get(self._bot_scope(), key)

    def set_bot_memory(self, key: str, value: Value) -> None:
        self._set(self._bot_scope(), key, value)

    def get_user_memory(self, key: str) -> Value:
        return self._get(self._user_scope(), key)

    def set_user_memory(self, key: str, value: Value) -> None:
        self._set(self._user_scope(), key, value)

    # --- tasks, LLM, log -------------------------------------------------------------------

    def create_task(self, title: str, assignee: str, due: str, priority: str | None) -> Value:
        title = clean(str(title)).strip()
        if not 1 <= len(title) <= 500:
            raise PlatformError("CREATE TASK needs a title of 1 to 500 characters")
        chosen = (priority or "medium").lower()
        if chosen not in PRIORITIES:
            raise PlatformError(f"CREATE TASK priority must be one of {', '.join(PRIORITIES)}")
        who = clean(str(assignee)).strip().lower()[:320] if assignee else ""
        task = Task(
            owner=self.session.user_id,
            title=title,
            description=None,
            due_date=_due(due),
            priority=chosen,
            status="pending",
            assignee=who or None,
        )
        self._charge(encoded_size([title, who, task.due_date, chosen]) + EVENT_OVERHEAD)
        self._tasks.append(task)
        return str(task.id)

    def llm(self, prompt: str) -> str:
        if self.llm_port is None:
            raise PlatformError("no LLM is configured (GB_LLM_URL)")
        self.budget.outside_call("LLM")
        # The call may take what is left of the turn's wall time, no more.
        return self.llm_port.complete(SYSTEM_PROMPT, str(prompt), self.budget.remaining())

    def log(self, text: str) -> None:
        log.info("session %s: %s", self.session.id, text[:2000])

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
        shown = clean(str(value))[:40]
        raise PlatformError(f"CREATE TASK due date {shown!r} is not a date") from None


class _SharedStateMoved(Exception):
    """The turn lost a race on shared state (not on its session): run it again."""


Reply = tuple[list[str], list[dict[str, Any]], str]


class SessionCommands:
    def __init__(
        self,
        store: EventStore,
        catalog: DialogCatalog,
        llm: Llm | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limits: TurnLimits = TurnLimits(),  # noqa: B008 - frozen, shared safely
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.llm = llm
        self.clock = clock
        self.limits = limits
        self.machine_limits = limits.machine()
        self.monotonic = monotonic
        self._programs: OrderedDict[tuple[str, int], Program] = OrderedDict()
        self._programs_lock = threading.Lock()
        # Re-runs of turns of one bot take turns (one stripe per bot, shared by a few bots),
        # so in one process they do not keep beating each other to the same memory.
        self._stripes = [threading.Lock() for _ in range(64)]

    def open(self, actor: Actor, cmd: OpenSession, claim: Claim | None = None) -> tuple[str, Saved]:
        refuse_reused(self.store, claim)
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
        nothing again, whatever happened since (AlreadyClaimed names the first reply)."""
        refuse_reused(self.store, claim)
        budget = TurnBudget(self.limits, self.monotonic)
        session = self._load(actor, session_id)
        try:
            return self._attempt(session, cmd, claim, budget)
        except _SharedStateMoved:
            pass
        for attempt in range(2, MAX_ATTEMPTS + 1):
            time.sleep(random.uniform(0.0, 0.002 * attempt))
            with self._turn_of(session.bot_id, budget):
                try:
                    return self._attempt(self._load(actor, session_id), cmd, claim, budget)
                except _SharedStateMoved:
                    continue
        raise ConcurrencyConflict(
            "the bot's shared memory kept changing while this message was answered; send again"
        )

    @contextmanager
    def _turn_of(self, bot_id: str, budget: TurnBudget) -> Iterator[None]:
        lock = self._stripes[hash(bot_id) % len(self._stripes)]
        held = lock.acquire(timeout=max(budget.remaining(), 0.01))
        try:
            yield  # not held only past the deadline: the turn then ends at once anyway
        finally:
            if held:
                lock.release()

    def _attempt(
        self, session: Session, cmd: SendMessage, claim: Claim | None, budget: TurnBudget
    ) -> tuple[str, Saved]:
        loaded_version = session.version
        received_id = str(uuid.uuid4())
        session.receive(received_id, cmd.content, cmd.type)
        platform = TurnPlatform(self.store, session, self.clock, self.llm, budget)
        parts, suggestions, source = self._turn(session, cmd.content, platform, budget)
        reply_id = str(uuid.uuid4())
        session.reply(reply_id, received_id, parts, suggestions, source)
        try:
            saved = save_claimed(self.store, claim, reply_id, session, *platform.changes())
        except ConcurrencyConflict:
            current = self.store.get(session.id)
            if current.version != loaded_version:
                raise ConcurrencyConflict(
                    "another message to this session was being answered; send again"
                ) from None
            raise _SharedStateMoved from None
        return reply_id, saved

    # --- the turn --------------------------------------------------------------------------

    def _turn(
        self, session: Session, text: str, platform: TurnPlatform, budget: TurnBudget
    ) -> Reply:
        if session.dialog_state is not None:
            try:
                state = State.from_data(session.dialog_state)
            except ValueError as e:
                session.dialog_failed(dialog="", line=0, message=f"unreadable saved state: {e}")
                return [APOLOGY], [], "dialog"
            sources = dict(session.dialog_sources)
            turn = self._resume(session.bot_id, state, sources, text, platform, budget)
            return self._after(session, state.dialog, turn, platform, sources)
        if not session.started:
            session.dialog_started()
            live = self.catalog.live(session.bot_id, START_DIALOG)
            if live is not None:
                try:
                    program = self._program(START_DIALOG, live)
                except PlatformError as e:
                    session.dialog_failed(dialog=START_DIALOG, line=0, message=str(e))
                    return [APOLOGY], [], "dialog"
                state = start(
                    program,
                    dialog=START_DIALOG,
                    version=live.version,
                    session={
                        "user_email": session.user_id,
                        "user_name": session.user_id.split("@", 1)[0],
                        "bot_id": session.bot_id,
                    },
                    limits=self.machine_limits,
                )
                sources = {_source_key(START_DIALOG, live.version): live.dialog_id}
                turn = self._resume(session.bot_id, state, sources, None, platform, budget)
                return self._after(session, START_DIALOG, turn, platform, sources)
        return self._answer(text, platform)

    def _resume(
        self,
        bot_id: str,
        state: State,
        sources: dict[str, str],
        text: str | None,
        platform: TurnPlatform,
        budget: TurnBudget,
    ) -> Turn:
        return resume(
            state,
            self._program_for(bot_id, sources),
            text,
            platform,
            self.machine_limits,
            checkpoint=budget.check_time,
        )

    def _after(
        self,
        session: Session,
        dialog: str,
        turn: Turn,
        platform: TurnPlatform,
        sources: dict[str, str],
    ) -> Reply:
        parts = list(turn.outputs)
        suggestions: list[dict[str, Any]] = [dict(s) for s in turn.suggestions]
        error = turn.error
        kept = turn.state if error is None and turn.waiting else None
        state = kept.to_data() if kept is not None else None
        if error is None:
            limit = self.limits.max_event_bytes
            size = encoded_size([parts, suggestions, state], limit) + platform.written
            if size > limit:
                platform.discard()
                parts, suggestions, state = [], [], None
                line = kept.pending.line if kept is not None and kept.pending else 0
                error = RuntimeFailure(
                    line,
                    f"the turn's messages, state and changes are larger than {limit:,} bytes"
                    " (the limit is GB_TURN_MAX_EVENT_BYTES)",
                    dialog,
                )
        if error is not None:
            session.dialog_failed(dialog=error.dialog, line=error.line, message=error.message)
            parts.append(APOLOGY)
        elif kept is not None and state is not None:
            running = {_source_key(frame.dialog, frame.version) for frame in kept.frames}
            session.suspend(state, {k: v for k, v in sources.items() if k in running})
        else:
            session.dialog_ended()
        return parts, suggestions, "dialog"

    def _answer(self, text: str, platform: TurnPlatform) -> Reply:
        """No dialog is waiting: the LLM if one is configured, else a polite 'I don't know'."""
        if self.llm is not None:
            try:
                answer = platform.llm(text)
            except PlatformError as e:
                log.warning("LLM failed: %s", e)
            else:
                limit = self.limits.max_event_bytes
                if encoded_size(answer, limit) <= limit:
                    return [answer], [], "llm"
                log.warning("LLM answer larger than %s bytes (GB_TURN_MAX_EVENT_BYTES)", limit)
        return [NO_ANSWER], [], "fallback"

    # --- programs --------------------------------------------------------------------------

    def _program_for(
        self, bot_id: str, sources: dict[str, str]
    ) -> Callable[[str, int | None], Program]:
        """Loads dialogs for the machine; the versions it ran are recorded in `sources`, so a
        conversation keeps running exactly those dialogs (by id) on later messages."""

        def program_for(name: str, version: int | None) -> Program:
            key = dialog_name(name)
            found: Deployed | None
            if version is None:
                found = self.catalog.live(bot_id, key)
                if found is None:
                    raise PlatformError(f"dialog {key} is not deployed")
            else:
                pinned = sources.get(_source_key(key, version))
                if pinned is not None:
                    found = self.catalog.exact(pinned, version)
                else:
                    found = self.catalog.source(bot_id, key, version)
                if found is None:
                    raise PlatformError(f"dialog {key} version {version} is not deployed")
            sources[_source_key(key, found.version)] = found.dialog_id
            return self._program(key, found)

        return program_for

    def _program(self, name: str, deployed: Deployed) -> Program:
        """A deployed version never changes, so its parsed program is kept, by dialog id and
        version: a dialog deleted and re-created under its name is another program at once."""
        key = (deployed.dialog_id, deployed.version)
        with self._programs_lock:
            program = self._programs.get(key)
            if program is not None:
                self._programs.move_to_end(key)
                return program
        try:
            program = parse(deployed.source, dialog=name, version=deployed.version)
        except BasicSyntaxError as e:
            raise PlatformError(f"dialog {name} v{deployed.version} does not parse: {e}") from e
        with self._programs_lock:
            self._programs[key] = program
            while len(self._programs) > PROGRAM_CACHE:
                self._programs.popitem(last=False)
        return program

    def _load(self, actor: Actor, session_id: UUID) -> Session:
        session = self.store.get(session_id)
        if not isinstance(session, Session):
            raise NotFound(str(session_id))
        if not (actor.is_admin or session.may_be_seen_by(actor.email)):
            raise Forbidden(f"session {session_id} belongs to another user")
        return session
