"""`alime serve` on gunicorn (2 workers), talked to over real HTTP: one server, one state."""

import json
import os
import re
import time
from pathlib import Path

import pytest

from tests.serving.conftest import request, start_server, stop_server
from tests.serving.test_chat_api import metric_values

FOLLOW_UPS = [
    "什么时候发货",
    "可以包邮吗",
    "发什么快递",
    "怎么退货",
    "有优惠券吗",
    "这个是正品吗",
    "尺码怎么选",
    "能便宜点吗",
    "什么时候到货",
    "可以改地址吗",
]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One retrieval-only server (2 workers x 4 threads, the defaults) for this module."""
    tmp = tmp_path_factory.mktemp("served")
    base, proc = start_server(tmp)  # returns once both workers have answered /readyz
    yield base, proc, tmp
    stop_server(proc)


def worker_pids(base, seconds=20.0):
    """Ask /readyz (each request on a new connection) until two workers have answered. Which
    worker accepts a connection is the kernel's choice: a busy machine can give one worker long
    streaks, so this tries for a while, pausing now and then to vary the timing."""
    pids = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            status, body = request(base + "/readyz")
        except ConnectionError:
            # Each worker has its own listening socket: a connection the kernel queued on a
            # worker that was just killed is reset with it (the client tries again).
            continue
        if status == 200:
            pids.append(body["worker_pid"])
            if len(set(pids)) >= 2:
                break
        if len(pids) % 10 == 9:
            time.sleep(0.02)
    return pids


def test_serves_chinese_answers_and_rejects_bad_input(served):
    base, proc, _ = served
    status, body = request(base + "/api/chat", {"query": "亲，什么时候发货呀？"})
    assert status == 200 and body["source"] == "retrieval" and body["answer"]
    assert body["candidates"] and body["candidates"][0]["retrieval_score"] > 0
    assert request(base + "/api/chat", b"{broken")[0] == 400
    assert request(base + "/api/chat", {"query": ""})[0] == 400
    assert request(base + "/api/chat", {"query": "x" * 20000})[0] == 413
    assert request(base + "/healthz")[1] == {"status": "ok"}
    assert proc.poll() is None  # still running


def test_sessions_are_shared_by_the_workers(served):
    """40 follow-up turns, each on a new connection (so spread over both workers): every one is
    given its session's history (issue 12: 10 of 40 ran without it when sessions were per
    worker)."""
    base, _, _ = served
    assert len(set(worker_pids(base))) == 2, "the two workers did not both answer"
    used = []
    for i in range(40):
        status, body = request(
            base + "/api/chat", {"query": FOLLOW_UPS[i % 10], "session_id": "shopper-1"}
        )
        assert status == 200
        used.append(body["context_turns"])
    # Each exchange stores 2 turns; the model is given at most engine.context_turns = 3.
    assert used == [min(2 * i, 3) for i in range(40)]
    # Another shopper starts with nothing.
    assert (
        request(base + "/api/chat", {"query": "客服在吗", "session_id": "shopper-2"})[1][
            "context_turns"
        ]
        == 0
    )


def test_one_scrape_sums_every_worker(served):
    """Requests answered by both workers are all counted by a single scrape."""
    base, _, _ = served

    def readyz_count():
        values = metric_values(request_text(base + "/metrics"))
        return values.get(
            ("alime_http_requests_total", (("endpoint", "alime.readyz"), ("status", "200"))), 0
        )

    before = readyz_count()
    pids = worker_pids(base)
    pids += [request(base + "/readyz")[1]["worker_pid"] for _ in range(20)]
    assert len(set(pids)) == 2
    assert readyz_count() - before == len(pids)
    values = metric_values(request_text(base + "/metrics"))
    assert values[("alime_kb_pairs", ())] == request(base + "/readyz")[1]["kb_pairs"]


def test_a_dead_workers_counts_stay_in_the_sums(served):
    """gunicorn replaces a killed worker (child_exit marks it dead); the requests it answered
    still count, and the new worker's add to them."""
    import signal

    base, _, _ = served

    def chat_count():
        values = metric_values(request_text(base + "/metrics"))
        return values.get(("alime_replies_total", (("source", "retrieval"),)), 0)

    for _ in range(6):
        assert request(base + "/api/chat", {"query": "发什么快递"})[0] == 200
    before = chat_count()
    victim = request(base + "/readyz")[1]["worker_pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.time() + 60
    while True:  # until two workers answer again, neither of them the victim
        pids = set(worker_pids(base))
        if len(pids) == 2 and victim not in pids:
            break
        assert time.time() < deadline, "the killed worker was not replaced"
        time.sleep(0.2)
    assert chat_count() == before
    for _ in range(4):
        assert request(base + "/api/chat", {"query": "发什么快递"})[0] == 200
    assert chat_count() == before + 4


def request_text(url):
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as res:
        assert res.headers["Content-Type"].startswith("text/plain")
        return res.read().decode()


def test_run_files_are_the_servers_own(served, tmp_path):
    """The state directory holds the server's run files, named by port; a second server with
    another state directory gets its own control socket (gunicorn's default is one per user)."""
    base, _, tmp = served
    port = base.rsplit(":", 1)[1]
    run = tmp / "home" / "run"
    assert (run / f"gunicorn-{port}.ctl").is_socket()
    assert any((run / f"metrics-{port}").glob("*.db"))
    log = (tmp / "server.log").read_text()
    assert log.count("alime: ready — open http://localhost:") == 1

    other, proc = start_server(tmp_path)
    try:
        other_port = other.rsplit(":", 1)[1]
        assert (tmp_path / "home" / "run" / f"gunicorn-{other_port}.ctl").is_socket()
        assert (run / f"gunicorn-{port}.ctl").is_socket()  # the first server keeps its own
        assert request(base + "/healthz")[0] == request(other + "/healthz")[0] == 200
    finally:
        stop_server(proc)


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (the kernel's table, /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        count += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port  # 0A: LISTEN
    return count


def test_each_worker_listens_on_its_own_socket_and_connections_spread(served):
    """Kept-alive connections stay with the worker that accepted them. With one socket shared
    by the workers, the first to wake could take a whole burst of connections (lab: 8 load
    clients 8 / 0 on two workers, half the requests per second); with a socket per worker
    (SO_REUSEPORT) the kernel spreads each new connection over the workers."""
    import http.client

    base, _proc, _tmp = served
    port = int(base.rsplit(":", 1)[1])
    assert listening_sockets(port) == 2  # one per worker, none in the master
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(16)]
    try:
        for conn in conns:  # all 16 open at once, as a burst of clients would be
            conn.connect()
        pids = []
        for conn in conns:
            conn.request("GET", "/readyz")
            pids.append(json.loads(conn.getresponse().read())["worker_pid"])
    finally:
        for conn in conns:
            conn.close()
    # each connection lands on one worker at random: all 16 on one worker has odds 2 ** -15
    assert len(set(pids)) == 2, pids


def test_a_second_server_on_a_busy_port_leaves_the_first_alone(served):
    """Same state directory, same port: refused with a message before touching the run files."""
    import subprocess
    import sys

    base, proc, tmp = served
    port = base.rsplit(":", 1)[1]
    metrics = sorted((tmp / "home" / "run" / f"metrics-{port}").glob("*.db"))
    env = {**os.environ, "ALIME_HOME": str(tmp / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alime",
            "--config",
            str(tmp / "alime.toml"),
            "serve",
            "--port",
            port,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr
    assert sorted((tmp / "home" / "run" / f"metrics-{port}").glob("*.db")) == metrics
    assert request(base + "/readyz")[0] == 200 and proc.poll() is None


def test_url_is_printed_once_the_server_answers(tmp_path):
    """`alime serve` prints the URL only when /readyz answers: read the log until the line shows,
    then /readyz must already say ready, whichever worker answers."""
    import subprocess
    import sys

    from tests.serving.conftest import free_port

    port = free_port()
    (tmp_path / "alime.toml").write_text('[paths]\nmodel = "none"\n')
    log_path = tmp_path / "server.log"
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "alime",
                "--config",
                str(tmp_path / "alime.toml"),
                "serve",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while "open http://" not in log_path.read_text():
            assert time.time() < deadline and proc.poll() is None, log_path.read_text()
            time.sleep(0.05)
        # Printed once every worker is ready: whichever worker takes a connection answers.
        answers = [request(f"http://127.0.0.1:{port}/readyz") for _ in range(10)]
        assert all(status == 200 and body["status"] == "ready" for status, body in answers), answers
        text = log_path.read_text()
        assert re.search(r"alime: starting with \d+ QA pairs", text)
        assert text.index("alime: starting") < text.index("open http://")
    finally:
        stop_server(proc)


def test_two_servers_share_sessions_through_redis(tmp_path, redis_server):
    """Two servers (two machines behind a load balancer, each with its own state directory) with
    [serve] sessions = "redis": a conversation that alternates between them keeps its history."""
    config = f'[paths]\nmodel = "none"\n[serve]\nsessions = "redis"\nredis_url = "{redis_server}"\n'
    config += f'redis_prefix = "lb-{os.getpid()}:"\n'
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a, proc_a = start_server(a_dir, config_text=config)
    try:
        b, proc_b = start_server(b_dir, config_text=config)
        try:
            assert request(a + "/readyz")[1]["sessions"] == "redis"
            used = [
                request((a, b)[i % 2] + "/api/chat", {"query": FOLLOW_UPS[i], "session_id": "lb"})[
                    1
                ]["context_turns"]
                for i in range(6)
            ]
            assert used == [0, 2, 3, 3, 3, 3]
        finally:
            stop_server(proc_b)
    finally:
        stop_server(proc_a)
    assert not Path(a_dir / "home" / "sessions.sqlite").exists()  # nothing kept locally


@pytest.mark.slow
def test_healthz_answers_while_the_bundled_model_loads(tmp_path):
    """The bundled bot (int8 model, TensorFlow) takes seconds to load: /healthz answers at once,
    /readyz and /api/chat say 503 "starting" meanwhile, then the server is ready."""
    import subprocess
    import sys

    from tests.serving.conftest import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log_path = tmp_path / "server.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alime", "serve", "--port", str(port), "--workers", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.time() + 120
        while True:
            assert time.time() < deadline and proc.poll() is None, log_path.read_text()
            try:
                if request(base + "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        started = time.time()
        ready, chat = (
            request(base + "/readyz"),
            request(base + "/api/chat", {"query": "什么时候发货"}),
        )
        assert ready[0] == 503 and ready[1]["error"] == "starting", ready
        assert chat[0] == 503 and chat[1]["error"] == "starting"
        assert "open http://" not in log_path.read_text()
        while request(base + "/readyz")[0] != 200:
            assert time.time() < deadline and proc.poll() is None, log_path.read_text()
            assert request(base + "/healthz", timeout=2)[0] == 200
            time.sleep(0.2)
        print(f"healthz answered {time.time() - started:.1f} s before readyz")
        assert request(base + "/api/chat", {"query": "什么时候发货"})[0] == 200
        deadline = time.time() + 10
        while "open http://" not in log_path.read_text():
            assert time.time() < deadline
            time.sleep(0.05)
    finally:
        stop_server(proc)


@pytest.mark.parametrize(
    "serve_toml, message",
    [
        ('sessions = "memory"', "unknown serve.sessions 'memory'; valid: sqlite, redis"),
        (
            'sessions = "redis"\nredis_url = "redis://127.0.0.1:{port}/0"',
            "session store (redis) unavailable",
        ),
    ],
)
def test_bad_session_settings_stop_serve_with_a_message(tmp_path, serve_toml, message):
    import subprocess
    import sys

    from tests.serving.conftest import free_port

    config = tmp_path / "alime.toml"
    config.write_text(
        '[paths]\nmodel = "none"\n[serve]\n' + serve_toml.format(port=free_port()) + "\n"
    )
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "alime",
            "--config",
            str(config),
            "serve",
            "--port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
