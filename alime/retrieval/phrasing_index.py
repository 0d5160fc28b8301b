"""BM25 over every phrasing of a KB entry, scored per entry by its best phrasing.

A curated entry holds one question and several phrasings (``alime kb curate``; a reviewed FAQ
entry has 8-26). Indexed as ONE document (the union of their terms), the entry's length grows with
its phrasings and BM25's length normalization buries it: "什么时候发货" did not find the entry whose
question is exactly that among the top 60. Here each phrasing is its own BM25 document, and an
entry scores as its best phrasing, as a person matching the query against the entry's questions
would; the routing features take the same maximum (``alime.routing``).

Document ids pack the entry id and the phrasing's position: ``entry_id << PHRASING_BITS | i``,
so no mapping has to be stored; an entry may hold up to ``2**PHRASING_BITS`` questions and
entry ids stay below ``2**(63 - PHRASING_BITS)``. Everything else (live edits, merging, the
``.npy`` files) is :class:`~alime.retrieval.bm25.BM25Index`'s; a ``phrasings.json`` marker tells
an index of this layout from an older one-document-per-entry index, which is rebuilt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from alime.config import BM25Config
from alime.retrieval.bm25 import BM25Index, Snapshot
from alime.types import Hit

PHRASING_BITS = 7  # up to 128 questions per entry (the admin API allows 1 + 100)
MAX_QUESTIONS = 1 << PHRASING_BITS
MAX_ENTRY_ID = (1 << (63 - PHRASING_BITS)) - 1
MARKER_FILE = "phrasings.json"
FORMAT_VERSION = 1

# An entry's value: the index terms of each of its questions (primary first).
EntryTerms = Sequence[Sequence[str]]


def doc_id(entry_id: int, position: int) -> int:
    """The BM25 document id of an entry's ``position``-th question."""
    if not 0 < entry_id <= MAX_ENTRY_ID:
        raise ValueError(f"entry id {entry_id} is outside 1..{MAX_ENTRY_ID} (phrasing index)")
    if not 0 <= position < MAX_QUESTIONS:
        raise ValueError(f"an entry may have at most {MAX_QUESTIONS} questions")
    return (entry_id << PHRASING_BITS) | position


def entry_of(doc: int) -> int:
    return doc >> PHRASING_BITS


class PhrasingIndex:
    """The KB searcher's index: entries in, entries out; phrasings are documents inside."""

    def __init__(self, inner: BM25Index, analyzer: str = "") -> None:
        self.inner = inner
        # which text analysis made the terms (the text pipeline's fingerprint; "" = unknown):
        # terms from another analysis would not match the queries' terms
        self.analyzer = analyzer
        self._questions: dict[int, int] = {}  # entry id -> how many documents it has
        snap = inner.snapshot
        for d in (*snap.main.ids.tolist(), *snap.delta):
            entry = entry_of(int(d))
            self._questions[entry] = self._questions.get(entry, 0) + 1

    @classmethod
    def build(
        cls,
        values: Sequence[EntryTerms],
        ids: Sequence[int],
        config: BM25Config | None = None,
        analyzer: str = "",
    ) -> PhrasingIndex:
        docs, doc_ids = [], []
        for entry, questions in zip(ids, values, strict=True):
            for i, terms in enumerate(questions):
                docs.append(list(terms))
                doc_ids.append(doc_id(int(entry), i))
        return cls(BM25Index.build(docs, doc_ids, config), analyzer)

    # -- what the KB searcher reads -----------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self.inner.snapshot

    @property
    def config(self) -> BM25Config:
        return self.inner.config

    def __len__(self) -> int:
        return len(self._questions)

    def __contains__(self, entry_id: int) -> bool:
        return int(entry_id) in self._questions

    @property
    def pending_edits(self) -> int:
        return self.inner.pending_edits

    def search(self, query_terms: Sequence[str], k: int = 10) -> list[Hit]:
        """The ``k`` best entries by their best phrasing's BM25 score, ties by ascending id.

        Documents are fetched in growing batches until ``k`` distinct entries are found or the
        index has no more positive hits, so the result equals the per-entry maximum over all
        documents (an entry's best document always ranks before its others).
        """
        if k <= 0:
            return []
        depth = 4 * k
        while True:
            hits = self.inner.search(query_terms, depth)
            best: dict[int, float] = {}
            for h in hits:  # best first: the first hit of an entry is its best phrasing
                best.setdefault(entry_of(h.id), h.score)
            if len(best) >= k or len(hits) < depth:
                break
            depth *= 4
        ranked = sorted(best.items(), key=lambda item: (-item[1], item[0]))[:k]
        return [Hit(entry, score) for entry, score in ranked]

    # -- edits ----------------------------------------------------------------------------------
    def apply(
        self,
        adds: Mapping[int, EntryTerms] | None = None,
        updates: Mapping[int, EntryTerms] | None = None,
        deletes: Iterable[int] = (),
    ) -> None:
        """Entry-level edits as one BM25 snapshot: an updated entry's old documents are removed
        and its new ones added (its number of phrasings may change)."""
        doc_adds: dict[int, Sequence[str]] = {}
        doc_deletes: list[int] = []
        counts = dict(self._questions)
        for entry in [*deletes, *(updates or {})]:
            entry = int(entry)
            doc_deletes.extend(doc_id(entry, i) for i in range(counts.pop(entry)))
        for entry, questions in {**(adds or {}), **(updates or {})}.items():
            entry = int(entry)
            if entry in counts:
                raise ValueError(f"entry {entry} is already indexed")
            for i, terms in enumerate(questions):
                doc_adds[doc_id(entry, i)] = terms
            counts[entry] = len(questions)
        # Removing and re-adding the same document id in one batch: BM25Index.apply removes
        # first, then adds, so pass re-used ids as updates.
        reused = {d for d in doc_deletes if d in doc_adds}
        self.inner.apply(
            adds={d: t for d, t in doc_adds.items() if d not in reused},
            updates={d: doc_adds[d] for d in reused},
            deletes=[d for d in doc_deletes if d not in reused],
        )
        self._questions = counts

    def merge(self) -> None:
        self.inner.merge()

    # -- files ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        self.inner.save(directory)
        marker = {
            "format": FORMAT_VERSION,
            "phrasing_bits": PHRASING_BITS,
            "analyzer": self.analyzer,
        }
        (Path(directory) / MARKER_FILE).write_text(json.dumps(marker), encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> PhrasingIndex:
        """Load what :meth:`save` wrote.

        Raises:
            ValueError: the folder holds another layout (an index with one document per
                entry, or another bit split): the caller rebuilds.
        """
        marker = Path(directory) / MARKER_FILE
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ValueError(f"{directory}: not a phrasing index (no {MARKER_FILE})") from None
        layout = {k: data.get(k) for k in ("format", "phrasing_bits")}
        if layout != {"format": FORMAT_VERSION, "phrasing_bits": PHRASING_BITS}:
            raise ValueError(f"{directory}: phrasing index layout {layout} is not this alime's")
        return cls(BM25Index.load(directory, mmap=mmap), str(data.get("analyzer", "")))
