"""The resumable machine that runs a dialog one turn at a time.

`start` makes the state of a dialog that has not run yet; `resume` runs it until it waits on a
HEAR, finishes, or fails, and returns what the bot said in that turn with the new state. The
machine keeps no Python stack across turns: its position is data (see state.py), so a state
that went through JSON resumes exactly where it stopped, and code before a HEAR never runs
twice. Statement-level calls (`CALL sub`, `x = f(a)`, `CALL "other.bas"`) push frames on that
data stack and may HEAR; a FUNCTION used inside a larger expression runs to completion on the
spot and may not HEAR. Every turn is bounded in steps, work, output and call depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date

from domain.basic import ast, hear
from domain.basic.errors import (
    BasicRuntimeError,
    BasicSyntaxError,
    BudgetExceeded,
    LimitExceeded,
    PlatformError,
    RuntimeFailure,
)
from domain.basic.evaluator import Evaluator, compare_op, count_nodes, session_key
from domain.basic.functions import BUILTINS
from domain.basic.limits import Limits
from domain.basic.platform import Platform
from domain.basic.state import Cursor, Frame, PendingHear, State
from domain.basic.values import (
    Value,
    checked_number,
    compare,
    encoded_size,
    equals,
    from_foreign,
    string_size,
    to_number,
    to_text,
    truthy,
    type_name,
)

ProgramFor = Callable[[str, "int | None"], ast.Program]
"""Loads a dialog: the exact version, or the live one when the version is None (then the
returned Program must carry its version, see ast.Program)."""


@dataclass
class Turn:
    """What one turn produced. state is None when the dialog ended (finished or failed)."""

    outputs: list[str]
    suggestions: list[dict[str, str]]
    state: State | None
    waiting: bool
    error: RuntimeFailure | None = None
    result: Value = None
    pending: PendingHear | None = field(default=None)


def start(
    program: ast.Program,
    *,
    dialog: str,
    version: int,
    args: Mapping[str, object] | None = None,
    session: Mapping[str, object] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
) -> State:
    """The state of a dialog about to run: args become its variables, session its values.

    Both are turned into plain data (tuples become lists, other objects text) so the state
    always serialises.
    """
    del program  # the state names the dialog and version; the program is loaded on resume
    variables = {name.lower(): from_foreign(value, limits) for name, value in (args or {}).items()}
    frame = Frame(
        kind="dialog", dialog=dialog, version=version, routine=ast.MAIN, variables=variables
    )
    values = {key: from_foreign(value, limits) for key, value in (session or {}).items()}
    return State(dialog=dialog, version=version, frames=[frame], session=values)


def resume(
    state: State,
    program_for: ProgramFor,
    user_input: str | None,
    platform: Platform,
    limits: Limits = Limits(),  # noqa: B008 - frozen, shared safely
    *,
    checkpoint: Callable[[], None] | None = None,
) -> Turn:
    """Run one turn. Never raises for a dialog's own failure: that is Turn.error.

    The given state is not changed; the turn works on a copy made through its data form.
    checkpoint, if given, is called every few steps; a BudgetExceeded it raises (the turn's
    wall time is up) ends the turn like a limit.
    """
    working = State.from_data(state.to_data())
    machine = _Machine(working, program_for, platform, limits)
    machine.checkpoint = checkpoint
    return machine.turn(user_input)


class _Suspend(Exception):
    """A HEAR waits for the next message."""


class _DialogExit(Exception):
    """EXIT ends the dialog whose frame stands at this index of the stack."""

    def __init__(self, index: int) -> None:
        super().__init__("exit")
        self.index = index


class _Machine(Evaluator):
    """Walks the statements of the frames on the state's stack, one step at a time."""

    def __init__(
        self, state: State, program_for: ProgramFor, platform: Platform, limits: Limits
    ) -> None:
        super().__init__(state, platform, limits)
        self.program_for = program_for
        self.outputs: list[str] = []
        self.output_bytes = 0
        self.nested = 0
        self.answer: str | None = None
        self.programs: dict[tuple[str, int], ast.Program] = {}
        # Each executor takes (frame, program, a statement of its type, stop depth).
        self.executors: dict[type, Callable[..., tuple[bool, Value]]] = {
            ast.Talk: self._talk,
            ast.Print: self._print,
            ast.Wait: self._wait,
            ast.Hear: self._hear,
            ast.Assign: self._assign_stmt,
            ast.CallSub: self._call_sub,
            ast.CallDialog: self._call_dialog,
            ast.ExprStmt: self._expr_stmt,
            ast.AddSuggestion: self._add_suggestion,
            ast.ClearSuggestions: self._clear_suggestions,
            ast.SessionSet: self._session_set,
            ast.Command: self._command,
            ast.Compat: self._compat,
            ast.If: self._if,
            ast.ForEach: self._for_each,
            ast.ForRange: self._for_range,
            ast.Loop: self._loop,
            ast.Select: self._select,
            ast.With: self._with,
            ast.RoutineDef: self._skip,
            ast.Label: self._skip,
            ast.Return: self._return,
            ast.Exit: self._exit,
            ast.Throw: self._throw,
            ast.OnError: self._on_error,
            ast.Goto: self._goto,
        }

    # --- the turn ------------------------------------------------------------------------

    def turn(self, user_input: str | None) -> Turn:
        state = self.state
        if state.pending is not None:
            if user_input is None:
                return self._waiting()
            self.answer = user_input
        try:
            self._check_pending()
            result = self._run(0)
        except _Suspend:
            try:
                self._check_state_size()
            except BasicRuntimeError as error:
                return self._failed(error)
            return self._waiting()
        except BasicRuntimeError as error:
            return self._failed(error)
        except PlatformError as error:
            return self._failed(_runtime_error(error))
        except RecursionError:
            return self._failed(BasicRuntimeError("the dialog nests calls too deeply", self.line))
        return Turn(
            outputs=self.outputs,
            suggestions=list(state.suggestions),
            state=None,
            waiting=False,
            result=result,
        )

    def _waiting(self) -> Turn:
        return Turn(
            outputs=self.outputs,
            suggestions=list(self.state.suggestions),
            state=self.state,
            waiting=True,
            pending=self.state.pending,
        )

    def _failed(self, error: BasicRuntimeError) -> Turn:
        dialog = error.dialog or (
            self.state.frames[-1].dialog if self.state.frames else self.state.dialog
        )
        failure = RuntimeFailure(error.line or self.line, error.message, dialog)
        return Turn(
            outputs=self.outputs,
            suggestions=list(self.state.suggestions),
            state=None,
            waiting=False,
            error=failure,
        )

    def _check_pending(self) -> None:
        """A waiting state must stand on the HEAR it waits for."""
        pending = self.state.pending
        if pending is None or not self.state.frames:
            return
        frame = self.state.frames[-1]
        block, _ = self._resolve(frame, self._program(frame))
        index = frame.cursors[-1].index
        stmt = block[index] if index < len(block) else None
        if not isinstance(stmt, ast.Hear) or stmt.line != pending.line:
            raise BasicRuntimeError("the saved position does not match the dialog", pending.line)

    def _check_state_size(self) -> None:
        budget = self.limits.max_value_nodes * 4
        for frame in self.state.frames:
            for value in frame.variables.values():
                budget -= count_nodes(value)
        if budget < 0:
            raise BasicRuntimeError("the dialog's variables grew too large to keep", self.line)
        limit = self.limits.max_state_bytes
        if encoded_size(self.state.to_data(), limit) > limit:
            raise LimitExceeded(
                f"the dialog's state to keep until the next message is larger than {limit:,}"
                " bytes (the limit is GB_TURN_MAX_STATE_BYTES)",
                self.line,
            )

    # --- the run loop --------------------------------------------------------------------

    def _run(self, stop_depth: int) -> Value:
        """Run until the frame count drops to stop_depth; return the last frame's result."""
        while True:
            try:
                try:
                    done, value = self._step(stop_depth)
                except _DialogExit as exit_:
                    done, value = self._exit_dialog(exit_, stop_depth)
                if done:
                    return value
            except PlatformError as error:
                self._recover(_runtime_error(error), stop_depth)
            except BasicRuntimeError as error:
                self._recover(error, stop_depth)

    def _exit_dialog(self, exit_: _DialogExit, stop_depth: int) -> tuple[bool, Value]:
        """EXIT: drop the exiting dialog's frames; its caller (if any) goes on after CALL."""
        frames = self.state.frames
        if exit_.index < stop_depth:
            del frames[stop_depth:]
            raise exit_
        del frames[exit_.index :]
        if len(frames) == stop_depth:
            return True, None
        self._complete_call(frames[-1], None)
        return False, None

    def _recover(self, error: BasicRuntimeError, stop_depth: int) -> None:
        """ON ERROR RESUME NEXT: the nearest frame that asked for it skips its statement."""
        frames = self.state.frames
        if error.line is None:
            error.line = self.line
            error.dialog = frames[-1].dialog if frames else self.state.dialog
        if isinstance(error, LimitExceeded):
            del frames[stop_depth:]
            raise error
        for index in range(len(frames) - 1, stop_depth - 1, -1):
            if frames[index].resume_next:
                del frames[index + 1 :]
                self.state.pending = None
                self._skip_failed(frames[index])
                return
        del frames[stop_depth:]
        raise error

    def _skip_failed(self, frame: Frame) -> None:
        program = self._program(frame)
        block, _ = self._resolve(frame, program)
        cursor = frame.cursors[-1]
        if cursor.index < len(block) or len(frame.cursors) == 1:
            cursor.index += 1
        else:
            frame.cursors.pop()
            self._advance(frame)

    def _step(self, stop_depth: int) -> tuple[bool, Value]:
        self._tick()
        frame = self.state.frames[-1]
        program = self._program(frame)
        block, owner = self._resolve(frame, program)
        cursor = frame.cursors[-1]
        if cursor.index < len(block):
            stmt = block[cursor.index]
            self.line = stmt.line
            return self.executors[type(stmt)](frame, program, stmt, stop_depth)
        if owner is None:
            return self._leave_routine(frame, program, stop_depth)
        self.line = owner.line
        self._block_end(frame, owner, cursor)
        return False, None

    def _program(self, frame: Frame) -> ast.Program:
        key = (frame.dialog, frame.version)
        program = self.programs.get(key)
        if program is None:
            program = self._load(frame.dialog, frame.version)
            self.programs[key] = program
        return program

    def _load(self, dialog: str, version: int | None) -> ast.Program:
        try:
            return self.program_for(dialog, version)
        except LookupError:
            raise BasicRuntimeError(f"dialog {dialog} not found") from None
        except BasicSyntaxError as error:
            raise BasicRuntimeError(f"dialog {dialog} does not parse: {error}") from None
        except PlatformError as error:
            raise BasicRuntimeError(error.message) from None

    def _resolve(self, frame: Frame, program: ast.Program) -> tuple[ast.Block, ast.Stmt | None]:
        """The block the top cursor walks, and the statement that owns it."""
        try:
            block = program.routine_body(frame.routine)
        except KeyError:
            raise BasicRuntimeError("the saved position does not match the dialog") from None
        owner: ast.Stmt | None = None
        cursors = frame.cursors
        for depth in range(1, len(cursors)):
            parent_index = cursors[depth - 1].index
            if not 0 <= parent_index < len(block):
                raise BasicRuntimeError("the saved position does not match the dialog")
            owner = block[parent_index]
            inner = ast.child_block(owner, cursors[depth].key)
            if inner is None:
                raise BasicRuntimeError("the saved position does not match the dialog")
            block = inner
        return block, owner

    def _advance(self, frame: Frame) -> None:
        frame.cursors[-1].index += 1

    def _enter(
        self, frame: Frame, key: str, loop: dict[str, Value] | None = None
    ) -> tuple[bool, Value]:
        frame.cursors.append(Cursor(key, 0, loop))
        return False, None

    def _next(self, frame: Frame) -> tuple[bool, Value]:
        self._advance(frame)
        return False, None

    # --- blocks --------------------------------------------------------------------------

    def _block_end(self, frame: Frame, owner: ast.Stmt, cursor: Cursor) -> None:
        again = False
        if isinstance(owner, ast.ForEach) and cursor.loop is not None:
            items = cursor.loop.get("items")
            position = cursor.loop.get("pos")
            if isinstance(items, list) and isinstance(position, int):
                position += 1
                cursor.loop["pos"] = position
                again = position < len(items)
                if again:
                    self._set_variable(frame, owner.var.lower(), self._copy(items[position]))
        elif isinstance(owner, ast.ForRange) and cursor.loop is not None:
            step = to_number(cursor.loop.get("step"))
            value = checked_number(to_number(self._get_variable(frame, owner.var)) + step)
            self._set_variable(frame, owner.var.lower(), value)
            again = self._in_range(value, to_number(cursor.loop.get("end")), step)
        elif isinstance(owner, ast.Loop):
            again = self._loop_continues(frame, owner)
        if again:
            cursor.index = 0
        else:
            frame.cursors.pop()
            self._advance(frame)

    def _in_range(self, value: int | float, end: int | float, step: int | float) -> bool:
        return value <= end if step > 0 else value >= end

    def _loop_continues(self, frame: Frame, loop: ast.Loop) -> bool:
        if loop.cond is None:
            return True
        holds = truthy(self.eval(frame, loop.cond))
        return holds if loop.kind == "while" else not holds

    def _if(
        self, frame: Frame, program: ast.Program, stmt: ast.If, stop: int
    ) -> tuple[bool, Value]:
        for number, branch in enumerate(stmt.branches):
            if truthy(self.eval(frame, branch.cond)):
                return self._enter(frame, str(number))
        if stmt.else_body is not None:
            return self._enter(frame, "else")
        return self._next(frame)

    def _for_each(
        self, frame: Frame, program: ast.Program, stmt: ast.ForEach, stop: int
    ) -> tuple[bool, Value]:
        items = self.eval(frame, stmt.items)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise BasicRuntimeError(f"FOR EACH needs a list, got {type_name(items)}")
        if not items:
            return self._next(frame)
        snapshot = self._copy(items)
        assert isinstance(snapshot, list)
        self._set_variable(frame, stmt.var.lower(), self._copy(snapshot[0]))
        return self._enter(frame, "body", {"items": snapshot, "pos": 0})

    def _for_range(
        self, frame: Frame, program: ast.Program, stmt: ast.ForRange, stop: int
    ) -> tuple[bool, Value]:
        first = to_number(self.eval(frame, stmt.start))
        end = to_number(self.eval(frame, stmt.end))
        step = to_number(self.eval(frame, stmt.step)) if stmt.step is not None else 1
        if step == 0:
            raise BasicRuntimeError("FOR with STEP 0 never ends")
        self._set_variable(frame, stmt.var.lower(), first)
        if not self._in_range(first, end, step):
            return self._next(frame)
        return self._enter(frame, "body", {"end": end, "step": step})

    def _loop(
        self, frame: Frame, program: ast.Program, stmt: ast.Loop, stop: int
    ) -> tuple[bool, Value]:
        if stmt.post or self._loop_continues(frame, stmt):
            return self._enter(frame, "body")
        return self._next(frame)

    def _select(
        self, frame: Frame, program: ast.Program, stmt: ast.Select, stop: int
    ) -> tuple[bool, Value]:
        subject = self.eval(frame, stmt.subject)
        for number, case in enumerate(stmt.cases):
            if any(self._case_matches(frame, subject, test) for test in case.tests):
                return self._enter(frame, str(number))
        if stmt.else_body is not None:
            return self._enter(frame, "else")
        return self._next(frame)

    def _case_matches(self, frame: Frame, subject: Value, test: ast.CaseTest) -> bool:
        value = self.eval(frame, test.value)
        if test.kind == "eq":
            return equals(subject, value)
        if test.kind == "range":
            assert test.upper is not None
            upper = self.eval(frame, test.upper)
            return compare(subject, value) >= 0 and compare(subject, upper) <= 0
        return compare_op(test.op, subject, value)

    def _with(
        self, frame: Frame, program: ast.Program, stmt: ast.With, stop: int
    ) -> tuple[bool, Value]:
        target = self._container(frame, stmt.target, want_list=False)
        if not isinstance(target, dict):
            raise BasicRuntimeError(f"WITH needs an object, got {type_name(target)}")
        return self._enter(frame, "body")

    def _skip(
        self, frame: Frame, program: ast.Program, stmt: ast.Stmt, stop: int
    ) -> tuple[bool, Value]:
        return self._next(frame)

    # --- control -------------------------------------------------------------------------

    def _exit(
        self, frame: Frame, program: ast.Program, stmt: ast.Exit, stop: int
    ) -> tuple[bool, Value]:
        if stmt.kind == "DIALOG":
            raise _DialogExit(self._dialog_index())
        if stmt.kind in ("SUB", "FUNCTION"):
            return self._leave_routine(frame, program, stop)
        while len(frame.cursors) > 1:
            _, owner = self._resolve(frame, program)
            frame.cursors.pop()
            if owner is not None and _loop_matches(owner, stmt.kind):
                return self._next(frame)
        raise BasicRuntimeError(f"EXIT {stmt.kind} outside a loop")

    def _return(
        self, frame: Frame, program: ast.Program, stmt: ast.Return, stop: int
    ) -> tuple[bool, Value]:
        value = self.eval(frame, stmt.value) if stmt.value is not None else None
        return self._pop_frame(self._copy(value), stop)

    def _leave_routine(self, frame: Frame, program: ast.Program, stop: int) -> tuple[bool, Value]:
        """The end of a body, or EXIT SUB/FUNCTION: a FUNCTION returns `name = value`, if set."""
        value = frame.variables.get(frame.routine) if frame.kind == "function" else None
        return self._pop_frame(value, stop)

    def _pop_frame(self, value: Value, stop: int) -> tuple[bool, Value]:
        frames = self.state.frames
        frames.pop()
        if len(frames) == stop:
            return True, value
        self._complete_call(frames[-1], value)
        return False, None

    def _complete_call(self, caller: Frame, value: Value) -> None:
        """The callee returned: finish the caller's call statement (assign the value)."""
        program = self._program(caller)
        block, _ = self._resolve(caller, program)
        stmt = block[caller.cursors[-1].index]
        self.line = stmt.line
        if isinstance(stmt, ast.Assign):
            self._assign(caller, stmt.target, value)
        self._advance(caller)

    def _throw(
        self, frame: Frame, program: ast.Program, stmt: ast.Throw, stop: int
    ) -> tuple[bool, Value]:
        raise BasicRuntimeError(to_text(self.eval(frame, stmt.value)))

    def _on_error(
        self, frame: Frame, program: ast.Program, stmt: ast.OnError, stop: int
    ) -> tuple[bool, Value]:
        frame.resume_next = stmt.resume_next
        return self._next(frame)

    def _goto(
        self, frame: Frame, program: ast.Program, stmt: ast.Goto, stop: int
    ) -> tuple[bool, Value]:
        path = program.labels.get(frame.routine, {}).get(stmt.label.lower())
        if path is None:
            raise BasicRuntimeError(f"GOTO to undefined label {stmt.label}")
        old = frame.cursors
        new: list[Cursor] = []
        block = program.routine_body(frame.routine)
        same = True
        for level, (index, _) in enumerate(path):
            cursor_key = "" if level == 0 else path[level - 1][1]
            if level > 0:
                owner = block[path[level - 1][0]]
                same = same and level < len(old) and old[level - 1].index == path[level - 1][0]
                same = same and old[level].key == cursor_key
                if not same and ast.is_loop(owner):
                    raise BasicRuntimeError(f"GOTO {stmt.label} jumps into a loop")
                inner = ast.child_block(owner, cursor_key)
                assert inner is not None
                block = inner
            loop = old[level].loop if same and level < len(old) else None
            new.append(Cursor(cursor_key, index, loop))
        frame.cursors[:] = new
        return False, None

    # --- calls ---------------------------------------------------------------------------

    def _call_sub(
        self, frame: Frame, program: ast.Program, stmt: ast.CallSub, stop: int
    ) -> tuple[bool, Value]:
        routine = program.routines.get(stmt.name.lower())
        if routine is not None:
            args = [self.eval(frame, arg) for arg in stmt.args]
            self._push_routine(frame, routine, args)
            return False, None
        if stmt.name.upper() in BUILTINS:
            self.eval(frame, ast.Call(line=stmt.line, col=stmt.col, name=stmt.name, args=stmt.args))
            return self._next(frame)
        if stmt.explicit:
            raise BasicRuntimeError(f"CALL of undefined sub {stmt.name}")
        raise BasicRuntimeError(f"unknown statement {stmt.name}")

    def _push_routine(self, caller: Frame, routine: ast.RoutineDef, args: list[Value]) -> None:
        if len(self.state.frames) >= self.limits.max_call_depth:
            raise BasicRuntimeError(f"more than {self.limits.max_call_depth} nested calls")
        if len(args) != len(routine.params):
            kind = "FUNCTION" if routine.is_function else "SUB"
            wanted = len(routine.params)
            plural = "" if wanted == 1 else "s"
            raise BasicRuntimeError(
                f"{kind} {routine.name} expects {wanted} argument{plural}, got {len(args)}"
            )
        variables = {
            name.lower(): self._copy(value)
            for name, value in zip(routine.params, args, strict=True)
        }
        self.state.frames.append(
            Frame(
                kind="function" if routine.is_function else "sub",
                dialog=caller.dialog,
                version=caller.version,
                routine=routine.key,
                variables=variables,
            )
        )

    def _call_dialog(
        self, frame: Frame, program: ast.Program, stmt: ast.CallDialog, stop: int
    ) -> tuple[bool, Value]:
        name = to_text(self.eval(frame, stmt.target)).strip()
        if name.lower().endswith(".bas"):
            name = name[:-4]
        if not name:
            raise BasicRuntimeError("CALL needs a dialog name")
        if len(self.state.frames) >= self.limits.max_call_depth:
            raise BasicRuntimeError(f"more than {self.limits.max_call_depth} nested calls")
        loaded = self._load(name, None)
        if loaded.version is None:
            raise BasicRuntimeError(f"dialog {name} was loaded without its version")
        self.programs[(name, loaded.version)] = loaded
        self.state.frames.append(
            Frame(kind="dialog", dialog=name, version=loaded.version, routine=ast.MAIN)
        )
        return False, None

    def _call_in_expression(
        self, frame: Frame, routine: ast.RoutineDef, args: list[Value]
    ) -> Value:
        stop = len(self.state.frames)
        self._push_routine(frame, routine, args)
        self.nested += 1
        try:
            return self._run(stop)
        finally:
            self.nested -= 1

    # --- talk, hear and friends ------------------------------------------------------------

    def _say(self, text: str) -> None:
        if len(self.outputs) >= self.limits.max_outputs:
            raise BasicRuntimeError(f"more than {self.limits.max_outputs} messages in one turn")
        self._spend_output(text)
        self.outputs.append(text)

    def _spend_output(self, *texts: str) -> None:
        """Messages and suggestions of a turn count against Limits.max_output_bytes."""
        limit = self.limits.max_output_bytes
        self.output_bytes += sum(string_size(text) + 2 for text in texts)
        if self.output_bytes > limit:
            raise LimitExceeded(
                f"the turn's messages are larger than {limit:,} bytes"
                " (the limit is GB_TURN_MAX_EVENT_BYTES)"
            )

    def _talk(
        self, frame: Frame, program: ast.Program, stmt: ast.Talk, stop: int
    ) -> tuple[bool, Value]:
        self._say(to_text(self.eval(frame, stmt.value)))
        return self._next(frame)

    def _print(
        self, frame: Frame, program: ast.Program, stmt: ast.Print, stop: int
    ) -> tuple[bool, Value]:
        self.platform.log(to_text(self.eval(frame, stmt.value)))
        return self._next(frame)

    def _wait(
        self, frame: Frame, program: ast.Program, stmt: ast.Wait, stop: int
    ) -> tuple[bool, Value]:
        seconds = to_number(self.eval(frame, stmt.seconds))
        self.platform.wait(max(0.0, float(seconds)))
        return self._next(frame)

    def _hear(
        self, frame: Frame, program: ast.Program, stmt: ast.Hear, stop: int
    ) -> tuple[bool, Value]:
        pending = self.state.pending
        if pending is None:
            if self.nested:
                raise BasicRuntimeError("HEAR cannot run in a FUNCTION used inside an expression")
            prompt = to_text(self.eval(frame, stmt.prompt)) if stmt.prompt is not None else None
            if prompt is not None:
                self._say(prompt)
            options = [to_text(self.eval(frame, option)) for option in stmt.options]
            default = (
                self._copy(self.eval(frame, stmt.default)) if stmt.default is not None else None
            )
            self.state.pending = PendingHear(
                target=_describe_target(stmt.target),
                kind=stmt.kind or "ANY",
                options=options,
                retries=0,
                prompt=prompt,
                default=default,
                line=stmt.line,
            )
            raise _Suspend
        answer = self.answer
        if answer is None:
            raise _Suspend
        self.answer = None
        if not answer.strip() and stmt.default is not None:
            accepted, value = True, pending.default
        else:
            accepted, value = hear.check(pending.kind, answer, pending.options, self._today)
        if not accepted:
            pending.retries += 1
            if pending.retries <= self.limits.hear_retries:
                if pending.kind == "MENU":
                    self._say(hear.menu_prompt(pending.options))
                else:
                    self._say(hear.PROMPTS[pending.kind])
                raise _Suspend
            value = ""
        self.state.pending = None
        self.state.suggestions.clear()
        self._assign(frame, stmt.target, value)
        return self._next(frame)

    def _today(self) -> date:
        return self.platform.now().date()

    def _add_suggestion(
        self, frame: Frame, program: ast.Program, stmt: ast.AddSuggestion, stop: int
    ) -> tuple[bool, Value]:
        text = to_text(self.eval(frame, stmt.text))
        label = to_text(self.eval(frame, stmt.label)) if stmt.label is not None else text
        if len(self.state.suggestions) >= self.limits.max_outputs:
            raise BasicRuntimeError(f"more than {self.limits.max_outputs} suggestions")
        self._spend_output(text, label)
        self.state.suggestions.append({"text": text, "label": label})
        return self._next(frame)

    def _clear_suggestions(
        self, frame: Frame, program: ast.Program, stmt: ast.Stmt, stop: int
    ) -> tuple[bool, Value]:
        self.state.suggestions.clear()
        return self._next(frame)

    def _session_set(
        self, frame: Frame, program: ast.Program, stmt: ast.SessionSet, stop: int
    ) -> tuple[bool, Value]:
        key = session_key(to_text(self.eval(frame, stmt.key)), required=True)
        self.state.session[key] = self._copy(self.eval(frame, stmt.value))
        return self._next(frame)

    def _compat(
        self, frame: Frame, program: ast.Program, stmt: ast.Compat, stop: int
    ) -> tuple[bool, Value]:
        raise BasicRuntimeError(f"the {stmt.area} area is not available yet")

    def _expr_stmt(
        self, frame: Frame, program: ast.Program, stmt: ast.ExprStmt, stop: int
    ) -> tuple[bool, Value]:
        self.eval(frame, stmt.expr)
        return self._next(frame)

    def _command(
        self, frame: Frame, program: ast.Program, stmt: ast.Command, stop: int
    ) -> tuple[bool, Value]:
        args = [self.eval(frame, arg) for arg in stmt.args]
        text = [to_text(arg) for arg in args]
        platform = self.platform
        keyword = stmt.keyword
        if keyword == "SET BOT MEMORY":
            platform.set_bot_memory(text[0], self._copy(args[1]))
        elif keyword in ("SET USER MEMORY", "REMEMBER"):
            platform.set_user_memory(text[0], self._copy(args[1]))
        elif keyword == "USE KB":
            name = text[0][:-5] if text[0].lower().endswith(".gbkb") else text[0]
            platform.use_kb(name)
        elif keyword == "CLEAR KB":
            platform.clear_kb()
        elif keyword == "SET CONTEXT":
            name, body = (text[0], text[1]) if len(text) == 2 else ("", text[0])
            platform.set_context(name, body)
        elif keyword == "SEND MAIL":
            platform.send_mail(text[0], text[1], text[2])
        elif keyword == "CREATE TASK":
            platform.create_task(text[0], text[1], text[2], text[3] if len(text) > 3 else None)
        elif keyword == "BOOK":
            platform.book(
                text[0], text[1], text[2], float(to_number(args[3], "a number of minutes")), text[4]
            )
        elif keyword == "START MEET":
            platform.start_meet(text[0])
        elif keyword == "WRITE":
            platform.write_file(text[0], text[1])
        elif keyword == "DELETE FILE":
            platform.delete_file(text[0])
        elif keyword == "SEND FILE":
            # The file goes out as a message of the turn, in order with the TALKs around it.
            self._say(platform.send_file(text[0], text[1] if len(text) > 1 else ""))
        else:
            raise BasicRuntimeError(f"unknown statement {keyword}")
        return self._next(frame)

    def _assign_stmt(
        self, frame: Frame, program: ast.Program, stmt: ast.Assign, stop: int
    ) -> tuple[bool, Value]:
        call = stmt.value
        if isinstance(call, ast.Call):
            routine = program.routines.get(call.name.lower())
            if routine is not None:
                args = [self.eval(frame, arg) for arg in call.args]
                self._push_routine(frame, routine, args)
                return False, None
        value = self.eval(frame, stmt.value)
        self._assign(frame, stmt.target, value)
        return self._next(frame)


def _runtime_error(error: PlatformError) -> BasicRuntimeError:
    """A platform's refusal at the running line; a used-up budget ends the turn."""
    if isinstance(error, BudgetExceeded):
        return LimitExceeded(error.message)
    return BasicRuntimeError(error.message)


def _loop_matches(owner: ast.Stmt, kind: str) -> bool:
    if kind == "FOR":
        return isinstance(owner, ast.ForEach | ast.ForRange)
    if kind in ("DO", "WHILE"):
        return isinstance(owner, ast.Loop) and owner.style == kind
    return ast.is_loop(owner) or isinstance(owner, ast.Select)  # BREAK


def _describe_target(target: ast.Expr) -> str:
    if isinstance(target, ast.Name):
        return target.name
    if isinstance(target, ast.Member):
        return f"{_describe_target(target.obj)}.{target.name}"
    if isinstance(target, ast.Index):
        return f"{_describe_target(target.obj)}[]"
    return "?"
