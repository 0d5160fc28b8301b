"""BM25 search over a knowledge base, following its live changes.

The index folder records the KB revision it reflects. On open, and before each query, the searcher
applies the KB's change log since that revision (a SELECT on an indexed column when nothing
changed), so add/edit/delete made by any process are searchable at once without a rebuild. Edits
go to the index's small delta segment; a background thread merges it once it grows past
``merge_every``.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from alime import __version__
from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.bm25 import BM25Index
from alime.text import TextPipeline
from alime.types import Hit

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class KBSearcher:
    """A Retriever over a KnowledgeBase's questions."""

    def __init__(
        self,
        kb: KnowledgeBase,
        pipeline: TextPipeline,
        index_dir: str | Path,
        config: RetrievalConfig | None = None,
    ) -> None:
        self.kb = kb
        self.pipeline = pipeline
        self.index_dir = Path(index_dir)
        self.config = config or RetrievalConfig()
        self._sync_lock = threading.Lock()
        self._merging = False
        self._index, self._revision = self._open()

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> tuple[BM25Index, int]:
        state_path = self.index_dir / STATE_FILE
        if state_path.is_file():
            try:
                state = json.loads(state_path.read_text())
                index = BM25Index.load(self.index_dir, mmap=True)
                if index.config != self.config.bm25:
                    raise ValueError("BM25 parameters changed")
                log.info("loaded index %s at KB revision %d", self.index_dir, state["kb_revision"])
                return index, int(state["kb_revision"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("rebuilding index %s: %s", self.index_dir, exc)
        return self.rebuild()

    def rebuild(self) -> tuple[BM25Index, int]:
        """Index every KB question from scratch and save the index."""
        started = time.perf_counter()
        revision = self.kb.revision()
        ids, docs = [], []
        for pair in self.kb.iter_pairs():
            ids.append(pair.id)
            docs.append(self.pipeline.index_terms(pair.question))
        index = BM25Index.build(docs, ids, self.config.bm25)
        self._index, self._revision = index, revision
        self.save()
        log.info("indexed %d questions in %.2fs", len(ids), time.perf_counter() - started)
        return index, revision

    def save(self) -> None:
        """Write the index atomically (a temporary folder renamed into place)."""
        tmp = self.index_dir.with_name(self.index_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        index, revision = self._index, self._revision
        index.save(tmp)
        state = {"kb_revision": revision, "alime_version": __version__, "kb": str(self.kb.path)}
        (tmp / STATE_FILE).write_text(json.dumps(state))
        old = self.index_dir.with_name(self.index_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.index_dir.exists():
            self.index_dir.rename(old)
        tmp.rename(self.index_dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- following the KB --------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._revision

    def sync(self) -> int:
        """Apply KB changes made since the index's revision; returns how many were applied."""
        if self.kb.revision() == self._revision:
            return 0
        with self._sync_lock:
            changes = self.kb.changes_since(self._revision)
            if not changes:
                return 0
            latest: dict[int, str] = {}
            for ch in changes:  # only the last change of each id matters
                latest[ch.qa_id] = ch.op
            live = self.kb.get_many([i for i, op in latest.items() if op != "delete"])
            index = self._index
            adds, updates, deletes = {}, {}, []
            for qa_id in latest:
                pair = live.get(qa_id)
                if pair is None:
                    if qa_id in index:
                        deletes.append(qa_id)
                elif qa_id in index:
                    updates[qa_id] = self.pipeline.index_terms(pair.question)
                else:
                    adds[qa_id] = self.pipeline.index_terms(pair.question)
            index.apply(adds=adds, updates=updates, deletes=deletes)  # one new snapshot
            self._revision = changes[-1].revision
            if index.pending_edits >= self.config.merge_every:
                self._merge_in_background()
            return len(changes)

    def _merge_in_background(self) -> None:
        if self._merging:
            return
        self._merging = True

        def run() -> None:
            try:
                with self._sync_lock:
                    self._index.merge()
                    self.save()
            except Exception:  # a failed merge leaves the delta in place; searching still works
                log.exception("background index merge failed")
            finally:
                self._merging = False

        threading.Thread(target=run, name="alime-index-merge", daemon=True).start()

    # -- searching ---------------------------------------------------------------------------
    def analyze(self, query: str) -> list[str]:
        return self.pipeline.query_terms(query)

    def search(self, query: str, k: int) -> list[Hit]:
        self.sync()
        return self._index.search(self.analyze(query), k)

    def search_terms(self, terms: list[str], k: int) -> list[Hit]:
        self.sync()
        return self._index.search(terms, k)

    def __len__(self) -> int:
        return len(self._index)
