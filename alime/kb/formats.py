"""Import and export formats for the knowledge base.

Readers parse the whole input before anything is written, so a malformed row either stops the
import with its file and line (nothing half-imported) or, when asked, is skipped and counted.

Input is untrusted (``alime kb import`` files, ``POST /api/kb/import`` contents), so every reader
is bounded by ``KBConfig``: a line longer than ``max_line_bytes`` is refused before it is read
whole, a question or answer longer than ``max_field_chars`` before it is stored, a JSONL line or
YAML document nested deeper than ``max_depth`` before it is built; YAML aliases are refused (a
404-byte file of nested aliases expands to a 72M-character question); invalid UTF-8 is reported
with its 1-based line and the byte within that line; text that cannot be stored (lone surrogates,
which only JSON or YAML escapes can produce) is refused with its position.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO, TextIO

from alime.config import KBConfig
from alime.types import QAPair
from pluto.choices import parse_choice


class Format(str, Enum):
    TSV = "tsv"
    JSONL = "jsonl"
    ECOMMERCE = "ecommerce"
    CHATTERBOT = "chatterbot"

    @classmethod
    def parse(cls, name: str) -> Format:
        """The format named ``name`` (``pluto.choices.parse_choice``)."""
        return parse_choice(cls, name, "format")


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


# -- untrusted text and JSON --------------------------------------------------------------------
# Surrogate code points cannot be encoded as UTF-8, so SQLite (and any file writer) fails on
# them. Python strings get them from JSON escapes ("\ud800") or from command-line bytes that
# are not UTF-8 (decoded with surrogateescape).
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> int | None:
    """The index of the first surrogate code point in ``text``, or None when there is none."""
    match = _SURROGATE.search(text)
    return None if match is None else match.start()


def surrogate_problem(text: str) -> str | None:
    """``"contains a lone surrogate U+D800 at character N"`` (1-based), or None for clean text."""
    index = lone_surrogate(text)
    if index is None:
        return None
    where = f"character {index + 1}"
    if "\n" in text:
        line = text.count("\n", 0, index) + 1
        column = index - text.rfind("\n", 0, index)
        where += f" (line {line}, character {column})"
    return f"contains a lone surrogate U+{ord(text[index]):04X} at {where}"


class NestingError(ValueError):
    """A JSON or YAML document nested deeper than allowed."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def load_json(text: str | bytes, max_depth: int) -> object:
    """``json.loads`` that refuses documents nested deeper than ``max_depth`` containers.

    The standard parser recurses once per level and raises RecursionError (not ValueError)
    near 1,000 levels; that, and anything deeper than ``max_depth``, becomes a NestingError.

    Raises:
        NestingError: too deep.
        ValueError: not JSON (``json.JSONDecodeError``) or, for bytes, not decodable.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise NestingError(max_depth) from None
    if json_depth(value) > max_depth:
        raise NestingError(max_depth)
    return value


def json_depth(value: object) -> int:
    """How many containers (objects, lists) are nested in a parsed JSON value (0 for a scalar)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:  # iterative: the value may be as deep as the parser allowed
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in item)
    return deepest


# -- parsing ------------------------------------------------------------------------------------
def read_rows(
    path: str | Path, fmt: Format | str, skip_bad: bool = False, limits: KBConfig | None = None
) -> ParseResult:
    """Parse a whole file. Raises FormatError on the first bad row unless ``skip_bad``.

    Args:
        path: the file.
        fmt: its format.
        skip_bad: collect bad rows in ``ParseResult.skipped`` instead of raising.
        limits: line, field and nesting limits (default: ``KBConfig()``).
    """
    fmt = Format.parse(fmt) if isinstance(fmt, str) else fmt
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with path.open("rb") as stream:
        return _parse(stream, str(path), fmt, skip_bad, limits or KBConfig())


def parse_content(
    content: str,
    fmt: Format | str,
    skip_bad: bool = False,
    limits: KBConfig | None = None,
    name: str = "<content>",
) -> ParseResult:
    """Parse a whole file's text held in memory (the admin API's import); as ``read_rows``.

    Raises:
        FormatError: the first bad row (unless ``skip_bad``), or a lone surrogate anywhere (the
            text cannot be encoded, so no line of it is read).
    """
    fmt = Format.parse(fmt) if isinstance(fmt, str) else fmt
    index = lone_surrogate(content)
    if index is not None:
        line = content.count("\n", 0, index) + 1
        start, end = content.rfind("\n", 0, index) + 1, content.find("\n", index)
        problem = surrogate_problem(content[start : None if end < 0 else end])
        raise FormatError(name, line, f"the line {problem}")
    return _parse(io.BytesIO(content.encode("utf-8")), name, fmt, skip_bad, limits or KBConfig())


def _parse(
    stream: BinaryIO, name: str, fmt: Format, skip_bad: bool, limits: KBConfig
) -> ParseResult:
    result = ParseResult()
    for item in _READERS[fmt](stream, name, limits):
        if isinstance(item, FormatError):
            if not skip_bad:
                raise item
            result.skipped.append(item)
        else:
            result.rows.append(item)
    return result


def _lines(
    stream: BinaryIO, name: str, max_line_bytes: int | None
) -> Iterator[tuple[int, str | FormatError]]:
    """(1-based line number, text without its line ending, or the line's FormatError).

    Lines are read as bytes and decoded one by one, so an invalid UTF-8 byte is reported on its
    own line (with its 1-based byte position in that line) and the lines after it still parse.
    A line longer than ``max_line_bytes`` is never held whole: its rest is read and dropped in
    bounded chunks.
    """
    number = 0
    while True:
        raw = stream.readline() if max_line_bytes is None else stream.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        if max_line_bytes is not None and len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            while True:
                rest = stream.readline(1 << 16)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, FormatError(name, number, f"line is longer than {max_line_bytes} bytes")
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, FormatError(name, number, _utf8_problem(exc, exc.start + 1))
            continue
        yield number, text.rstrip("\r\n")


def _utf8_problem(exc: UnicodeDecodeError, byte_in_line: int) -> str:
    bad = exc.object[exc.start]
    return f"not UTF-8 text ({exc.reason}: byte 0x{bad:02x} at byte {byte_in_line} of the line)"


def _row(
    name: str, line: int, question: str, answer: str, limits: KBConfig, tags=(), phrasings=()
) -> Row | FormatError:
    """A checked row: non-empty, storable text within ``limits.max_field_chars``; each phrasing
    kept once, never the primary question itself (as the store keeps them)."""
    question, answer = question.strip(), answer.strip()
    phrasings = [p.strip() for p in phrasings]
    fields = [("question", question), ("answer", answer), *(("phrasing", p) for p in phrasings)]
    for label, text in fields:
        if not text:
            return FormatError(name, line, f"empty {label}")
        if len(text) > limits.max_field_chars:
            limit = limits.max_field_chars
            return FormatError(name, line, f"{label} is longer than {limit} characters")
        problem = surrogate_problem(text)
        if problem:
            return FormatError(name, line, f"{label} {problem}")
    for tag in tags:
        problem = surrogate_problem(tag)
        if problem:
            return FormatError(name, line, f"tag {problem}")
    kept = tuple(dict.fromkeys(p for p in phrasings if p != question))
    return Row(line, question, answer, tuple(tags), kept)


def _read_tsv(stream: BinaryIO, name: str, limits: KBConfig) -> Iterator[Row | FormatError]:
    for number, line in _lines(stream, name, limits.max_line_bytes):
        if isinstance(line, FormatError):
            yield line
            continue
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            found = f"found {len(parts)} field(s)"
            yield FormatError(name, number, f"expected 'question<TAB>answer', {found}")
            continue
        yield _row(name, number, parts[0], parts[1], limits)


def _read_jsonl(stream: BinaryIO, name: str, limits: KBConfig) -> Iterator[Row | FormatError]:
    for number, line in _lines(stream, name, limits.max_line_bytes):
        if isinstance(line, FormatError):
            yield line
            continue
        if not line.strip():
            continue
        try:
            obj = load_json(line, limits.max_depth)
        except NestingError as exc:
            yield FormatError(name, number, f"JSON {exc}")
            continue
        except json.JSONDecodeError as exc:
            yield FormatError(name, number, f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict):
            yield FormatError(name, number, "expected a JSON object")
            continue
        question, answer, tags = obj.get("question"), obj.get("answer"), obj.get("tags", [])
        phrasings = obj.get("phrasings", [])
        if not isinstance(question, str) or not isinstance(answer, str):
            yield FormatError(name, number, "'question' and 'answer' must be strings")
            continue
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            yield FormatError(name, number, "'tags' must be a list of strings")
            continue
        if not isinstance(phrasings, list) or not all(isinstance(p, str) for p in phrasings):
            yield FormatError(name, number, "'phrasings' must be a list of strings")
            continue
        yield _row(name, number, question, answer, limits, tags, phrasings)


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
        raise FormatError(
            path, line, f"expected 'label \\t turns... \\t response', got {len(fields)} field(s)"
        )
    if fields[0] not in ("0", "1"):
        raise FormatError(path, line, f"label must be 0 or 1, got {fields[0]!r}")
    if any(not f.strip() for f in fields[1:]):
        raise FormatError(path, line, "empty turn or response")
    return EcommerceRow(int(fields[0]), tuple(fields[1:-1]), fields[-1], line)


def iter_ecommerce(path: str | Path) -> Iterator[EcommerceRow]:
    """Every non-blank row of an E-commerce-format file; stops at the first malformed one.

    Training and evaluation read their corpora through here, with no line-length limit.
    """
    path = Path(path)
    with path.open("rb") as stream:
        for number, text in _lines(stream, str(path), None):
            if isinstance(text, FormatError):
                raise text
            if text.strip():
                yield parse_ecommerce_line(text, path, number)


def _read_ecommerce(stream: BinaryIO, name: str, limits: KBConfig) -> Iterator[Row | FormatError]:
    """``label \\t turns... \\t response``: label-1 lines become (last turn, response) pairs."""
    for number, text in _lines(stream, name, limits.max_line_bytes):
        if isinstance(text, FormatError):
            yield text
            continue
        if not text.strip():
            continue
        try:
            row = parse_ecommerce_line(text, name, number)
        except FormatError as exc:
            yield exc
            continue
        if row.label == 1:
            yield _row(name, number, row.turns[-1], row.response, limits)


def _read_chatterbot(stream: BinaryIO, name: str, limits: KBConfig) -> Iterator[Row | FormatError]:
    """ChatterBot corpus YAML: each turn of a conversation answers the one before it.

    The document is parsed whole, so a problem with it (a line over the limit, invalid UTF-8 or
    YAML, an alias, too deep nesting) is one error for the whole file, even with ``skip_bad``.
    """
    import yaml

    data = stream.read()
    for number, raw in enumerate(data.split(b"\n"), 1):
        if len(raw) > limits.max_line_bytes:
            yield FormatError(name, number, f"line is longer than {limits.max_line_bytes} bytes")
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        yield FormatError(name, line, _utf8_problem(exc, exc.start - line_start + 1))
        return
    loader = _chatterbot_loader()(text)
    loader.max_depth = limits.max_depth
    try:
        doc = loader.get_single_data()
    except _YAMLRefused as exc:
        yield FormatError(name, exc.problem_mark.line + 1, exc.problem)
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        yield FormatError(name, (mark.line + 1) if mark else 1, f"invalid YAML: {exc}")
        return
    finally:
        loader.dispose()
    if not isinstance(doc, dict) or not isinstance(doc.get("conversations"), list):
        yield FormatError(name, 1, "expected a mapping with a 'conversations' list")
        return
    categories = doc.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, _SCALARS) for c in categories):
        yield FormatError(name, 1, "'categories' must be a list of names")
        return
    tags = tuple(str(c) for c in categories)
    lines = _conversation_lines(text)
    for index, convo in enumerate(doc["conversations"]):
        line = lines[index] if index < len(lines) else 1
        if not isinstance(convo, list) or len(convo) < 2:
            yield FormatError(name, line, "a conversation must be a list of 2+ turns")
            continue
        if not all(isinstance(turn, _SCALARS) for turn in convo):
            # str() of a nested list or mapping would store Python's repr as a question.
            yield FormatError(name, line, "every turn of a conversation must be text")
            continue
        for q, a in zip(convo, convo[1:], strict=False):
            yield _row(name, line, str(q), str(a), limits, tags)


_SCALARS = (str, int, float)  # YAML scalars that read as text (a turn `- 2` is the text "2")


@functools.cache
def _chatterbot_loader() -> type:
    """PyYAML's safe loader without aliases and with a bound on nesting.

    An alias re-uses an anchored node, so a few hundred bytes of nested aliases expand tenfold
    per level (issue 12: a 404-byte file gave a 72M-character question); ChatterBot corpora never
    need one. The composer recurses once per nesting level, so depth is bounded too.
    """
    import yaml
    from yaml.events import AliasEvent, MappingStartEvent, SequenceStartEvent

    class Loader(yaml.SafeLoader):
        max_depth = KBConfig().max_depth
        _depth = 0

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, AliasEvent):
                problem = f"YAML aliases are not allowed (*{event.anchor}): write the text out"
                raise _YAMLRefused(problem, event.start_mark)
            container = isinstance(event, (SequenceStartEvent, MappingStartEvent))
            if container:
                self._depth += 1
                if self._depth > self.max_depth:
                    problem = f"YAML nested deeper than {self.max_depth} levels"
                    raise _YAMLRefused(problem, event.start_mark)
            try:
                return super().compose_node(parent, index)
            finally:
                if container:
                    self._depth -= 1

    return Loader


class _YAMLRefused(Exception):
    """A YAML construct the ChatterBot reader refuses, with where it starts."""

    def __init__(self, problem: str, problem_mark) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = problem_mark


def _conversation_lines(text: str) -> list[int]:
    """Line numbers where each conversation starts (for error messages)."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("- - ") or line.rstrip() == "- -":
            out.append(number)
    return out


_READERS: dict[Format, Callable[[BinaryIO, str, KBConfig], Iterable[Row | FormatError]]] = {
    Format.TSV: _read_tsv,
    Format.JSONL: _read_jsonl,
    Format.ECOMMERCE: _read_ecommerce,
    Format.CHATTERBOT: _read_chatterbot,
}

# Spreadsheets run a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def write_pairs(
    pairs: Iterable[QAPair], out: TextIO, fmt: Format | str, raw_cells: bool = False
) -> int:
    """Write pairs as TSV or JSONL; returns the count.

    JSONL is written as stored, with the phrasings. TSV has no place for phrasings, so only the
    primary question is written; tabs and newlines in text become spaces, and a cell that a
    spreadsheet would run as a formula (it starts with =, +, -, @, tab or CR) gets a leading
    single quote, as OWASP recommends, unless ``raw_cells``. Importing such a file keeps the
    quote (imports never rewrite text): export with ``raw_cells`` or as JSONL to round-trip
    exactly.
    """
    fmt = Format.parse(fmt) if isinstance(fmt, str) else fmt
    cell = _one_line if raw_cells else _safe_cell
    count = 0
    for p in pairs:
        if fmt is Format.JSONL:
            obj = {
                "id": p.id,
                "question": p.question,
                "phrasings": list(p.phrasings),
                "answer": p.answer,
                "tags": list(p.tags),
            }
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        elif fmt is Format.TSV:
            out.write(f"{cell(p.question)}\t{cell(p.answer)}\n")
        else:
            raise ValueError(f"export supports tsv and jsonl, not {fmt.value}")
        count += 1
    return count


def neutralize_cell(text: str) -> str:
    """``text`` with a leading single quote when a spreadsheet would run it as a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _safe_cell(text: str) -> str:
    return neutralize_cell(_one_line(text))


def _one_line(text: str) -> str:
    return " ".join(text.split())
