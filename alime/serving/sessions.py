"""Per-session conversation context, shared by every worker of a server (and by several servers).

One small interface, :class:`SessionStore`, and two stores behind it:

* :class:`SQLiteSessions`, the embedded default: one SQLite file in the state directory (WAL), safe
  from several processes and threads, for the workers of one machine.
* :class:`RedisSessions`: a Redis server, for several machines behind a load balancer.

Both keep at most ``capacity`` sessions (the least recently written go first), forget a session
idle for more than ``ttl_s`` seconds, keep at most ``max_turns`` turns per session, and never mix
two sessions. A session's clock is its last write: reading a session does not keep it alive.
Pick one with :func:`open_sessions` from ``[serve] sessions``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Protocol, runtime_checkable

from pluto.choices import parse_choice


class SessionsUnavailable(RuntimeError):
    """The session store cannot be reached (the server answers 503, not 500)."""


@runtime_checkable
class SessionStore(Protocol):
    """Recent turns per session id, oldest first."""

    def turns(self, session_id: str) -> list[str]:
        """The session's recent turns, oldest first (empty for an unknown or expired session)."""
        ...

    def append(self, session_id: str, *turns: str) -> None:
        """Add turns to the end of the session (creating it) and mark it as just used."""
        ...


class SessionBackend(Enum):
    SQLITE = "sqlite"
    REDIS = "redis"


def _check_bounds(capacity: int, ttl_s: float, max_turns: int) -> None:
    if capacity < 1 or max_turns < 1 or ttl_s <= 0:
        raise ValueError(
            f"session_capacity and max_context_turns must be >= 1 and session_ttl_s > 0 "
            f"(got {capacity}, {max_turns}, {ttl_s})"
        )


class SQLiteSessions:
    """Sessions in one SQLite file, shared by the processes and threads that open it.

    Each session is one row (its turns as a JSON list, its last-write time). Writes run in
    ``BEGIN IMMEDIATE`` transactions, so two workers appending to one session at once both land,
    in some order; WAL lets readers go on while one process writes.

    Args:
        path: The database file (created with its folder).
        capacity: Most sessions kept; writing a new one past it drops the least recently written.
        ttl_s: Seconds a session lives after its last write.
        max_turns: Most turns kept per session (the oldest are dropped).
        clock: Wall-clock seconds (time.time): it must agree between processes, so not monotonic.
    """

    def __init__(
        self,
        path: str | Path,
        capacity: int = 10_000,
        ttl_s: float = 1800.0,
        max_turns: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_bounds(capacity, ttl_s, max_turns)
        self.path = Path(path)
        self.capacity, self.ttl_s, self.max_turns = capacity, ttl_s, max_turns
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._swept_at = float("-inf")  # clock time of the last expiry sweep (this process)
        with self._lock:
            self._connection()  # create the file and table now: a bad path fails at start-up

    def _connection(self) -> sqlite3.Connection:
        # One connection per process, opened after any fork (a connection must not cross one);
        # the lock serializes this process's threads, SQLite's file locks the processes.
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: survives a process crash
            # seen: last-write wall-clock time (for the TTL); seq: write order (for the capacity
            # bound: two writes in one clock tick must still have an order).
            conn.execute(
                "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, seen REAL NOT NULL, "
                "seq INTEGER NOT NULL, turns TEXT NOT NULL)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS sessions_seen ON sessions (seen)")
            conn.execute("CREATE INDEX IF NOT EXISTS sessions_seq ON sessions (seq)")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def turns(self, session_id: str) -> list[str]:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT seen, turns FROM sessions WHERE id = ?", (session_id,))
                .fetchone()
            )
        if row is None or self._clock() - row[0] > self.ttl_s:
            return []
        return json.loads(row[1])

    def append(self, session_id: str, *turns: str) -> None:
        with self._lock:
            conn = self._connection()
            now = self._clock()
            conn.execute("BEGIN IMMEDIATE")  # take the write lock before reading: no lost update
            try:
                row = conn.execute(
                    "SELECT seen, turns FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                alive = row is not None and now - row[0] <= self.ttl_s
                history = (json.loads(row[1]) if alive else []) + list(turns)
                kept = json.dumps(history[-self.max_turns :], ensure_ascii=False)
                # The write order (seq) is taken in the same statement: one round trip less.
                conn.execute(
                    "INSERT INTO sessions (id, seen, seq, turns) VALUES "
                    "(?, ?, (SELECT coalesce(max(seq), 0) + 1 FROM sessions), ?) "
                    "ON CONFLICT (id) DO UPDATE SET "
                    "seen = excluded.seen, seq = excluded.seq, turns = excluded.turns",
                    (session_id, now, kept),
                )
                # Expired sessions go at most once per second of the clock (readers already skip
                # them, so this only bounds the file; an index range, usually empty, was one more
                # statement per turn); the capacity bound is checked only when a session was
                # added, the one write that can break it.
                if row is None or now - self._swept_at >= 1.0 or now < self._swept_at:
                    conn.execute("DELETE FROM sessions WHERE seen < ?", (now - self.ttl_s,))
                    self._swept_at = now
                if row is None:
                    conn.execute(
                        "DELETE FROM sessions WHERE id IN "
                        "(SELECT id FROM sessions ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                        (self.capacity,),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return (
                self._connection()
                .execute(
                    "SELECT count(*) FROM sessions WHERE seen >= ?", (self._clock() - self.ttl_s,)
                )
                .fetchone()[0]
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


# The whole append runs in Redis, atomically. Keys: the session's list (KEYS[1]), the recency index
# (KEYS[2], a sorted set of session ids scored by write order), the last-write times (KEYS[3], a
# hash) and the write counter (KEYS[4]). Steps: drop an expired history, push the turns, trim,
# mark the session as the most recent, drop expired sessions from the oldest end of the index and,
# past the capacity, the least recently written ones. Evicted sessions' keys are built from ARGV[5].
_APPEND_LUA = """
local key, index, seen_at, counter = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_turns, capacity = tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix, sid = ARGV[5], ARGV[6]
local function forget(old)
  redis.call('ZREM', index, old)
  redis.call('HDEL', seen_at, old)
  redis.call('DEL', prefix .. old)
end
local seen = redis.call('HGET', seen_at, sid)
if (not seen) or (now - tonumber(seen) > ttl) then
  redis.call('DEL', key)
end
for i = 7, #ARGV do
  redis.call('RPUSH', key, ARGV[i])
end
redis.call('LTRIM', key, -max_turns, -1)
redis.call('PEXPIRE', key, math.ceil(ttl * 1000))
redis.call('ZADD', index, redis.call('INCR', counter), sid)
redis.call('HSET', seen_at, sid, ARGV[1])
while true do
  local oldest = redis.call('ZRANGE', index, 0, 0)
  if #oldest == 0 then break end
  local t = redis.call('HGET', seen_at, oldest[1])
  if t and now - tonumber(t) <= ttl then break end
  forget(oldest[1])
end
local excess = redis.call('ZCARD', index) - capacity
if excess > 0 then
  local evicted = redis.call('ZRANGE', index, 0, excess - 1)
  for _, old in ipairs(evicted) do
    forget(old)
  end
end
return 0
"""


class RedisSessions:
    """Sessions in Redis, shared by every worker of every machine that points at it.

    A session is a list at ``prefix + "s:" + session_id``, with a Redis expiry of ``ttl_s`` so
    that Redis itself collects idle sessions. Beside the lists: ``prefix + "index"`` (a sorted
    set of session ids by write order: the capacity bound), ``prefix + "seen"`` (a hash of
    last-write times: the TTL follows ``clock`` exactly as in :class:`SQLiteSessions`) and
    ``prefix + "seq"`` (the write counter). An append is one Lua script, so it is atomic.

    Args:
        url: A redis-py URL (``redis://host:6379/0``, ``rediss://`` for TLS, ``unix://``).
        capacity: Most sessions kept.
        ttl_s: Seconds a session lives after its last write.
        max_turns: Most turns kept per session.
        prefix: Key prefix, so several bots (or tests) can share one Redis database.
        clock: Wall-clock seconds; machines behind one load balancer are assumed NTP-synchronized
            (skew of a second is nothing next to a TTL of minutes).
        timeout_s: Socket connect/read timeout: a dead Redis fails a request fast (503).
    """

    def __init__(
        self,
        url: str,
        capacity: int = 10_000,
        ttl_s: float = 1800.0,
        max_turns: int = 10,
        prefix: str = "alime:session:",
        clock: Callable[[], float] = time.time,
        timeout_s: float = 2.0,
    ) -> None:
        import redis  # only the Redis store needs the client

        _check_bounds(capacity, ttl_s, max_turns)
        self.capacity, self.ttl_s, self.max_turns, self.prefix = capacity, ttl_s, max_turns, prefix
        self._clock = clock
        self._errors = (redis.RedisError, OSError)
        # The client keeps a thread-safe connection pool; it is created lazily per process
        # (a pool must not be shared across a fork).
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._append = self._client.register_script(_APPEND_LUA)
        self._index, self._seen, self._seq = prefix + "index", prefix + "seen", prefix + "seq"

    def _key(self, session_id: str) -> str:
        return self.prefix + "s:" + session_id

    def turns(self, session_id: str) -> list[str]:
        key = self._key(session_id)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._seen, session_id)
            pipe.lrange(key, 0, -1)
            seen, turns = pipe.execute()
        except self._errors as exc:
            raise SessionsUnavailable(f"session store (redis) unavailable: {exc}") from exc
        if seen is None or self._clock() - float(seen) > self.ttl_s:
            return []
        return list(turns)

    def append(self, session_id: str, *turns: str) -> None:
        key = self._key(session_id)
        args = [
            repr(self._clock()),
            repr(float(self.ttl_s)),
            self.max_turns,
            self.capacity,
            self.prefix + "s:",
            session_id,
            *turns,
        ]
        try:
            self._append(keys=[key, self._index, self._seen, self._seq], args=args)
        except self._errors as exc:
            raise SessionsUnavailable(f"session store (redis) unavailable: {exc}") from exc

    def __len__(self) -> int:
        try:
            seen = self._client.hvals(self._seen)  # O(sessions): for tests and tools, not requests
            now = self._clock()
            return sum(1 for t in seen if now - float(t) <= self.ttl_s)
        except self._errors as exc:
            raise SessionsUnavailable(f"session store (redis) unavailable: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def open_sessions(serve, state_dir: Path) -> SessionStore:
    """The session store that ``[serve] sessions`` names.

    Args:
        serve: The ``ServeConfig``.
        state_dir: Where the SQLite store lives unless ``serve.sessions_path`` names a file.

    Raises:
        ValueError: An unknown backend (the message lists the valid ones) or bad bounds.
    """
    backend = parse_choice(SessionBackend, serve.sessions, "serve.sessions")
    bounds = {
        "capacity": serve.session_capacity,
        "ttl_s": serve.session_ttl_s,
        "max_turns": serve.max_context_turns,
    }
    if backend is SessionBackend.REDIS:
        url = os.environ.get("ALIME_REDIS_URL") or serve.redis_url
        return RedisSessions(url, prefix=serve.redis_prefix, **bounds)
    path = Path(serve.sessions_path) if serve.sessions_path else state_dir / "sessions.sqlite"
    return SQLiteSessions(path, **bounds)
