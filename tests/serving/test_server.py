"""`alime serve` on gunicorn, talked to over real HTTP."""

from tests.serving.conftest import request


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
