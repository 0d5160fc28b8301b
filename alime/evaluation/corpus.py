"""E-commerce-format files (``label \\t turn_1 ... \\t turn_n \\t response``) as rows and groups.

Response-selection files hold groups of ``group_size`` (10) consecutive lines that share one
context, with exactly one label-1 line anywhere in the group. Every malformed row or group is an
error naming the file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alime.kb.formats import EcommerceRow, iter_ecommerce, parse_ecommerce_line

GROUP_SIZE = 10


@dataclass(frozen=True)
class Group:
    """One context with its candidate responses, exactly one of them real.

    Attributes:
        turns: the shared context, oldest first; ``turns[-1]`` is the query.
        responses: the candidates, in file order.
        true_index: position of the real response in ``responses``.
        line: 1-based line of the group's first row.
    """

    turns: tuple[str, ...]
    responses: tuple[str, ...]
    true_index: int
    line: int

    @property
    def query(self) -> str:
        return self.turns[-1]

    @property
    def context(self) -> tuple[str, ...]:
        """The turns before the query."""
        return self.turns[:-1]

    @property
    def true_response(self) -> str:
        return self.responses[self.true_index]


def parse_row(text: str, where: str, line: int) -> EcommerceRow:
    """Parse one line (``FormatError``, a ValueError naming ``where:line``, when malformed)."""
    return parse_ecommerce_line(text, where, line)


def iter_rows(path: str | Path) -> Iterator[EcommerceRow]:
    """The non-blank rows of a file, validated.

    Raises:
        ValueError: a malformed row (file and line in the message).
        FileNotFoundError: no such file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return iter_ecommerce(path)


def read_true_rows(path: str | Path) -> list[EcommerceRow]:
    """The label-1 rows (real dialogues) of a file."""
    return [r for r in iter_rows(path) if r.label == 1]


def group_rows(
    rows: Sequence[EcommerceRow], where: str, group_size: int = GROUP_SIZE
) -> list[Group]:
    """Cut rows into groups of ``group_size`` consecutive rows.

    Raises:
        ValueError: naming ``where`` and the line of a group that is incomplete, does not have
            exactly one label-1 row, or whose rows do not share one context.
    """
    groups = []
    for start in range(0, len(rows), group_size):
        chunk = rows[start : start + group_size]
        first = chunk[0].line
        if len(chunk) < group_size:
            raise ValueError(
                f"{where}:{first}: last group has {len(chunk)} line(s), expected {group_size}"
            )
        positives = [i for i, r in enumerate(chunk) if r.label == 1]
        if len(positives) != 1:
            raise ValueError(
                f"{where}:{first}: group of lines {first}-{chunk[-1].line} has "
                f"{len(positives)} label-1 line(s), expected exactly 1"
            )
        for r in chunk[1:]:
            if r.turns != chunk[0].turns:
                raise ValueError(
                    f"{where}:{r.line}: context differs from the group's first line {first}"
                )
        groups.append(Group(chunk[0].turns, tuple(r.response for r in chunk), positives[0], first))
    return groups


def read_groups(
    path: str | Path, group_size: int = GROUP_SIZE, limit: int | None = None
) -> list[Group]:
    """Response-selection groups of a file (the first ``limit`` groups when given).

    Raises:
        ValueError: a malformed row or group, or an empty file (file and line in the message).
    """
    rows: list[EcommerceRow] = []
    for row in iter_rows(path):
        rows.append(row)
        if limit is not None and len(rows) >= limit * group_size:
            break
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return group_rows(rows, str(path), group_size)


def format_group(group: Group) -> Iterable[str]:
    """The group's lines in the E-commerce format (with newlines)."""
    turns = "\t".join(group.turns)
    for i, response in enumerate(group.responses):
        yield f"{int(i == group.true_index)}\t{turns}\t{response}\n"


def write_groups(groups: Iterable[Group], out: TextIO) -> int:
    """Write groups in the E-commerce format; returns the number of groups."""
    n = 0
    for group in groups:
        out.writelines(format_group(group))
        n += 1
    return n
