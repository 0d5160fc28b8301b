import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request

import pytest

from alime.bot import build_bot
from alime.config import ServeConfig
from alime.kb.formats import read_rows
from alime.kb.store import KnowledgeBase
from alime.serving.app import create_app


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    """Every serving test keeps its state (sessions, run files) in its own folder, never in the
    checkout's var/ (the default state directory)."""
    monkeypatch.setenv("ALIME_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port for the whole test session; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip(
            "redis-server is not installed (Debian package redis-server; .ci/run installs it)"
        )
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"redis-server did not start on port {port}")
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture
def bot(tiny_config, tiny_tsv):
    kb_path, _, _ = tiny_config.resolved_paths()
    KnowledgeBase(kb_path).add_many(
        (r.question, r.answer, ()) for r in read_rows(tiny_tsv, "tsv").rows
    )
    return build_bot(tiny_config)


@pytest.fixture
def client(bot, monkeypatch):
    monkeypatch.setenv("ALIME_ADMIN_TOKEN", "s3cret-token")
    return create_app(bot=bot).test_client()


AUTH = {"Authorization": "Bearer s3cret-token"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, timeout=30, headers=None, method=None):
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def start_server(tmp_path, env_extra=None, config_text='[paths]\nmodel = "none"\n'):
    """Start `alime serve` (gunicorn) on a free port in its own process group; wait until every
    worker is ready (each builds its bot in the background and answers 503 until then)."""
    workers = tomllib.loads(config_text).get("serve", {}).get("workers", ServeConfig().workers)
    port = free_port()
    config = tmp_path / "alime.toml"
    config.write_text(config_text)
    env = {
        **os.environ,
        "ALIME_HOME": str(tmp_path / "home"),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **(env_extra or {}),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alime", "--config", str(config), "serve", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    ready_pids = set()
    while time.time() < deadline and proc.poll() is None:
        try:
            status, body = request(base + "/readyz", timeout=2)
        except OSError:
            time.sleep(0.3)
            continue
        if status == 200:
            ready_pids.add(body["worker_pid"])  # a new connection each time: any worker answers
            if len(ready_pids) >= workers:
                return base, proc
        else:
            time.sleep(0.05)
    os.killpg(proc.pid, 9)
    pytest.fail("server did not become ready: " + log_path.read_text())


def stop_server(proc, hard=False):
    try:
        os.killpg(proc.pid, 9 if hard else 15)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.fixture
def server(tmp_path):
    """`alime serve` (gunicorn) on a free port, retrieval-only, with its own ALIME_HOME."""
    base, proc = start_server(tmp_path)
    yield base, proc
    stop_server(proc)
