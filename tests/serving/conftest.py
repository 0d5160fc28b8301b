import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from alime.bot import build_bot
from alime.kb.formats import read_rows
from alime.kb.store import KnowledgeBase
from alime.serving.app import create_app


@pytest.fixture
def bot(tiny_config, tiny_tsv):
    kb_path, _, _ = tiny_config.resolved_paths()
    KnowledgeBase(kb_path).add_many((r.question, r.answer, ()) for r in read_rows(tiny_tsv, "tsv").rows)
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
    """`alime serve` (gunicorn) on a free port, retrieval-only, with its own ALIME_HOME."""
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


