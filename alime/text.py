"""Text normalization and segmentation, shared by indexing, training and serving.

One implementation everywhere: ``normalize`` then ``tokenize``. Text that is already segmented
(tokens separated by spaces, as in the E-commerce corpus) goes through the same path: every
whitespace-separated chunk is segmented by jieba, so raw queries and pre-segmented KB text end up
with the same tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_WS = re.compile(r"\s+")
FINGERPRINT_VERSION = 1  # bump when tokenize's own logic changes the terms it produces
TOKEN_CACHE = 8192  # texts whose tokens a pipeline keeps
_PUNCT_CATEGORIES = ("P", "S")


def normalize(text: str, lowercase: bool = True) -> str:
    """NFKC (full-width to half-width), lower case, control characters dropped, whitespace
    folded."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        " " if ch.isspace() else ch for ch in text if ch.isspace() or not _is_control(ch)
    )
    if lowercase:
        text = text.lower()
    return _WS.sub(" ", text).strip()


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")


def is_punctuation(token: str) -> bool:
    """True when every character of ``token`` is punctuation or a symbol."""
    return all(unicodedata.category(ch)[0] in _PUNCT_CATEGORIES for ch in token)


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens for display: no space between CJK tokens, one space between Latin words."""
    out: list[str] = []
    for tok in tokens:
        if out and _needs_space(out[-1], tok):
            out.append(" ")
        out.append(tok)
    return "".join(out)


def _needs_space(prev: str, tok: str) -> bool:
    return prev[-1:].isascii() and prev[-1:].isalnum() and tok[:1].isascii() and tok[:1].isalnum()


def read_word_list(path: str | Path) -> list[str]:
    """One entry per line; blank lines and lines starting with '#' are ignored."""
    words = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            words.append(line)
    return words


def read_user_dict(path: str | Path) -> list[tuple[str, int | None, str | None]]:
    """jieba's user-dictionary format: ``word [freq] [tag]`` per line."""
    entries = []
    for line in read_word_list(path):
        parts = line.split()
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        tag = parts[-1] if len(parts) > 1 and not parts[-1].isdigit() else None
        entries.append((parts[0], freq, tag))
    return entries


def read_spellings(path: str | Path) -> dict[str, str]:
    """Each line is ``variant standard``: a colloquial or mistyped spelling and the word it
    stands for (咋 怎么, 木有 没有). Raises ValueError naming ``FILE:LINE`` for a malformed line."""
    table: dict[str, str] = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [normalize(w) for w in line.split()]
        if len(parts) != 2 or parts[0] == parts[1]:
            raise ValueError(f"{path}:{number}: expected 'variant standard', got {line!r}")
        table[parts[0]] = parts[1]
    return table


def read_synonyms(path: str | Path) -> dict[str, tuple[str, ...]]:
    """Each line is a group of interchangeable words separated by spaces."""
    table: dict[str, tuple[str, ...]] = {}
    for line in read_word_list(path):
        group = [normalize(w) for w in line.split()]
        for word in group:
            others = tuple(w for w in group if w != word)
            table[word] = tuple(dict.fromkeys(table.get(word, ()) + others))
    return table


_SEGMENTERS: dict[str | None, object] = {}
_SEGMENTERS_LOCK = threading.Lock()


def _shared_segmenter(user_dict: str | None):
    """One initialized jieba tokenizer per user dictionary, shared by the process (it is
    read-only once built, and building one costs about a second)."""
    with _SEGMENTERS_LOCK:
        seg = _SEGMENTERS.get(user_dict)
        if seg is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            seg = jieba.Tokenizer()
            seg.initialize()
            if user_dict:
                for word, freq, tag in read_user_dict(user_dict):
                    seg.add_word(word, freq, tag)
            _SEGMENTERS[user_dict] = seg
        return seg


@dataclass(frozen=True)
class TextConfig:
    """Where the text resources live. None means: not used."""

    user_dict: str | None = None
    stopwords: str | None = None
    synonyms: str | None = None
    spellings: str | None = None
    lowercase: bool = True

    def as_metadata(self) -> dict:
        """The settings for a model's training metadata: resource files inside this checkout
        recorded relative to it (``data/text/stopwords.txt``), so the record does not name the
        machine or worktree it was trained in."""
        root = Path(__file__).resolve().parent.parent
        out = dataclasses.asdict(self)
        for key in ("user_dict", "stopwords", "synonyms", "spellings"):
            if out[key]:
                path = Path(out[key]).resolve()
                out[key] = str(path.relative_to(root)) if path.is_relative_to(root) else out[key]
        return out


def _spelling_pattern(variants) -> str:
    """One regex for every variant spelling, longest first. A Latin one (pinyin initials such as
    xyk) matches only as a whole Latin word, so fp stands for 发票 but fps and ufp are left
    alone; the Latin ones share one bounded group (a bound on each variant took 1.5x as long)."""
    ordered = sorted(variants, key=len, reverse=True)
    latin = [re.escape(v) for v in ordered if v.isascii() and v.isalpha()]
    plain = [re.escape(v) for v in ordered if not (v.isascii() and v.isalpha())]
    if latin:
        plain.append(f"(?<![A-Za-z])(?:{'|'.join(latin)})(?![A-Za-z])")
    return "|".join(plain)


class TextPipeline:
    """Normalize, standardize variant spellings, jieba segmentation (+ stop words and synonyms
    for retrieval queries)."""

    def __init__(self, config: TextConfig | None = None) -> None:
        self.config = config or TextConfig()
        self._stopwords = (
            frozenset(normalize(w) for w in read_word_list(self.config.stopwords))
            if self.config.stopwords
            else frozenset()
        )
        self._synonyms = read_synonyms(self.config.synonyms) if self.config.synonyms else {}
        spellings = read_spellings(self.config.spellings) if self.config.spellings else {}
        # One pass, longest variant first, so 肿么 is replaced whole and a replacement is never
        # rewritten again.
        self._spellings = spellings
        self._spelling_re = re.compile(_spelling_pattern(spellings)) if spellings else None
        self._fingerprint = ""
        self._token_cache: dict[str, tuple[str, ...]] = {}
        self._jieba = None

    def standardize(self, text: str) -> str:
        """``normalize`` and then every variant spelling replaced by its standard word
        (``spellings`` file): 开封了咋存 -> 开封了怎么存. Shoppers type colloquial and mistyped
        words that the KB's questions spell out; both sides go through this, so the index,
        the query and the routing features compare the same forms."""
        text = normalize(text, self.config.lowercase)
        if self._spelling_re is None:
            return text
        return self._spelling_re.sub(lambda m: self._spellings[m.group(0)], text)

    def fingerprint(self) -> str:
        """A digest of everything that decides the terms: the settings and the resource files'
        contents. An index built under another fingerprint is rebuilt. Read once: the
        pipeline has read its files once too."""
        if self._fingerprint:
            return self._fingerprint
        digest = hashlib.sha256(repr((FINGERPRINT_VERSION, self.config.lowercase)).encode())
        for key in ("user_dict", "stopwords", "synonyms", "spellings"):
            path = getattr(self.config, key)
            digest.update(key.encode())
            digest.update(Path(path).read_bytes() if path else b"-")
        self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def _segmenter(self):
        if self._jieba is None:
            self._jieba = _shared_segmenter(self.config.user_dict)
        return self._jieba

    def tokenize(self, text: str) -> list[str]:
        """All tokens of ``text`` (punctuation kept): the model's view of the text."""
        return list(self._tokens(text))

    def _tokens(self, text: str) -> tuple[str, ...]:
        # Recent texts' tokens are kept (a query is segmented for retrieval and again for the
        # routing features; KB questions recur): jieba is the largest per-text cost.
        cached = self._token_cache.get(text)
        if cached is not None:
            return cached
        seg = self._segmenter()
        tokens: list[str] = []
        for chunk in self.standardize(text).split(" "):
            if chunk:
                tokens.extend(t for t in seg.lcut(chunk, HMM=False) if t.strip())
        result = tuple(tokens)
        cache = self._token_cache
        if len(cache) >= TOKEN_CACHE:
            cache = {}  # replaced, never cleared under another thread's reader
        cache[text] = result
        self._token_cache = cache
        return result

    def index_terms(self, text: str) -> list[str]:
        """Terms a KB question is indexed under: tokens without punctuation and stop words."""
        return [t for t in self._tokens(text) if not is_punctuation(t) and t not in self._stopwords]

    def synonyms_of(self, term: str) -> tuple[str, ...]:
        """The words interchangeable with ``term`` (``synonyms`` file; () when none)."""
        return self._synonyms.get(term, ())

    def query_terms(self, text: str) -> list[str]:
        """Terms a query searches for: the index terms plus their synonyms (each once)."""
        terms = self.index_terms(text)
        expanded = list(terms)
        for t in terms:
            expanded.extend(self._synonyms.get(t, ()))
        return list(dict.fromkeys(expanded))

    def tokenize_many(self, texts: Iterable[str]) -> list[list[str]]:
        return [self.tokenize(t) for t in texts]
