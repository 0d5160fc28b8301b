"""`alime serve` on gunicorn, talked to over real HTTP."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, body=None, timeout=30):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


@pytest.fixture
def server(tmp_path):
    port = free_port()
    config = tmp_path / "alime.toml"
    config.write_text('[paths]\nmodel = "none"\n')
    env = {**os.environ, "ALIME_HOME": str(tmp_path / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "alime", "--config", str(config), "serve", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, text=True, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if request(base + "/readyz", timeout=2)[0] == 200:
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        log.close()
        pytest.fail("server did not become ready: " + (tmp_path / "server.log").read_text())
    yield base, proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def test_serves_chinese_answers_and_rejects_bad_input(server):
    base, proc = server
    status, body = request(base + "/api/chat", {"query": "亲，什么时候发货呀？"})
    assert status == 200 and body["source"] == "retrieval" and body["answer"]
    assert body["candidates"] and body["candidates"][0]["retrieval_score"] > 0
    assert request(base + "/api/chat", b"{broken")[0] == 400
    assert request(base + "/api/chat", {"query": ""})[0] == 400
    assert request(base + "/api/chat", {"query": "x" * 20000})[0] == 413
    assert request(base + "/healthz")[1] == {"status": "ok"}
    assert proc.poll() is None  # still running
