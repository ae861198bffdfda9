"""Source text to tokens, with 1-based line and column on each token.

The lexer owns the line rules: a newline ends a statement except inside an open bracket or
string, after a trailing comma, or after a trailing `_`. It also decides what a quote is: a `'`
where an operand is expected and closed on the same line is a string, anywhere else it starts
a comment. Problems are collected rather than raised so that the validator can report them all;
the lexer recovers by closing the offending string or bracket at the end of its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Problem = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Interpolation:
    """The source of one `${...}` inside a string, and where that source starts."""

    source: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident", "number", "string", "op", "newline", "eof"
    text: str
    line: int
    col: int
    number: int | float = 0
    parts: tuple[str | Interpolation, ...] = ()

    @property
    def upper(self) -> str:
        return self.text.upper()

    def is_word(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.text in ops


# Words after which an operand is expected, so that a following `'` may open a string.
OPERAND_WORDS = frozenset(
    [
        "TALK",
        "PRINT",
        "RETURN",
        "THEN",
        "ELSE",
        "AND",
        "OR",
        "NOT",
        "AS",
        "WITH",
        "DEFAULT",
        "MOD",
        "CASE",
        "IN",
        "TO",
        "STEP",
        "WHILE",
        "UNTIL",
        "THROW",
        "IF",
        "ELSEIF",
        "SUGGESTION",
        "MEMORY",
        "KB",
        "LLM",
        "MAIL",
        "EMAIL",
        "TASK",
        "CREATE_TASK",
        "BOOK",
        "MEET",
        "WRITE",
        "READ",
        "LIST",
        "FILE",
        "CALL",
        "SET",
        "GET",
        "SESSION",
        "REMEMBER",
        "RECALL",
        "CONTEXT",
        "WAIT",
        "SWITCH",
        "SELECT",
        "DESCRIPTION",
        "SAVE",
        "FIND",
        "UPDATE",
        "DELETE",
        "POST",
        "PUT",
        "PATCH",
        "HTTP",
        "HEADER",
        "SCHEDULE",
        "TOOL",
        "LET",
        "IS",
        "FORMAT",
        "HEAR",
    ]
)

# Words that start a statement; seeing one at the start of the next line means an open
# bracket on this line was never closed (rather than continuing onto that line).
STATEMENT_WORDS = frozenset(
    [
        "TALK",
        "HEAR",
        "IF",
        "ELSE",
        "ELSEIF",
        "ENDIF",
        "END",
        "FOR",
        "NEXT",
        "DO",
        "LOOP",
        "WHILE",
        "WEND",
        "SELECT",
        "CASE",
        "SWITCH",
        "SUB",
        "FUNCTION",
        "CALL",
        "RETURN",
        "EXIT",
        "SET",
        "LET",
        "PRINT",
        "GOTO",
        "ADD",
        "CLEAR",
        "SEND",
        "CREATE",
        "WAIT",
        "REMEMBER",
        "USE",
        "BOOK",
        "WRITE",
        "THROW",
        "ON",
        "BREAK",
        "DEFAULT",
    ]
)

_BEGIN_LINE = re.compile(r"\s*(BEGIN)\s+(TALK|SYSTEM\s+PROMPT)\s*", re.IGNORECASE)
_TWO_CHAR_OPS = ("<=", ">=", "<>", "==", "!=", "#{")
_ONE_CHAR_OPS = "+-*/^&=<>()[]{},.:;"
_OPENERS = {"(": ")", "[": "]", "{": "}", "#{": "}"}
_CLOSERS = frozenset(")]}")


def _is_digit(ch: str) -> bool:
    """An ASCII digit: str.isdigit() also takes `³` or `①`, which int() and float() refuse."""
    return "0" <= ch <= "9"


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "$": "$", "0": "\0"}


@dataclass
class _Bracket:
    text: str
    line: int
    col: int


@dataclass
class Lexer:
    source: str
    first_line: int = 1
    first_col: int = 1
    tokens: list[Token] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pos = 0
        self.line = self.first_line
        self.col = self.first_col
        self.brackets: list[_Bracket] = []
        self.line_start = True  # only blanks since the last newline

    # --- driving -------------------------------------------------------------------------

    def run(self) -> list[Token]:
        src = self.source
        while self.pos < len(src):
            ch = src[self.pos]
            if ch == "\n":
                self._newline()
                continue
            if ch in " \t\r\ufeff":
                self._advance()
                continue
            if self.line_start and (self._comment_line() or self._raw_block()):
                continue
            self.line_start = False
            if ch == "'" and self._quote_is_comment():
                self._skip_to_eol()
            elif ch in "\"'":
                self._string(ch)
            elif _is_digit(ch):
                self._number()
            elif ch.isalpha() or ch == "_":
                self._word()
            else:
                self._operator()
        self._close_brackets()
        self._emit_newline()
        self.tokens.append(Token("eof", "", self.line, self.col))
        return self.tokens

    def _advance(self, count: int = 1) -> None:
        for _ in range(count):
            if self.source[self.pos] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.pos += 1

    def _add(
        self,
        kind: str,
        text: str,
        line: int,
        col: int,
        number: int | float = 0,
        parts: tuple[str | Interpolation, ...] = (),
    ) -> None:
        self.tokens.append(Token(kind, text, line, col, number, parts))

    # --- newlines and comments -----------------------------------------------------------

    def _newline(self) -> None:
        last = self.tokens[-1] if self.tokens else None
        continued = False
        if self.brackets:
            if self._next_line_starts_statement():
                self._close_brackets()
            else:
                continued = True
        elif last is not None and last.is_op(","):
            continued = True
        elif last is not None and last.kind == "ident" and last.text == "_":
            self.tokens.pop()
            continued = True
        if not continued:
            self._emit_newline()
        self._advance()
        self.line_start = True

    def _close_brackets(self) -> None:
        """Report brackets left open and close them here, so the parser sees whole lines."""
        for bracket in reversed(self.brackets):
            self.problems.append((bracket.line, bracket.col, f"unclosed {bracket.text}"))
            self._add("op", _OPENERS[bracket.text], self.line, self.col)
        self.brackets.clear()

    def _emit_newline(self) -> None:
        if self.tokens and self.tokens[-1].kind != "newline":
            self._add("newline", "\n", self.line, self.col)

    def _next_line_starts_statement(self) -> bool:
        last = self.tokens[-1] if self.tokens else None
        if last is not None and (last.kind == "op" and last.text not in ")]}"):
            return False
        end = self.source.find("\n", self.pos + 1)
        text = self.source[self.pos + 1 : end if end >= 0 else len(self.source)].strip()
        word = ""
        for ch in text:
            if not (ch.isalnum() or ch == "_"):
                break
            word += ch
        rest = text[len(word) :].lstrip()
        return word.upper() in STATEMENT_WORDS and not rest.startswith(":")

    def _in_continuation(self) -> bool:
        last = self.tokens[-1] if self.tokens else None
        return bool(self.brackets) or (last is not None and last.is_op(","))

    def _comment_line(self) -> bool:
        """A line starting with ', REM, # or // is a comment."""
        src = self.source[self.pos :]
        if src.startswith("//") or (src.startswith("#") and not src.startswith("#{")):
            self._skip_to_eol()
            return True
        if src[:3].upper() == "REM" and (len(src) == 3 or src[3] in " \t\r\n"):
            self._skip_to_eol()
            return True
        if src.startswith("'") and not self._in_continuation():
            self._skip_to_eol()
            return True
        return False

    def _raw_block(self) -> bool:
        """`BEGIN TALK` / `BEGIN SYSTEM PROMPT`: the lines up to the END line are free text."""
        if self._in_continuation():
            return False
        end = self.source.find("\n", self.pos)
        line_text = self.source[self.pos : end if end >= 0 else len(self.source)]
        match = _BEGIN_LINE.fullmatch(line_text.rstrip())
        if match is None:
            return False
        closing = "END TALK" if match.group(2).upper() == "TALK" else "END SYSTEM PROMPT"
        for word in line_text.split():
            while self.source[self.pos] in " \t":
                self._advance()
            self._add("ident", word, self.line, self.col)
            self._advance(len(word))
        self._skip_to_eol()
        self._emit_newline()
        if self.pos < len(self.source):
            self._advance()
        line, col, lines = self.line, self.col, []
        while self.pos < len(self.source):
            end = self.source.find("\n", self.pos)
            text = self.source[self.pos : end if end >= 0 else len(self.source)]
            if " ".join(text.split()).upper() == closing:
                break
            lines.append(text)
            self._advance(len(text) + (1 if end >= 0 else 0))
        self._add("raw", "\n".join(lines), line, col)
        self._emit_newline()
        self.line_start = True
        return True

    def _skip_to_eol(self) -> None:
        while self.pos < len(self.source) and self.source[self.pos] != "\n":
            self._advance()

    def _quote_is_comment(self) -> bool:
        """A `'` is a string only where an operand is expected and it closes on this line."""
        last = self.tokens[-1] if self.tokens else None
        expects_operand = (
            last is None
            or last.kind == "newline"
            or (last.kind == "op" and last.text not in ")]}")
            or (last.kind == "ident" and last.upper in OPERAND_WORDS)
        )
        if not expects_operand:
            return True
        end = self.source.find("\n", self.pos)
        line_rest = self.source[self.pos + 1 : end if end >= 0 else len(self.source)]
        return "'" not in line_rest.replace("\\'", "")

    # --- tokens --------------------------------------------------------------------------

    def _number(self) -> None:
        src, start, line, col = self.source, self.pos, self.line, self.col
        end = start
        while end < len(src) and _is_digit(src[end]):
            end += 1
        is_float = False
        if end + 1 < len(src) and src[end] == "." and _is_digit(src[end + 1]):
            is_float = True
            end += 1
            while end < len(src) and _is_digit(src[end]):
                end += 1
        if end < len(src) and src[end] in "eE":
            probe = end + 1
            if probe < len(src) and src[probe] in "+-":
                probe += 1
            if probe < len(src) and _is_digit(src[probe]):
                is_float = True
                end = probe
                while end < len(src) and _is_digit(src[end]):
                    end += 1
        text = src[start:end]
        value: int | float = 0
        if not is_float and len(text) > 18:  # past 64 bits: refuse, rather than compute on it
            self.problems.append((line, col, f"number {text[:20]}... is too large"))
        else:
            value = float(text) if is_float else int(text)
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            self.problems.append((line, col, f"number {text} is too large"))
            value = 0
        self._advance(end - start)
        self._add("number", text, line, col, number=value)

    def _word(self) -> None:
        src, start, line, col = self.source, self.pos, self.line, self.col
        end = start
        while end < len(src) and (src[end].isalnum() or src[end] == "_"):
            end += 1
        self._advance(end - start)
        self._add("ident", src[start:end], line, col)

    def _operator(self) -> None:
        src, line, col = self.source, self.line, self.col
        two = src[self.pos : self.pos + 2]
        if two in _TWO_CHAR_OPS:
            text = two
        elif src[self.pos] in _ONE_CHAR_OPS:
            text = src[self.pos]
        else:
            self.problems.append((line, col, f"unexpected character {src[self.pos]}"))
            self._advance()
            return
        self._advance(len(text))
        if text in _OPENERS:
            self.brackets.append(_Bracket(text, line, col))
        elif text in _CLOSERS:
            if self.brackets and _OPENERS[self.brackets[-1].text] == text:
                self.brackets.pop()
            else:
                self.problems.append((line, col, f"unbalanced {text}"))
                return
        self._add("op", text, line, col)

    def _string(self, quote: str) -> None:
        """A quoted string with escapes and `${expr}` parts; double quotes may span lines."""
        src, line, col = self.source, self.line, self.col
        if quote == '"' and not self._string_closes(self.pos + 1):
            self.problems.append((line, col, "unterminated string"))
            self._unterminated(quote, line, col)
            return
        self._advance()
        parts: list[str | Interpolation] = []
        text: list[str] = []
        interpolate = True  # after an unclosed ${, the rest of the string is plain text
        while True:
            if self.pos >= len(src) or (quote == "'" and src[self.pos] == "\n"):
                self.problems.append((line, col, "unterminated string"))
                break
            ch = src[self.pos]
            if ch == quote:
                if quote == '"' and src[self.pos + 1 : self.pos + 2] == '"':
                    text.append('"')
                    self._advance(2)
                    continue
                self._advance()
                break
            if ch == "\\" and self.pos + 1 < len(src):
                nxt = src[self.pos + 1]
                text.append(_ESCAPES.get(nxt, "\\" + nxt))
                self._advance(2)
                continue
            if ch == "$" and src[self.pos + 1 : self.pos + 2] == "{" and interpolate:
                interpolation = self._interpolation()
                interpolate = interpolation is not None
                if interpolation is not None:
                    parts.append("".join(text))
                    text = []
                    parts.append(interpolation)
                continue
            text.append(ch)
            self._advance()
        parts.append("".join(text))
        merged = tuple(p for p in parts if p != "")
        self._add("string", src[self.pos - 1 : self.pos], line, col, parts=merged or ("",))

    def _string_closes(self, start: int) -> bool:
        """Whether a double-quoted string opened before start has a plausible closing quote.

        A string may span lines, but one that would close on a later line right before
        something that cannot follow a string (a word, a number) is a forgotten quote: it is
        reported as unterminated at its opening rather than swallowing the lines below.
        """
        src, pos = self.source, start
        spans_lines = False
        while pos < len(src):
            ch = src[pos]
            if ch == "\\":
                pos += 2
                continue
            if ch == "\n":
                spans_lines = True
            if ch == '"':
                if src[pos + 1 : pos + 2] == '"':
                    pos += 2
                    continue
                return not spans_lines or _can_follow_string(src, pos + 1)
            pos += 1
        return False

    def _unterminated(self, quote: str, line: int, col: int) -> None:
        """Recover: the string runs to the end of its line."""
        self._advance()
        chars: list[str] = []
        while self.pos < len(self.source) and self.source[self.pos] != "\n":
            chars.append(self.source[self.pos])
            self._advance()
        self._add("string", quote, line, col, parts=("".join(chars),))

    def _interpolation(self) -> Interpolation | None:
        src = self.source
        line, col = self.line, self.col
        self._advance(2)
        start, depth, pos = self.pos, 1, self.pos
        inner_quote: str | None = None
        while pos < len(src) and src[pos] != "\n":  # a ${...} stays on its line
            ch = src[pos]
            if inner_quote:
                if ch == "\\":
                    pos += 1
                elif ch == inner_quote:
                    inner_quote = None
            elif ch in "\"'":
                inner_quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            pos += 1
        if depth != 0:
            self.problems.append((line, col, "unclosed ${ in string"))
            return None
        expr_line, expr_col = self.line, self.col
        self._advance(pos - start + 1)
        return Interpolation(src[start:pos], expr_line, expr_col)


_AFTER_STRING_WORDS = frozenset(
    ["THEN", "AS", "AND", "OR", "ELSE", "WITH", "DEFAULT", "MOD", "TO", "STEP", "IS"]
)


def _can_follow_string(src: str, pos: int) -> bool:
    end = src.find("\n", pos)
    rest = src[pos : end if end >= 0 else len(src)].strip()
    if not rest or rest[0] in ")]},+&-*/=<>:'^.":
        return True
    word = rest.split()[0].upper()
    return word in _AFTER_STRING_WORDS


def tokenize(source: str, line: int = 1, col: int = 1) -> tuple[list[Token], list[Problem]]:
    lexer = Lexer(source, line, col)
    tokens = lexer.run()
    return tokens, lexer.problems
