"""The rules applied before retrieval: complaints, requests for a person, one order's status, and
meaningless input.

No score can say these: a complaint or "转人工" matches some FAQ entry as well as any question
does, and the FAQ's answer ("我帮您催下哦") is exactly the wrong reply. So each is a small pure
function over the query's compact form and a lexicon (``data/text/guards.toml``, written for
this project); ``Guards.check`` applies them in order and says which one matched and on what.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path

from alime.text import normalize
from alime.types import Rule, RuleMatch


def compact(text: str) -> str:
    """NFKC, lower case, and only letters and digits kept: the form every rule matches on
    (spaces, punctuation, emoji and variation selectors dropped, so "投 诉！" is "投诉")."""
    return "".join(ch for ch in normalize(text) if unicodedata.category(ch)[0] in "LN")


def _alternation(words: tuple[str, ...]) -> str:
    # Longest first, so 没有 wins over 没 and the reported evidence is the whole phrase.
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


_A_NOT_A = re.compile(r"(.)[不没]\1")


@dataclass(frozen=True)
class Negation:
    """Negation words, and the filler words allowed between one and the phrase it negates."""

    words: tuple[str, ...] = ()
    fillers: tuple[str, ...] = ()
    max_fillers: int = 3

    def __post_init__(self) -> None:
        pattern = None
        if self.words:
            fill = f"(?:{_alternation(self.fillers)})" if self.fillers else "(?!)"
            pattern = re.compile(f"(?:{_alternation(self.words)}){fill}{{0,{self.max_fillers}}}$")
        object.__setattr__(self, "_pattern", pattern)

    def negates(self, before: str) -> bool:
        """True when the compact text ``before`` a phrase ends with a negation (plus fillers).

        An A-not-A question is no negation: 有没有活人, 能不能转人工, 是不是骗子 ask about the
        phrase (the character before 不/没 repeats right after it)."""
        if self._pattern is None:
            return False
        match = self._pattern.search(before)
        if match is None:
            return False
        around = before[max(0, match.start() - 1) : match.start() + 2]
        return _A_NOT_A.match(around) is None


@dataclass(frozen=True)
class PhraseRule:
    """Phrases anywhere in the query (unless negated), or the whole query equal to an ``exact``
    entry; ``exceptions`` are masked first (垃圾袋 is a product, not a complaint)."""

    phrases: tuple[str, ...] = ()
    exact: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A lookahead finds overlapping matches too: in 不需要人工客服 the phrase 人工客服 (negated
        # by 不需要) must be seen, not only a phrase starting inside the negation.
        object.__setattr__(
            self,
            "_phrases",
            re.compile(f"(?=({_alternation(self.phrases)}))") if self.phrases else None,
        )
        object.__setattr__(
            self,
            "_exceptions",
            re.compile(_alternation(self.exceptions)) if self.exceptions else None,
        )


@dataclass(frozen=True)
class OrderLexicon:
    """What marks a question about one specific order (see ``data/text/guards.toml``)."""

    owners: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    sure_status: tuple[str, ...] = ()
    # Said before the item: 还没收到货, 一直没收到快递 (one parcel that has not arrived).
    not_received: tuple[str, ...] = ()
    number_words: tuple[str, ...] = ()
    max_gap: int = 8
    min_number_digits: int = 6
    bare_number_digits: int = 15

    def __post_init__(self) -> None:
        gap = f".{{0,{self.max_gap}}}?"
        patterns = []
        if self.owners and self.items and self.status:
            patterns.append(
                f"(?:{_alternation(self.owners)}){gap}(?:{_alternation(self.items)})"
                f"{gap}(?:{_alternation(self.status)})"
            )
        if self.items and self.sure_status:
            patterns.append(
                f"(?:{_alternation(self.items)}){gap}(?:{_alternation(self.sure_status)})"
            )
        if self.not_received and self.items:
            patterns.append(
                f"(?:{_alternation(self.not_received)}){gap}(?:{_alternation(self.items)})"
            )
        if self.number_words:
            words, digits = _alternation(self.number_words), self.min_number_digits
            # The number next to the word, either side: 订单123456 / 123456这个订单.
            patterns.append(f"(?:{words})[^0-9]{{0,3}}[0-9]{{{digits},}}")
            patterns.append(f"[0-9]{{{digits},}}[^0-9]{{0,3}}(?:{words})")
        object.__setattr__(self, "_patterns", tuple(re.compile(p) for p in patterns))
        object.__setattr__(self, "_bare", re.compile(f"[0-9]{{{self.bare_number_digits},}}"))


@dataclass(frozen=True)
class GibberishLexicon:
    """What makes Latin-only input keyboard mash (see ``data/text/guards.toml``)."""

    keyboard_rows: tuple[str, ...] = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
    min_keyboard_run: int = 4
    min_repeat: int = 3
    vowels: str = "aeiouy"
    min_vowelless: int = 5
    # Any script: one character typed again and again (啊啊啊啊, ？？？？ is punctuation anyway),
    # except laughter, which is small talk (哈哈哈哈).
    min_repeat_any: int = 4
    laughter: str = "哈呵嘿嘻"

    def __post_init__(self) -> None:
        runs = set()
        for row in self.keyboard_rows:
            for r in (row, row[::-1]):
                runs.update(
                    r[i : i + self.min_keyboard_run]
                    for i in range(len(r) - self.min_keyboard_run + 1)
                )
        object.__setattr__(self, "_runs", frozenset(runs))


@dataclass(frozen=True)
class Lexicon:
    """Every rule's word lists: ``load_lexicon(path)`` reads them from a TOML file."""

    negation: Negation = Negation()
    complaint: PhraseRule = PhraseRule()
    person: PhraseRule = PhraseRule()
    order_status: OrderLexicon = OrderLexicon()
    gibberish: GibberishLexicon = GibberishLexicon()


def load_lexicon(path: str | Path) -> Lexicon:
    """Read a lexicon file (the format of ``data/text/guards.toml``).

    Raises:
        ValueError: the file is missing or not TOML, or has an unknown table or key or a value
            of the wrong type (the message names the file and the key).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"lexicon file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: invalid TOML: {exc}") from None
    sections = {f.name: f.default for f in fields(Lexicon)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {unknown}; valid: {sorted(sections)}")
    return Lexicon(
        **{name: _section(path, name, data[name], type(sections[name])) for name in data}
    )


def _section(path: Path, name: str, data: object, cls: type):
    if not isinstance(data, dict):
        raise ValueError(f"{path}: [{name}] must be a table")
    defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown} in [{name}]; valid: {sorted(defaults)}")
    values = {}
    for key, value in data.items():
        default = defaults[key]
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValueError(f"{path}: {name}.{key} must be a list of non-empty strings")
            # Entries are compacted like the queries they are matched against.
            value = tuple(dict.fromkeys(c for c in (compact(v) for v in value) if c))
        elif isinstance(default, int):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{path}: {name}.{key} must be a non-negative integer")
        elif not isinstance(value, str):
            raise ValueError(f"{path}: {name}.{key} must be a string")
        values[key] = value
    return cls(**values)


def find_phrase(text: str, rule: PhraseRule, negation: Negation) -> str | None:
    """The first phrase of ``rule`` in the compact ``text`` that is not negated, or the whole
    text when it is one of the ``exact`` entries; None otherwise."""
    if rule._exceptions is not None:
        # Masked with a character no phrase contains, so 垃圾袋 cannot leave 垃圾 behind.
        text = rule._exceptions.sub(lambda m: "\x00" * len(m.group()), text)
    if text in rule.exact:
        return text
    if rule._phrases is None:
        return None
    for match in rule._phrases.finditer(text):
        if not negation.negates(text[: match.start()]):
            return match.group(1)
    return None


def complaint(text: str, lexicon: Lexicon) -> str | None:
    """The complaint phrase in the compact ``text`` (投诉, 差评, 12315 ...), if any."""
    return find_phrase(text, lexicon.complaint, lexicon.negation)


def person(text: str, lexicon: Lexicon) -> str | None:
    """The request for a person in the compact ``text`` (转人工, 找你们老板 ...), if any."""
    return find_phrase(text, lexicon.person, lexicon.negation)


def order_status(text: str, lexicon: Lexicon) -> str | None:
    """The part of the compact ``text`` that asks about one specific order, if any."""
    order = lexicon.order_status
    for pattern in order._patterns:
        match = pattern.search(text)
        if match:
            return match.group()
    if text.isdigit() and order._bare.fullmatch(text):
        return text
    return None


class Gibberish:
    """The kinds of meaningless input ``gibberish`` reports."""

    EMPTY = "empty"  # nothing but spaces or control characters
    PUNCTUATION = "punctuation"  # only punctuation or symbols
    EMOJI = "emoji"  # only emoji (and punctuation)
    DIGITS = "digits"  # only digits
    KEYBOARD = "keyboard"  # Latin letters that are all keyboard mash
    REPEATED = "repeated"  # one non-Latin letter typed min_repeat_any times or more (啊啊啊啊)


def gibberish(query: str, lexicon: Lexicon) -> str | None:
    """The kind of meaningless input ``query`` is (a ``Gibberish`` value), or None.

    One character typed over and over is meaningless in any script (啊啊啊啊; laughter such as
    哈哈哈哈 is small talk and passes). Otherwise any CJK (or other non-Latin) letter makes a query
    meaningful: 包邮吗, 在吗 and 发sf吗 pass however short they are. Only queries without one
    are judged, and only as a whole: ``ok``, ``hello``, ``iphone 13`` pass; ``asdfgh``,
    ``jjjjj``, ``😂😂😂``, ``？？？``, ``123`` do not.
    """
    text = normalize(query)
    categories = [unicodedata.category(ch) for ch in text if not ch.isspace()]
    if not categories:
        return Gibberish.EMPTY
    letters = [ch for ch in text if unicodedata.category(ch)[0] == "L"]
    if any(not ("a" <= ch <= "z") for ch in letters):
        # CJK, kana, hangul, accented Latin ...: words, whatever else is there, unless one
        # character is all there is, typed again and again (Latin repeats are keyboard mash)
        key, rules = compact(text), lexicon.gibberish
        if len(key) >= rules.min_repeat_any and len(set(key)) == 1 and key[0] not in rules.laughter:
            return Gibberish.REPEATED
        return None
    if not letters:
        if any(c[0] == "N" for c in categories):
            return Gibberish.DIGITS
        return Gibberish.EMOJI if any(c == "So" for c in categories) else Gibberish.PUNCTUATION
    words = re.findall(r"[a-z]+", text)
    if all(is_keyboard_mash(w, lexicon.gibberish) for w in words):
        return Gibberish.KEYBOARD
    return None


def is_keyboard_mash(word: str, lexicon: GibberishLexicon) -> bool:
    """True for a lower-case Latin word that is mash: a run along a keyboard row (asdf), one
    letter repeated (jjj), or a long word with no vowel (sdfkh)."""
    n = lexicon.min_keyboard_run
    if any(word[i : i + n] in lexicon._runs for i in range(len(word) - n + 1)):
        return True
    if len(word) >= lexicon.min_repeat and len(set(word)) == 1:
        return True
    return len(word) >= lexicon.min_vowelless and not any(ch in lexicon.vowels for ch in word)


@dataclass(frozen=True)
class GuardReplies:
    """What each rule answers (``[guards]`` in the configuration)."""

    complaint: str
    person: str
    order_status: str
    rephrase: str


class Guards:
    """The engine's ``Guard``: complaint, person, order_status, gibberish, in that order.

    A complaint wins over a request for a person (both hand off, but the complaint is the one
    to record), both over an order's status; gibberish comes last, so 12315 is a complaint and
    not digits.
    """

    def __init__(self, lexicon: Lexicon, replies: GuardReplies) -> None:
        self.lexicon = lexicon
        self.replies = replies

    def check(self, query: str) -> RuleMatch | None:
        text = compact(query)
        handoffs = (
            (Rule.COMPLAINT, complaint, self.replies.complaint),
            (Rule.PERSON, person, self.replies.person),
            (Rule.ORDER_STATUS, order_status, self.replies.order_status),
        )
        for rule, find, answer in handoffs:
            evidence = find(text, self.lexicon)
            if evidence is not None:
                return RuleMatch(rule, answer, True, evidence)
        kind = gibberish(query, self.lexicon)
        if kind is not None:
            return RuleMatch(Rule.GIBBERISH, self.replies.rephrase, False, kind)
        return None
