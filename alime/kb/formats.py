"""Import and export formats for the knowledge base.

Readers parse the whole file before anything is written, so a malformed row either stops the
import with its file and line (nothing half-imported) or, when asked, is skipped and counted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TextIO

from alime.types import QAPair


class Format(str, Enum):
    TSV = "tsv"
    JSONL = "jsonl"
    ECOMMERCE = "ecommerce"
    CHATTERBOT = "chatterbot"

    @classmethod
    def parse(cls, name: str) -> Format:
        try:
            return cls(name)
        except ValueError:
            raise ValueError(
                f"unknown format {name!r}; valid: {', '.join(f.value for f in cls)}"
            ) from None


class FormatError(ValueError):
    """A malformed row, with where it is."""

    def __init__(self, path: str | Path, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = str(path)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Row:
    """One parsed entry and the line it starts on. ``phrasings`` come from JSONL only."""

    line: int
    question: str
    answer: str
    tags: tuple[str, ...] = ()
    phrasings: tuple[str, ...] = ()

    def to_kb_row(self) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
        """What :meth:`alime.kb.store.KnowledgeBase.add_many` takes."""
        return self.question, self.answer, self.tags, self.phrasings


@dataclass
class ParseResult:
    rows: list[Row] = field(default_factory=list)
    skipped: list[FormatError] = field(default_factory=list)


def read_rows(path: str | Path, fmt: Format | str, skip_bad: bool = False) -> ParseResult:
    """Parse a whole file. Raises FormatError on the first bad row unless ``skip_bad``."""
    fmt = Format.parse(fmt) if isinstance(fmt, str) else fmt
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    result = ParseResult()
    for item in _READERS[fmt](path):
        if isinstance(item, FormatError):
            if not skip_bad:
                raise item
            result.skipped.append(item)
        else:
            result.rows.append(item)
    return result


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise FormatError(path, 0, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _nonempty(path: Path, line: int, question: str, answer: str, tags=(),
              phrasings=()) -> Row | FormatError:
    question, answer = question.strip(), answer.strip()
    if not question:
        return FormatError(path, line, "empty question")
    if not answer:
        return FormatError(path, line, "empty answer")
    if any(not p.strip() for p in phrasings):
        return FormatError(path, line, "empty phrasing")
    # Each phrasing once, never the primary question itself (as the store keeps them).
    kept = tuple(dict.fromkeys(p.strip() for p in phrasings if p.strip() != question))
    return Row(line, question, answer, tuple(tags), kept)


def _read_tsv(path: Path) -> Iterator[Row | FormatError]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            yield FormatError(path, number, f"expected 'question<TAB>answer', found {len(parts)} field(s)")
            continue
        yield _nonempty(path, number, parts[0], parts[1])


def _read_jsonl(path: Path) -> Iterator[Row | FormatError]:
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield FormatError(path, number, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict):
            yield FormatError(path, number, "expected a JSON object")
            continue
        question, answer, tags = obj.get("question"), obj.get("answer"), obj.get("tags", [])
        phrasings = obj.get("phrasings", [])
        if not isinstance(question, str) or not isinstance(answer, str):
            yield FormatError(path, number, "'question' and 'answer' must be strings")
            continue
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            yield FormatError(path, number, "'tags' must be a list of strings")
            continue
        if not isinstance(phrasings, list) or not all(isinstance(p, str) for p in phrasings):
            yield FormatError(path, number, "'phrasings' must be a list of strings")
            continue
        yield _nonempty(path, number, question, answer, tags, phrasings)


@dataclass(frozen=True)
class EcommerceRow:
    """One line of the E-commerce Dialogue Corpus format."""

    label: int
    turns: tuple[str, ...]
    response: str
    line: int


def parse_ecommerce_line(text: str, path: str | Path, line: int) -> EcommerceRow:
    """Parse ``label \t turn_1 ... \t turn_n \t response`` (the one parser of this format:
    the KB import, training and evaluation all read it through here).

    Raises:
        FormatError: too few fields, a label other than 0/1, or an empty turn or response.
    """
    fields = text.rstrip("\r\n").split("\t")
    if len(fields) < 3:
        raise FormatError(path, line, "expected 'label \\t turns... \\t response', "
                                      f"got {len(fields)} field(s)")
    if fields[0] not in ("0", "1"):
        raise FormatError(path, line, f"label must be 0 or 1, got {fields[0]!r}")
    if any(not f.strip() for f in fields[1:]):
        raise FormatError(path, line, "empty turn or response")
    return EcommerceRow(int(fields[0]), tuple(fields[1:-1]), fields[-1], line)


def iter_ecommerce(path: str | Path) -> Iterator[EcommerceRow]:
    """Every non-blank row of an E-commerce-format file; stops at the first malformed one."""
    path = Path(path)
    for number, text in _lines(path):
        if text.strip():
            yield parse_ecommerce_line(text, path, number)


def _read_ecommerce(path: Path) -> Iterator[Row | FormatError]:
    """``label \\t turns... \\t response``: label-1 lines become (last turn, response) pairs."""
    for number, text in _lines(path):
        if not text.strip():
            continue
        try:
            row = parse_ecommerce_line(text, path, number)
        except FormatError as exc:
            yield exc
            continue
        if row.label == 1:
            yield _nonempty(path, number, row.turns[-1], row.response)


def _read_chatterbot(path: Path) -> Iterator[Row | FormatError]:
    """ChatterBot corpus YAML: each turn of a conversation answers the one before it."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        yield FormatError(path, (mark.line + 1) if mark else 0, f"invalid YAML: {exc}")
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
        yield FormatError(path, 1, "expected a mapping with a 'conversations' list")
        return
    tags = tuple(str(c) for c in doc.get("categories") or [])
    lines = _conversation_lines(path)
    for index, convo in enumerate(doc["conversations"]):
        line = lines[index] if index < len(lines) else 0
        if not isinstance(convo, list) or len(convo) < 2:
            yield FormatError(path, line, "a conversation must be a list of 2+ turns")
            continue
        for q, a in zip(convo, convo[1:]):
            yield _nonempty(path, line, str(q), str(a), tags)


def _conversation_lines(path: Path) -> list[int]:
    """Line numbers where each conversation starts (for error messages)."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("- - ") or line.rstrip() == "- -":
            out.append(number)
    return out


_READERS: dict[Format, Callable[[Path], Iterable[Row | FormatError]]] = {
    Format.TSV: _read_tsv,
    Format.JSONL: _read_jsonl,
    Format.ECOMMERCE: _read_ecommerce,
    Format.CHATTERBOT: _read_chatterbot,
}


def write_pairs(pairs: Iterable[QAPair], out: TextIO, fmt: Format | str) -> int:
    """Write pairs as JSONL (with their phrasings) or TSV (tabs and newlines in text become
    spaces; TSV has no place for phrasings, so only the primary question is written);
    returns the count."""
    fmt = Format.parse(fmt) if isinstance(fmt, str) else fmt
    count = 0
    for p in pairs:
        if fmt is Format.JSONL:
            obj = {"id": p.id, "question": p.question, "phrasings": list(p.phrasings),
                   "answer": p.answer, "tags": list(p.tags)}
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        elif fmt is Format.TSV:
            out.write(f"{_one_line(p.question)}\t{_one_line(p.answer)}\n")
        else:
            raise ValueError(f"export supports tsv and jsonl, not {fmt.value}")
        count += 1
    return count


def _one_line(text: str) -> str:
    return " ".join(text.split())
