"""The syntax tree of a dialog.

Every node knows its line and column. Blocks are tuples of statements, and each statement that
owns blocks names them with a short key ("0", "1", ... for IF branches and CASEs, "else",
"body"). A running dialog's position is a list of (statement index, block key) pairs from a
routine's body down to the statement being run: that path survives serialisation and stays
meaningful as long as the dialog's source does not change, which a running conversation
guarantees by keeping its dialog version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from domain.basic.values import Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    line: int
    col: int


# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Expr(Node):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Literal(Expr):
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True)
class Template(Expr):
    """A string with `${expr}` parts."""

    parts: tuple[str | Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Name(Expr):
    """A variable (or a call without parentheses of a function that takes no argument)."""

    name: str

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Member(Expr):
    obj: Expr
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Index(Expr):
    obj: Expr
    index: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Expr):
    """`f(a, b)`: a built-in function or a SUB/FUNCTION of the dialog."""

    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MethodCall(Expr):
    """`obj.method(a)`: `.PUSH`, `.trim`, `.contains` and friends."""

    obj: Expr
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Unary(Expr):
    op: str  # "-", "+", "NOT"
    operand: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain(Expr):
    """Operators of one precedence level, left to right; flat so long sums do not nest deep."""

    first: Expr
    rest: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Logic(Expr):
    """AND / OR over several operands, evaluated left to right with short circuit."""

    op: str
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class IsNull(Expr):
    operand: Expr
    negated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ListLit(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectLit(Expr):
    pairs: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeywordExpr(Expr):
    """A keyword that yields a value: `GET BOT MEMORY k`, `LLM p`, `READ path`, `GET url`..."""

    keyword: str
    args: tuple[Expr, ...]


# --- statements --------------------------------------------------------------------------

Block = tuple["Stmt", ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stmt(Node):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Talk(Stmt):
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Print(Stmt):
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait(Stmt):
    seconds: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Hear(Stmt):
    """`HEAR var [AS type | AS "a", "b"] [WITH prompt] [DEFAULT v]`, also `var = HEAR`."""

    target: Expr
    kind: str | None
    options: tuple[Expr, ...]
    prompt: Expr | None
    default: Expr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign(Stmt):
    target: Expr  # Name, Member or Index
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSub(Stmt):
    """`CALL name(args)`, `name(args)` or `name args` on a line of its own."""

    name: str
    args: tuple[Expr, ...]
    explicit: bool  # written with CALL


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDialog(Stmt):
    """`CALL "other.bas"`: runs another dialog of the bot, then continues here."""

    target: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class ExprStmt(Stmt):
    """A method call used for its effect, such as `list.PUSH(x)`."""

    expr: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class AddSuggestion(Stmt):
    text: Expr
    label: Expr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ClearSuggestions(Stmt):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSet(Stmt):
    """`SET "session.k", v`."""

    key: Expr
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Stmt):
    """A platform statement (`SEND MAIL`, `SET BOT MEMORY`, `USE KB`...) with its arguments."""

    keyword: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Compat(Stmt):
    """A keyword of an area that is not available yet; running it is a runtime error."""

    keyword: str
    area: str
    declares: tuple[str, ...] = ()  # names a PARAM declares, for the validator


@dataclass(frozen=True, slots=True, kw_only=True)
class IfBranch(Node):
    cond: Expr
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class If(Stmt):
    branches: tuple[IfBranch, ...]
    else_body: Block | None
    one_line: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ForEach(Stmt):
    var: str
    items: Expr
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class ForRange(Stmt):
    var: str
    start: Expr
    end: Expr
    step: Expr | None
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class Loop(Stmt):
    """WHILE...WEND, DO WHILE/UNTIL...LOOP, DO...LOOP WHILE/UNTIL and DO...LOOP.

    kind is "while", "until" or "forever"; post means the condition is tested after the body;
    style is "WHILE" or "DO", which decides what `EXIT WHILE` / `EXIT DO` leave.
    """

    kind: str
    cond: Expr | None
    post: bool
    style: str
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class CaseTest(Node):
    """One value of a CASE: `v`, `a TO b` or `IS > v`."""

    kind: str  # "eq", "range", "is"
    value: Expr
    upper: Expr | None = None
    op: str = "="


@dataclass(frozen=True, slots=True, kw_only=True)
class Case(Node):
    tests: tuple[CaseTest, ...]
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class Select(Stmt):
    """SELECT CASE and SWITCH (style tells them apart for messages and BREAK)."""

    subject: Expr
    cases: tuple[Case, ...]
    else_body: Block | None
    style: str


@dataclass(frozen=True, slots=True, kw_only=True)
class With(Stmt):
    """WITH obj ... END WITH; field assignments inside were rewritten to `obj.field = v`."""

    target: Expr
    body: Block


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutineDef(Stmt):
    """SUB or FUNCTION; it does nothing where it stands, calls run its body."""

    name: str
    params: tuple[str, ...]
    body: Block
    is_function: bool
    end_line: int = 0

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Return(Stmt):
    value: Expr | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Exit(Stmt):
    """EXIT (the dialog), EXIT SUB/FUNCTION/FOR/DO/WHILE, and BREAK."""

    kind: str  # "DIALOG", "SUB", "FUNCTION", "FOR", "DO", "WHILE", "BREAK"


@dataclass(frozen=True, slots=True, kw_only=True)
class Throw(Stmt):
    value: Expr


@dataclass(frozen=True, slots=True, kw_only=True)
class OnError(Stmt):
    resume_next: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Goto(Stmt):
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Label(Stmt):
    name: str


# --- program -----------------------------------------------------------------------------

MAIN = ""  # the routine key of a dialog's main body


@dataclass(frozen=True, eq=False)
class Program:
    """A parsed dialog: its main body and its SUBs and FUNCTIONs by lower-cased name.

    dialog and version are optional labels that a loader may set so the machine can record
    which version of a called dialog (`CALL "other.bas"`) it runs.
    """

    body: Block
    routines: Mapping[str, RoutineDef]
    dialog: str = ""
    version: int | None = None
    labels: Mapping[str, Mapping[str, tuple[tuple[int, str], ...]]] = field(default_factory=dict)

    def routine_body(self, routine: str) -> Block:
        if routine == MAIN:
            return self.body
        return self.routines[routine].body


def child_blocks(stmt: Stmt) -> Iterator[tuple[str, Block]]:
    """The blocks a statement owns, with the keys a running position uses for them."""
    if isinstance(stmt, If):
        for number, branch in enumerate(stmt.branches):
            yield str(number), branch.body
        if stmt.else_body is not None:
            yield "else", stmt.else_body
    elif isinstance(stmt, Select):
        for number, case in enumerate(stmt.cases):
            yield str(number), case.body
        if stmt.else_body is not None:
            yield "else", stmt.else_body
    elif isinstance(stmt, ForEach | ForRange | Loop | With):
        yield "body", stmt.body


def child_block(stmt: Stmt, key: str) -> Block | None:
    for name, block in child_blocks(stmt):
        if name == key:
            return block
    return None


def is_loop(stmt: Stmt) -> bool:
    return isinstance(stmt, ForEach | ForRange | Loop)


def walk_statements(block: Block) -> Iterator[Stmt]:
    """Every statement of a block, depth first, not entering SUB/FUNCTION definitions."""
    for stmt in block:
        yield stmt
        if isinstance(stmt, RoutineDef):
            continue
        for _, inner in child_blocks(stmt):
            yield from walk_statements(inner)


def label_paths(body: Block) -> dict[str, tuple[tuple[int, str], ...]]:
    """Where each label of a routine stands: the (index, block key) path down to it."""
    found: dict[str, tuple[tuple[int, str], ...]] = {}

    def visit(block: Block, prefix: tuple[tuple[int, str], ...]) -> None:
        for index, stmt in enumerate(block):
            if isinstance(stmt, Label):
                found.setdefault(stmt.name.lower(), (*prefix, (index, "")))
            if isinstance(stmt, RoutineDef):
                continue
            for key, inner in child_blocks(stmt):
                visit(inner, (*prefix, (index, key)))

    visit(body, ())
    return found
