"""What validation returns: errors and warnings with line, column and message."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Diagnostic:
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"Line {self.line}: {self.message}"


@dataclass(frozen=True)
class Report:
    """`valid` is false exactly when there is an error; warnings never make a dialog invalid."""

    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_data(self) -> dict[str, object]:
        """The shape of the designer's validate endpoint."""

        def items(found: list[Diagnostic]) -> list[dict[str, object]]:
            return [{"line": d.line, "column": d.column, "message": d.message} for d in found]

        return {"valid": self.valid, "errors": items(self.errors), "warnings": items(self.warnings)}
