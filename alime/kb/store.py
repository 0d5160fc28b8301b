"""QA pairs in an embedded SQLite database.

Every change bumps a revision number and is written to a change log in the same transaction, so a
search index that records the revision it reflects can catch up with exactly the changes it missed
(after a restart or a crash) without a full rebuild.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alime.types import QAPair

# 2: ``qa.phrasings`` (other ways to ask an entry's question, a JSON list), added in place to a
#    version-1 database by ``_migrate``.
# 3: the KB's identity for search indexes: ``meta.kb_id`` (a random id) and ``changes.tx`` (a
#    random token per write transaction; older rows keep NULL), added in place by ``_migrate``.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS qa (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    question TEXT NOT NULL CHECK (length(question) > 0),
    answer TEXT NOT NULL CHECK (length(answer) > 0),
    tags TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    phrasings TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('add', 'edit', 'delete')),
    qa_id INTEGER NOT NULL,
    tx TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# Named, not ``*``: a migrated database has its columns in the order they were added.
_COLUMNS = "id, question, answer, tags, created_at, updated_at, phrasings"

# One add_many row: (question, answer, tags) or (question, answer, tags, phrasings).
Row = tuple[str, str, tuple[str, ...]] | tuple[str, str, tuple[str, ...], tuple[str, ...]]


class NotFound(KeyError):
    """No QA pair with that id."""


@dataclass(frozen=True)
class Change:
    revision: int
    op: str  # 'add' | 'edit' | 'delete'
    qa_id: int
    tx: str | None = None  # the random token of the write transaction (None: older rows)


@dataclass(frozen=True)
class Identity:
    """Which history a KB is at (see :meth:`KnowledgeBase.identity`).

    Attributes:
        kb_id: The database's random id (made when it was created; copies and backups share it).
        revision: The latest change-log revision (0 for no change yet).
        tx: The write-transaction token of the change at the revision asked about (None when
            there is no such change, or it predates tokens).
    """

    kb_id: str
    revision: int
    tx: str | None


class KnowledgeBase:
    """A SQLite-backed store of QA pairs. Safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._conn().executescript(_SCHEMA)  # executescript manages its own transaction
        with self._tx() as db:
            _migrate(db, self.path)

    # -- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged change survives a crash
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- reads -------------------------------------------------------------------------------
    def get(self, qa_id: int) -> QAPair:
        row = self._conn().execute(f"SELECT {_COLUMNS} FROM qa WHERE id = ?", (qa_id,)).fetchone()
        if row is None:
            raise NotFound(qa_id)
        return _row_to_pair(row)

    def get_many(self, ids: Iterable[int]) -> dict[int, QAPair]:
        ids = list(ids)
        if not ids:
            return {}
        out: dict[int, QAPair] = {}
        conn = self._conn()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT {_COLUMNS} FROM qa WHERE id IN ({marks})", chunk):
                out[row[0]] = _row_to_pair(row)
        return out

    def iter_pairs(self, batch: int = 10_000) -> Iterator[QAPair]:
        """All pairs in id order, read in batches (one consistent read per batch)."""
        last = 0
        conn = self._conn()
        while True:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM qa WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _row_to_pair(row)
            last = rows[-1][0]

    def list(self, offset: int = 0, limit: int = 50) -> list[QAPair]:
        rows = (
            self._conn()
            .execute(f"SELECT {_COLUMNS} FROM qa ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
            .fetchall()
        )
        return [_row_to_pair(r) for r in rows]

    def count(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM qa").fetchone()[0]

    def revision(self) -> int:
        row = self._conn().execute("SELECT MAX(revision) FROM changes").fetchone()
        return row[0] or 0

    @property
    def kb_id(self) -> str:
        """The database's random id (made when it was created; copies and backups share it)."""
        return self.identity().kb_id

    def identity(self, at: int | None = None) -> Identity:
        """The KB's id, latest revision and the token of change ``at`` (default: the latest),
        in one read: what an index checks before each query.

        A database deleted and seeded anew has another id; a backup restored over the database
        keeps the id but goes back in revision, and once new writes take it past the revision an
        index saw, the token of that revision differs (each write transaction draws a new one).
        """
        row = (
            self._conn()
            .execute(
                "SELECT (SELECT value FROM meta WHERE key = 'kb_id'), "
                "(SELECT MAX(revision) FROM changes), "
                "(SELECT tx FROM changes WHERE revision = "
                "COALESCE(?, (SELECT MAX(revision) FROM changes)))",
                (at,),
            )
            .fetchone()
        )
        return Identity(row[0], row[1] or 0, row[2])

    def changes_since(self, revision: int) -> list[Change]:
        rows = (
            self._conn()
            .execute(
                "SELECT revision, op, qa_id, tx FROM changes WHERE revision > ? ORDER BY revision",
                (revision,),
            )
            .fetchall()
        )
        return [Change(*r) for r in rows]

    def stats(self) -> dict:
        conn = self._conn()
        n, q_chars, a_chars = conn.execute(
            "SELECT COUNT(*), COALESCE(AVG(length(question)),0), "
            "COALESCE(AVG(length(answer)),0) FROM qa"
        ).fetchone()
        distinct_answers = conn.execute("SELECT COUNT(DISTINCT answer) FROM qa").fetchone()[0]
        phrasings = conn.execute(
            "SELECT COALESCE(SUM(json_array_length(phrasings)), 0) FROM qa"
        ).fetchone()[0]
        return {
            "path": str(self.path),
            "pairs": n,
            "phrasings": phrasings,
            "distinct_answers": distinct_answers,
            "mean_question_chars": round(q_chars, 2),
            "mean_answer_chars": round(a_chars, 2),
            "revision": self.revision(),
            "file_bytes": self.path.stat().st_size if self.path.exists() else 0,
        }

    # -- writes ------------------------------------------------------------------------------
    def add(
        self, question: str, answer: str, tags: Iterable[str] = (), phrasings: Iterable[str] = ()
    ) -> QAPair:
        """Add one entry (see :meth:`add_many`)."""
        return self.add_many([(question, answer, tuple(tags), phrasings)])[0]

    def add_many(self, rows: Iterable[Row]) -> list[QAPair]:
        """Insert many entries in ONE transaction: all are stored, or none.

        Args:
            rows: ``(question, answer, tags)`` or ``(question, answer, tags, phrasings)``.

        Raises:
            ValueError: an empty question, answer or phrasing (nothing is stored).
        """
        now = time.time()
        added: list[QAPair] = []
        tx = _token()
        with self._tx() as db:
            for row in rows:
                question, answer, tags = row[0], row[1], tuple(row[2])
                _check_text(question, "question")
                _check_text(answer, "answer")
                phrasings = clean_phrasings(question, row[3] if len(row) > 3 else ())
                cur = db.execute(
                    "INSERT INTO qa (question, answer, tags, created_at, updated_at, phrasings) "
                    "VALUES (?,?,?,?,?,?)",
                    (question, answer, _json_list(tags), now, now, _json_list(phrasings)),
                )
                qa_id = cur.lastrowid
                db.execute("INSERT INTO changes (op, qa_id, tx) VALUES ('add', ?, ?)", (qa_id, tx))
                added.append(QAPair(qa_id, question, answer, tags, now, now, phrasings))
        return added

    def edit(
        self,
        qa_id: int,
        question: str | None = None,
        answer: str | None = None,
        tags: Iterable[str] | None = None,
        phrasings: Iterable[str] | None = None,
    ) -> QAPair:
        """Change the given fields of one entry (None keeps a field). A new primary question that
        was one of the phrasings leaves the phrasings (it is never both)."""
        with self._tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM qa WHERE id = ?", (qa_id,)).fetchone()
            if row is None:
                raise NotFound(qa_id)
            old = _row_to_pair(row)
            new_q = old.question if question is None else question
            new_a = old.answer if answer is None else answer
            new_tags = old.tags if tags is None else tuple(tags)
            _check_text(new_q, "question")
            _check_text(new_a, "answer")
            new_p = clean_phrasings(new_q, old.phrasings if phrasings is None else phrasings)
            now = time.time()
            db.execute(
                "UPDATE qa SET question=?, answer=?, tags=?, phrasings=?, updated_at=? WHERE id=?",
                (new_q, new_a, _json_list(new_tags), _json_list(new_p), now, qa_id),
            )
            db.execute(
                "INSERT INTO changes (op, qa_id, tx) VALUES ('edit', ?, ?)", (qa_id, _token())
            )
        return QAPair(qa_id, new_q, new_a, new_tags, old.created_at, now, new_p)

    def delete(self, qa_id: int) -> None:
        with self._tx() as db:
            cur = db.execute("DELETE FROM qa WHERE id = ?", (qa_id,))
            if cur.rowcount == 0:
                raise NotFound(qa_id)
            db.execute(
                "INSERT INTO changes (op, qa_id, tx) VALUES ('delete', ?, ?)", (qa_id, _token())
            )


def _token() -> str:
    """A random token for one write transaction (64 bits: collisions are not a concern)."""
    return uuid.uuid4().hex[:16]


def clean_phrasings(question: str, phrasings: Iterable[str]) -> tuple[str, ...]:
    """``phrasings`` stripped, each once, in order, without the primary ``question``.

    Raises:
        ValueError: ``phrasings`` is a string (a common slip for a one-item list) or holds
            something other than a non-empty string.
    """
    if isinstance(phrasings, str):
        raise ValueError("phrasings must be a list of strings, not a string")
    out: dict[str, None] = {}
    for p in phrasings:
        _check_text(p, "every phrasing")
        p = p.strip()
        if p != question.strip():
            out[p] = None
    return tuple(out)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring a database to SCHEMA_VERSION inside the caller's write transaction (so server
    workers opening an old file together migrate it once: the second sees the new version)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(row[0]) if row else SCHEMA_VERSION  # no row: created just now by _SCHEMA
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"{path}: KB schema version {version} is newer than this alime's "
            f"{SCHEMA_VERSION}; upgrade alime"
        )
    columns = {r[1] for r in db.execute("PRAGMA table_info(qa)")}
    if "phrasings" not in columns:  # version 1
        db.execute("ALTER TABLE qa ADD COLUMN phrasings TEXT NOT NULL DEFAULT '[]'")
    if "tx" not in {r[1] for r in db.execute("PRAGMA table_info(changes)")}:  # versions 1-2
        db.execute("ALTER TABLE changes ADD COLUMN tx TEXT")
    # A random id made with the database (or on first open by this version): an index records
    # it, so a database deleted and seeded anew is never taken for the old one.
    db.execute("INSERT OR IGNORE INTO meta VALUES ('kb_id', ?)", (uuid.uuid4().hex,))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _json_list(values: Iterable[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _check_text(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")


def _row_to_pair(row: tuple) -> QAPair:
    qa_id, question, answer, tags, created, updated, phrasings = row
    return QAPair(
        qa_id,
        question,
        answer,
        tuple(json.loads(tags)),
        created,
        updated,
        tuple(json.loads(phrasings)),
    )
