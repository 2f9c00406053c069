"""Data problems located by file, line and column, and the collector that keeps all of them.

A dataset is checked row by row before any training; every bad row is collected (up
to a cap) and reported at once, so a user fixes a file in one pass instead of one
run per mistake.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

MAX_LISTED = 20


class DataFileError(ValueError):
    """One problem in a data file: ``path, line N, column K (name): message``.

    ``line`` and ``column`` are 1-based (``None`` when the problem is the whole file
    or the whole line); ``name`` is the column's header or task name. A plain string
    ``column`` is taken as the name (the form older callers used).
    """

    def __init__(
        self,
        path: Path | str,
        line: int | None,
        column: int | str | None,
        message: str,
        name: str | None = None,
    ) -> None:
        if isinstance(column, str):
            column, name = None, column
        self.path, self.line, self.column, self.name = str(path), line, column, name
        self.message = message
        super().__init__(self.location() + ": " + message)

    def location(self) -> str:
        where = self.path
        if self.line is not None:
            where += f", line {self.line}"
        if self.column is not None:
            where += f", column {self.column}" + (f" ({self.name})" if self.name else "")
        elif self.name:
            where += f", column {self.name!r}"
        return where

    def sort_key(self) -> tuple[str, int, int]:
        return self.path, self.line or 0, self.column or 0


class DataErrors(DataFileError):
    """Every problem found in a dataset (the first ``MAX_LISTED`` spelled out, then a count).

    It is a :class:`DataFileError` located at the first problem, so code that handles
    one data error handles this one too; ``problems`` holds the listed ones and
    ``total`` how many were found.
    """

    def __init__(self, problems: list[DataFileError], total: int | None = None) -> None:
        if not problems:
            raise ValueError("DataErrors needs at least one problem.")
        self.problems = sorted(problems, key=DataFileError.sort_key)[:MAX_LISTED]
        self.total = max(total or 0, len(problems))
        first = self.problems[0]
        DataFileError.__init__(self, first.path, first.line, first.column, first.message, first.name)
        if self.total == 1:
            text = str(first)
        else:
            text = f"{self.total} problems in the data (nothing was trained):\n  " + "\n  ".join(map(str, self.problems))
            if self.total > len(self.problems):
                text += f"\n  ... and {self.total - len(self.problems)} more (the first {len(self.problems)} are listed)"
        self.args = (text,)

    def __str__(self) -> str:
        return str(self.args[0])


class ProblemLog:
    """Collects data problems; ``raise_if_any`` raises them together as :class:`DataErrors`."""

    def __init__(self, cap: int = 1000) -> None:
        self.problems: list[DataFileError] = []
        self.total = 0
        self.cap = cap
        self._seen: set[str] = set()

    def add(self, problem: DataFileError) -> None:
        """Record ``problem`` (the same problem twice, e.g. one file used for two splits, once)."""
        if str(problem) in self._seen:
            return
        self._seen.add(str(problem))
        self.total += 1
        if len(self.problems) < self.cap:
            self.problems.append(problem)

    def extend(self, problems: Iterable[DataFileError]) -> None:
        for p in problems:
            self.add(p)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self) -> None:
        if self.total:
            raise DataErrors(self.problems, self.total)
