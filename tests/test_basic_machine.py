"""Properties of the dialog machine that the corpora do not show one conversation at a time:
bounded turns, resumability through JSON, effects exactly once, pinned dialog versions, and
the domain's hard rules (no eval, no I/O imports)."""

from __future__ import annotations

import ast as pyast
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from domain.basic import (
    BudgetExceeded,
    Limits,
    PlatformError,
    Program,
    State,
    Turn,
    UnavailablePlatform,
    parse,
    resume,
    start,
)
from domain.basic.values import encoded_size
from tests.basic.fakes import FakePlatform

PACKAGE = Path(__file__).parent.parent / "domain" / "basic"


DEFAULT_LIMITS = Limits()


def run(
    source: str, *inputs: str, platform: FakePlatform | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[Turn]:
    """Play a dialog through JSON between turns; returns every turn."""
    program = parse(source, dialog="main", version=1)
    fake = platform or FakePlatform()
    state: State | None = start(program, dialog="main", version=1)
    turns = []
    for user_input in (None, *inputs):
        assert state is not None
        state = State.from_data(json.loads(json.dumps(state.to_data())))
        turn = resume(state, lambda name, version: program, user_input, fake, limits)
        turns.append(turn)
        state = turn.state
    return turns


def test_an_endless_loop_ends_the_turn_quickly() -> None:
    began = time.perf_counter()
    (turn,) = run('TALK "go"\nWHILE TRUE\n  x = 1\nWEND\n')
    assert time.perf_counter() - began < 5
    assert turn.outputs == ["go"]
    assert turn.error is not None and "more than 100000 steps" in turn.error.message
    assert turn.state is None and not turn.waiting


def test_an_empty_endless_loop_and_goto_loop_end_too() -> None:
    for source in ("DO\nLOOP\n", "top:\nGOTO top\n", "SUB s\n  s\nEND SUB\ns\n"):
        (turn,) = run(source, limits=Limits(max_steps=2000))
        assert turn.error is not None, source


def test_text_and_lists_are_bounded() -> None:
    (turn,) = run('s = "ab"\nDO\n  s = s + s\nLOOP\n', limits=Limits(max_value_bytes=10**6))
    assert turn.error is not None and "text longer than" in turn.error.message
    (turn,) = run('s = "ab"\nDO\n  s = s + s\nLOOP\n')
    assert turn.error is not None and "GB_TURN_MAX_VALUE_BYTES" in turn.error.message
    (turn,) = run("l = []\nDO\n  l.PUSH(1)\nLOOP\n")
    assert turn.error is not None and "list longer than" in turn.error.message
    (turn,) = run("l = [1]\nDO\n  l.PUSH(l)\nLOOP\n")
    assert turn.error is not None and "value" in turn.error.message
    (turn,) = run('DO\n  TALK "spam"\nLOOP\n')
    assert turn.error is not None and "messages in one turn" in turn.error.message


def test_turns_are_bounded_in_bytes() -> None:
    small = Limits(max_output_bytes=1000, max_state_bytes=1000)
    (turn,) = run('ON ERROR RESUME NEXT\nDO\n  TALK "0123456789"\nLOOP\n', limits=small)
    assert turn.error is not None and "GB_TURN_MAX_EVENT_BYTES" in turn.error.message
    assert sum(len(text) + 2 for text in turn.outputs) <= 1000
    (turn,) = run('DO\n  ADD SUGGESTION "0123456789"\nLOOP\n', limits=small)
    assert turn.error is not None and "GB_TURN_MAX_EVENT_BYTES" in turn.error.message
    keeps = 'items = []\nFOR i = 1 TO 100\n  items.PUSH("abcdefghij")\nNEXT\nHEAR x\n'
    (turn,) = run(keeps, limits=small)
    assert turn.error is not None and "GB_TURN_MAX_STATE_BYTES" in turn.error.message
    assert turn.state is None and not turn.waiting
    (turn,) = run(keeps)
    assert turn.waiting and turn.error is None


def test_values_are_bounded_in_bytes_and_large_text_is_refused_before_it_is_built() -> None:
    (turn,) = run('s = "é"\nFOR i = 1 TO 15\n  s = s + s\nNEXT\n')  # 32,768 x 2 bytes
    assert turn.error is not None and "GB_TURN_MAX_VALUE_BYTES" in turn.error.message
    assert turn.error.line == 3
    doubled = 's = "a"\nFOR i = 1 TO 14\n  s = s + s\nNEXT\n'  # 16,384 characters
    many = doubled + "l = []\nFOR i = 1 TO 300\n  l.PUSH(s)\nNEXT\n"  # 4.9 MB, one string
    for source, refusal in [
        (doubled + 't = REPLACE(s, "a", s)\n', "text longer than"),  # 268 million characters
        (many + 't = JOIN(l, "")\n', "text longer than"),
        (many + "t = TOJSON(l)\n", "too large to write out"),
        (many + "TALK l\n", "too large to write out"),
        (many + "m = l\n", "GB_TURN_MAX_VALUE_BYTES"),  # a copy of it is a stored value
    ]:
        tracemalloc.start()
        try:
            (turn,) = run(source)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert turn.error is not None and refusal in turn.error.message, source
        assert peak < 2_000_000, source  # refused before it was built


def test_a_budget_the_platform_keeps_ends_the_turn_even_under_on_error() -> None:
    class Spent(FakePlatform):
        def __init__(self, error: PlatformError) -> None:
            super().__init__()
            self.error = error

        def llm(self, prompt: str) -> str:
            raise self.error

    source = 'ON ERROR RESUME NEXT\nx = LLM "a"\nTALK "after"\n'
    (turn,) = run(source, platform=Spent(PlatformError("the LLM is down")))
    assert turn.error is None and turn.outputs == ["after"]
    (turn,) = run(source, platform=Spent(BudgetExceeded("calls used up (GB_TURN_MAX_CALLS)")))
    assert turn.error is not None and turn.error.line == 2
    assert turn.error.message == "calls used up (GB_TURN_MAX_CALLS)"
    assert turn.outputs == []


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, -12, 2.5, 1e300, "", 'q"b\\s', "é\x00\n\x7f", "\ud800", [], {}],
)
def test_encoded_size_is_the_size_of_the_stored_json(value: object) -> None:
    for shape in (value, [value, value], {"k": value, "é": [value]}):
        stored = json.dumps(shape, separators=(",", ":"), ensure_ascii=False)
        assert encoded_size(shape) == len(stored.encode("utf-8", "surrogatepass"))
    assert encoded_size(["x" * 1000] * 1000, limit=5000) <= 5000 + 1003  # stops early


def test_a_state_survives_json() -> None:
    source = """
ADD SUGGESTION "a" AS "A"
total = #{ items: [1, 2], name: "x" }
FOR i = 1 TO 2
  FOR EACH w IN ["p", "q"]
    CALL ask(w)
  NEXT
NEXT
SUB ask(word)
  ON ERROR RESUME NEXT
  HEAR reply AS "yes", "no" WITH "Again " + word + "?"
  total.items.PUSH(reply)
END SUB
RETURN total
"""
    program = parse(source, dialog="main", version=3)
    state = start(program, dialog="main", version=3, session={"user_email": "a@b.c"})
    turn = resume(state, lambda n, v: program, None, FakePlatform())
    assert turn.state is not None and turn.pending is not None
    assert turn.pending.options == ["yes", "no"] and turn.pending.prompt == "Again p?"
    data = turn.state.to_data()
    text = json.dumps(data)
    assert State.from_data(json.loads(text)).to_data() == data
    assert json.loads(text)["frames"][1]["kind"] == "sub"
    assert data["suggestions"] == [{"text": "a", "label": "A"}]
    answers = ["yes", "2", "no", "yes"]
    state = turn.state
    for answer in answers:
        state = State.from_data(json.loads(json.dumps(state.to_data())))
        turn = resume(state, lambda n, v: program, answer, FakePlatform())
        if turn.state is not None:
            state = turn.state
    assert turn.result == {"items": [1, 2, "yes", "no", "no", "yes"], "name": "x"}


def test_the_given_state_is_not_changed_by_a_turn() -> None:
    program = parse('HEAR a\nTALK "got " + a\n')
    state = start(program, dialog="main", version=1)
    first = resume(state, lambda n, v: program, None, FakePlatform())
    assert first.state is not None
    before = first.state.to_data()
    again = resume(first.state, lambda n, v: program, "x", FakePlatform())
    assert first.state.to_data() == before
    retry = resume(first.state, lambda n, v: program, "y", FakePlatform())
    assert again.outputs == ["got x"] and retry.outputs == ["got y"]


def test_resuming_without_input_keeps_waiting() -> None:
    program = parse('HEAR a\nTALK "got " + a\n')
    first = resume(
        start(program, dialog="m", version=1), lambda n, v: program, None, FakePlatform()
    )
    assert first.state is not None
    idle = resume(first.state, lambda n, v: program, None, FakePlatform())
    assert idle.waiting and idle.outputs == [] and idle.state is not None


def test_a_side_effect_before_a_hear_happens_once() -> None:
    fake = FakePlatform()
    source = 'SEND MAIL "a@b.c", "Hi", "Welcome"\nHEAR x\nHEAR y\nTALK x + y\n'
    turns = run(source, "1", "2", platform=fake)
    assert turns[-1].outputs == ["12"]
    assert sum(call.startswith("send_mail") for call in fake.take_effects()) == 1


def test_a_running_conversation_keeps_its_dialog_version() -> None:
    versions = {
        1: parse('HEAR name\nTALK "v1 hello " + name\n', dialog="start", version=1),
        2: parse('HEAR name\nTALK "v2 hi " + name\n', dialog="start", version=2),
    }

    def program_for(name: str, version: int | None) -> Program:
        return versions[version or 2]

    old = resume(start(versions[1], dialog="start", version=1), program_for, None, FakePlatform())
    assert old.state is not None and old.state.version == 1
    # version 2 is deployed while the conversation waits
    finished = resume(old.state, program_for, "Ann", FakePlatform())
    assert finished.outputs == ["v1 hello Ann"]
    new = resume(start(versions[2], dialog="start", version=2), program_for, None, FakePlatform())
    assert new.state is not None
    assert resume(new.state, program_for, "Bo", FakePlatform()).outputs == ["v2 hi Bo"]


def test_a_called_dialog_runs_the_live_version_and_keeps_it() -> None:
    main = parse('CALL "helper.bas"\nTALK "back"\n', dialog="main", version=1)
    helpers = {
        4: parse('HEAR x\nTALK "helper v4 " + x\n', dialog="helper", version=4),
        5: parse('HEAR x\nTALK "helper v5 " + x\n', dialog="helper", version=5),
    }
    live = [4]

    def program_for(name: str, version: int | None) -> Program:
        if name == "main":
            return main
        return helpers[version if version is not None else live[0]]

    turn = resume(start(main, dialog="main", version=1), program_for, None, FakePlatform())
    assert turn.state is not None
    assert [(f.dialog, f.version) for f in turn.state.frames] == [("main", 1), ("helper", 4)]
    live[0] = 5
    turn = resume(turn.state, program_for, "y", FakePlatform())
    assert turn.outputs == ["helper v4 y", "back"]


def test_runtime_errors_never_raise_out_of_resume() -> None:
    program = parse('TALK "before"\nSEND MAIL "a@b.c", "s", "b"\nTALK "after"\n')
    turn = resume(
        start(program, dialog="m", version=1), lambda n, v: program, None, UnavailablePlatform()
    )
    assert turn.outputs == ["before"]
    assert turn.error is not None
    assert (turn.error.line, turn.error.message) == (2, "the email area is not available yet")
    assert str(turn.error) == "Line 2: the email area is not available yet"


def test_every_area_of_the_unavailable_platform_refuses() -> None:
    lines = {
        "memory": 'SET BOT MEMORY "k", 1',
        "tasks": 'CREATE TASK "t", "a", "2025-01-01"',
        "calendar": 'BOOK "t", "d", "2025-01-01", 30, "here"',
        "meet": 'START MEET "m"',
        "drive": 'WRITE "a.txt", "x"',
        "kb": 'USE KB "faq"',
        "llm": 'x = LLM "hi"',
        "clock": "TALK NOW",
        "tables": 'SAVE "t", x',
        "http": 'x = GET "https://example.com"',
    }
    for area, line in lines.items():
        program = parse(line)
        turn = resume(
            start(program, dialog="m", version=1),
            lambda n, v, loaded=program: loaded,  # type: ignore[misc]
            None,
            UnavailablePlatform(),
        )
        assert (
            turn.error is not None and turn.error.message == f"the {area} area is not available yet"
        )


def test_a_state_that_does_not_match_its_program_fails_cleanly() -> None:
    program = parse("HEAR a\nHEAR b\n")
    turn = resume(start(program, dialog="m", version=1), lambda n, v: program, None, FakePlatform())
    assert turn.state is not None
    data = turn.state.to_data()
    frames = data["frames"]
    assert isinstance(frames, list) and isinstance(frames[0], dict)
    frames[0]["cursors"] = [{"key": "", "index": 0}, {"key": "body", "index": 0}]
    broken = State.from_data(data)
    result = resume(broken, lambda n, v: program, "x", FakePlatform())
    assert result.error is not None and "does not match" in result.error.message


@pytest.mark.parametrize(
    "data",
    [None, [], {"format": 99}, {"format": 1, "dialog": "d", "version": "1", "frames": []}],
)
def test_malformed_state_data_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        State.from_data(data)


def test_the_package_never_evaluates_text_or_does_io() -> None:
    allowed = {
        "__future__", "abc", "calendar", "collections", "dataclasses", "datetime", "decimal",
        "difflib", "json", "math", "re", "typing", "domain",
    }  # fmt: skip
    for path in PACKAGE.glob("*.py"):
        tree = pyast.parse(path.read_text(encoding="utf-8"))
        for node in pyast.walk(tree):
            if isinstance(node, pyast.Call) and isinstance(node.func, pyast.Name):
                assert node.func.id not in ("eval", "exec", "compile", "open", "__import__"), path
            if isinstance(node, pyast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in allowed, (path, alias.name)
            if isinstance(node, pyast.ImportFrom) and node.module:
                assert node.module.split(".")[0] in allowed, (path, node.module)
                if node.module.startswith("domain"):
                    assert node.module.startswith("domain.basic"), (path, node.module)


def test_exit_and_return_in_a_called_dialog_go_back_to_the_caller() -> None:
    programs = {
        "main": parse('CALL "a.bas"\nCALL "b.bas"\nTALK "main again"\n', dialog="main", version=1),
        "a": parse('TALK "in a"\nEXIT\nTALK "never"\n', dialog="a", version=1),
        "b": parse('TALK "in b"\nRETURN 5\n', dialog="b", version=1),
    }

    def program_for(name: str, version: int | None) -> Program:
        return programs[name]

    turn = resume(
        start(programs["main"], dialog="main", version=1), program_for, None, FakePlatform()
    )
    assert turn.outputs == ["in a", "in b", "main again"] and turn.error is None


def test_a_dialog_that_no_longer_parses_is_a_runtime_error() -> None:
    main = parse('CALL "broken.bas"\n', dialog="main", version=1)

    def program_for(name: str, version: int | None) -> Program:
        if name == "broken":
            return parse("IF x THEN\n")
        return main

    turn = resume(start(main, dialog="main", version=1), program_for, None, FakePlatform())
    assert turn.error is not None
    assert turn.error.message == "dialog broken does not parse: Line 1: IF without END IF"


def test_a_waiting_state_must_stand_on_its_hear() -> None:
    program = parse("HEAR a\nTALK a\n")
    first = resume(
        start(program, dialog="m", version=1), lambda n, v: program, None, FakePlatform()
    )
    assert first.state is not None
    data = first.state.to_data()
    frames = data["frames"]
    assert isinstance(frames, list) and isinstance(frames[0], dict)
    frames[0]["cursors"] = [{"key": "", "index": 1}]
    turn = resume(State.from_data(data), lambda n, v: program, "x", FakePlatform())
    assert turn.error is not None and "does not match" in turn.error.message


def test_start_turns_foreign_values_into_plain_data() -> None:
    program = parse('TALK when + " " + tags\n')
    state = start(program, dialog="m", version=1, args={"when": (2025, 3), "tags": ("a",)})
    assert json.loads(json.dumps(state.to_data()))["frames"][0]["variables"] == {
        "when": [2025, 3],
        "tags": ["a"],
    }


def test_on_error_resume_next_cannot_swallow_the_step_limit() -> None:
    (turn,) = run('ON ERROR RESUME NEXT\nWHILE TRUE\nWEND\nTALK "after"\n')
    assert turn.outputs == [] and turn.error is not None and "steps" in turn.error.message


def test_a_loader_that_fails_is_a_runtime_error_even_when_resuming() -> None:
    program = parse("HEAR a\nTALK a\n", dialog="main", version=1)
    first = resume(
        start(program, dialog="main", version=1), lambda n, v: program, None, FakePlatform()
    )
    assert first.state is not None

    def gone(name: str, version: int | None) -> Program:
        raise PlatformError(f"dialog {name} version {version} is not deployed")

    turn = resume(first.state, gone, "x", FakePlatform())
    assert turn.error is not None
    assert turn.error.message == "dialog main version 1 is not deployed"


def test_a_menu_takes_decimal_digits_and_refuses_other_digits() -> None:
    """`²`.isdigit() is true but int('²') raises: a menu answer `²` is simply not a choice."""
    source = 'HEAR pick AS "tea", "coffee"\nTALK "got " + pick\n'
    first, second = run(source, "²")
    assert second.error is None and second.waiting  # asked again, no crash
    *_, last = run(source, "²", "٢")  # ARABIC-INDIC DIGIT TWO is a decimal digit
    assert last.outputs == ["got coffee"]
