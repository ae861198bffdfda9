"""Expressions and variables of a running dialog.

The machine (machine.py) moves through statements; this base class evaluates what they
contain: names, operators, calls, keyword expressions such as `GET BOT MEMORY k`, and the
assignments that store values (copied, so a state behaves the same before and after JSON).
It also answers the built-in functions' questions (clock, random, UUID) from the platform.
Every expression node counts as a step, which is what bounds a turn.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime

from domain.basic import ast
from domain.basic.errors import BasicRuntimeError, LimitExceeded
from domain.basic.functions import BUILTINS, NO_ARGUMENT, call_builtin, call_method
from domain.basic.limits import Limits
from domain.basic.platform import Platform
from domain.basic.state import Frame, State
from domain.basic.values import (
    Value,
    add,
    arithmetic,
    checked_number,
    checked_text,
    compare,
    concat,
    copy_value,
    equals,
    from_foreign,
    get_index,
    get_member,
    member_key,
    to_number,
    to_text,
    truthy,
    type_name,
)

STEP_LIMIT_MESSAGE = "the dialog ran more than {} steps in one turn (an endless loop?)"
CHECKPOINT_STEPS = 128


class Evaluator(ABC):
    """Evaluation over a state's frames; the machine supplies programs and calls."""

    def __init__(self, state: State, platform: Platform, limits: Limits) -> None:
        self.state = state
        self.platform = platform
        self.limits = limits
        self.steps = 0
        self.work = 0
        self.line = 0
        # Called every CHECKPOINT_STEPS steps; may raise BudgetExceeded (e.g. wall time).
        self.checkpoint: Callable[[], None] | None = None

    @abstractmethod
    def _program(self, frame: Frame) -> ast.Program:
        """The program a frame runs (the machine loads exact dialog versions)."""

    @abstractmethod
    def _call_in_expression(
        self, frame: Frame, routine: ast.RoutineDef, args: list[Value]
    ) -> Value:
        """Runs a FUNCTION to completion inside an expression."""

    def _tick(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(STEP_LIMIT_MESSAGE.format(self.limits.max_steps))
        if self.checkpoint is not None and self.steps % CHECKPOINT_STEPS == 0:
            self.checkpoint()

    def _dialog_index(self) -> int:
        frames = self.state.frames
        for index in range(len(frames) - 1, -1, -1):
            if frames[index].kind == "dialog":
                return index
        return 0

    # --- variables -----------------------------------------------------------------------

    def _copy(self, value: Value) -> Value:
        if isinstance(value, list | dict):
            self.work += count_nodes(value)
            if self.work > self.limits.max_steps * 20:
                raise LimitExceeded("the dialog copied too much data in one turn")
        return copy_value(value, self.limits)

    def _globals(self) -> dict[str, Value]:
        frames = self.state.frames
        return frames[self._dialog_index()].variables

    def _lookup(self, frame: Frame, key: str) -> tuple[bool, Value]:
        if key in frame.variables:
            return True, frame.variables[key]
        if frame.kind != "dialog":
            shared = self._globals()
            if key in shared:
                return True, shared[key]
        return False, None

    def _get_variable(self, frame: Frame, name: str) -> Value:
        found, value = self._lookup(frame, name.lower())
        if not found:
            raise BasicRuntimeError(f"unknown variable {name}")
        return value

    def _set_variable(self, frame: Frame, key: str, value: Value) -> None:
        """Locals first; a SUB updates a dialog variable that exists; else a new local."""
        if key in frame.variables or frame.kind == "dialog":
            frame.variables[key] = value
            return
        shared = self._globals()
        if key in shared:
            shared[key] = value
        else:
            frame.variables[key] = value

    def _assign(self, frame: Frame, target: ast.Expr, value: Value) -> None:
        stored = self._copy(value)
        if isinstance(target, ast.Name):
            self._set_variable(frame, target.key, stored)
        elif isinstance(target, ast.Member):
            container = self._container(frame, target.obj, want_list=False)
            if not isinstance(container, dict):
                raise BasicRuntimeError(f"cannot set field {target.name} of {type_name(container)}")
            container[member_key(container, target.name)] = stored
        elif isinstance(target, ast.Index):
            index = self.eval(frame, target.index)
            container = self._container(frame, target.obj, want_list=not isinstance(index, str))
            self._set_item(container, index, stored)
        else:
            raise BasicRuntimeError("only a variable, a field or an item can be assigned")

    def _set_item(self, container: Value, index: Value, value: Value) -> None:
        if isinstance(container, dict):
            key = to_text(index)
            container[member_key(container, key)] = value
            return
        if not isinstance(container, list):
            raise BasicRuntimeError(f"cannot set an item of {type_name(container)}")
        position = int(to_number(index))
        if position == len(container):
            if len(container) >= self.limits.max_list:
                raise BasicRuntimeError(f"list longer than {self.limits.max_list} items")
            container.append(value)
        elif 0 <= position < len(container):
            container[position] = value
        else:
            raise BasicRuntimeError(f"index {position} is out of range ({len(container)} items)")

    def _container(self, frame: Frame, expr: ast.Expr, *, want_list: bool) -> Value:
        """The object or list an assignment writes into; a missing or NULL one is created."""
        fresh: Value = [] if want_list else {}
        if isinstance(expr, ast.Name):
            found, value = self._lookup(frame, expr.key)
            if not found or value is None:
                self._set_variable(frame, expr.key, fresh)
                return fresh
            return value
        if isinstance(expr, ast.Member):
            parent = self._container(frame, expr.obj, want_list=False)
            if not isinstance(parent, dict):
                raise BasicRuntimeError(f"cannot set field {expr.name} of {type_name(parent)}")
            key = member_key(parent, expr.name)
            if parent.get(key) is None:
                parent[key] = fresh
            return parent[key]
        if isinstance(expr, ast.Index):
            index = self.eval(frame, expr.index)
            parent = self._container(frame, expr.obj, want_list=not isinstance(index, str))
            current: Value = None
            if isinstance(parent, list):
                position = int(to_number(index))
                current = parent[position] if 0 <= position < len(parent) else None
            elif isinstance(parent, dict):
                current = get_member(parent, to_text(index))
            if current is None:
                self._set_item(parent, index, fresh)
                return fresh
            return current
        return self.eval(frame, expr)

    # --- expressions ---------------------------------------------------------------------

    def eval(self, frame: Frame, expr: ast.Expr) -> Value:
        self._tick()
        if isinstance(expr, ast.Literal):
            return expr.value
        if isinstance(expr, ast.Name):
            return self._name(frame, expr)
        if isinstance(expr, ast.Chain):
            return self._chain(frame, expr)
        if isinstance(expr, ast.Member):
            return get_member(self.eval(frame, expr.obj), expr.name)
        if isinstance(expr, ast.Index):
            container = self.eval(frame, expr.obj)
            return get_index(container, self.eval(frame, expr.index))
        if isinstance(expr, ast.Template):
            pieces = [p if isinstance(p, str) else to_text(self.eval(frame, p)) for p in expr.parts]
            return checked_text("".join(pieces), self.limits)
        if isinstance(expr, ast.Call):
            return self._call(frame, expr)
        if isinstance(expr, ast.MethodCall):
            receiver = self.eval(frame, expr.obj)
            args = [self.eval(frame, arg) for arg in expr.args]
            return call_method(receiver, expr.name, args, self)
        if isinstance(expr, ast.Unary):
            return self._unary(frame, expr)
        if isinstance(expr, ast.Logic):
            return self._logic(frame, expr)
        if isinstance(expr, ast.IsNull):
            is_null = self.eval(frame, expr.operand) is None
            return not is_null if expr.negated else is_null
        if isinstance(expr, ast.ListLit):
            items = [self._copy(self.eval(frame, item)) for item in expr.items]
            if len(items) > self.limits.max_list:
                raise BasicRuntimeError(f"list longer than {self.limits.max_list} items")
            return items
        if isinstance(expr, ast.ObjectLit):
            return {key: self._copy(self.eval(frame, value)) for key, value in expr.pairs}
        if isinstance(expr, ast.KeywordExpr):
            return self._keyword(frame, expr)
        raise BasicRuntimeError(f"cannot evaluate {type(expr).__name__}")

    def _name(self, frame: Frame, expr: ast.Name) -> Value:
        found, value = self._lookup(frame, expr.key)
        if found:
            return value
        program = self._program(frame)
        routine = program.routines.get(expr.key)
        if routine is not None and routine.is_function and not routine.params:
            return self._call_in_expression(frame, routine, [])
        upper = expr.name.upper()
        if upper in NO_ARGUMENT:
            return call_builtin(upper, [], self)
        raise BasicRuntimeError(f"unknown variable {expr.name}")

    def _chain(self, frame: Frame, expr: ast.Chain) -> Value:
        value = self.eval(frame, expr.first)
        for op, operand in expr.rest:
            right = self.eval(frame, operand)
            value = self._binary(op, value, right)
        return value

    def _binary(self, op: str, left: Value, right: Value) -> Value:
        if op == "+":
            return add(left, right, self.limits)
        if op == "&":
            return concat(left, right, self.limits)
        if op in ("-", "*", "/", "MOD", "^"):
            return arithmetic(op, left, right)
        return compare_op(op, left, right)

    def _unary(self, frame: Frame, expr: ast.Unary) -> Value:
        value = self.eval(frame, expr.operand)
        if expr.op == "NOT":
            return not truthy(value)
        number = to_number(value)
        return checked_number(-number) if expr.op == "-" else number

    def _logic(self, frame: Frame, expr: ast.Logic) -> Value:
        wanted = expr.op == "OR"
        for operand in expr.operands:
            if truthy(self.eval(frame, operand)) == wanted:
                return wanted
        return not wanted

    def _call(self, frame: Frame, expr: ast.Call) -> Value:
        program = self._program(frame)
        routine = program.routines.get(expr.name.lower())
        if routine is not None:
            args = [self.eval(frame, arg) for arg in expr.args]
            return self._call_in_expression(frame, routine, args)
        upper = expr.name.upper()
        if upper == "IIF":
            if len(expr.args) != 3:
                raise BasicRuntimeError(f"IIF expects 3 arguments, got {len(expr.args)}")
            chosen = expr.args[1] if truthy(self.eval(frame, expr.args[0])) else expr.args[2]
            return self.eval(frame, chosen)
        if upper in BUILTINS:
            return call_builtin(upper, [self.eval(frame, arg) for arg in expr.args], self)
        raise BasicRuntimeError(f"unknown function {expr.name}")

    def _keyword(self, frame: Frame, expr: ast.KeywordExpr) -> Value:
        args = [self.eval(frame, arg) for arg in expr.args]
        text = to_text(args[0]) if args else ""
        keyword = expr.keyword
        platform = self.platform
        raw: object
        if keyword == "GET" and not text.lower().startswith("session."):
            raise BasicRuntimeError("the http area is not available yet")
        if keyword in ("GET", "GET SESSION"):
            return self._copy(self.state.session.get(session_key(text, required=False)))
        if keyword == "GET BOT MEMORY":
            raw = platform.get_bot_memory(text)
        elif keyword in ("GET USER MEMORY", "RECALL"):
            raw = platform.get_user_memory(text)
        elif keyword == "THINK KB":
            raw = platform.think_kb(text)
        elif keyword == "LLM":
            raw = platform.llm(text)
        elif keyword == "READ":
            raw = platform.read_file(text)
        elif keyword == "LIST":
            raw = platform.list_files(text)
        elif keyword == "START MEET":
            raw = platform.start_meet(text)
        elif keyword == "FIND":
            raise BasicRuntimeError("the tables area is not available yet")
        else:
            raise BasicRuntimeError("the http area is not available yet")
        return from_foreign(raw, self.limits)

    # --- FunctionContext: what built-in functions ask of the world -----------------------

    def now(self) -> datetime:
        return self.platform.now()

    def random(self) -> float:
        value = self.platform.random()
        if not 0 <= value < 1:
            raise BasicRuntimeError("the platform's random source left [0, 1)")
        return value

    def new_uuid(self) -> str:
        return self.platform.new_uuid()

    def copy(self, value: Value) -> Value:
        return self._copy(value)


def compare_op(op: str, left: Value, right: Value) -> bool:
    if op == "=":
        return equals(left, right)
    if op == "<>":
        return not equals(left, right)
    order = compare(left, right)
    return {"<": order < 0, ">": order > 0, "<=": order <= 0, ">=": order >= 0}[op]


def session_key(text: str, *, required: bool) -> str:
    if text.lower().startswith("session."):
        return text[len("session.") :]
    if required:
        raise BasicRuntimeError(f'SET "{text}" needs a session key such as "session.name"')
    return text


def count_nodes(value: Value) -> int:
    """Nodes in a value, iteratively (values are bounded in depth, but stay safe anyway)."""
    count = 0
    stack: list[Value] = [value]
    while stack:
        item = stack.pop()
        count += 1
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return count
