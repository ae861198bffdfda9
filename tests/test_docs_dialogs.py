"""docs/dialogs.md runs as written: every dialog in it validates, every conversation plays.

The guide's fenced blocks, in order (the language word right after the opening ```):

    ```basic                a dialog: it validates with no errors and no warnings (unless a
                            ```diagnostics block follows); when a ```text block follows, it is
                            the bot's `start` dialog of that conversation
    ```basic name=ask_name  the same, and it is deployed as the bot's dialog `ask_name` for
                            every later block (what `CALL "ask_name.bas"` runs)
    ```basic-invalid        a dialog with errors: a ```diagnostics block must follow
    ```diagnostics          the validator's exact report of the block before, one finding a
                            line, in order: `error L:C message` or `warning L:C message`
    ```text                 a conversation with the dialog before (```text llm: with the
                            stand-in model configured, which answers "[the model's answer to:
                            <prompt>]"); every ```text block of the guide is one

A conversation is written as the user sees it:

    > Hi                    a user message; the first one starts the bot's `start` dialog
    Hello! What is ...      a bot message of that turn, one a line (`\\n` stands for a newline)
    ? Yes                   a suggestion on offer after that turn (`? text | label` when the
                            label differs)
    ! 3: division by zero   the turn's dialog failed at line 3 with this error: the session
                            records it; the user sees the apology line, written above it
    --- new session         the next message opens a new session of the same bot (as Ana,
                            ana@example.com; `--- new session as bob@example.com`: as Bob)

Blank lines are ignored. Each conversation runs through the server's own SessionCommands
(sessions of the bot `ana-bot`, the server's dialog keyword areas, infra.areas) on an event
store of its own (SQLite): the messages of every turn, its suggestions and its recorded error
must match exactly. The clock is fixed at 2025-03-14 12:30:00 UTC, the random source is
random.Random(42) and the UUIDs a dialog makes count up from ...000001, so what the guide
shows is what runs.

The guide also stays whole: its dialogs use every statement keyword, built-in function and
HEAR type the language has, it documents every GB_TURN_* setting with its default, and its
links stay inside the repository (anchors and files that exist).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

import pytest

from commands.sessions import Deployed, OpenSession, SendMessage, SessionCommands, TurnCore
from commands.turn import TurnLimits
from domain.basic import validate
from domain.basic.functions import BUILTINS
from domain.basic.keywords import HEAR_TYPES, STATEMENTS
from domain.common import Actor
from infra.areas import AREAS, dialog_keywords
from infra.bootstrap import Services
from infra.config import DOCUMENTED, Settings

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "dialogs.md"
CLOCK = datetime(2025, 3, 14, 12, 30, 0, tzinfo=UTC)
USER = Actor("ana@example.com")
BOT = "ana-bot"

_FENCE = re.compile(r"^```(\S*)[ \t]*(.*)$")


@dataclass
class Block:
    lang: str
    info: str
    body: str
    line: int  # of the opening fence, 1-based

    @property
    def name(self) -> str | None:
        match = re.fullmatch(r"name=([A-Za-z0-9_-]+)", self.info)
        return match.group(1) if match else None


@dataclass
class Example:
    """A dialog of the guide, what it expects, and the helper dialogs deployed before it."""

    dialog: Block
    helpers: dict[str, str]
    diagnostics: Block | None = None
    transcript: Block | None = None


@dataclass
class Guide:
    blocks: list[Block]
    examples: list[Example] = field(default_factory=list)


def read_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        assert index < len(lines), f"dialogs.md:{start + 1}: a fenced block is never closed"
        blocks.append(Block(match.group(1), match.group(2).strip(), "\n".join(body), start + 1))
        index += 1
    return blocks


def read_guide() -> Guide:
    guide = Guide(read_blocks(GUIDE.read_text(encoding="utf-8")))
    helpers: dict[str, str] = {}
    current: Example | None = None
    for block in guide.blocks:
        where = f"dialogs.md:{block.line}"
        if block.lang in ("basic", "basic-invalid"):
            assert block.info in ("", *([f"name={block.name}"] if block.name else [])), where
            current = Example(block, dict(helpers))
            guide.examples.append(current)
            if block.name:
                assert block.lang == "basic", f"{where}: a helper dialog must be valid"
                helpers[block.name] = block.body
        elif block.lang == "diagnostics":
            assert current is not None and current.diagnostics is None, where
            assert current.transcript is None, f"{where}: diagnostics come before a transcript"
            current.diagnostics = block
        elif block.lang == "text":
            assert block.info in ("", "llm"), f"{where}: unknown transcript option {block.info}"
            assert current is not None and current.transcript is None, (
                f"{where}: a transcript follows the dialog it plays"
            )
            assert current.dialog.lang == "basic", f"{where}: an invalid dialog does not run"
            assert current.dialog.name is None, f"{where}: helpers are not `start` dialogs"
            current.transcript = block
        else:
            current = None  # a block of another kind ends the example
    return guide


GUIDE_DATA = read_guide()


def example_id(example: Example) -> str:
    return f"line{example.dialog.line}"


# --- validation --------------------------------------------------------------------------


def report_lines(source: str, helpers: dict[str, str]) -> list[str]:
    report = validate(source, known_dialogs={"start", *helpers}, http_allowed=False)
    return [f"error {d.line}:{d.column} {d.message}" for d in report.errors] + [
        f"warning {d.line}:{d.column} {d.message}" for d in report.warnings
    ]


@pytest.mark.parametrize("example", GUIDE_DATA.examples, ids=example_id)
def test_each_dialog_validates_as_the_guide_says(example: Example) -> None:
    actual = report_lines(example.dialog.body, example.helpers)
    where = f"dialogs.md:{example.dialog.line}"
    if example.dialog.lang == "basic-invalid":
        assert example.diagnostics is not None, f"{where}: say which errors it has"
        assert any(line.startswith("error ") for line in actual), f"{where}: {actual}"
    if example.diagnostics is None:
        assert actual == [], f"{where}: a ```basic block validates cleanly"
    else:
        expected = [line for line in example.diagnostics.body.splitlines() if line.strip()]
        assert actual == expected, where
        if example.dialog.lang == "basic":
            assert not any(line.startswith("error ") for line in actual), where


# --- conversations -----------------------------------------------------------------------


@dataclass
class Turn:
    user: str
    said: list[str] = field(default_factory=list)
    suggestions: list[dict[str, str]] = field(default_factory=list)
    failed: str | None = None
    new_session: str | None = None  # this message opens a new session, of this user


_NEW_SESSION = re.compile(r"--- new session(?: as (\S+@\S+))?")


def read_transcript(block: Block) -> list[Turn]:
    turns: list[Turn] = []
    opening: str | None = USER.email
    for offset, raw in enumerate(block.body.splitlines(), start=1):
        line = raw.rstrip()
        if not line:
            continue
        where = f"dialogs.md:{block.line + offset}"
        if line.startswith("> "):
            turns.append(Turn(line[2:], new_session=opening))
            opening = None
            continue
        session = _NEW_SESSION.fullmatch(line)
        if session is not None:
            assert turns and opening is None, f"{where}: a new session needs a message first"
            opening = session.group(1) or USER.email
            continue
        assert turns, f"{where}: a conversation starts with a user message (> ...)"
        turn = turns[-1]
        if line.startswith("? "):
            text, _, label = line[2:].partition(" | ")
            turn.suggestions.append({"text": text, "label": label or text})
        elif line.startswith("! "):
            assert turn.failed is None, where
            turn.failed = line[2:]
        else:
            assert not turn.suggestions and turn.failed is None, (
                f"{where}: a turn's messages come before its suggestions and error"
            )
            turn.said.append(line.replace("\\n", "\n"))
    assert turns, f"dialogs.md:{block.line}: an empty conversation"
    return turns


class Catalog:
    """The example's dialogs, each deployed once (version 1): `start` and its helpers."""

    def __init__(self, start: str, helpers: dict[str, str]) -> None:
        self.dialogs = {
            name.lower(): Deployed(f"dialog-{name.lower()}", 1, source)
            for name, source in {**helpers, "start": start}.items()
        }

    def live(self, bot_id: str, name: str) -> Deployed | None:
        return self.dialogs.get(name.lower())

    def source(self, bot_id: str, name: str, version: int) -> Deployed | None:
        return self.dialogs.get(name.lower()) if version == 1 else None

    def exact(self, dialog_id: str, version: int) -> Deployed | None:
        found = [d for d in self.dialogs.values() if d.dialog_id == dialog_id]
        return found[0] if found and version == 1 else None


class StandInModel:
    """The `llm` transcripts' model: it answers every prompt the same recognisable way."""

    def complete(self, system: str, prompt: str, timeout: float | None = None) -> str:
        return f"[the model's answer to: {prompt}]"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Stores of its own for each conversation (the bot's memory and files start empty), with
    the projections running: the drive and mail keywords read their read models."""
    opened = Services.open(Settings(data_dir=tmp_path))
    opened.start_workers()
    yield opened
    opened.close()


@pytest.fixture
def deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(42)
    uuids = iter(range(1, 1_000_000))
    monkeypatch.setattr(TurnCore, "random", lambda self: rng.random())
    monkeypatch.setattr(
        TurnCore, "new_uuid", lambda self: f"00000000-0000-4000-8000-{next(uuids):012d}"
    )


def play(example: Example, services: Services) -> list[Turn]:
    """What the server answers to the transcript's user messages, as Turns."""
    assert example.transcript is not None
    event_store = services.events
    context = services.context()
    commands = SessionCommands(
        event_store,
        Catalog(example.dialog.body, example.helpers),
        StandInModel() if example.transcript.info == "llm" else None,
        clock=lambda: CLOCK,
        limits=TurnLimits(),
        keywords=dialog_keywords(AREAS, context),
    )
    bot = BOT
    played: list[Turn] = []
    user, session = USER, UUID(int=0)
    for wanted in read_transcript(example.transcript):
        if wanted.new_session is not None:
            user = Actor(wanted.new_session)
            opened, _ = commands.open(user, OpenSession(bot_id=bot))
            session = UUID(opened)
        seen = len(event_store.history(session))
        _, saved = commands.send(user, session, SendMessage(content=wanted.user))
        assert context.consistency.wait(saved, 10), "the read models did not catch up"
        turn = Turn(wanted.user, new_session=wanted.new_session)
        for event in list(event_store.history(session))[seen:]:
            kind = type(event).__name__
            if kind == "ReplySent":
                turn.said = list(event.parts)
                turn.suggestions = [dict(s) for s in event.suggestions]
            elif kind == "DialogFailed":
                turn.failed = f"{event.line}: {event.message}"
        played.append(turn)
    return played


def render(turns: list[Turn]) -> str:
    lines: list[str] = []
    for number, turn in enumerate(turns):
        if number and turn.new_session is not None:
            shown = "" if turn.new_session == USER.email else f" as {turn.new_session}"
            lines.append(f"--- new session{shown}")
        lines.append(f"> {turn.user}")
        lines.extend(said.replace("\n", "\\n") for said in turn.said)
        for s in turn.suggestions:
            lines.append(f"? {s['text']}" + ("" if s["label"] == s["text"] else f" | {s['label']}"))
        if turn.failed is not None:
            lines.append(f"! {turn.failed}")
    return "\n".join(lines)


CONVERSATIONS = [e for e in GUIDE_DATA.examples if e.transcript is not None]


@pytest.mark.parametrize("example", CONVERSATIONS, ids=example_id)
def test_each_conversation_plays_as_the_guide_shows(
    example: Example, services: Services, deterministic: None
) -> None:
    assert example.transcript is not None
    expected = render(read_transcript(example.transcript))
    assert render(play(example, services)) == expected, f"dialogs.md:{example.transcript.line}"


# --- breadth: the guide shows the whole language -----------------------------------------


def all_sources() -> str:
    return "\n".join(e.dialog.body for e in GUIDE_DATA.examples if e.dialog.lang == "basic")


def test_the_guide_is_large_enough_and_every_block_is_known() -> None:
    assert len(GUIDE_DATA.examples) >= 40
    assert len(CONVERSATIONS) >= 25
    langs = {b.lang for b in GUIDE_DATA.blocks}
    assert langs <= {"basic", "basic-invalid", "diagnostics", "text", "sh", "json"}, langs


def test_every_statement_keyword_appears_in_a_valid_example() -> None:
    source = " ".join(all_sources().upper().split())
    missing = [s for s in STATEMENTS if not re.search(rf"\b{s}\b", source)]
    assert missing == []


def test_every_builtin_function_appears_in_a_valid_example() -> None:
    source = all_sources().upper()
    missing = [name for name in sorted(BUILTINS) if not re.search(rf"\b{name}\b", source)]
    assert missing == []


def test_every_hear_type_appears_in_a_conversation() -> None:
    source = "\n".join(e.dialog.body for e in CONVERSATIONS).upper()
    missing = [t for t in sorted(HEAR_TYPES) if not re.search(rf"\bAS {t}\b", source)]
    assert missing == []


def test_every_turn_setting_is_documented() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for setting in DOCUMENTED:
        if setting.name.startswith("GB_TURN_"):
            assert f"`{setting.name}`" in text, setting.name
            assert setting.default in text, setting.name


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_guide_links_nowhere_outside_the_repository() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    assert "../shared" not in text
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.MULTILINE | re.DOTALL)
    anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        else:
            assert not re.match(r"[a-z]+:", target), target
            assert (GUIDE.parent / target.split("#")[0]).resolve().exists(), target
    hosts = re.findall(r"https?://([^/\s\"'`)]+)", text)
    assert [h for h in hosts if not re.search(r"127\.0\.0\.1|localhost|example", h)] == []
