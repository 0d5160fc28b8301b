"""Dense search over a knowledge base, following its live changes (the dense twin of KBSearcher).

Before each query the KB's change log is applied (:class:`~alime.retrieval.following.KBFollower`):
new and edited questions are embedded into the index's delta, deleted ones tombstoned, so edits
are searchable at once; a background thread merges the delta past ``merge_every`` edits and
embeds bulk backlogs (``background_sync_above``) while queries keep using the current snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.dense import DenseIndex
from alime.retrieval.embeddings import Embedder
from alime.retrieval.following import KBFollower
from alime.types import Hit, QAPair


class DenseSearcher(KBFollower):
    """A Retriever over a KnowledgeBase's questions by embedding similarity.

    The index records the embedder identity; an index made by another model (or with other
    build parameters) is rebuilt on open rather than searched with incomparable vectors.

    Args:
        kb: The knowledge base to follow.
        embedder: Question embedder (its identity versions the index).
        index_dir: Where the index is saved.
        config: Retrieval settings (``dense`` and ``merge_every`` are used).
    """

    name = "dense index"

    def __init__(
        self,
        kb: KnowledgeBase,
        embedder: Embedder,
        index_dir: str | Path,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.embedder = embedder
        super().__init__(kb, index_dir, config)

    def _load_index(self) -> DenseIndex:
        return DenseIndex.load(self.index_dir, self.config.dense, self.embedder.identity)

    def _build_index(self, ids: list[int], pairs: Sequence[QAPair]) -> DenseIndex:
        vectors = np.asarray(self._index_values(pairs), np.float32).reshape(len(ids), -1)
        return DenseIndex.build(
            vectors,
            np.asarray(ids, np.int64),
            self.embedder.identity,
            self.config.dense,
            dim=self.embedder.dim,
        )

    def _index_values(self, pairs: Sequence[QAPair]) -> list[np.ndarray]:
        """One vector per entry: the re-normalized mean of its questions' unit vectors (the
        primary question's own vector when it has no phrasings), so the index keeps one row per
        entry and a query near any phrasing lands near the entry."""
        if not pairs:
            return []
        texts = [q for p in pairs for q in p.questions]
        vectors = np.asarray(self.embedder.embed(texts), np.float32)
        out, start = [], 0
        for p in pairs:
            block = vectors[start : start + len(p.questions)]
            start += len(p.questions)
            if len(block) == 1:
                out.append(block[0])
                continue
            mean = block.mean(axis=0)
            norm = float(np.linalg.norm(mean))
            out.append(mean / norm if norm > 0 else block[0])
        return out

    def _merge_in_background(self, index: DenseIndex) -> None:
        # One core: a k-means (IVF) or graph (HNSW) build on every core would take them from
        # the requests the server is answering meanwhile.
        index.merge(threads=1)

    def _state(self) -> dict:
        return {"model_identity": self.embedder.identity}

    @property
    def index(self) -> DenseIndex:
        return self._index

    def search(self, query: str, k: int) -> list[Hit]:
        self.sync()
        index = self._searchable()
        return [] if index is None else index.search(self.embedder.embed([query])[0], k)
