"""What every KB-backed index shares: open or rebuild, atomic save, follow the change log.

The index folder records the KB it reflects: the KB's random id, the change-log revision and the
token of the write transaction that made that revision (``state.json``). Before each query the
searcher compares them with the KB's (one SELECT on indexed keys), and applies the changes made
since, so add/edit/delete made by any process are searchable at once without a rebuild.

Three ways to catch up, chosen by the size of the backlog:

- **Small** (at most ``RetrievalConfig.background_sync_above`` changes, the normal admin edit):
  applied in the calling (request) thread, under the sync lock, so an acknowledged write is
  visible to the very next query.
- **Large** (a bulk import): never in a request thread. Queries keep answering from the current
  snapshot while ONE background thread (at low CPU priority) loads the saved index, brings it up
  to date, merges and saves it, applies the few changes made meanwhile and swaps it in with one
  reference assignment. Until then, the bulk's pairs (and edits made during the catch-up) are
  not yet searchable: "searchable once the background catch-up finishes".
- **The KB is another one** (its id changed: deleted and re-seeded) **or its history is not the
  index's** (its revision is behind the index's, or the change at the index's revision has another
  token: restored from a backup, then maybe written to): the index is rebuilt from the KB with a
  logged warning, never searched stale (its ids would name other pairs). Small KBs are rebuilt in
  the calling thread; large ones in the background, answering nothing meanwhile.

The same background thread merges the delta once it grows past ``merge_every`` edits. Server
workers share the index folder: a catch-up holds the folder lock, and a worker that finds a newer
index saved by another one loads it instead of repeating the work. Subclasses say how to load,
build and feed their index.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alime import __version__
from alime.config import RetrievalConfig
from alime.kb.store import Identity, KnowledgeBase
from alime.types import QAPair

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
# The background thread's nice increment: request threads and other processes go first.
BACKGROUND_NICE = 10
# The background thread indexes questions in chunks and, after each, sleeps this many times as
# long as the chunk took: it uses at most about 1 / (1 + BACKGROUND_PAUSE) of a core, leaving the
# rest (and the GIL) to requests; catching up takes that much longer.
BACKGROUND_PAUSE = 1.0
BACKGROUND_CHUNK = 2000


@dataclass(frozen=True)
class Live:
    """What queries search: an index and the KB (id, revision) it reflects, swapped as one.

    Attributes:
        index: The index (its content may run ahead of ``revision``; re-applying is harmless).
        revision: The KB change-log revision every change up to which the index holds.
        kb_id: The id of the KB it was built from.
        tx: The token of the KB change at ``revision`` (None for revision 0 or older rows).
        valid: False while a replaced KB is being indexed in the background (search nothing).
    """

    index: Any
    revision: int
    kb_id: str
    tx: str | None
    valid: bool = True

    def same_history(self, kb: Identity) -> bool:
        """True when ``kb`` (read with ``at=revision``) is the history this index follows."""
        return kb.kb_id == self.kb_id and kb.revision >= self.revision and kb.tx == self.tx


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class KBFollower:
    """Keeps an index (with ``apply``/``merge``/``save``/``pending_edits``) in step with a KB.

    Args:
        kb: The knowledge base to follow.
        index_dir: Where the index is saved.
        config: Retrieval settings (``merge_every`` and ``background_sync_above`` are used here).
    """

    name = "index"  # for log lines

    def __init__(
        self, kb: KnowledgeBase, index_dir: str | Path, config: RetrievalConfig | None = None
    ) -> None:
        self.kb = kb
        self.index_dir = Path(index_dir)
        self.config = config or RetrievalConfig()
        if self.config.background_sync_above < 0:
            raise ValueError(
                "retrieval.background_sync_above must be >= 0 (0: never in the background)"
            )
        self._sync_lock = threading.Lock()
        self._job: threading.Thread | None = None
        # The first sync after opening catches up in the calling thread whatever the backlog: a
        # CLI command or a server warm-up must not answer from an index it knows is behind.
        self._opened = False
        self._live = self._open()

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

    def _merge_in_background(self, index: Any) -> None:
        """Merge ``index``'s delta from the background thread (subclasses may use fewer cores)."""
        index.merge()

    # -- what subclasses search ----------------------------------------------------------------
    @property
    def _index(self) -> Any:
        return self._live.index

    def _searchable(self) -> Any | None:
        """The index to search now (call once per query), or None while there is none valid."""
        live = self._live
        return live.index if live.valid else None

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

    def _open(self) -> Live:
        with self._folder_lock():
            self._remove_stale_folders()
            return self._open_locked()

    def _remove_stale_folders(self) -> None:
        """Delete ``<index>.tmp-PID`` / ``<index>.old-PID`` folders left by dead processes (a save
        killed half-way); a live PID's folder may be a save in progress and is left alone."""
        for pattern in (f"{self.index_dir.name}.tmp-*", f"{self.index_dir.name}.old-*"):
            for folder in self.index_dir.parent.glob(pattern):
                pid = folder.name.rsplit("-", 1)[-1]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    log.info("removing %s (left by dead process %s)", folder, pid)
                    shutil.rmtree(folder, ignore_errors=True)

    def _read_state(self) -> dict | None:
        try:
            return json.loads((self.index_dir / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _open_locked(self) -> Live:
        state = self._read_state()
        if state is not None:
            try:
                saved_revision = int(state["kb_revision"])
                kb = self.kb.identity(at=saved_revision)
                if state.get("kb_id") != kb.kb_id:
                    raise ValueError(f"it indexes KB {state.get('kb_id')}, this KB is {kb.kb_id}")
                if saved_revision > kb.revision:
                    raise ValueError(
                        f"it is at KB revision {saved_revision}, the KB at "
                        f"{kb.revision}: the KB went backwards (restored?)"
                    )
                if state.get("kb_tx", "missing") != kb.tx:
                    raise ValueError(
                        f"the KB's change {saved_revision} is not the one it indexed: "
                        "the KB's history diverged (restored, then written to?)"
                    )
                index = self._load_index()
                log.info(
                    "loaded %s %s at KB revision %d", self.name, self.index_dir, saved_revision
                )
                return Live(index, saved_revision, kb.kb_id, kb.tx)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("rebuilding %s %s: %s", self.name, self.index_dir, exc)
        return self._rebuild_locked()

    def rebuild(self) -> Live:
        """Index every KB question from scratch, save the index and serve it."""
        with self._folder_lock():
            return self._rebuild_locked()

    def _rebuild_locked(self) -> Live:
        live = self._build_live()
        self._live = live
        self._save_locked(live)
        return live

    def _build_live(self) -> Live:
        started = time.perf_counter()
        # Identity first, pairs second: a change committed in between is in the pairs AND
        # re-applied by the next sync, which is harmless (see _apply_changes).
        kb = self.kb.identity()
        pairs = list(self.kb.iter_pairs())
        index = self._build_index([p.id for p in pairs], pairs)
        log.info(
            "%s: indexed %d questions in %.2fs",
            self.name,
            len(pairs),
            time.perf_counter() - started,
        )
        return Live(index, kb.revision, kb.kb_id, kb.tx)

    def save(self) -> None:
        """Write the index atomically (a temporary folder renamed into place)."""
        with self._folder_lock():
            self._save_locked(self._live)

    def _save_locked(self, live: Live) -> None:
        pid = os.getpid()
        tmp = self.index_dir.with_name(f"{self.index_dir.name}.tmp-{pid}")
        old = self.index_dir.with_name(f"{self.index_dir.name}.old-{pid}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        try:
            live.index.save(tmp)
            state = {
                "kb_revision": live.revision,
                "kb_id": live.kb_id,
                "kb_tx": live.tx,
                "alime_version": __version__,
                "kb": str(self.kb.path),
                **self._state(),
            }
            (tmp / STATE_FILE).write_text(json.dumps(state))
            if self.index_dir.exists():
                self.index_dir.rename(old)
            try:
                tmp.rename(self.index_dir)
            except BaseException:
                if old.exists() and not self.index_dir.exists():
                    old.rename(self.index_dir)  # put the previous index back
                raise
        finally:  # on success tmp is gone already; on failure nothing is left behind
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    # -- following the KB ----------------------------------------------------------------------
    @property
    def revision(self) -> int:
        return self._live.revision

    @property
    def catching_up(self) -> bool:
        """True while a background thread builds a caught-up (or merged) index."""
        job = self._job
        return job is not None and job.is_alive()

    def sync(self) -> int:
        """Catch up with the KB; returns how many changes were applied in this call.

        Small backlogs are applied here; a large one (or a merge) is left to one background
        thread and 0 is returned (see the module docstring).
        """
        live = self._live
        kb = self.kb.identity(at=live.revision)
        if live.valid and live.same_history(kb) and kb.revision == live.revision:
            self._opened = True
            return 0
        with self._sync_lock:
            first, self._opened = not self._opened, True
            live = self._live
            kb = self.kb.identity(at=live.revision)  # again: another thread may have caught up
            if not live.same_history(kb):
                return self._replaced_kb(live, kb, first)
            if not live.valid or kb.revision == live.revision:
                return 0  # an invalid index waits for its background rebuild
            limit = self.config.background_sync_above
            if not first and limit and kb.revision - live.revision > limit:
                self._start_job()
                return 0
            new = self._apply_changes(live)
            self._live = new
            if new.index.pending_edits >= self.config.merge_every:
                self._start_job()
            return new.revision - live.revision

    def _replaced_kb(self, live: Live, kb: Identity, first: bool) -> int:
        """The KB is not the history indexed (other id, revision behind, other change at the
        index's revision): rebuild, loudly."""
        if not live.valid and self.catching_up:
            return 0  # being rebuilt in the background (warned already); nothing is searched
        log.warning(
            "%s %s: the KB changed identity (id %s -> %s, revision %d -> %d, change "
            "token %s -> %s: replaced or restored from a backup); rebuilding the index",
            self.name,
            self.index_dir,
            live.kb_id,
            kb.kb_id,
            live.revision,
            kb.revision,
            live.tx,
            kb.tx,
        )
        limit = self.config.background_sync_above
        if not limit or first or self.kb.count() <= limit:
            self._live = self.rebuild()
            return self._live.revision
        # Too large to build in a request: answer nothing rather than other pairs' answers. A
        # merge already running notices the other KB when it comes to swap, and rebuilds.
        self._live = Live(live.index, live.revision, live.kb_id, live.tx, valid=False)
        self._start_job()
        return 0

    def _apply_changes(self, live: Live, background: bool = False) -> Live:
        """``live`` with the KB's changes since its revision applied to its index (in place).

        Idempotent: each changed id is added, updated or deleted according to whether the KB and
        the index hold it now, so an index whose content already runs ahead of its revision
        (a rebuild racing a write) ends up equal to the KB.
        With ``background``, questions are indexed in throttled chunks (``BACKGROUND_PAUSE``).
        """
        changes = self.kb.changes_since(live.revision)
        if not changes:
            return live
        latest: dict[int, str] = {}
        for ch in changes:  # only the last change of each id matters
            latest[ch.qa_id] = ch.op
        live_pairs = self.kb.get_many([i for i, op in latest.items() if op != "delete"])
        index = live.index
        kept = [live_pairs[i] for i in latest if i in live_pairs]
        values: dict[int, Any] = {}
        chunk = BACKGROUND_CHUNK if background else max(len(kept), 1)
        for start in range(0, len(kept), chunk):
            began = time.perf_counter()
            part = kept[start : start + chunk]
            values.update(zip([p.id for p in part], self._index_values(part), strict=True))
            if background:
                time.sleep((time.perf_counter() - began) * BACKGROUND_PAUSE)
        adds, updates, deletes = {}, {}, []
        for qa_id in latest:
            if qa_id not in live_pairs:
                if qa_id in index:
                    deletes.append(qa_id)
            elif qa_id in index:
                updates[qa_id] = values[qa_id]
            else:
                adds[qa_id] = values[qa_id]
        index.apply(adds=adds, updates=updates, deletes=deletes)  # one new snapshot
        return Live(index, changes[-1].revision, live.kb_id, changes[-1].tx)

    # -- the background thread -----------------------------------------------------------------
    def _start_job(self) -> None:
        """Start the background catch-up/merge thread unless it runs (call with the sync lock)."""
        if self.catching_up:
            return
        self._job = threading.Thread(
            target=self._run_job, name=f"alime-{self.name}-catch-up", daemon=True
        )
        self._job.start()

    def _run_job(self) -> None:
        try:
            # A thread's own nice value (Linux): request threads and other processes go first.
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except (OSError, AttributeError):
            pass
        started = time.perf_counter()
        try:
            for round_ in range(1, 1_000_000):
                fresh = self._caught_up_copy()
                # What may still be applied under the sync lock at the swap, where requests
                # wait for it: a merge's worth; after a few rounds (a steady stream of writes)
                # whatever the foreground would apply itself.
                limit = (
                    self.config.merge_every
                    if round_ < 3
                    else self.config.background_sync_above or float("inf")
                )
                with self._sync_lock:  # the few changes made meanwhile, then the swap
                    kb = self.kb.identity(at=fresh.revision)
                    if fresh.same_history(kb) and kb.revision - fresh.revision <= limit:
                        self._live = self._apply_changes(fresh)  # ONE reference assignment
                        break
                # more came meanwhile (or the KB was replaced): go round again
            log.info(
                "%s: background catch-up to KB revision %d done in %.2fs",
                self.name,
                self._live.revision,
                time.perf_counter() - started,
            )
        except Exception:  # the current index keeps serving; the next sync tries again
            log.exception("background %s catch-up failed", self.name)

    def _caught_up_copy(self) -> Live:
        """A new, merged and saved index at (about) the KB's revision, built off to the side from
        the saved one (never from the live objects, which requests keep using and editing)."""
        with self._folder_lock():
            live = self._load_saved()
            if live is None:  # no usable saved index, or another KB: index everything
                live = self._build_live()
            else:
                live = self._apply_changes(live, background=True)
                self._merge_in_background(live.index)
            self._save_locked(live)
            return live

    def _load_saved(self) -> Live | None:
        """The saved index (maybe saved by another worker, or by ``alime kb import``) when it
        follows this KB's history, else None."""
        state = self._read_state() or {}
        revision = state.get("kb_revision")
        if not isinstance(revision, int):
            return None
        kb = self.kb.identity(at=revision)
        if not Live(None, revision, state.get("kb_id"), state.get("kb_tx")).same_history(kb):
            return None
        try:
            return Live(self._load_index(), revision, kb.kb_id, kb.tx)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("cannot load %s %s: %s", self.name, self.index_dir, exc)
            return None

    def wait_caught_up(self, timeout: float | None = None) -> bool:
        """Block until no background catch-up runs; returns False on timeout (tests, benches)."""
        job = self._job
        if job is not None:
            job.join(timeout)
            return not job.is_alive()
        return True

    def __len__(self) -> int:
        return len(self._live.index)
