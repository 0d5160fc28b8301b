"""What every KB-backed index shares: open or rebuild, atomic save, follow the change log.

The index folder records the KB revision it reflects. On open, and before each query, the
searcher applies the KB's change log since that revision (a SELECT on an indexed column when
nothing changed), so add/edit/delete made by any process are searchable at once without a
rebuild. Edits go to the index's small delta; a background thread merges it once it grows past
``merge_every``. Subclasses say how to load, build and feed their index.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alime import __version__
from alime.config import RetrievalConfig
from alime.kb.store import KnowledgeBase
from alime.types import QAPair

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class KBFollower:
    """Keeps an index (with ``apply``/``merge``/``save``/``pending_edits``) in step with a KB.

    Args:
        kb: The knowledge base to follow.
        index_dir: Where the index is saved.
        config: Retrieval settings (``merge_every`` is used here).
    """

    name = "index"  # for log lines

    def __init__(
        self, kb: KnowledgeBase, index_dir: str | Path, config: RetrievalConfig | None = None
    ) -> None:
        self.kb = kb
        self.index_dir = Path(index_dir)
        self.config = config or RetrievalConfig()
        self._sync_lock = threading.Lock()
        self._merging = False
        self._index, self._revision = self._open()

    # -- what subclasses provide ---------------------------------------------------------------
    def _load_index(self) -> Any:
        """Load the saved index; raise ValueError when it cannot serve (then it is rebuilt)."""
        raise NotImplementedError

    def _build_index(self, ids: list[int], pairs: Sequence[QAPair]) -> Any:
        raise NotImplementedError

    def _index_values(self, pairs: Sequence[QAPair]) -> list[Any]:
        """What the index stores per pair (terms, vectors...), in order."""
        raise NotImplementedError

    def _state(self) -> dict:
        """Extra fields for state.json."""
        return {}

    # -- opening and saving --------------------------------------------------------------------
    @contextmanager
    def _folder_lock(self) -> Iterator[None]:
        """An exclusive lock across processes: server workers started together must not build
        and save the same index at once (the second one waits, then loads the first's)."""
        self.index_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.index_dir.with_name(self.index_dir.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open(self) -> tuple[Any, int]:
        with self._folder_lock():
            return self._open_locked()

    def _open_locked(self) -> tuple[Any, int]:
        state_path = self.index_dir / STATE_FILE
        if state_path.is_file():
            try:
                state = json.loads(state_path.read_text())
                index = self._load_index()
                log.info("loaded %s %s at KB revision %d", self.name, self.index_dir,
                         state["kb_revision"])
                return index, int(state["kb_revision"])
            except (OSError, ValueError, KeyError) as exc:
                log.warning("rebuilding %s %s: %s", self.name, self.index_dir, exc)
        return self._rebuild_locked()

    def rebuild(self) -> tuple[Any, int]:
        """Index every KB question from scratch and save the index."""
        with self._folder_lock():
            return self._rebuild_locked()

    def _rebuild_locked(self) -> tuple[Any, int]:
        started = time.perf_counter()
        revision = self.kb.revision()
        pairs = list(self.kb.iter_pairs())
        index = self._build_index([p.id for p in pairs], pairs)
        self._index, self._revision = index, revision
        self._save_locked()
        log.info("%s: indexed %d questions in %.2fs", self.name, len(pairs),
                 time.perf_counter() - started)
        return index, revision

    def save(self) -> None:
        """Write the index atomically (a temporary folder renamed into place)."""
        with self._folder_lock():
            self._save_locked()

    def _save_locked(self) -> None:
        tmp = self.index_dir.with_name(f"{self.index_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        index, revision = self._index, self._revision
        index.save(tmp)
        state = {"kb_revision": revision, "alime_version": __version__, "kb": str(self.kb.path),
                 **self._state()}
        (tmp / STATE_FILE).write_text(json.dumps(state))
        old = self.index_dir.with_name(f"{self.index_dir.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        if self.index_dir.exists():
            self.index_dir.rename(old)
        tmp.rename(self.index_dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- following the KB ----------------------------------------------------------------------
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
            kept = [live[i] for i in latest if i in live]
            values = dict(zip([p.id for p in kept], self._index_values(kept), strict=True))
            adds, updates, deletes = {}, {}, []
            for qa_id in latest:
                if qa_id not in live:
                    if qa_id in index:
                        deletes.append(qa_id)
                elif qa_id in index:
                    updates[qa_id] = values[qa_id]
                else:
                    adds[qa_id] = values[qa_id]
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
                log.exception("background %s merge failed", self.name)
            finally:
                self._merging = False

        threading.Thread(target=run, name=f"alime-{self.name}-merge", daemon=True).start()

    def __len__(self) -> int:
        return len(self._index)
