"""Checks over a parsed dialog: the errors that need the whole program, and the warnings.

Errors: calls of undefined SUBs, FUNCTIONs and dialogs, wrong argument counts to functions and
SUBs, unknown functions, GOTO to a label that does not exist. Warnings: GOTO itself, long
lines, variables read before any assignment (in source order), HEAR variables never used,
code after RETURN/EXIT/THROW, HTTP keywords while no host is allowed. The one-line IF warning
comes from the parser, which is where the chaining is seen.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from domain.basic import ast
from domain.basic.functions import BUILTINS, NO_ARGUMENT
from domain.basic.keywords import suggest
from domain.basic.lexer import Problem

MAX_LINE = 120


# --- walking ---------------------------------------------------------------------------------


def expr_children(expr: ast.Expr) -> Iterator[ast.Expr]:
    if isinstance(expr, ast.Template):
        yield from (p for p in expr.parts if isinstance(p, ast.Expr))
    elif isinstance(expr, ast.Member):
        yield expr.obj
    elif isinstance(expr, ast.Index):
        yield expr.obj
        yield expr.index
    elif isinstance(expr, ast.Call | ast.KeywordExpr):
        yield from expr.args
    elif isinstance(expr, ast.MethodCall):
        yield expr.obj
        yield from expr.args
    elif isinstance(expr, ast.Unary | ast.IsNull):
        yield expr.operand
    elif isinstance(expr, ast.Chain):
        yield expr.first
        yield from (operand for _, operand in expr.rest)
    elif isinstance(expr, ast.Logic):
        yield from expr.operands
    elif isinstance(expr, ast.ListLit):
        yield from expr.items
    elif isinstance(expr, ast.ObjectLit):
        yield from (value for _, value in expr.pairs)


def walk_expr(expr: ast.Expr) -> Iterator[ast.Expr]:
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(list(expr_children(node))))


def target_reads(target: ast.Expr) -> Iterator[ast.Expr]:
    """The parts of an assignment target that are read (indexes), not the written root."""
    if isinstance(target, ast.Member):
        yield from target_reads(target.obj)
    elif isinstance(target, ast.Index):
        yield from target_reads(target.obj)
        yield target.index


def target_root(target: ast.Expr) -> ast.Name | None:
    while isinstance(target, ast.Member | ast.Index):
        target = target.obj
    return target if isinstance(target, ast.Name) else None


def stmt_exprs(stmt: ast.Stmt) -> Iterator[ast.Expr]:
    """Expressions a statement reads before entering its blocks (post-loop conditions apart)."""
    if isinstance(stmt, ast.Talk | ast.Print | ast.Throw):
        yield stmt.value
    elif isinstance(stmt, ast.Wait):
        yield stmt.seconds
    elif isinstance(stmt, ast.Return):
        if stmt.value is not None:
            yield stmt.value
    elif isinstance(stmt, ast.Hear):
        yield from target_reads(stmt.target)
        yield from stmt.options
        if stmt.prompt is not None:
            yield stmt.prompt
        if stmt.default is not None:
            yield stmt.default
    elif isinstance(stmt, ast.Assign):
        yield stmt.value
        yield from target_reads(stmt.target)
    elif isinstance(stmt, ast.CallSub | ast.Command):
        yield from stmt.args
    elif isinstance(stmt, ast.CallDialog):
        yield stmt.target
    elif isinstance(stmt, ast.ExprStmt):
        yield stmt.expr
    elif isinstance(stmt, ast.AddSuggestion):
        yield stmt.text
        if stmt.label is not None:
            yield stmt.label
    elif isinstance(stmt, ast.SessionSet):
        yield stmt.key
        yield stmt.value
    elif isinstance(stmt, ast.If):
        yield from (branch.cond for branch in stmt.branches)
    elif isinstance(stmt, ast.ForEach):
        yield stmt.items
    elif isinstance(stmt, ast.ForRange):
        yield stmt.start
        yield stmt.end
        if stmt.step is not None:
            yield stmt.step
    elif isinstance(stmt, ast.Loop):
        if stmt.cond is not None and not stmt.post:
            yield stmt.cond
    elif isinstance(stmt, ast.Select):
        yield stmt.subject
        for case in stmt.cases:
            for test in case.tests:
                yield test.value
                if test.upper is not None:
                    yield test.upper


def all_statements(program: ast.Program) -> Iterator[tuple[str, ast.Stmt]]:
    """(routine key, statement) for every statement, routines included."""
    for stmt in ast.walk_statements(program.body):
        yield ast.MAIN, stmt
    for key, routine in program.routines.items():
        for stmt in ast.walk_statements(routine.body):
            yield key, stmt


def all_exprs(program: ast.Program) -> Iterator[ast.Expr]:
    for _, stmt in all_statements(program):
        exprs = list(stmt_exprs(stmt))
        if isinstance(stmt, ast.Loop) and stmt.post and stmt.cond is not None:
            exprs.append(stmt.cond)
        for expr in exprs:
            yield from walk_expr(expr)


# --- errors ----------------------------------------------------------------------------------


def errors(program: ast.Program, known_dialogs: frozenset[str] | None) -> list[Problem]:
    """Whole-program errors; known_dialogs None skips the check of called dialogs."""
    found: list[Problem] = []
    routines = program.routines
    for routine_key, stmt in all_statements(program):
        if isinstance(stmt, ast.CallSub):
            found.extend(_call_sub_errors(stmt, routines))
        elif isinstance(stmt, ast.Goto):
            if stmt.label.lower() not in program.labels.get(routine_key, {}):
                found.append((stmt.line, stmt.col, f"GOTO to undefined label {stmt.label}"))
        elif isinstance(stmt, ast.CallDialog) and known_dialogs is not None:
            name = _literal_text(stmt.target)
            if name is not None and _dialog_name(name) not in {
                _dialog_name(d) for d in known_dialogs
            }:
                found.append(
                    (stmt.target.line, stmt.target.col, f"CALL of undefined dialog {name}")
                )
    for expr in all_exprs(program):
        if isinstance(expr, ast.Call):
            found.extend(_call_errors(expr, routines))
    found.extend(_duplicate_labels(program))
    return found


def _call_sub_errors(
    stmt: ast.CallSub, routines: dict[str, ast.RoutineDef] | object
) -> list[Problem]:
    assert isinstance(routines, dict)
    routine = routines.get(stmt.name.lower())
    if routine is not None:
        return _routine_arity(stmt, routine, len(stmt.args))
    if not stmt.explicit and stmt.name.upper() in BUILTINS:
        return []
    names = tuple(r.name for r in routines.values())
    if stmt.explicit:
        message = f"CALL of undefined sub {stmt.name}"
        close = difflib.get_close_matches(stmt.name.lower(), list(routines), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {routines[close[0]].name}?"
        return [(stmt.line, stmt.col, message)]
    return [(stmt.line, stmt.col, suggest(stmt.name, names))]


def _routine_arity(node: ast.Node, routine: ast.RoutineDef, got: int) -> list[Problem]:
    if got == len(routine.params):
        return []
    kind = "FUNCTION" if routine.is_function else "SUB"
    wanted = len(routine.params)
    plural = "" if wanted == 1 else "s"
    return [
        (node.line, node.col, f"{kind} {routine.name} expects {wanted} argument{plural}, got {got}")
    ]


def _call_errors(expr: ast.Call, routines: object) -> list[Problem]:
    assert isinstance(routines, dict)
    routine = routines.get(expr.name.lower())
    if routine is not None:
        return _routine_arity(expr, routine, len(expr.args))
    upper = expr.name.upper()
    builtin = BUILTINS.get(upper)
    if builtin is None:
        candidates = sorted(BUILTINS) + [r.name for r in routines.values()]
        close = difflib.get_close_matches(upper, [c.upper() for c in candidates], n=1, cutoff=0.6)
        message = f"unknown function {expr.name}"
        if close:
            message += f"; did you mean {next(c for c in candidates if c.upper() == close[0])}?"
        return [(expr.line, expr.col, message)]
    arity = builtin.arity_message(len(expr.args))
    return [(expr.line, expr.col, arity)] if arity else []


def _duplicate_labels(program: ast.Program) -> list[Problem]:
    found: list[Problem] = []
    bodies = [program.body, *(r.body for r in program.routines.values())]
    for body in bodies:
        seen: set[str] = set()
        for stmt in ast.walk_statements(body):
            if isinstance(stmt, ast.Label):
                if stmt.name.lower() in seen:
                    found.append((stmt.line, stmt.col, f"label {stmt.name} is defined twice"))
                seen.add(stmt.name.lower())
    return found


def _literal_text(expr: ast.Expr) -> str | None:
    if isinstance(expr, ast.Literal) and isinstance(expr.value, str):
        return expr.value
    return None


def _dialog_name(name: str) -> str:
    lowered = name.strip().lower()
    return lowered[:-4] if lowered.endswith(".bas") else lowered


# --- warnings --------------------------------------------------------------------------------


def warnings(program: ast.Program, source: str, *, http_allowed: bool) -> list[Problem]:
    found: list[Problem] = []
    for number, text in enumerate(source.splitlines(), start=1):
        length = len(text.rstrip("\r"))
        if length > MAX_LINE:
            found.append(
                (number, MAX_LINE + 1, f"line is {length} characters long (more than {MAX_LINE})")
            )
    for _, stmt in all_statements(program):
        if isinstance(stmt, ast.Goto):
            found.append(
                (stmt.line, stmt.col, "GOTO makes the flow hard to follow; prefer a loop or a SUB")
            )
    found.extend(_unreachable(program))
    found.extend(Reads(program).warnings())
    if not http_allowed:
        found.extend(_http_keywords(program))
    return found


def _ending_keyword(stmt: ast.Stmt) -> str | None:
    if isinstance(stmt, ast.Return):
        return "RETURN"
    if isinstance(stmt, ast.Throw):
        return "THROW"
    if isinstance(stmt, ast.Exit):
        return {"DIALOG": "EXIT", "BREAK": "BREAK"}.get(stmt.kind, f"EXIT {stmt.kind}")
    return None


def _unreachable(program: ast.Program) -> list[Problem]:
    found: list[Problem] = []

    def visit(block: ast.Block) -> None:
        ended: str | None = None
        for stmt in block:
            if isinstance(stmt, ast.RoutineDef):
                visit(stmt.body)
                continue
            if isinstance(stmt, ast.Label):
                ended = None
            elif ended is not None:
                found.append((stmt.line, stmt.col, f"unreachable code after {ended}"))
                ended = None
                continue
            for _, inner in ast.child_blocks(stmt):
                visit(inner)
            keyword = _ending_keyword(stmt)
            if keyword is not None:
                ended = keyword

    visit(program.body)
    return found


def _http_keywords(program: ast.Program) -> list[Problem]:
    found: list[Problem] = []
    for _, stmt in all_statements(program):
        if isinstance(stmt, ast.Compat) and stmt.area == "http":
            found.append((stmt.line, stmt.col, _http_message(stmt.keyword)))
    for expr in all_exprs(program):
        if isinstance(expr, ast.KeywordExpr):
            if expr.keyword in ("POST", "PUT", "PATCH"):
                found.append((expr.line, expr.col, _http_message(expr.keyword)))
            elif expr.keyword == "GET" and not _is_session_key(expr.args[0]):
                found.append((expr.line, expr.col, _http_message("GET")))
    return found


def _http_message(keyword: str) -> str:
    return f"{keyword} is an HTTP keyword and no host is allowed (GB_HTTP_ALLOW is empty)"


def _is_session_key(expr: ast.Expr) -> bool:
    first: ast.Expr | str = expr
    if isinstance(expr, ast.Chain):
        first = expr.first
    elif isinstance(expr, ast.Template):
        first = expr.parts[0]
    if isinstance(first, ast.Literal):
        first = first.value if isinstance(first.value, str) else ""
    return isinstance(first, str) and first.lower().startswith("session.")


@dataclass
class Reads:
    """Variables read before any assignment (source order) and HEAR variables never read."""

    program: ast.Program
    found: list[Problem] = field(default_factory=list)
    first_bad_read: dict[str, Problem] = field(default_factory=dict)
    read_names: set[str] = field(default_factory=set)

    def warnings(self) -> list[Problem]:
        main_defined = self._definitions(self.program.body)
        self._scope(self.program.body, set())
        for routine in self.program.routines.values():
            defined = {p.lower() for p in routine.params} | main_defined | {routine.key}
            self._scope(routine.body, defined)
        self.found.extend(self.first_bad_read.values())
        for _, stmt in all_statements(self.program):
            target = stmt.target if isinstance(stmt, ast.Hear) else None
            if isinstance(target, ast.Name) and target.key not in self.read_names:
                message = f"HEAR variable {target.name} is never used"
                self.found.append((target.line, target.col, message))
        return self.found

    def _definitions(self, block: ast.Block) -> set[str]:
        names: set[str] = set()
        for stmt in ast.walk_statements(block):
            names.update(_defines(stmt))
        return names

    def _scope(self, block: ast.Block, defined: set[str]) -> None:
        for stmt in block:
            if isinstance(stmt, ast.RoutineDef):
                continue
            for expr in stmt_exprs(stmt):
                self._reads(expr, defined)
            defined.update(_defines(stmt))
            for _, inner in ast.child_blocks(stmt):
                self._scope(inner, defined)
            if isinstance(stmt, ast.Loop) and stmt.post and stmt.cond is not None:
                self._reads(stmt.cond, defined)

    def _reads(self, expr: ast.Expr, defined: set[str]) -> None:
        for node in walk_expr(expr):
            if not isinstance(node, ast.Name):
                continue
            key = node.key
            self.read_names.add(key)
            if key in defined or node.name.upper() in NO_ARGUMENT or key in self.program.routines:
                continue
            problem = (node.line, node.col, f"variable {node.name} is read before any assignment")
            if key not in self.first_bad_read or problem < self.first_bad_read[key]:
                self.first_bad_read[key] = problem


def _defines(stmt: ast.Stmt) -> set[str]:
    names: set[str] = set()
    if isinstance(stmt, ast.Assign | ast.Hear | ast.With):
        root = target_root(stmt.target)
        if root is not None:
            names.add(root.key)
    elif isinstance(stmt, ast.ForEach | ast.ForRange):
        names.add(stmt.var.lower())
    elif isinstance(stmt, ast.Compat):
        names.update(d.lower() for d in stmt.declares)
    return names
