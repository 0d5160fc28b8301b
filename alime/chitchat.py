"""The chit-chat KB: greetings, thanks and small talk, a second small KB beside the FAQ.

The FAQ is a shop's knowledge; "你好", "讲个笑话" or "今天天气怎么样" are not in it, and a
confident FAQ answer to them is wrong. The engine asks this KB when the FAQ does not answer: the
entry whose question best matches the query by character-overlap F1 (``alime.routing``'s, over
the compact text), used when that F1 reaches the chit-chat threshold. A query that *is* one of
its questions (equal keys) is small talk whatever the FAQ scores (收到, 你多大了 and 今天几号
share characters with FAQ questions), unless it is also word for word an FAQ question.

A few hundred entries: the match scans the questions sharing a character with the query (an
inverted index from characters to entries), skipping those whose length alone keeps them below
the best F1 so far; a few milliseconds at most.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from alime.guards import compact
from alime.kb.formats import Format, Row, read_rows
from alime.routing import char_overlap_f1
from alime.types import ChitChatMatch

# How a chit-chat file's format follows from its name; a folder means its *.yml files.
_FORMATS = {
    ".yml": Format.CHATTERBOT,
    ".yaml": Format.CHATTERBOT,
    ".jsonl": Format.JSONL,
    ".tsv": Format.TSV,
}


def read_chitchat(paths: Iterable[str | Path]) -> list[Row]:
    """The QA pairs of chit-chat files, in order: ChatterBot YAML (``.yml``), JSONL rows
    ``{"question", "answer"}`` (``.jsonl``, e.g. what ``alime kb curate`` moves out of the FAQ),
    TSV (``.tsv``); a folder stands for its ``*.yml`` files in name order.

    Raises:
        ValueError: a path that does not exist or has another suffix.
        FormatError: a malformed row (with its file and line).
    """
    rows: list[Row] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(path.glob("*.yml"))
        elif path.is_file():
            files = [path]
        else:
            raise ValueError(f"chit-chat file not found: {path}")
        for file in files:
            fmt = _FORMATS.get(file.suffix.lower())
            if fmt is None:
                raise ValueError(
                    f"{file}: unknown chit-chat format; valid suffixes: "
                    f"{', '.join(sorted(_FORMATS))}"
                )
            rows.extend(read_rows(file, fmt).rows)
    return rows


# Sentence particles: 你好呀, 你好啊 and 你好 are one greeting. Stripped from both sides of the
# match (unless nothing else is left: 哈哈 stays 哈哈).
PARTICLES = frozenset("啊呀呢吗嘛哦哈啦吧噢呐么")


def chitchat_key(text: str) -> str:
    """The compact text (letters and digits) without sentence particles."""
    key = compact(text)
    stripped = "".join(ch for ch in key if ch not in PARTICLES)
    return stripped or key


class ChitChatKB:
    """The engine's ``ChitChat`` stage over a list of (question, answer) pairs.

    Ties go to the earlier pair, so a file listed first (the shop's own small talk) wins over a
    generic corpus for the same question.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = [(q, a) for q, a in pairs]
        self._keys = [chitchat_key(q) for q, _ in self.pairs]
        self._by_char: dict[str, list[int]] = defaultdict(list)
        # The earliest entry per character multiset: F1 = 1 exactly for these, so a query that
        # has one is answered without the scan (the engine asks on every query, small talk first).
        self._first_full_match: dict[str, int] = {}
        self._first_equal: dict[str, int] = {}  # key -> its earliest entry, for exact()
        for i, key in enumerate(self._keys):
            self._first_full_match.setdefault("".join(sorted(key)), i)
            self._first_equal.setdefault(key, i)
            for ch in set(key):
                self._by_char[ch].append(i)

    def __len__(self) -> int:
        return len(self.pairs)

    def exact(self, query: str) -> ChitChatMatch | None:
        """The earliest entry whose question ``query`` asks word for word (equal keys), score
        1; None when there is none. A dictionary lookup: the engine asks it on every query."""
        i = self._first_equal.get(chitchat_key(query))
        if i is None:
            return None
        question, answer = self.pairs[i]
        return ChitChatMatch(question, answer, 1.0)

    def same(self, query: str, question: str) -> bool:
        """Equal keys (:func:`chitchat_key`): the same text up to punctuation, spaces and
        particles."""
        return chitchat_key(query) == chitchat_key(question)

    def best(self, query: str, minimum: float = 0.0) -> ChitChatMatch | None:
        """The best-matching pair and its F1 in [0, 1]; None when no question shares a
        character with the query. The engine passes its bar C as ``minimum``: a pair whose F1
        is below it would not be used, so pairs whose length alone keeps them below it are not
        scored (None when nothing can reach it), and with ``minimum`` >= 1 only an F1 = 1 match
        could be used, so no scan runs when there is none."""
        key = chitchat_key(query)
        full = self._first_full_match.get("".join(sorted(key))) if key else None
        if full is not None:  # F1 = 1, the best possible; the scan would keep the earliest too
            question, answer = self.pairs[full]
            return ChitChatMatch(question, answer, 1.0)
        if minimum >= 1.0:
            return None
        ids = sorted({i for ch in set(key) for i in self._by_char.get(ch, ())})
        best_i, best_f1 = -1, 0.0
        for i in ids:
            n, m = len(key), len(self._keys[i])
            bound = 2 * min(n, m) / (n + m)
            if bound <= best_f1 or bound < minimum:
                continue  # F1 <= 2 min(n, m) / (n + m): this one cannot beat the best or the bar
            f1 = char_overlap_f1(key, self._keys[i])
            if f1 > best_f1:
                best_i, best_f1 = i, f1
        if best_i < 0:
            return None
        question, answer = self.pairs[best_i]
        return ChitChatMatch(question, answer, best_f1)
