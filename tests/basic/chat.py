"""The .chat format of the conformance corpus, and a runner that plays one conversation.

A `.chat` file scripts a conversation with the dialog of the same name:

    # a comment
    % args {"name": "Ann"}          setup, before the first turn (JSON)
    % session {"user_email": "a@b.c"}
    % bot_memory {"k": 1}           also user_memory, files
    % fail send_mail                the fake platform raises PlatformError in that method
    % limits {"max_steps": 500}
    < Hello                         what the bot says in the current turn, in order
    @ send_mail("a@b.c", "S", "B")  a platform effect of the current turn, in order
    ? 1 | Under $1M                 a suggestion on offer at the end of the turn (text | label)
    > my answer                     a user message: starts the next turn
    ! 7: division by zero           the turn ends in a runtime error at line 7
    = "TKT-1"                       the dialog finished with this RETURN value (JSON)
    ~ waiting                       the last turn ends waiting on a HEAR

The first turn runs before any user message. Every turn but the last must end waiting on a
HEAR; the last one ends as its `!`, `=` or `~` line says, or finished with no value. A `\\n`
in a `<` line stands for a newline in the message. Outputs, effects and suggestions must
match exactly. Between turns the state goes through JSON, as it does in the event stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from domain.basic import Limits, Program, State, Value, parse, resume, start
from tests.basic.fakes import FakePlatform


@dataclass
class TurnSpec:
    user_input: str | None
    outputs: list[str] = field(default_factory=list)
    effects: list[str] = field(default_factory=list)
    suggestions: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None
    result: Value = None
    has_result: bool = False
    waiting: bool = False


@dataclass
class Script:
    setup: dict[str, Value] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    turns: list[TurnSpec] = field(default_factory=lambda: [TurnSpec(None)])


def read_script(path: Path) -> Script:
    script = Script()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        mark, text = raw[0], raw[2:] if len(raw) > 1 else ""
        turn = script.turns[-1]
        if mark == "%":
            name, _, value = text.partition(" ")
            if name == "fail":
                script.failing.add(value.strip())
            else:
                script.setup[name] = json.loads(value)
        elif mark == ">":
            script.turns.append(TurnSpec(text))
        elif mark == "<":
            turn.outputs.append(text)
        elif mark == "@":
            turn.effects.append(text)
        elif mark == "?":
            label_text, _, label = text.partition(" | ")
            turn.suggestions.append({"text": label_text, "label": label or label_text})
        elif mark == "!":
            turn.error = text
        elif mark == "=":
            turn.result, turn.has_result = json.loads(text), True
        elif mark == "~":
            turn.waiting = True
        else:
            raise ValueError(f"{path.name}:{number}: unknown line mark {mark!r}")
    return script


def dialogs_beside(path: Path) -> dict[str, Program]:
    """The dialog itself (named by its stem) and its helpers NN_name.other.bas ('other')."""
    main = path.stem
    programs = {main: parse(path.read_text(encoding="utf-8"), dialog=main, version=1)}
    for helper in path.parent.glob(f"{main}.*.bas"):
        name = helper.name[len(main) + 1 : -len(".bas")]
        programs[name] = parse(helper.read_text(encoding="utf-8"), dialog=name, version=1)
    return programs


def shown(text: str) -> str:
    return text.replace("\n", "\\n")


def play(path: Path) -> None:
    """Run the conversation of path (a .bas) against its .chat; assert every turn."""
    script = read_script(path.with_suffix(".chat"))
    programs = dialogs_beside(path)

    def program_for(name: str, version: int | None) -> Program:
        if version not in (None, 1):
            raise LookupError(name)
        return programs[name]

    platform = FakePlatform(failing=frozenset(script.failing))
    for store in ("bot_memory", "user_memory", "files"):
        getattr(platform, store).update(script.setup.get(store) or {})
    limits = Limits(**script.setup.get("limits", {}))  # type: ignore[arg-type]
    args = script.setup.get("args")
    session = script.setup.get("session")
    state: State | None = start(
        programs[path.stem],
        dialog=path.stem,
        version=1,
        args=args if isinstance(args, dict) else None,
        session=session if isinstance(session, dict) else None,
    )
    for number, spec in enumerate(script.turns):
        where = f"{path.name} turn {number} (input {spec.user_input!r})"
        assert state is not None, f"{where}: the dialog already ended"
        state = State.from_data(json.loads(json.dumps(state.to_data())))
        turn = resume(state, program_for, spec.user_input, platform, limits)
        assert [shown(o) for o in turn.outputs] == spec.outputs, where
        assert platform.take_effects() == spec.effects, where
        assert turn.suggestions == spec.suggestions, where
        last = number == len(script.turns) - 1
        if spec.error is not None:
            assert turn.error is not None, f"{where}: expected error {spec.error}"
            assert f"{turn.error.line}: {turn.error.message}" == spec.error, where
            assert last and turn.state is None, where
            return
        assert turn.error is None, f"{where}: {turn.error}"
        if not last or spec.waiting:
            assert turn.waiting and turn.state is not None, f"{where}: expected a HEAR to wait"
        else:
            assert turn.state is None and not turn.waiting, f"{where}: expected the dialog to end"
            assert turn.result == spec.result, where
        state = turn.state
