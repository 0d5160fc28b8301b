"""BM25 search over a knowledge base, following its live changes.

The index folder records the KB (id and revision) it reflects; :class:`~alime.retrieval.following.
KBFollower` applies the KB's change log before each query, so add/edit/delete made by any process
are searchable at once without a rebuild; bulk backlogs and merges are done by a background thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.following import STATE_FILE, KBFollower
from alime.retrieval.phrasing_index import PhrasingIndex
from alime.text import TextPipeline
from alime.types import Hit, QAPair

__all__ = ["STATE_FILE", "KBSearcher"]


class KBSearcher(KBFollower):
    """A Retriever over a KnowledgeBase's questions: each entry's primary question and its
    phrasings are BM25 documents, and an entry scores as its best one
    (:mod:`alime.retrieval.phrasing_index`)."""

    name = "BM25 index"

    def __init__(
        self,
        kb: KnowledgeBase,
        pipeline: TextPipeline,
        index_dir: str | Path,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.pipeline = pipeline
        super().__init__(kb, index_dir, config)

    def _load_index(self) -> PhrasingIndex:
        index = PhrasingIndex.load(self.index_dir, mmap=True)
        if index.config != self.config.bm25:
            raise ValueError("BM25 parameters changed")
        if index.analyzer != self.pipeline.fingerprint():
            raise ValueError("text analysis changed (user dictionary, stopwords, synonyms...)")
        return index

    def _build_index(self, ids: list[int], pairs: Sequence[QAPair]) -> PhrasingIndex:
        return PhrasingIndex.build(
            self._index_values(pairs), ids, self.config.bm25, self.pipeline.fingerprint()
        )

    def _index_values(self, pairs: Sequence[QAPair]) -> list[list[list[str]]]:
        """Per entry, the index terms of each of its questions (primary first): one BM25
        document each. One document of all of them would grow with the phrasings, and BM25's
        length normalization would bury the entries a shop curated most."""
        return [[self.pipeline.index_terms(q) for q in p.questions] for p in pairs]

    # -- searching ---------------------------------------------------------------------------
    def analyze(self, query: str) -> list[str]:
        return self.pipeline.query_terms(query)

    def search(self, query: str, k: int) -> list[Hit]:
        return self.search_terms(self.analyze(query), k)

    def idf(self, term: str) -> float:
        """The term's idf in the KB as it is now (0 for a term no question has)."""
        return self._index.snapshot.idf(term)

    def search_terms(self, terms: list[str], k: int) -> list[Hit]:
        self.sync()
        index = self._searchable()
        return [] if index is None else index.search(terms, k)
