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

What a dialog may do comes in areas of keywords (domain.basic.platform): the core every
turn has (clock, random, UUIDs, memory, PRINT, WAIT: TurnCore, here), the LLM's (DialogLlm,
here, with the answer pipeline that shares its port and budget), and the providers the
composition root hands to SessionCommands (`keywords`: area -> KeywordProvider, such as
commands.tasks.DialogTasks). An area without a provider refuses its keywords.

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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid5

import msgspec
from msgspec import Meta

from commands.fields import Email
from commands.idempotency import Claim, refuse_reused, save_claimed, save_new
from commands.kb import KnowledgeBase, cited_prompt, extractive_answer
from commands.ports import ConcurrencyConflict, EventStore, NotFound, Saved
from commands.turn import EVENT_OVERHEAD, KeywordProvider, TurnBudget, TurnContext, TurnLimits
from domain.basic import (
    BasicSyntaxError,
    Platform,
    PlatformError,
    Program,
    RuntimeFailure,
    State,
    Turn,
    Value,
    parse,
    resume,
    start,
)
from domain.basic.platform import AREAS, LLM, unavailable
from domain.basic.values import encoded_size
from domain.common import Actor, Forbidden
from domain.sessions import Memory, Session
from domain.text import clean, clean_value

log = logging.getLogger("gbserver.dialogs")

BotId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="A bot id of letters, digits, '_', '-' and '.' (1 to 100)",
        examples=["default"],
    ),
]
START_DIALOG = "start"
APOLOGY = "Sorry, something went wrong on my side. Please try again."
NO_ANSWER = "I'm sorry, I don't know the answer to that yet."
SYSTEM_PROMPT = "You are a helpful assistant."
_MEMORY = UUID("0b1c7d1e-6a52-4d7e-9d55-3c1a3f0b8e21")

# A turn that lost a race on shared state runs again, at most this many times in all.
MAX_ATTEMPTS = 10
# Parsed programs kept, least recently used dropped first.
PROGRAM_CACHE = 500


class OpenSession(msgspec.Struct, forbid_unknown_fields=True):
    bot_id: BotId = "default"
    user_id: Email | None = None
    metadata: dict[str, Any] = {}


class SendMessage(msgspec.Struct, forbid_unknown_fields=True):
    content: Annotated[str, Meta(min_length=1, max_length=10_000)]
    type: Literal["text"] = "text"


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


class TurnCore:
    """The core keywords during one turn: clock, random source, UUIDs, memory, PRINT, WAIT.

    Memory is read once per turn and written at its end, one MemorySet per key whose value
    changed. What it sets goes to the turn's TurnWrites, counted against
    TurnLimits.max_event_bytes as it is made.
    """

    def __init__(self, turn: TurnContext) -> None:
        self.turn = turn
        self._loaded: dict[str, Memory] = {}

    def now(self) -> datetime:
        return self.turn.clock()

    def random(self) -> float:
        return random.random()

    def new_uuid(self) -> str:
        return str(uuid.uuid4())

    def changes(self) -> list[Any]:
        """The aggregates to save with the turn: the memory that changed (loaded now if it
        was not read), then what the areas' keywords made, in order."""
        changed: dict[UUID, Memory] = {}
        for (scope, key), (value, _) in self.turn.writes.memory.items():
            memory = self._memory(scope)
            if key in memory.values and _same(memory.values[key], value):
                continue
            memory.set(key=key, value=value)
            changed[memory.id] = memory
        return [*changed.values(), *self.turn.writes.aggregates]

    # --- memory --------------------------------------------------------------------------

    def _memory(self, scope: str) -> Memory:
        found = self._loaded.get(scope)
        if found is not None:
            return found
        try:
            loaded = self.turn.store.get(memory_id(scope))
        except NotFound:
            loaded = Memory(scope=scope, id=memory_id(scope))
        if not isinstance(loaded, Memory):
            raise PlatformError(f"memory {scope} is unreadable")
        self._loaded[scope] = loaded
        return loaded

    def _get(self, scope: str, key: str) -> Value:
        name = clean(str(key))
        pending = self.turn.writes.memory.get((scope, name))
        if pending is not None:
            return pending[0]
        value: Value = self._memory(scope).values.get(name)
        return value

    def _set(self, scope: str, key: str, value: Value) -> None:
        name = clean(str(key))
        stored = clean_value(value)
        limit = self.turn.limits.max_value_bytes
        size = encoded_size(stored, limit)
        if size > limit:
            raise PlatformError(
                f"a memory value larger than {limit:,} bytes (the limit is GB_TURN_MAX_VALUE_BYTES)"
            )
        cost = size + encoded_size([scope, name]) + EVENT_OVERHEAD
        writes = self.turn.writes
        previous = writes.memory.get((scope, name))
        writes.charge(cost - (previous[1] if previous else 0))
        writes.memory[(scope, name)] = (stored, cost)

    def _bot_scope(self) -> str:
        return f"bot:{self.turn.session.bot_id}"

    def _user_scope(self) -> str:
        return f"user:{self.turn.session.bot_id}:{self.turn.session.user_id}"

    def get_bot_memory(self, key: str) -> Value:
        return self._get(self._bot_scope(), key)

    def set_bot_memory(self, key: str, value: Value) -> None:
        self._set(self._bot_scope(), key, value)

    def get_user_memory(self, key: str) -> Value:
        return self._get(self._user_scope(), key)

    def set_user_memory(self, key: str, value: Value) -> None:
        self._set(self._user_scope(), key, value)

    # --- log -----------------------------------------------------------------------------

    def log(self, text: str) -> None:
        log.info("session %s: %s", self.turn.session.id, text[:2000])

    def wait(self, seconds: float) -> None:
        """WAIT does not hold a server thread: the pause is the client's to render."""


class DialogLlm:
    """The llm area of keywords for one turn. It lives with the answer pipeline, which asks
    the same port through it, so both charge the turn's budget the same way.

    LLM is an outside call (`budget.outside_call`) and may take what is left of the turn's
    wall time, no more. SET CONTEXT has not landed: it refuses like a missing area.
    """

    def __init__(self, port: Llm | None, turn: TurnContext) -> None:
        self.port = port
        self.turn = turn

    def llm(self, prompt: str) -> str:
        if self.port is None:
            raise PlatformError("no LLM is configured (GB_LLM_URL)")
        budget = self.turn.budget
        budget.outside_call("LLM")
        return self.port.complete(SYSTEM_PROMPT, str(prompt), budget.remaining())

    def set_context(self, name: str, text: str) -> None:
        raise unavailable(LLM)


class _SharedStateMoved(Exception):
    """The turn lost a race on shared state (not on its session): run it again."""


Reply = tuple[list[str], list[dict[str, Any]], str]


class SessionCommands:
    """`keywords` gives an area of dialog keywords (domain.basic.platform.AREAS) its provider;
    the llm area's comes from `llm`, which also answers messages no dialog takes."""

    def __init__(
        self,
        store: EventStore,
        catalog: DialogCatalog,
        llm: Llm | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limits: TurnLimits = TurnLimits(),  # noqa: B008 - frozen, shared safely
        monotonic: Callable[[], float] = time.monotonic,
        keywords: Mapping[str, KeywordProvider] | None = None,
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        keywords = dict(keywords or {})
        unknown = sorted(area for area in keywords if area not in AREAS)
        if unknown:
            raise ValueError(
                f"no area of keywords is named {', '.join(unknown)} (the areas: {', '.join(AREAS)})"
            )
        if LLM in keywords:
            raise ValueError("the llm area's keywords come from the LLM SessionCommands is given")
        self.store = store
        self.catalog = catalog
        self.llm = llm
        self.knowledge = knowledge
        self.keywords: dict[str, KeywordProvider] = {
            **keywords,
            LLM: lambda turn: DialogLlm(llm, turn),
        }
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
        turn = TurnContext(self.store, session, self.clock, budget)
        core = TurnCore(turn)
        platform = Platform(core, {area: make(turn) for area, make in self.keywords.items()})
        parts, suggestions, source = self._turn(session, cmd.content, platform, turn)
        reply_id = str(uuid.uuid4())
        session.reply(reply_id, received_id, parts, suggestions, source)
        try:
            saved = save_claimed(self.store, claim, reply_id, session, *core.changes())
        except ConcurrencyConflict:
            current = self.store.get(session.id)
            if current.version != loaded_version:
                raise ConcurrencyConflict(
                    "another message to this session was being answered; send again"
                ) from None
            raise _SharedStateMoved from None
        return reply_id, saved

    # --- the turn --------------------------------------------------------------------------

    def _turn(self, session: Session, text: str, platform: Platform, turn: TurnContext) -> Reply:
        if session.dialog_state is not None:
            try:
                state = State.from_data(session.dialog_state)
            except ValueError as e:
                session.dialog_failed(dialog="", line=0, message=f"unreadable saved state: {e}")
                return [APOLOGY], [], "dialog"
            sources = dict(session.dialog_sources)
            ran = self._resume(session.bot_id, state, sources, text, platform, turn.budget)
            return self._after(session, state.dialog, ran, turn, sources)
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
                ran = self._resume(session.bot_id, state, sources, None, platform, turn.budget)
                return self._after(session, START_DIALOG, ran, turn, sources)
        return self._answer(text, platform, session)

    def _resume(
        self,
        bot_id: str,
        state: State,
        sources: dict[str, str],
        text: str | None,
        platform: Platform,
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
        ran: Turn,
        turn: TurnContext,
        sources: dict[str, str],
    ) -> Reply:
        parts = list(ran.outputs)
        suggestions: list[dict[str, Any]] = [dict(s) for s in ran.suggestions]
        error = ran.error
        kept = ran.state if error is None and ran.waiting else None
        state = kept.to_data() if kept is not None else None
        if error is None:
            limit = self.limits.max_event_bytes
            size = encoded_size([parts, suggestions, state], limit) + turn.writes.size
            if size > limit:
                turn.writes.discard()
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

    def _answer(self, text: str, platform: Platform, session: Session) -> Reply:
        """No dialog is waiting: the knowledge base's best passages (the collections the
        session uses, else all of the bot's), given to the LLM as cited context when one is
        configured, else quoted with their source; without passages the LLM alone, else a
        polite 'I don't know'."""
        passages = (
            self.knowledge.passages(session.bot_id, session.kb_collections, text)
            if self.knowledge is not None
            else []
        )
        limit = self.limits.max_event_bytes
        if self.llm is not None:
            try:
                answer = platform.llm(cited_prompt(text, passages) if passages else text)
            except PlatformError as e:
                log.warning("LLM failed: %s", e)
            else:
                if encoded_size(answer, limit) <= limit:
                    return [answer], [], "kb+llm" if passages else "llm"
                log.warning("LLM answer larger than %s bytes (GB_TURN_MAX_EVENT_BYTES)", limit)
        if passages:
            return [extractive_answer(passages)], [], "kb"
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
