"""Per-session conversation context: bounded (LRU + TTL) and never shared between sessions."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SessionStore:
    """Recent turns per session id. At most ``capacity`` sessions, each idle at most ``ttl_s``."""

    def __init__(
        self,
        capacity: int = 10_000,
        ttl_s: float = 1800.0,
        max_turns: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or max_turns < 1 or ttl_s <= 0:
            raise ValueError("capacity and max_turns must be >= 1 and ttl_s > 0")
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.max_turns = max_turns
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, tuple[float, deque[str]]] = OrderedDict()

    def turns(self, session_id: str) -> list[str]:
        """The session's recent turns, oldest first (empty for an unknown or expired session)."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is None:
                return []
            seen, turns = entry
            if self._clock() - seen > self.ttl_s:
                del self._sessions[session_id]
                return []
            return list(turns)

    def append(self, session_id: str, *turns: str) -> None:
        with self._lock:
            now = self._clock()
            entry = self._sessions.pop(session_id, None)
            history = entry[1] if entry and now - entry[0] <= self.ttl_s else deque(maxlen=self.max_turns)
            history.extend(turns)
            self._sessions[session_id] = (now, history)
            self._evict(now)

    def _evict(self, now: float) -> None:
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        while self._sessions:  # the oldest entries first: stop at the first one still alive
            sid, (seen, _) = next(iter(self._sessions.items()))
            if now - seen <= self.ttl_s:
                break
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)
