"""Input problems that name the file, the row and the column, and the error that carries them."""
from __future__ import annotations

from dataclasses import dataclass

#: Exit code of every command that refuses its input.
EXIT_INVALID_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file. ``row`` is the 1-based data row (the header is not a row)."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row} (line {self.row + 1})")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{self.severity}: {', '.join(where)}: {self.message}"


class InputError(Exception):
    """Raised when an input cannot be used; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = [p for p in problems if p.severity == "error"] or list(problems)
        super().__init__("\n".join(str(p) for p in self.problems[:20]))


class ModelNotFoundError(FileNotFoundError):
    """A model (run folder, registered name, version or alias) that is not there: refused like bad input."""


class ImageError(Exception):
    """An image file that is missing, unreadable or corrupt."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")
