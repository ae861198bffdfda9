"""Expressions: precedence climbing over tokens, and the token helpers parsers share.

Levels, loosest first: OR, AND, NOT, comparisons (= == <> != < > <= >= and IS [NOT] NULL),
&, + -, * / MOD, unary - +, ^, then member access, indexing and calls. Operators of one level
form one flat Chain node, so a long sum does not nest deep; nesting (brackets, NOT, unary
minus, member chains) is bounded to stay well inside Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable

from domain.basic import ast
from domain.basic.keywords import ARITY, RESERVED, arity_message
from domain.basic.lexer import Interpolation, Problem, Token, tokenize

MAX_NESTING = 25
MAX_POSTFIX = 64

COMPARISONS = {
    "=": "=",
    "==": "=",
    "<>": "<>",
    "!=": "<>",
    "<": "<",
    ">": ">",
    "<=": "<=",
    ">=": ">=",
}

# Keywords that yield a value from one argument (FIND, POST... belong to later areas).
VALUE_KEYWORDS = frozenset({"GET", "RECALL", "LLM", "READ", "LIST", "FIND", "POST", "PUT", "PATCH"})


class Skip(Exception):
    """A statement failed to parse; the error is recorded and the line skipped."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


def describe(tok: Token) -> str:
    if tok.kind == "newline":
        return "end of line"
    if tok.kind == "eof":
        return "end of file"
    if tok.kind == "string":
        return "text"
    return tok.text


class ExpressionParser:
    """Parses expressions from a token list, recording errors in a shared list."""

    def __init__(
        self,
        tokens: list[Token],
        errors: list[Problem] | None = None,
        warnings: list[Problem] | None = None,
    ) -> None:
        self.tokens = tokens
        self.errors: list[Problem] = [] if errors is None else errors
        self.warnings: list[Problem] = [] if warnings is None else warnings
        self.pos = 0
        self.with_targets: list[ast.Expr] = []  # WITH objects that `.field` refers to
        self.nesting = 0
        self.bracket_depth = 0
        self.inline = False  # inside a one-line IF, where ELSE ends a statement

    # --- token helpers -------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        index = min(self.pos + ahead, len(self.tokens) - 1)
        return self.tokens[index]

    def next(self) -> Token:
        tok = self.peek()
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def fail(self, tok: Token, message: str) -> Skip:
        return Skip(tok.line, tok.col, message)

    def expect_word(self, *words: str) -> Token:
        tok = self.peek()
        if not tok.is_word(*words):
            raise self.fail(tok, f"expected {' or '.join(words)}, found {describe(tok)}")
        return self.next()

    def expect_op(self, op: str) -> Token:
        tok = self.peek()
        if not tok.is_op(op):
            raise self.fail(tok, f"expected {op}, found {describe(tok)}")
        return self.next()

    def at_end(self) -> bool:
        """End of a statement: newline, end of file, `:`, or ELSE inside a one-line IF.

        A block statement that was left unclosed stops at the start of the line that closes
        an outer block; that counts as an end too.
        """
        tok = self.peek()
        return (
            tok.kind in ("newline", "eof")
            or (self.pos > 0 and self.tokens[self.pos - 1].kind == "newline")
            or tok.is_op(":")
            or (self.inline and tok.is_word("ELSE"))
        )

    def expect_end(self) -> None:
        if not self.at_end():
            tok = self.peek()
            raise self.fail(tok, f"unexpected {describe(tok)}")

    def skip_line(self) -> None:
        while self.peek().kind not in ("newline", "eof"):
            self.next()

    def skip_separators(self) -> None:
        while self.peek().kind == "newline" or self.peek().is_op(":"):
            self.next()

    def check_arity(self, tok: Token, keyword: str, got: int) -> None:
        message = arity_message(keyword, got)
        if message:
            raise self.fail(tok, message)

    def arguments_after_comma(self) -> tuple[ast.Expr, ...]:
        args: list[ast.Expr] = []
        while self.peek().is_op(","):
            self.next()
            args.append(self.expression())
        return tuple(args)

    # --- expressions ---------------------------------------------------------------------

    def expression(self) -> ast.Expr:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise self.fail(self.peek(), "expression nests too deeply")
            return self.or_expr()
        finally:
            self.nesting -= 1

    def logic(self, word: str, operand: Callable[[], ast.Expr]) -> ast.Expr:
        first = operand()
        operands = [first]
        while self.peek().is_word(word):
            self.next()
            operands.append(operand())
        if len(operands) == 1:
            return first
        return ast.Logic(line=first.line, col=first.col, op=word, operands=tuple(operands))

    def or_expr(self) -> ast.Expr:
        return self.logic("OR", self.and_expr)

    def and_expr(self) -> ast.Expr:
        return self.logic("AND", self.not_expr)

    def not_expr(self) -> ast.Expr:
        tok = self.peek()
        if tok.is_word("NOT"):
            self.next()
            operand = self.nested(self.not_expr)
            return ast.Unary(line=tok.line, col=tok.col, op="NOT", operand=operand)
        return self.comparison()

    def nested(self, parse: Callable[[], ast.Expr]) -> ast.Expr:
        self.nesting += 1
        try:
            if self.nesting > MAX_NESTING:
                raise self.fail(self.peek(), "expression nests too deeply")
            return parse()
        finally:
            self.nesting -= 1

    def comparison(self) -> ast.Expr:
        first = self.concat()
        result = first
        rest: list[tuple[str, ast.Expr]] = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in COMPARISONS:
                self.next()
                rest.append((COMPARISONS[tok.text], self.concat()))
            elif tok.is_word("IS"):
                self.next()
                negated = False
                if self.peek().is_word("NOT"):
                    self.next()
                    negated = True
                self.expect_word("NULL", "NOTHING")
                if rest:
                    result = ast.Chain(
                        line=first.line, col=first.col, first=result, rest=tuple(rest)
                    )
                    rest = []
                result = ast.IsNull(line=tok.line, col=tok.col, operand=result, negated=negated)
            else:
                break
        if rest:
            return ast.Chain(line=first.line, col=first.col, first=result, rest=tuple(rest))
        return result

    def chain(
        self, ops: tuple[str, ...], words: tuple[str, ...], operand: Callable[[], ast.Expr]
    ) -> ast.Expr:
        first = operand()
        rest: list[tuple[str, ast.Expr]] = []
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in ops:
                self.next()
                rest.append((tok.text, operand()))
            elif tok.kind == "ident" and tok.upper in words:
                self.next()
                rest.append((tok.upper, operand()))
            else:
                break
        if not rest:
            return first
        return ast.Chain(line=first.line, col=first.col, first=first, rest=tuple(rest))

    def concat(self) -> ast.Expr:
        return self.chain(("&",), (), self.additive)

    def additive(self) -> ast.Expr:
        return self.chain(("+", "-"), (), self.multiplicative)

    def multiplicative(self) -> ast.Expr:
        return self.chain(("*", "/"), ("MOD",), self.unary)

    def unary(self) -> ast.Expr:
        tok = self.peek()
        if tok.is_op("-", "+"):
            self.next()
            operand = self.nested(self.unary)
            return ast.Unary(line=tok.line, col=tok.col, op=tok.text, operand=operand)
        return self.power()

    def power(self) -> ast.Expr:
        first = self.postfix()
        rest: list[tuple[str, ast.Expr]] = []
        while self.peek().is_op("^"):
            self.next()
            rest.append(("^", self.nested(self.exponent)))
        if not rest:
            return first
        return ast.Chain(line=first.line, col=first.col, first=first, rest=tuple(rest))

    def exponent(self) -> ast.Expr:
        tok = self.peek()
        if tok.is_op("-", "+"):
            self.next()
            operand = self.nested(self.exponent)
            return ast.Unary(line=tok.line, col=tok.col, op=tok.text, operand=operand)
        return self.postfix()

    def postfix(self) -> ast.Expr:
        expr = self.primary()
        for _ in range(MAX_POSTFIX + 1):
            tok = self.peek()
            if tok.is_op("."):
                self.next()
                name = self.peek()
                if name.kind != "ident":
                    raise self.fail(name, f"expected a field name, found {describe(name)}")
                self.next()
                if self.peek().is_op("("):
                    args = self.call_arguments()
                    expr = ast.MethodCall(
                        line=name.line, col=name.col, obj=expr, name=name.text, args=args
                    )
                else:
                    expr = ast.Member(line=name.line, col=name.col, obj=expr, name=name.text)
            elif tok.is_op("["):
                self.next()
                self.bracket_depth += 1
                try:
                    index = self.expression()
                finally:
                    self.bracket_depth -= 1
                self.expect_op("]")
                expr = ast.Index(line=tok.line, col=tok.col, obj=expr, index=index)
            elif tok.is_op("(") and isinstance(expr, ast.Name):
                args = self.call_arguments()
                expr = ast.Call(line=expr.line, col=expr.col, name=expr.name, args=args)
            else:
                return expr
        raise self.fail(self.peek(), "expression nests too deeply")

    def call_arguments(self) -> tuple[ast.Expr, ...]:
        self.expect_op("(")
        args: list[ast.Expr] = []
        self.bracket_depth += 1
        try:
            while not self.peek().is_op(")"):
                args.append(self.expression())
                if not self.peek().is_op(","):
                    break
                self.next()
        finally:
            self.bracket_depth -= 1
        self.expect_op(")")
        return tuple(args)

    def primary(self) -> ast.Expr:
        tok = self.peek()
        if tok.kind == "number":
            self.next()
            return ast.Literal(line=tok.line, col=tok.col, value=tok.number)
        if tok.kind == "string":
            self.next()
            return self.string(tok)
        if tok.is_op("("):
            self.next()
            self.bracket_depth += 1
            try:
                inner = self.expression()
            finally:
                self.bracket_depth -= 1
            self.expect_op(")")
            return inner
        if tok.is_op("["):
            return self.list_literal(tok)
        if tok.is_op("{", "#{"):
            return self.object_literal(tok)
        if tok.is_op(".") and self.with_targets:
            self.next()
            name = self.peek()
            if name.kind != "ident":
                raise self.fail(name, f"expected a field name, found {describe(name)}")
            self.next()
            return ast.Member(
                line=name.line, col=name.col, obj=self.with_targets[-1], name=name.text
            )
        if tok.kind == "ident":
            return self.word(tok)
        raise self.fail(tok, f"expected an expression, found {describe(tok)}")

    def word(self, tok: Token) -> ast.Expr:
        upper = tok.upper
        if upper in ("TRUE", "FALSE"):
            self.next()
            return ast.Literal(line=tok.line, col=tok.col, value=upper == "TRUE")
        if upper in ("NULL", "NOTHING"):
            self.next()
            return ast.Literal(line=tok.line, col=tok.col, value=None)
        if upper == "NEW" and self.peek(1).is_word("OBJECT", "ARRAY"):
            is_object = self.peek(1).is_word("OBJECT")
            self.pos += 2
            if self.peek().is_op("(") and self.peek(1).is_op(")"):
                self.pos += 2
            if is_object:
                return ast.ObjectLit(line=tok.line, col=tok.col, pairs=())
            return ast.ListLit(line=tok.line, col=tok.col, items=())
        if upper == "HEAR":
            raise self.fail(tok, "HEAR must start a statement or follow = (x = HEAR)")
        keyword = self.keyword_expression(tok)
        if keyword is not None:
            return keyword
        if upper in RESERVED:
            raise self.fail(tok, f"expected an expression, found {tok.text}")
        self.next()
        return ast.Name(line=tok.line, col=tok.col, name=tok.text)

    def starts_operand(self, tok: Token) -> bool:
        if tok.kind in ("string", "number"):
            return True
        if tok.kind == "ident":
            return tok.upper not in RESERVED or tok.upper in ("NOT", "TRUE", "FALSE", "NULL")
        return tok.is_op("(", "{", "#{")

    def keyword_expression(self, tok: Token) -> ast.Expr | None:
        """`GET BOT MEMORY k`, `LLM p`, `FORMAT x AS p`...: only when an operand follows."""
        upper = tok.upper
        nxt, after = self.peek(1), self.peek(2)
        phrase: str | None = None
        skip = 1
        if upper == "GET" and nxt.is_word("BOT", "USER") and after.is_word("MEMORY"):
            phrase, skip = f"GET {nxt.upper} MEMORY", 3
        elif upper == "GET" and nxt.is_word("SESSION") and self.starts_operand(after):
            phrase, skip = "GET SESSION", 2
        elif upper == "THINK" and nxt.is_word("KB"):
            phrase, skip = "THINK KB", 2
        elif upper == "START" and nxt.is_word("MEET"):
            phrase, skip = "START MEET", 2
        elif upper in VALUE_KEYWORDS and self.starts_operand(nxt):
            phrase = upper
        elif upper == "FORMAT" and self.starts_operand(nxt) and not nxt.is_op("("):
            self.next()
            value = self.expression()
            self.expect_word("AS")
            pattern = self.expression()
            return ast.Call(line=tok.line, col=tok.col, name="FORMAT", args=(value, pattern))
        if phrase is None:
            return None
        self.pos += skip
        if self.peek().is_op("("):
            args = self.call_arguments()
        elif self.bracket_depth == 0 and not self.inline:
            args = (self.keyword_argument(), *self.keyword_arguments_after_comma())
        else:
            args = (self.keyword_argument(),)
        if phrase in ARITY:
            self.check_arity(tok, phrase, len(args))
        return ast.KeywordExpr(line=tok.line, col=tok.col, keyword=phrase, args=args)

    def keyword_argument(self) -> ast.Expr:
        """Without parentheses a keyword takes `+`/`&` expressions; comparisons apply to its
        result: `IF GET BOT MEMORY "k" = "v" THEN`, `LLM "Summarize: " + text`."""
        return self.nested(self.concat)

    def keyword_arguments_after_comma(self) -> tuple[ast.Expr, ...]:
        args: list[ast.Expr] = []
        while self.peek().is_op(","):
            self.next()
            args.append(self.keyword_argument())
        return tuple(args)

    def list_literal(self, tok: Token) -> ast.Expr:
        self.next()
        items: list[ast.Expr] = []
        self.bracket_depth += 1
        try:
            while not self.peek().is_op("]"):
                items.append(self.expression())
                if not self.peek().is_op(","):
                    break
                self.next()
        finally:
            self.bracket_depth -= 1
        self.expect_op("]")
        return ast.ListLit(line=tok.line, col=tok.col, items=tuple(items))

    def object_literal(self, tok: Token) -> ast.Expr:
        self.next()
        pairs: list[tuple[str, ast.Expr]] = []
        self.bracket_depth += 1
        try:
            while not self.peek().is_op("}"):
                key_tok = self.next()
                if key_tok.kind == "string":
                    key = "".join(p for p in key_tok.parts if isinstance(p, str))
                elif key_tok.kind in ("ident", "number"):
                    key = key_tok.text
                else:
                    raise self.fail(key_tok, f"expected a key, found {describe(key_tok)}")
                self.expect_op(":")
                pairs.append((key, self.expression()))
                if not self.peek().is_op(","):
                    break
                self.next()
        finally:
            self.bracket_depth -= 1
        self.expect_op("}")
        return ast.ObjectLit(line=tok.line, col=tok.col, pairs=tuple(pairs))

    def string(self, tok: Token) -> ast.Expr:
        if all(isinstance(p, str) for p in tok.parts):
            text = "".join(p for p in tok.parts if isinstance(p, str))
            return ast.Literal(line=tok.line, col=tok.col, value=text)
        parts: list[str | ast.Expr] = []
        for part in tok.parts:
            if isinstance(part, Interpolation):
                parts.append(self.interpolation(part))
            else:
                parts.append(part)
        return ast.Template(line=tok.line, col=tok.col, parts=tuple(parts))

    def interpolation(self, part: Interpolation) -> ast.Expr:
        tokens, problems = tokenize(part.source, part.line, part.col)
        self.errors.extend(problems)
        inner = ExpressionParser(tokens, self.errors, self.warnings)
        inner.with_targets = self.with_targets
        inner.nesting = self.nesting + 1
        inner.bracket_depth = 1
        if tokens[0].kind in ("newline", "eof"):
            raise self.fail(tokens[0], "empty ${} in string")
        expr = inner.expression()
        rest = inner.peek()
        if rest.kind not in ("newline", "eof"):
            raise self.fail(rest, f"unexpected {describe(rest)}")
        return expr
