import json

import pytest


def test_chinese_question_is_answered_from_the_kb(client):
    res = client.post("/api/chat", json={"query": "你们发什么快递？"})
    assert res.status_code == 200
    body = res.get_json()
    assert body["source"] == "retrieval"
    assert body["answer"] == "默认 发 中通 快递 哦"
    assert body["candidates"][0]["question"] == "发 什么 快递"
    assert body["candidates"][0]["retrieval_score"] > 0
    assert {"retrieve", "total"} <= set(body["timings_ms"])
    assert res.headers["X-Request-Id"] == body["request_id"]
    assert "快递" in res.get_data(as_text=True)  # not \u-escaped


def test_no_match_is_fallback_with_handoff(client):
    body = client.post("/api/chat", json={"query": "量子力学"}).get_json()
    assert body["source"] == "fallback" and body["handoff"] and body["score"] is None


@pytest.mark.parametrize(
    "data, content_type, status, message",
    [
        ("not json", "application/json", 400, "valid JSON"),
        (b"\xff\xfe", "application/json", 400, "valid JSON"),
        ("[1, 2]", "application/json", 400, "JSON object"),
        ('{"query": 3}', "application/json", 400, "must be a string"),
        ('{"query": ""}', "application/json", 400, "must not be empty"),
        ('{"query": "   "}', "application/json", 400, "must not be empty"),
        ('{"nothing": 1}', "application/json", 400, "unknown field"),
        ('{"query": "' + "问" * 501 + '"}', "application/json", 413, "longer than 500"),
        ('{"query": "hi", "context": [1]}', "application/json", 400, "context"),
        ('{"query": "hi"}', "text/plain", 200, None),  # JSON is accepted whatever the label
    ],
)
def test_bad_input_gets_4xx_json(client, data, content_type, status, message):
    res = client.post("/api/chat", data=data, content_type=content_type)
    assert res.status_code == status
    if message:
        assert message in res.get_json()["error"]


def test_oversized_body_is_413(client):
    res = client.post("/api/chat", data=json.dumps({"query": "x" * 40000}), content_type="application/json")
    assert res.status_code == 413 and "larger than" in res.get_json()["error"]


def test_wrong_method_and_unknown_path_are_json_4xx(client):
    assert client.get("/api/chat").status_code == 405
    res = client.get("/nope")
    assert res.status_code == 404 and "error" in res.get_json()


def test_sessions_feed_context_and_are_not_shared(client, bot):
    seen = []
    original = bot.engine.reply

    def spy(query, context=(), budget_s=None):
        seen.append(list(context))
        return original(query, context, budget_s)

    bot.engine.reply = spy
    client.post("/api/chat", json={"query": "什么时候发货", "session_id": "alice"})
    client.post("/api/chat", json={"query": "可以包邮吗", "session_id": "bob"})
    client.post("/api/chat", json={"query": "怎么退货", "session_id": "alice"})
    assert seen[0] == [] and seen[1] == []
    assert seen[2][0] == "什么时候发货" and "可以包邮吗" not in seen[2]
    client.post("/api/chat", json={"query": "怎么退货", "context": ["explicit"]})
    assert seen[3] == ["explicit"]


def test_health_ready_metrics_and_page(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["kb_pairs"] == 20 and ready["model"] is None
    client.post("/api/chat", json={"query": "发什么快递"})
    client.post("/api/chat", json={"query": ""})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'alime_http_requests_total{endpoint="alime.chat",status="200"} 1' in text
    assert 'alime_http_errors_total{endpoint="alime.chat",status="400"} 1' in text
    assert 'alime_replies_total{source="retrieval"} 1' in text
    assert "alime_kb_pairs 20" in text
    assert 'alime_stage_seconds_count{stage="retrieve"} 1' in text
    page = client.get("/")
    assert page.status_code == 200 and "alime" in page.get_data(as_text=True)
    with client.get("/static/chat.js") as script:
        assert script.status_code == 200 and "textContent" in script.get_data(as_text=True)
