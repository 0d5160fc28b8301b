import pytest

from alime.serving.sessions import SessionStore


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sessions_are_separate_and_bounded():
    store = SessionStore(capacity=2, ttl_s=100, max_turns=3, clock=Clock())
    store.append("a", "q1", "r1")
    store.append("b", "x1", "y1")
    store.append("a", "q2", "r2")
    assert store.turns("a") == ["r1", "q2", "r2"]  # at most 3 turns kept
    assert store.turns("b") == ["x1", "y1"]
    store.append("c", "z")  # capacity 2: the least recently used session ("b") goes
    assert store.turns("b") == [] and store.turns("a") and len(store) == 2


def test_sessions_expire():
    clock = Clock()
    store = SessionStore(capacity=10, ttl_s=60, clock=clock)
    store.append("a", "hello")
    clock.now = 60.0
    assert store.turns("a") == ["hello"]  # exactly the TTL is still alive
    clock.now = 121.0
    assert store.turns("a") == []
    store.append("b", "x")
    clock.now = 200.0
    store.append("c", "y")  # expired sessions are dropped on write
    assert len(store) == 1


def test_invalid_settings():
    with pytest.raises(ValueError):
        SessionStore(capacity=0)
