"""PairCache: the KB's pairs from memory while the KB is unchanged, and never an old row."""

import threading

from alime.kb.pair_cache import PairCache
from alime.kb.store import KnowledgeBase


class CountingKB(KnowledgeBase):
    """The real SQLite KB, counting the row reads the cache is meant to save."""

    def __init__(self, path):
        super().__init__(path)
        self.reads = 0

    def get_many(self, ids):
        self.reads += 1
        return super().get_many(ids)


def seeded(path):
    kb = CountingKB(path)
    added = kb.add_many([(f"问题{i}", f"答案{i}", ("tag",), [f"说法{i}"]) for i in range(1, 21)])
    assert [p.id for p in added] == list(range(1, 21))  # entry i answers 答案i
    return kb


def test_the_same_ids_are_read_once_while_the_kb_is_unchanged(tmp_path):
    kb = seeded(tmp_path / "kb.sqlite")
    cache = PairCache(kb)
    first = cache([3, 1, 2])
    assert first == kb.get_many([3, 1, 2]) and list(first) == [3, 1, 2]
    kb.reads = 0
    assert cache([1, 2, 3]) == kb.get_many([1, 2, 3])
    assert kb.reads == 1  # only the reference read above: the cache read nothing
    cache([2, 4])
    assert kb.reads == 2  # only 4 was read


def test_an_edit_here_or_through_another_connection_is_seen_at_once(tmp_path):
    kb = seeded(tmp_path / "kb.sqlite")
    cache = PairCache(kb)
    assert cache([5])[5].answer == "答案5"
    kb.edit(5, answer="新答案")
    assert cache([5])[5].answer == "新答案"
    other = KnowledgeBase(tmp_path / "kb.sqlite")  # as another worker process would write
    other.edit(5, answer="另一个答案", phrasings=["新说法"])
    pair = cache([5])[5]
    assert (pair.answer, pair.phrasings) == ("另一个答案", ("新说法",))
    other.delete(5)
    assert cache([5, 6]).keys() == {6}  # a deleted entry is left out, as get_many does


def test_over_capacity_pairs_are_read_but_not_kept(tmp_path):
    kb = seeded(tmp_path / "kb.sqlite")
    cache = PairCache(kb, capacity=2)
    assert cache([1, 2, 3]).keys() == {1, 2, 3}
    kb.reads = 0
    cache([1, 2, 3])
    assert kb.reads == 1


def test_readers_and_a_writer_in_threads_never_get_an_older_answer(tmp_path):
    """Four threads look pairs up while a fifth edits one entry's answer to 1, 2, ... 60: no
    reader ever sees an answer older than one it saw before, and afterwards every reader sees
    the last one."""
    kb = seeded(tmp_path / "kb.sqlite")
    cache = PairCache(kb)
    stop = threading.Event()
    errors = []

    def read():
        seen = 0
        while not stop.is_set():
            answer = cache([7, 8, 9])[7].answer
            value = 0 if answer == "答案7" else int(answer)
            if value < seen:
                errors.append((seen, value))
            seen = value

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    for n in range(1, 61):
        kb.edit(7, answer=str(n))
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert cache([7])[7].answer == "60"
