"""The rules and the chit-chat KB through the HTTP API (real app, tiny SQLite KB, no model)."""

import pytest


@pytest.mark.parametrize(
    "query, rule, handoff, evidence",
    [
        ("我要投诉", "complaint", True, "投诉"),
        ("叫你们老板出来", "person", True, "叫你们老板"),
        ("我的订单123456到哪了", "order_status", True, "我的订单123456到哪"),
        ("asdfgh", "gibberish", False, "keyboard"),
        ("😂😂😂", "gibberish", False, "emoji"),
        ("？？？", "gibberish", False, "punctuation"),
    ],
)
def test_rules_answer_before_retrieval(client, query, rule, handoff, evidence):
    body = client.post("/api/chat", json={"query": query}).get_json()
    assert body["source"] == "fallback" and body["rule"] == rule
    assert body["handoff"] is handoff and body["evidence"] == evidence
    assert body["score"] is None and body["threshold"] is None and body["candidates"] == []
    assert set(body["timings_ms"]) == {"rules", "total"}


def test_replies_come_from_the_configured_keys(client, bot):
    replies = bot.config.guards
    ask = lambda q: client.post("/api/chat", json={"query": q}).get_json()["answer"]  # noqa: E731
    assert ask("转人工") == replies.person_reply
    assert ask("差评") == replies.complaint_reply
    assert ask("jjjjj") == replies.rephrase_reply


def test_chitchat_when_the_faq_has_nothing(client):
    body = client.post("/api/chat", json={"query": "讲个笑话"}).get_json()
    assert body["source"] == "chitchat" and body["rule"] == "chitchat" and not body["handoff"]
    assert body["evidence"] == "讲个笑话" and body["score"] == 1.0 and body["threshold"] == 0.8
    assert "缩水" in body["answer"]  # data/chitchat/shop_zh.jsonl's joke
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'alime_replies_total{source="chitchat"} 1' in metrics


def test_short_real_questions_still_reach_the_faq(client):
    for query, answer in (
        ("包邮吗", "满 99 元 包邮 的 亲"),
        ("能便宜点吗", "已经 是 最低价 了 亲"),
    ):
        body = client.post("/api/chat", json={"query": query}).get_json()
        assert body["rule"] == "faq" and body["answer"] == answer, query


def test_no_match_is_low_confidence_with_handoff(client):
    body = client.post("/api/chat", json={"query": "量子力学"}).get_json()
    assert body["rule"] == "low_confidence" and body["handoff"] and body["score"] is None
