"""The ways a dialog can fail: at parse time, at run time, or in a call to the platform.

Syntax errors carry a line and column so the designer can point at them; runtime errors carry
the line of the statement that failed so the session can record it as an event.
"""

from __future__ import annotations

from dataclasses import dataclass


class BasicSyntaxError(Exception):
    """The first fatal problem in a dialog's source: `parse` raises it, `validate` lists all."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"Line {line}: {message}")
        self.line = line
        self.column = column
        self.message = message


class PlatformError(Exception):
    """Raised by a platform port when the outside world refuses (mail down, area missing).

    The machine turns it into a runtime error at the line of the statement that made the call.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BudgetExceeded(PlatformError):
    """Raised by a platform (or a turn's checkpoint) when the turn has used up a budget the
    platform keeps: outside calls, wall time, bytes written. The turn ends: like
    LimitExceeded, ON ERROR RESUME NEXT cannot skip it."""


class BasicRuntimeError(Exception):
    """A runtime error inside the machine; it never escapes `resume`.

    The line is filled in by the machine when the error leaves the statement that raised it,
    so helpers (functions, values) can raise it without knowing where they are.
    """

    def __init__(self, message: str, line: int | None = None, dialog: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.dialog = dialog


class LimitExceeded(BasicRuntimeError):
    """A turn used up its steps or work; ON ERROR RESUME NEXT cannot swallow it, or the
    dialog would keep failing forward instead of stopping."""


@dataclass(frozen=True)
class RuntimeFailure:
    """How a turn that ended in a runtime error reports it: where, in which dialog, and why."""

    line: int
    message: str
    dialog: str = ""

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}"
