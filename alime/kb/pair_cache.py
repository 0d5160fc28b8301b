"""KB pairs by id, from memory while the KB stays at one revision.

Every chat request reads its 10-13 candidates' pairs from SQLite: one query, then two JSON
decodes and a ``QAPair`` per row. The same entries come back request after request and the KB
changes rarely, so the pairs are kept in memory under the KB's identity (id, latest revision and
that change's token: :meth:`~alime.kb.store.KnowledgeBase.identity`), which is one small read per
request instead. Any write, from this process or another, gives the KB a new identity, and the
cache starts empty under it; a KB replaced or restored from a backup has another id or token.

Why a cached pair is never stale: pairs are stored under an identity only when read after that
identity was read, so they are at least that new; and a request uses them only when the KB's
identity, read at that moment, is still the same, so no write came in between.
"""

from __future__ import annotations

from collections.abc import Iterable

from alime.kb.store import Identity, KnowledgeBase
from alime.types import QAPair

DEFAULT_CAPACITY = 20_000  # pairs kept for one identity (beyond it, reads go to SQLite)


class PairCache:
    """``KnowledgeBase.get_many`` answered from memory for one KB identity at a time.

    Thread-safe: the (identity, pairs) state is replaced whole, and a thread adds to the pairs
    of the identity it read only rows it read after it.

    Args:
        kb: The knowledge base.
        capacity: Most pairs kept for one identity.
    """

    def __init__(self, kb: KnowledgeBase, capacity: int = DEFAULT_CAPACITY) -> None:
        self.kb = kb
        self.capacity = capacity
        self._state: tuple[Identity | None, dict[int, QAPair]] = (None, {})

    def __call__(self, ids: Iterable[int]) -> dict[int, QAPair]:
        ids = list(ids)
        identity = self.kb.identity()
        key, pairs = self._state
        if key != identity:
            pairs = {}
            self._state = (identity, pairs)
        missing = [i for i in ids if i not in pairs]
        fresh = self.kb.get_many(missing) if missing else {}
        if fresh and len(pairs) + len(fresh) <= self.capacity:
            pairs.update(fresh)
        # an id the KB does not hold (deleted since the search) is left out, as in get_many
        return {i: fresh[i] if i in fresh else pairs[i] for i in ids if i in fresh or i in pairs}
