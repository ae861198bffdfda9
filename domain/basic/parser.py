"""Tokens to a syntax tree, collecting every error it can recover from.

Recursive descent over statements (expressions are in expressions.py). A statement that does
not parse is reported and skipped to the end of its line, and a block that meets the closer of
an enclosing block is reported as unclosed at its opening line, so one mistake does not hide
the rest. Keywords are contextual: `list`, `count` or `book` are fine variable names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from domain.basic import ast
from domain.basic.expressions import COMPARISONS, ExpressionParser, Skip, describe
from domain.basic.keywords import HEAR_TYPES, OPENER_OF, RESERVED, suggest
from domain.basic.lexer import STATEMENT_WORDS, Problem, Token, tokenize

MAX_BLOCKS = 40  # keeps block parsing well inside Python's recursion limit
_T = TypeVar("_T")
_ForHeader = tuple[ast.Expr | None, ast.Expr, ast.Expr, ast.Expr | None]

_BLOCK_OPENERS = frozenset({"FOR", "DO", "WHILE", "SELECT", "SWITCH", "SUB", "FUNCTION", "WITH"})


@dataclass
class _Open:
    opener: str
    closers: frozenset[str]


@dataclass
class ParseResult:
    program: ast.Program
    errors: list[Problem]
    warnings: list[Problem]


class Parser(ExpressionParser):
    """Statements and blocks on top of the expression parser."""

    def __init__(self, tokens: list[Token]) -> None:
        super().__init__(tokens)
        self.open_blocks: list[_Open] = []
        self.contexts: list[str] = []  # "FOR", "DO", "WHILE", "SELECT", "SUB", "FUNCTION"
        self.routines: dict[str, ast.RoutineDef] = {}
        self._handlers = self.handlers()

    # --- program and blocks --------------------------------------------------------------

    def program(self) -> ast.Program:
        body, _ = self.block(frozenset())
        labels = {ast.MAIN: ast.label_paths(body)}
        for key, routine in self.routines.items():
            labels[key] = ast.label_paths(routine.body)
        return ast.Program(body=body, routines=dict(self.routines), labels=labels)

    def closer(self) -> str | None:
        """Which block closer the current line starts with, if any."""
        tok, nxt = self.peek(), self.peek(1)
        if tok.kind != "ident" or nxt.is_op("=", ".", "["):
            return None
        word = tok.upper
        if word == "ENDIF":
            return "END IF"
        if word == "ELSEIF":
            return "ELSE IF"
        if word == "ELSE":
            return "ELSE IF" if nxt.is_word("IF") else "ELSE"
        if word in ("NEXT", "WEND", "LOOP", "CASE", "DEFAULT"):
            return word
        if word in ("SUB", "FUNCTION") and ("SUB" in self.contexts or "FUNCTION" in self.contexts):
            return word  # a new routine: the one we are in was not closed
        if word == "END" and nxt.kind == "ident":
            second = nxt.upper
            if second == "SYSTEM" and self.peek(2).is_word("PROMPT"):
                return "END SYSTEM PROMPT"
            phrase = f"END {second}"
            if phrase in OPENER_OF:
                return phrase
        return None

    def closer_words(self, closer: str) -> int:
        return 1 if self.peek().upper in ("ENDIF", "ELSEIF") else len(closer.split())

    def block(self, closers: frozenset[str]) -> tuple[ast.Block, str | None]:
        stmts: list[ast.Stmt] = []
        while True:
            self.skip_separators()
            tok = self.peek()
            if tok.kind == "eof":
                return tuple(stmts), None
            closer = self.closer()
            if closer is not None:
                if closer in closers:
                    return tuple(stmts), closer
                if any(closer in o.closers for o in self.open_blocks):
                    return tuple(stmts), None
                self.errors.append((tok.line, tok.col, f"{closer} without {OPENER_OF[closer]}"))
                self.skip_line()
                continue
            try:
                stmt = self.statement()
                if stmt is not None:
                    stmts.append(stmt)
                    self.expect_end()
            except Skip as skip:
                self.errors.append((skip.line, skip.col, skip.message))
                self.skip_line()

    def sub_block(
        self, opener: Token, name: str, closers: set[str], context: str | None = None
    ) -> tuple[ast.Block, str | None]:
        """The body of a block statement; reports it unclosed at its opening line."""
        if len(self.open_blocks) >= MAX_BLOCKS:
            raise self.fail(opener, "blocks nest too deeply")
        self.open_blocks.append(_Open(name, frozenset(closers)))
        if context:
            self.contexts.append(context)
        try:
            body, found = self.block(frozenset(closers))
        finally:
            self.open_blocks.pop()
            if context:
                self.contexts.pop()
        if found is None:
            self.errors.append((opener.line, opener.col, f"{name} without {_CLOSER_OF[name]}"))
        return body, found

    def header(self, parse: Callable[[], _T], fallback: _T) -> _T:
        """Parse a block's opening line; on an error, report it and still parse the block,
        so one bad header does not turn its closer into a second error."""
        try:
            value = parse()
            self.expect_end()
            return value
        except Skip as skip:
            self.errors.append((skip.line, skip.col, skip.message))
            self.skip_line()
            return fallback

    def consume_closer(self, closer: str) -> None:
        for _ in range(self.closer_words(closer)):
            self.next()

    def finish_closer_line(self) -> None:
        try:
            self.expect_end()
        except Skip as skip:
            self.errors.append((skip.line, skip.col, skip.message))
            self.skip_line()

    # --- statements ----------------------------------------------------------------------

    def statement(self) -> ast.Stmt | None:
        tok = self.peek()
        if tok.is_op(".") and self.with_targets:
            return self.assignment_or_call(tok)
        if tok.kind != "ident":
            raise self.fail(tok, f"unexpected {describe(tok)}")
        nxt = self.peek(1)
        word = tok.upper
        if nxt.is_op(":") and word not in STATEMENT_WORDS and word not in RESERVED:
            self.next()
            return ast.Label(line=tok.line, col=tok.col, name=tok.text)
        if nxt.is_op("="):
            return self.assignment_or_call(tok)
        handler = self._handlers.get(word)
        if handler is not None and not (nxt.is_op(".") and not self.with_targets):
            if self.inline and word in _BLOCK_OPENERS:
                raise self.fail(tok, f"{word} cannot be used in a one-line IF; use END IF")
            return handler(tok)
        if nxt.is_op(".", "["):
            return self.assignment_or_call(tok)
        if word == "END":
            self.next()
            if not self.at_end():
                raise self.fail(tok, suggest(f"END {self.peek().text}"))
            return ast.Exit(line=tok.line, col=tok.col, kind="DIALOG")
        if word in RESERVED:
            raise self.fail(tok, f"unexpected {tok.text}")
        return self.bare_call(tok)

    def handlers(self) -> dict[str, Callable[[Token], ast.Stmt | None]]:
        return {
            "IF": self.if_statement,
            "FOR": self.for_statement,
            "DO": self.do_statement,
            "WHILE": self.while_statement,
            "SELECT": self.select_statement,
            "SWITCH": self.select_statement,
            "SUB": self.routine,
            "FUNCTION": self.routine,
            "WITH": self.with_statement,
            "CALL": self.call_statement,
            "RETURN": self.return_statement,
            "EXIT": self.exit_statement,
            "BREAK": self.exit_statement,
            "THROW": self.simple_statement,
            "TALK": self.simple_statement,
            "PRINT": self.simple_statement,
            "WAIT": self.simple_statement,
            "HEAR": self.hear_statement,
            "LET": self.let_statement,
            "SET": self.set_statement,
            "ADD": self.add_statement,
            "CLEAR": self.clear_statement,
            "ON": self.on_error,
            "GOTO": self.goto_statement,
            "REMEMBER": self.command,
            "USE": self.command,
            "SEND": self.command,
            "CREATE": self.command,
            "CREATE_TASK": self.command,
            "BOOK": self.command,
            "START": self.command,
            "WRITE": self.command,
            "DELETE": self.delete_statement,
            "PARAM": self.compat_line,
            "DESCRIPTION": self.compat_line,
            "SAVE": self.compat_line,
            "UPDATE": self.compat_line,
            "FIND": self.compat_line,
            "POST": self.compat_line,
            "PUT": self.compat_line,
            "PATCH": self.compat_line,
            "TABLE": self.table_block,
            "BEGIN": self.begin_block,
        }

    def assignment_or_call(self, tok: Token) -> ast.Stmt:
        target = self.postfix()
        if self.peek().is_op("="):
            return self.finish_assignment(tok, target)
        if isinstance(target, ast.MethodCall):
            return ast.ExprStmt(line=tok.line, col=tok.col, expr=target)
        raise self.fail(self.peek(), f"expected =, found {describe(self.peek())}")

    def finish_assignment(self, tok: Token, target: ast.Expr) -> ast.Stmt:
        self.expect_op("=")
        if not isinstance(target, ast.Name | ast.Member | ast.Index):
            raise self.fail(tok, "only a variable, a field or an item can be assigned")
        if isinstance(target, ast.Name) and self.with_targets:
            target = ast.Member(
                line=target.line, col=target.col, obj=self.with_targets[-1], name=target.name
            )
        if self.peek().is_word("HEAR"):
            self.next()
            return self.hear_rest(tok, target)
        value = self.expression()
        return ast.Assign(line=tok.line, col=tok.col, target=target, value=value)

    def let_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        start = self.peek()
        if start.kind != "ident" and not start.is_op("."):
            raise self.fail(start, f"expected a variable, found {describe(start)}")
        target = self.postfix()
        return self.finish_assignment(tok, target)

    def set_statement(self, tok: Token) -> ast.Stmt:
        nxt = self.peek(1)
        if nxt.is_word("BOT", "USER") and self.peek(2).is_word("MEMORY"):
            self.pos += 3
            return self.command_args(tok, f"SET {nxt.upper} MEMORY")
        if nxt.is_word("CONTEXT"):
            self.pos += 2
            name = self.expression()
            args: tuple[ast.Expr, ...] = (name,)
            if self.peek().is_word("AS") or self.peek().is_op(","):
                self.next()
                args = (name, self.expression())
            return ast.Command(line=tok.line, col=tok.col, keyword="SET CONTEXT", args=args)
        if nxt.is_word("SCHEDULE"):
            return self.compat_line(tok, "SET SCHEDULE")
        if nxt.is_word("HEADER"):
            return self.compat_line(tok, "SET HEADER")
        self.next()
        if self.peek().kind == "string":
            key = self.concat()
            if not self.peek().is_op(",", "="):
                raise self.fail(self.peek(), f"expected , or =, found {describe(self.peek())}")
            self.next()
            value = self.expression()
            return ast.SessionSet(line=tok.line, col=tok.col, key=key, value=value)
        start = self.peek()
        if start.kind != "ident" and not start.is_op("."):
            raise self.fail(start, suggest(f"SET {start.text}") if start.text else "expected =")
        target = self.postfix()
        if not self.peek().is_op("="):
            raise self.fail(tok, suggest(f"SET {start.text}"))
        return self.finish_assignment(tok, target)

    def simple_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        args = self.arguments()
        self.check_arity(tok, tok.upper, len(args))
        value = args[0]
        if tok.upper == "TALK":
            return ast.Talk(line=tok.line, col=tok.col, value=value)
        if tok.upper == "PRINT":
            return ast.Print(line=tok.line, col=tok.col, value=value)
        if tok.upper == "WAIT":
            return ast.Wait(line=tok.line, col=tok.col, seconds=value)
        return ast.Throw(line=tok.line, col=tok.col, value=value)

    def arguments(self) -> tuple[ast.Expr, ...]:
        """A comma-separated argument list up to the end of the statement."""
        if self.at_end():
            return ()
        args = [self.expression()]
        while self.peek().is_op(","):
            self.next()
            args.append(self.expression())
        return tuple(args)

    def command_args(self, tok: Token, keyword: str) -> ast.Stmt:
        args = self.arguments()
        self.check_arity(tok, keyword, len(args))
        return ast.Command(line=tok.line, col=tok.col, keyword=keyword, args=args)

    def command(self, tok: Token) -> ast.Stmt:
        word = tok.upper
        nxt = self.peek(1)
        phrases = {
            ("USE", "KB"): "USE KB",
            ("SEND", "MAIL"): "SEND MAIL",
            ("SEND", "EMAIL"): "SEND MAIL",
            ("SEND", "FILE"): "SEND FILE",
            ("CREATE", "TASK"): "CREATE TASK",
            ("START", "MEET"): "START MEET",
        }
        if word in ("REMEMBER", "BOOK", "WRITE", "CREATE_TASK"):
            self.next()
            keyword = "CREATE TASK" if word == "CREATE_TASK" else word
            return self.command_args(tok, keyword)
        phrase = phrases.get((word, nxt.upper if nxt.kind == "ident" else ""))
        if phrase is None:
            shown = f"{tok.text} {nxt.text}" if nxt.kind == "ident" else tok.text
            raise self.fail(tok, suggest(shown))
        self.pos += 2
        return self.command_args(tok, phrase)

    def delete_statement(self, tok: Token) -> ast.Stmt:
        nxt = self.peek(1)
        if nxt.is_word("FILE"):
            self.pos += 2
            return self.command_args(tok, "DELETE FILE")
        if nxt.is_word("HTTP"):
            return self.compat_line(tok, "DELETE HTTP")
        return self.compat_line(tok, "DELETE")

    def add_statement(self, tok: Token) -> ast.Stmt:
        nxt = self.peek(1)
        if nxt.is_word("SUGGESTION"):
            self.pos += 2
            if self.at_end():
                self.check_arity(tok, "ADD SUGGESTION", 0)
            text = self.expression()
            label = None
            if self.peek().is_word("AS"):
                self.next()
                label = self.expression()
            if self.peek().is_op(","):
                self.check_arity(tok, "ADD SUGGESTION", 1 + len(self.arguments_after_comma()))
            return ast.AddSuggestion(line=tok.line, col=tok.col, text=text, label=label)
        if nxt.is_word("TOOL"):
            return self.compat_line(tok, "ADD TOOL")
        raise self.fail(tok, suggest(f"ADD {nxt.text}" if nxt.kind == "ident" else "ADD"))

    def clear_statement(self, tok: Token) -> ast.Stmt:
        nxt = self.peek(1)
        if nxt.is_word("SUGGESTIONS"):
            self.pos += 2
            return ast.ClearSuggestions(line=tok.line, col=tok.col)
        if nxt.is_word("KB"):
            self.pos += 2
            return self.command_args(tok, "CLEAR KB")
        if nxt.is_word("TOOLS"):
            return self.compat_line(tok, "CLEAR TOOLS")
        if nxt.is_word("HEADERS"):
            return self.compat_line(tok, "CLEAR HEADERS")
        raise self.fail(tok, suggest(f"CLEAR {nxt.text}" if nxt.kind == "ident" else "CLEAR"))

    def hear_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        start = self.peek()
        if start.kind != "ident":
            raise self.fail(start, f"HEAR needs a variable, found {describe(start)}")
        target = self.postfix()
        if not isinstance(target, ast.Name | ast.Member | ast.Index):
            raise self.fail(start, "HEAR needs a variable")
        return self.hear_rest(tok, target)

    def hear_rest(self, tok: Token, target: ast.Expr) -> ast.Stmt:
        kind: str | None = None
        options: tuple[ast.Expr, ...] = ()
        prompt: ast.Expr | None = None
        default: ast.Expr | None = None
        if self.peek().is_word("AS"):
            self.next()
            type_tok = self.peek()
            if type_tok.kind == "ident" and not self.peek(1).is_op(",", "(", ".", "["):
                self.next()
                kind = HEAR_TYPES.get(type_tok.upper)
                if kind is None:
                    raise self.fail(type_tok, f"unknown HEAR type {type_tok.text}")
            else:
                options = (self.expression(), *self.arguments_after_comma())
                kind = "MENU"
        if self.peek().is_word("WITH"):
            self.next()
            prompt = self.expression()
        if self.peek().is_word("DEFAULT"):
            self.next()
            default = self.expression()
        return ast.Hear(
            line=tok.line,
            col=tok.col,
            target=target,
            kind=kind,
            options=options,
            prompt=prompt,
            default=default,
        )

    def on_error(self, tok: Token) -> ast.Stmt:
        self.next()
        self.expect_word("ERROR")
        if self.peek().is_word("RESUME"):
            self.next()
            self.expect_word("NEXT")
            return ast.OnError(line=tok.line, col=tok.col, resume_next=True)
        if self.peek().is_word("GOTO") and self.peek(1).kind == "number":
            self.pos += 2
            if self.tokens[self.pos - 1].number != 0:
                raise self.fail(tok, "only ON ERROR GOTO 0 and ON ERROR RESUME NEXT exist")
            return ast.OnError(line=tok.line, col=tok.col, resume_next=False)
        raise self.fail(tok, "only ON ERROR RESUME NEXT and ON ERROR GOTO 0 exist")

    def goto_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        label = self.peek()
        if label.kind != "ident":
            raise self.fail(label, f"GOTO needs a label, found {describe(label)}")
        self.next()
        return ast.Goto(line=tok.line, col=tok.col, label=label.text)

    def call_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        target = self.peek()
        if target.kind == "ident" and target.upper not in RESERVED:
            self.next()
            args = self.call_arguments() if self.peek().is_op("(") else self.arguments()
            return ast.CallSub(
                line=target.line, col=target.col, name=target.text, args=args, explicit=True
            )
        if self.at_end():
            raise self.fail(target, "CALL needs a SUB name or a dialog")
        dialog = self.expression()
        return ast.CallDialog(line=tok.line, col=tok.col, target=dialog)

    def bare_call(self, tok: Token) -> ast.Stmt:
        """`name(args)` / `name args` / `name`: a SUB call, or an unknown statement."""
        self.next()
        try:
            if self.peek().is_op("("):
                args = self.call_arguments()
                if not self.at_end():
                    raise self.fail(self.peek(), f"unexpected {describe(self.peek())}")
            else:
                args = self.arguments()
        except Skip:
            raise self.fail(tok, suggest(tok.text, tuple(self.routines))) from None
        return ast.CallSub(line=tok.line, col=tok.col, name=tok.text, args=args, explicit=False)

    def return_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        value = None if self.at_end() else self.expression()
        return ast.Return(line=tok.line, col=tok.col, value=value)

    def exit_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        if tok.upper == "BREAK":
            if not any(c in ("FOR", "DO", "WHILE", "SELECT") for c in self.contexts):
                raise self.fail(tok, "BREAK outside a loop")
            return ast.Exit(line=tok.line, col=tok.col, kind="BREAK")
        if self.at_end():
            return ast.Exit(line=tok.line, col=tok.col, kind="DIALOG")
        what = self.next()
        kind = what.upper
        if kind not in ("SUB", "FUNCTION", "FOR", "DO", "WHILE"):
            raise self.fail(
                what, f"expected SUB, FUNCTION, FOR, DO or WHILE, found {describe(what)}"
            )
        if kind not in self.contexts:
            place = {"FOR": "a FOR loop", "DO": "a DO loop", "WHILE": "a WHILE loop"}
            raise self.fail(tok, f"EXIT {kind} outside {place.get(kind, 'a ' + kind)}")
        return ast.Exit(line=tok.line, col=tok.col, kind=kind)

    # --- blocks --------------------------------------------------------------------------

    def if_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        try:
            cond = self.expression()
            self.expect_word("THEN")
        except Skip as skip:
            if self.then_ends_line_later():
                raise
            self.errors.append((skip.line, skip.col, skip.message))
            self.skip_line()
            cond = ast.Literal(line=tok.line, col=tok.col, value=False)
        if self.peek().kind not in ("newline", "eof"):
            return self.one_line_if(tok, cond)
        branches: list[ast.IfBranch] = []
        branch_tok = tok
        closers = {"ELSE", "ELSE IF", "END IF"}
        while True:
            body, found = self.sub_block(tok, "IF", closers)
            branches.append(
                ast.IfBranch(line=branch_tok.line, col=branch_tok.col, cond=cond, body=body)
            )
            if found is None:
                return ast.If(line=tok.line, col=tok.col, branches=tuple(branches), else_body=None)
            branch_tok = self.peek()
            self.consume_closer(found)
            if found == "END IF":
                self.finish_closer_line()
                return ast.If(line=tok.line, col=tok.col, branches=tuple(branches), else_body=None)
            if found == "ELSE IF":
                try:
                    cond = self.expression()
                    self.expect_word("THEN")
                    self.expect_end()
                except Skip as skip:
                    self.errors.append((skip.line, skip.col, skip.message))
                    self.skip_line()
                    cond = ast.Literal(line=skip.line, col=skip.col, value=False)
                continue
            self.finish_closer_line()
            else_body, found = self.sub_block(tok, "IF", {"END IF"})
            if found is not None:
                self.consume_closer(found)
                self.finish_closer_line()
            return ast.If(line=tok.line, col=tok.col, branches=tuple(branches), else_body=else_body)

    def then_ends_line_later(self) -> bool:
        """Whether this line has THEN followed by a statement (a one-line IF)."""
        ahead = self.pos
        while self.tokens[ahead].kind not in ("newline", "eof"):
            if self.tokens[ahead].is_word("THEN"):
                return self.tokens[ahead + 1].kind not in ("newline", "eof")
            ahead += 1
        return False

    def one_line_if(self, tok: Token, cond: ast.Expr) -> ast.Stmt:
        was_inline = self.inline
        self.inline = True
        try:
            then_body = self.inline_statements()
            else_body: ast.Block | None = None
            if self.peek().is_word("ELSE"):
                self.next()
                else_body = self.inline_statements()
        finally:
            self.inline = was_inline
        if len(then_body) > 1 or (else_body is not None and len(else_body) > 1):
            self.warnings.append(
                (tok.line, tok.col, "one-line IF chains several statements; Consider using END IF")
            )
        branch = ast.IfBranch(line=tok.line, col=tok.col, cond=cond, body=then_body)
        return ast.If(
            line=tok.line, col=tok.col, branches=(branch,), else_body=else_body, one_line=True
        )

    def inline_statements(self) -> ast.Block:
        stmts: list[ast.Stmt] = []
        while True:
            tok = self.peek()
            if tok.kind in ("newline", "eof") or tok.is_word("ELSE"):
                break
            stmt = self.statement()
            if stmt is not None:
                stmts.append(stmt)
            self.expect_end()
            if self.peek().is_op(":"):
                self.next()
                continue
            break
        if not stmts:
            raise self.fail(self.peek(), f"expected a statement, found {describe(self.peek())}")
        return tuple(stmts)

    def for_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        each = self.peek().is_word("EACH")
        if each:
            self.next()
        var_tok = self.peek()
        none = self.placeholder(tok)
        fallback: _ForHeader = (none, none, none, None)
        header = self.header(lambda: self.for_header(var_tok, each), fallback)
        name = "FOR EACH" if each else "FOR"
        body, found = self.sub_block(tok, name, {"NEXT", "END FOR"}, "FOR")
        self.finish_for(found, var_tok)
        items, start, end, step = header
        if items is not None:
            return ast.ForEach(line=tok.line, col=tok.col, var=var_tok.text, items=items, body=body)
        return ast.ForRange(
            line=tok.line, col=tok.col, var=var_tok.text, start=start, end=end, step=step, body=body
        )

    def placeholder(self, tok: Token) -> ast.Expr:
        """Stands for an expression that failed to parse (its error is already recorded)."""
        return ast.Literal(line=tok.line, col=tok.col, value=None)

    def for_header(self, var_tok: Token, each: bool) -> _ForHeader:
        """(items, None...) for FOR EACH; (None, start, end, step) for FOR i = a TO b."""
        if var_tok.kind != "ident" or var_tok.upper in RESERVED:
            raise self.fail(var_tok, f"FOR needs a variable, found {describe(var_tok)}")
        self.next()
        if each or self.peek().is_word("IN"):
            self.expect_word("IN")
            items = self.expression()
            return items, items, items, None
        self.expect_op("=")
        start = self.expression()
        self.expect_word("TO")
        end = self.expression()
        step = None
        if self.peek().is_word("STEP"):
            self.next()
            step = self.expression()
        return None, start, end, step

    def finish_for(self, found: str | None, var_tok: Token) -> None:
        if found is None:
            return
        self.consume_closer(found)
        if found == "NEXT" and self.peek().kind == "ident":
            named = self.next()
            if named.upper != var_tok.upper:
                self.errors.append(
                    (named.line, named.col, f"NEXT {named.text} does not match FOR {var_tok.text}")
                )
        self.finish_closer_line()

    def while_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        cond = self.header(self.expression, self.placeholder(tok))
        body, found = self.sub_block(tok, "WHILE", {"WEND", "END WHILE"}, "WHILE")
        if found is not None:
            self.consume_closer(found)
            self.finish_closer_line()
        return ast.Loop(
            line=tok.line,
            col=tok.col,
            kind="while",
            cond=cond,
            post=False,
            style="WHILE",
            body=body,
        )

    def do_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        kind = "forever"
        cond: ast.Expr | None = None
        if self.peek().is_word("WHILE", "UNTIL"):
            kind = self.next().upper.lower()
            cond = self.header(self.expression, self.placeholder(tok))
        else:
            self.header(lambda: None, None)
        body, found = self.sub_block(tok, "DO", {"LOOP"}, "DO")
        post = False
        if found is not None:
            self.consume_closer(found)
            if self.peek().is_word("WHILE", "UNTIL"):
                word = self.next()
                try:
                    post_cond = self.expression()
                except Skip as skip:
                    self.errors.append((skip.line, skip.col, skip.message))
                    self.skip_line()
                    post_cond = ast.Literal(line=word.line, col=word.col, value=False)
                if cond is not None:
                    self.errors.append(
                        (word.line, word.col, "a DO loop has one condition, not two")
                    )
                else:
                    kind, cond, post = word.upper.lower(), post_cond, True
            self.finish_closer_line()
        return ast.Loop(
            line=tok.line, col=tok.col, kind=kind, cond=cond, post=post, style="DO", body=body
        )

    def select_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        style = tok.upper
        name, end = ("SELECT CASE", "END SELECT") if style == "SELECT" else ("SWITCH", "END SWITCH")

        def subject_line() -> ast.Expr:
            if style == "SELECT":
                self.expect_word("CASE")
            return self.expression()

        subject = self.header(subject_line, self.placeholder(tok))
        closers = {"CASE", end} | ({"DEFAULT"} if style == "SWITCH" else set())
        before, found = self.sub_block(tok, name, closers, "SELECT")
        if before:
            self.errors.append(
                (before[0].line, before[0].col, f"statement before the first CASE of {name}")
            )
        cases: list[ast.Case] = []
        else_body: ast.Block | None = None
        while found is not None and found != end:
            case_tok = self.peek()
            self.next()
            is_default = found == "DEFAULT" or self.peek().is_word("ELSE")
            tests: tuple[ast.CaseTest, ...] = ()
            try:
                if found == "CASE" and self.peek().is_word("ELSE"):
                    self.next()
                elif not is_default:
                    tests = self.case_tests()
                if self.peek().is_op(":") and style == "SWITCH":
                    self.next()
                self.expect_end()
            except Skip as skip:
                self.errors.append((skip.line, skip.col, skip.message))
                self.skip_line()
            body, found = self.sub_block(tok, name, closers, "SELECT")
            if is_default:
                if else_body is not None:
                    self.errors.append(
                        (case_tok.line, case_tok.col, f"{name} has two default cases")
                    )
                else_body = body
            else:
                cases.append(ast.Case(line=case_tok.line, col=case_tok.col, tests=tests, body=body))
        if found == end:
            self.consume_closer(found)
            self.finish_closer_line()
        return ast.Select(
            line=tok.line,
            col=tok.col,
            subject=subject,
            cases=tuple(cases),
            else_body=else_body,
            style=style,
        )

    def case_tests(self) -> tuple[ast.CaseTest, ...]:
        tests: list[ast.CaseTest] = []
        while True:
            tok = self.peek()
            if tok.is_word("IS"):
                self.next()
                op_tok = self.next()
                if op_tok.kind != "op" or op_tok.text not in COMPARISONS:
                    raise self.fail(
                        op_tok, f"expected a comparison after IS, found {describe(op_tok)}"
                    )
                value = self.expression()
                tests.append(
                    ast.CaseTest(
                        line=tok.line,
                        col=tok.col,
                        kind="is",
                        value=value,
                        op=COMPARISONS[op_tok.text],
                    )
                )
            else:
                value = self.expression()
                if self.peek().is_word("TO"):
                    self.next()
                    upper = self.expression()
                    tests.append(
                        ast.CaseTest(
                            line=tok.line, col=tok.col, kind="range", value=value, upper=upper
                        )
                    )
                else:
                    tests.append(ast.CaseTest(line=tok.line, col=tok.col, kind="eq", value=value))
            if not self.peek().is_op(","):
                return tuple(tests)
            self.next()

    def routine(self, tok: Token) -> ast.Stmt:
        self.next()
        is_function = tok.upper == "FUNCTION"
        kind = "FUNCTION" if is_function else "SUB"
        name_tok = self.peek()
        if name_tok.kind != "ident" or name_tok.upper in RESERVED:
            raise self.fail(name_tok, f"{kind} needs a name, found {describe(name_tok)}")
        self.next()
        params: list[str] = []
        if self.peek().is_op("("):
            self.next()
            while not self.peek().is_op(")"):
                if self.peek().is_word("BYVAL", "BYREF", "OPTIONAL"):
                    self.next()
                param = self.peek()
                if param.kind != "ident":
                    raise self.fail(param, f"expected a parameter name, found {describe(param)}")
                self.next()
                params.append(param.text)
                if self.peek().is_word("AS"):
                    self.next()
                    self.next()
                if not self.peek().is_op(","):
                    break
                self.next()
            self.expect_op(")")
        if self.peek().is_word("AS"):
            self.next()
            self.next()
        self.expect_end()
        if self.open_blocks:
            self.errors.append(
                (tok.line, tok.col, f"{kind} inside a block; define it at the top level")
            )
        saved_with, self.with_targets = self.with_targets, []
        saved_contexts, self.contexts = self.contexts, []
        try:
            body, found = self.sub_block(tok, kind, {f"END {kind}", "SUB", "FUNCTION"}, kind)
            if found in ("SUB", "FUNCTION"):
                self.errors.append((tok.line, tok.col, f"{kind} without END {kind}"))
                found = None
        finally:
            self.with_targets = saved_with
            self.contexts = saved_contexts
        end_line = self.peek().line
        if found is not None:
            self.consume_closer(found)
            self.finish_closer_line()
        definition = ast.RoutineDef(
            line=tok.line,
            col=tok.col,
            name=name_tok.text,
            params=tuple(params),
            body=body,
            is_function=is_function,
            end_line=end_line,
        )
        if definition.key in self.routines:
            self.errors.append(
                (name_tok.line, name_tok.col, f"{kind} {name_tok.text} is defined twice")
            )
        else:
            self.routines[definition.key] = definition
        return definition

    def with_statement(self, tok: Token) -> ast.Stmt:
        self.next()
        fallback: ast.Expr = ast.Name(line=tok.line, col=tok.col, name="_")
        target = self.header(self.with_target, fallback)
        self.with_targets.append(target)
        try:
            body, found = self.sub_block(tok, "WITH", {"END WITH"})
        finally:
            self.with_targets.pop()
        if found is not None:
            self.consume_closer(found)
            self.finish_closer_line()
        return ast.With(line=tok.line, col=tok.col, target=target, body=body)

    def with_target(self) -> ast.Expr:
        start = self.peek()
        if start.kind != "ident" or start.upper in RESERVED:
            raise self.fail(start, f"WITH needs a variable, found {describe(start)}")
        target = self.postfix()
        if not isinstance(target, ast.Name | ast.Member | ast.Index):
            raise self.fail(start, "WITH needs a variable")
        return target

    # --- areas that are not available yet --------------------------------------------------

    def compat_line(self, tok: Token, keyword: str | None = None) -> ast.Stmt:
        """Keywords of later areas: known to the validator, a runtime error when run."""
        word = keyword or tok.upper
        declares: tuple[str, ...] = ()
        if word == "PARAM" and self.peek(1).kind == "ident":
            declares = (self.peek(1).text,)
        area = _COMPAT_AREAS.get(word, "tables")
        self.skip_line()
        return ast.Compat(line=tok.line, col=tok.col, keyword=word, area=area, declares=declares)

    def table_block(self, tok: Token) -> ast.Stmt:
        self.skip_line()
        while True:
            self.skip_separators()
            if self.peek().kind == "eof":
                self.errors.append((tok.line, tok.col, "TABLE without END TABLE"))
                break
            if self.closer() == "END TABLE":
                self.consume_closer("END TABLE")
                self.finish_closer_line()
                break
            if self.peek().upper in STATEMENT_WORDS | {"BEGIN", "TABLE"}:
                self.errors.append((tok.line, tok.col, "TABLE without END TABLE"))
                break
            self.skip_line()
        return ast.Compat(line=tok.line, col=tok.col, keyword="TABLE", area="tables")

    def begin_block(self, tok: Token) -> ast.Stmt:
        self.next()
        what = self.peek()
        if what.is_word("TALK"):
            name = "BEGIN TALK"
            self.next()
        elif what.is_word("SYSTEM") and self.peek(1).is_word("PROMPT"):
            name = "BEGIN SYSTEM PROMPT"
            self.pos += 2
        else:
            raise self.fail(tok, suggest(f"BEGIN {what.text}" if what.kind == "ident" else "BEGIN"))
        self.expect_end()
        self.skip_separators()
        if self.peek().kind == "raw":
            self.next()
        self.skip_separators()
        end = "END TALK" if name == "BEGIN TALK" else "END SYSTEM PROMPT"
        if self.closer() == end:
            self.consume_closer(end)
            self.finish_closer_line()
        else:
            self.errors.append((tok.line, tok.col, f"{name} without {end}"))
        return ast.Compat(line=tok.line, col=tok.col, keyword=name, area="text blocks")


_CLOSER_OF = {
    "IF": "END IF",
    "FOR": "NEXT",
    "FOR EACH": "NEXT",
    "WHILE": "WEND",
    "DO": "LOOP",
    "SELECT CASE": "END SELECT",
    "SWITCH": "END SWITCH",
    "SUB": "END SUB",
    "FUNCTION": "END FUNCTION",
    "WITH": "END WITH",
}

_COMPAT_AREAS = {
    "PARAM": "tools",
    "DESCRIPTION": "tools",
    "ADD TOOL": "tools",
    "CLEAR TOOLS": "tools",
    "SAVE": "tables",
    "UPDATE": "tables",
    "FIND": "tables",
    "DELETE": "tables",
    "SET SCHEDULE": "schedule",
    "POST": "http",
    "PUT": "http",
    "PATCH": "http",
    "DELETE HTTP": "http",
    "SET HEADER": "http",
    "CLEAR HEADERS": "http",
}


def parse_source(source: str) -> ParseResult:
    """Parse, collecting lexer and parser problems (syntax only; see checks for the rest)."""
    tokens, problems = tokenize(source)
    parser = Parser(tokens)
    parser.errors.extend(problems)
    try:
        program = parser.program()
    except RecursionError:  # a safety net: the nesting bounds should make it unreachable
        empty = ast.Program(body=(), routines={})
        return ParseResult(empty, [(1, 1, "the dialog nests too deeply")], [])
    return ParseResult(program, parser.errors, parser.warnings)
