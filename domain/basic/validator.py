"""`parse` (first fatal error raised) and `validate` (every error and warning reported)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from domain.basic import checks
from domain.basic.ast import Program
from domain.basic.errors import BasicSyntaxError
from domain.basic.lexer import Problem
from domain.basic.parser import parse_source
from domain.basic.report import Diagnostic, Report


def parse(source: str, *, dialog: str = "", version: int | None = None) -> Program:
    """A runnable program, or BasicSyntaxError for the first error in source order.

    Called dialogs are not checked here (that needs the bot's dialog list, see validate);
    a missing one is a runtime error when the CALL runs.
    """
    result = parse_source(source)
    problems = result.errors + checks.errors(result.program, known_dialogs=None)
    if problems:
        line, column, message = min(problems)
        raise BasicSyntaxError(line, column, message)
    return replace(result.program, dialog=dialog, version=version)


def validate(
    source: str, *, known_dialogs: Iterable[str] = frozenset(), http_allowed: bool = False
) -> Report:
    """Every error and warning the designer should show, sorted by position."""
    result = parse_source(source)
    problems = result.errors + checks.errors(result.program, known_dialogs=frozenset(known_dialogs))
    warnings = result.warnings + checks.warnings(result.program, source, http_allowed=http_allowed)
    return Report(errors=_diagnostics(problems), warnings=_diagnostics(warnings))


def _diagnostics(problems: Iterable[Problem]) -> list[Diagnostic]:
    return sorted({Diagnostic(line, column, message) for line, column, message in problems})
