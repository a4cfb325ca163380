"""Problems found while reading data, each naming the file, row, id and field."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from arenapref import errors


@dataclass(frozen=True)
class Problem:
    file: str
    row: int | None  # 1-based data row (header excluded), None for file-level problems
    id: str | None
    field: str | None
    message: str
    fatal: bool = True

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.id is not None:
            where.append(f"id {self.id}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        kind = "error" if self.fatal else "warning"
        return f"{', '.join(where)}: {kind}: {self.message}"


class DataError(errors.DataError):
    """Raised when input cannot be read; the message lists every fatal problem found."""

    def __init__(self, problems: list[Problem], limit: int = 20):
        self.problems = problems
        fatal = [p for p in problems if p.fatal]
        lines = [str(p) for p in fatal[:limit]]
        if len(fatal) > limit:
            lines.append(f"... and {len(fatal) - limit} more (run `arenapref data validate` to see all)")
        super().__init__(f"{len(fatal)} problem(s) in the input:\n" + "\n".join(lines))


@dataclass
class ReadReport:
    """What a reader found and fixed: problems plus counters of repairs (shown by `data validate`)."""

    problems: list[Problem] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)

    def add(self, file, row, id, field_, message, fatal=True) -> None:
        self.problems.append(Problem(str(file), row, None if id is None else str(id), field_, message, fatal))

    @property
    def fatal(self) -> list[Problem]:
        return [p for p in self.problems if p.fatal]

    def merge(self, other: "ReadReport") -> None:
        self.problems.extend(other.problems)
        self.counts.update(other.counts)

    def raise_if_fatal(self) -> None:
        if self.fatal:
            raise DataError(self.problems)
