"""Kill the server (SIGKILL) during a bulk import: on restart the KB holds all of the import or
none of it, nothing acknowledged is lost, and the index matches the KB."""

import threading
import time

import pytest

from alime.config import AppConfig, PathsConfig
from alime.kb.store import KnowledgeBase
from alime.retrieval.searcher import KBSearcher
from alime.text import TextPipeline
from tests.serving.conftest import AUTH, request, start_server, stop_server

BULK = 30_000


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_s", [0.3, 1.0])
def test_kill_during_bulk_import(tmp_path, kill_after_s):
    env = {"ALIME_ADMIN_TOKEN": "s3cret-token"}
    base, proc = start_server(tmp_path, env)
    status, body = request(
        base + "/api/kb", {"question": "已 确认 的 问题", "answer": "已 确认"}, headers=AUTH
    )
    assert status == 201
    acknowledged_id = body["id"]
    before = request(base + "/api/kb?limit=1", headers=AUTH)[1]["total"]

    pairs = [{"question": f"批量 问题 {i} 号", "answer": f"批量 答案 {i}"} for i in range(BULK)]
    outcome = {}

    def bulk():
        try:
            outcome["result"] = request(
                base + "/api/kb/import", {"pairs": pairs}, headers=AUTH, timeout=120
            )
        except OSError as exc:  # the connection dies with the server
            outcome["error"] = exc

    thread = threading.Thread(target=bulk)
    thread.start()
    time.sleep(kill_after_s)
    stop_server(proc, hard=True)
    thread.join(timeout=60)

    kb_path = tmp_path / "home" / "kb.sqlite"
    kb = KnowledgeBase(kb_path)
    after = kb.count()
    print(
        f"kill after {kill_after_s}s: "
        f"import {'stored' if after > before else 'rolled back'}, outcome {outcome}"
    )
    assert after in (before, before + BULK), f"half an import is stored: {after - before} rows"
    if "result" in outcome and outcome["result"][0] == 201:
        assert after == before + BULK  # acknowledged, so it must be there
    assert kb.get(acknowledged_id).answer == "已 确认"

    # Restart: the index catches up with the KB exactly.
    base, proc = start_server(tmp_path, env)
    try:
        ready = request(base + "/readyz")[1]
        assert ready["kb_pairs"] == after
        found = request(base + "/api/chat", {"query": "已确认的问题"})[1]
        assert found["candidates"][0]["id"] == acknowledged_id
    finally:
        stop_server(proc)
    config = AppConfig(paths=PathsConfig(kb=str(kb_path), model="none"))
    searcher = KBSearcher(
        kb, TextPipeline(config.text), kb_path.with_suffix(".index"), config.retrieval
    )
    assert len(searcher) == kb.count()
    assert searcher.revision == kb.revision()
