"""The session stores: the same behaviour from the SQLite store and the Redis store (a real
redis-server), then what only a shared store gives: several processes and threads on one session."""

import json
import subprocess
import sys
import uuid

import pytest

from alime.config import ServeConfig
from alime.serving.sessions import (
    RedisSessions,
    SessionStore,
    SessionsUnavailable,
    SQLiteSessions,
    open_sessions,
)
from tests.serving.conftest import free_port


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request, tmp_path):
    """A factory of stores of one kind; stores made by one factory share their data."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"  # one redis-server serves every test: keep apart
    if request.param == "sqlite":
        return lambda **kw: SQLiteSessions(tmp_path / "sessions.sqlite", **kw)
    url = request.getfixturevalue("redis_server")
    return lambda **kw: RedisSessions(url, prefix=prefix, **kw)


def test_both_stores_follow_the_protocol(make_store):
    assert isinstance(make_store(), SessionStore)


def test_sessions_are_separate_and_bounded(make_store):
    store = make_store(capacity=2, ttl_s=100, max_turns=3, clock=Clock())
    store.append("a", "q1", "r1")
    store.append("b", "x1", "y1")
    store.append("a", "q2", "r2")
    assert store.turns("a") == ["r1", "q2", "r2"]  # at most 3 turns kept, oldest dropped
    assert store.turns("b") == ["x1", "y1"]
    assert store.turns("nobody") == []
    store.append("c", "z")  # capacity 2: the least recently written session ("b") goes
    assert (
        store.turns("b") == []
        and store.turns("a") == ["r1", "q2", "r2"]
        and store.turns("c") == ["z"]
    )
    assert len(store) == 2


def test_least_recently_written_goes_first(make_store):
    clock = Clock()
    store = make_store(capacity=2, ttl_s=100, max_turns=5, clock=clock)
    store.append("a", "1")
    clock.now += 1
    store.append("b", "2")
    clock.now += 1
    store.append("a", "3")  # "a" is now the most recent
    clock.now += 1
    store.append("c", "4")
    assert store.turns("a") == ["1", "3"] and store.turns("b") == [] and store.turns("c") == ["4"]


def test_sessions_expire_after_their_last_write(make_store):
    clock = Clock()
    start = clock.now
    store = make_store(capacity=10, ttl_s=60, clock=clock)
    store.append("a", "hello")
    clock.now = start + 60.0
    assert store.turns("a") == ["hello"]  # exactly the TTL is still alive
    clock.now = start + 60.5
    assert store.turns("a") == []
    store.append("a", "again")  # an expired history is not revived by a new turn
    assert store.turns("a") == ["again"]
    store.append("b", "x")
    clock.now = start + 200.0
    store.append("c", "y")  # expired sessions are dropped on write
    assert len(store) == 1 and store.turns("b") == []


def test_reading_does_not_keep_a_session_alive(make_store):
    clock = Clock()
    store = make_store(ttl_s=10, clock=clock)
    store.append("a", "t")
    for _ in range(3):
        clock.now += 4
        store.turns("a")
    assert store.turns("a") == []


def test_text_round_trips_exactly(make_store):
    store = make_store(max_turns=10)
    turns = [
        "亲，什么时候发货？",
        'quote " and \\ backslash',
        "emoji 😀",
        "  spaced  ",
        "line\nbreak",
    ]
    store.append("会话-1", *turns)
    assert store.turns("会话-1") == turns


def test_a_second_instance_sees_the_same_sessions(make_store):
    make_store().append("s", "q", "a")
    assert make_store().turns("s") == ["q", "a"]


@pytest.mark.parametrize("bad", [{"capacity": 0}, {"max_turns": 0}, {"ttl_s": 0}])
def test_invalid_bounds(make_store, bad):
    with pytest.raises(ValueError, match="session_capacity"):
        make_store(**bad)


WRITER = """
import sys, threading
from alime.serving.sessions import RedisSessions, SQLiteSessions
kind, where, prefix, proc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
store = (SQLiteSessions(where, max_turns=1000) if kind == "sqlite"
         else RedisSessions(where, prefix=prefix, max_turns=1000))
def work(thread):
    for i in range(20):
        store.append("shared", f"p{proc}-t{thread}-{i}")
        store.append(f"own-{proc}-{thread}", str(i))
threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_processes_and_threads_never_lose_a_turn(make_store, request, tmp_path):
    """3 processes x 4 threads append to one session at once: every turn lands, in order per
    writer; the SQLite store is one file shared by the processes, as gunicorn's workers share it."""
    store = make_store(max_turns=1000)
    kind = request.node.callspec.params["make_store"]
    where = (
        str(tmp_path / "sessions.sqlite")
        if kind == "sqlite"
        else request.getfixturevalue("redis_server")
    )
    prefix = getattr(store, "prefix", "")
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, kind, where, prefix, str(p)])
        for p in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    shared = store.turns("shared")
    assert len(shared) == 3 * 4 * 20 and len(set(shared)) == len(shared)
    for p in range(3):
        for t in range(4):
            mine = [x for x in shared if x.startswith(f"p{p}-t{t}-")]
            assert mine == [f"p{p}-t{t}-{i}" for i in range(20)]
            assert store.turns(f"own-{p}-{t}") == [str(i) for i in range(20)]


def test_sqlite_store_keeps_its_file_bounded(tmp_path):
    clock = Clock()
    store = SQLiteSessions(tmp_path / "s.sqlite", capacity=5, ttl_s=100, max_turns=2, clock=clock)
    for i in range(50):
        store.append(f"s{i}", "q", "a", "q2")
        clock.now += 1
    import sqlite3

    with sqlite3.connect(tmp_path / "s.sqlite") as conn:
        rows = conn.execute("SELECT id, turns FROM sessions ORDER BY seen").fetchall()
    assert [r[0] for r in rows] == [f"s{i}" for i in range(45, 50)]
    assert all(json.loads(r[1]) == ["a", "q2"] for r in rows)


def test_redis_store_keeps_redis_bounded(redis_server):
    import redis

    clock = Clock()
    store = RedisSessions(
        redis_server, prefix="bounded:", capacity=5, ttl_s=100, max_turns=2, clock=clock
    )
    for i in range(50):
        store.append(f"s{i}", "q", "a", "q2")
        clock.now += 1
    client = redis.Redis.from_url(redis_server, decode_responses=True)
    keys = sorted(client.scan_iter("bounded:*"))
    assert keys == [
        "bounded:index",
        *sorted(f"bounded:s:s{i}" for i in range(45, 50)),
        "bounded:seen",
        "bounded:seq",
    ]
    assert client.lrange("bounded:s:s49", 0, -1) == ["a", "q2"]
    assert 0 < client.pttl("bounded:s:s49") <= 100_000  # Redis collects idle sessions itself
    client.close()


def test_unreachable_redis_is_reported_not_hung():
    store = RedisSessions(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1.0)
    with pytest.raises(SessionsUnavailable, match="unavailable"):
        store.turns("a")
    with pytest.raises(SessionsUnavailable):
        store.append("a", "q")


def test_config_selects_the_store(tmp_path, redis_server):
    sqlite = open_sessions(ServeConfig(), tmp_path)
    assert isinstance(sqlite, SQLiteSessions) and sqlite.path == tmp_path / "sessions.sqlite"
    other = open_sessions(ServeConfig(sessions_path=str(tmp_path / "x" / "s.db")), tmp_path)
    assert other.path == tmp_path / "x" / "s.db" and other.path.exists()
    red = open_sessions(
        ServeConfig(sessions="redis", redis_url=redis_server, session_capacity=7), tmp_path
    )
    assert isinstance(red, RedisSessions) and red.capacity == 7
    red.append("x", "y")
    assert red.turns("x") == ["y"]
    with pytest.raises(ValueError, match="serve.sessions.*sqlite.*redis"):
        open_sessions(ServeConfig(sessions="memory"), tmp_path)


def test_redis_url_from_the_environment_wins(tmp_path, redis_server, monkeypatch):
    monkeypatch.setenv("ALIME_REDIS_URL", redis_server)
    store = open_sessions(
        ServeConfig(sessions="redis", redis_url="redis://127.0.0.1:1/0"), tmp_path
    )
    store.append("env", "ok")
    assert store.turns("env") == ["ok"]


def test_sqlite_turns_survive_closing_and_reopening_the_file(tmp_path):
    """A clean shutdown closes the store; the next server opens the same file and finds every
    turn (commits are durable in the WAL, no turn waits in memory)."""
    store = SQLiteSessions(tmp_path / "s.sqlite")
    for i in range(5):
        store.append(f"s{i}", f"q{i}", f"a{i}")
    store.close()
    reopened = SQLiteSessions(tmp_path / "s.sqlite")
    assert [reopened.turns(f"s{i}") for i in range(5)] == [[f"q{i}", f"a{i}"] for i in range(5)]


def test_sqlite_sweeps_expired_rows_from_the_file_within_a_second(tmp_path):
    """Updates of a known session sweep expired rows at most once per second of the clock;
    readers never see an expired row in between, and the row leaves the file by the next
    sweep."""
    import sqlite3

    clock = Clock()
    store = SQLiteSessions(tmp_path / "s.sqlite", ttl_s=10, clock=clock)
    store.append("old", "x")  # a new session: swept at t
    clock.now += 9.5
    store.append("live", "y")  # a new session: swept at t + 9.5 ("old" still alive)
    clock.now += 0.7  # t + 10.2: "old" has expired
    store.append("live", "z")  # an update 0.7 s after the last sweep: no sweep

    def ids() -> list[str]:
        with sqlite3.connect(tmp_path / "s.sqlite") as conn:
            return sorted(r[0] for r in conn.execute("SELECT id FROM sessions"))

    assert store.turns("old") == [] and len(store) == 1
    assert ids() == ["live", "old"]
    clock.now += 0.4  # 1.1 s after the last sweep
    store.append("live", "w")
    assert ids() == ["live"]
    assert store.turns("live") == ["y", "z", "w"]
