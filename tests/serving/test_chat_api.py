import dataclasses
import json
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from alime.bot import build_bot
from alime.config import EngineConfig, ServeConfig
from alime.serving.app import create_app
from tests.serving.conftest import AUTH, free_port


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
        (
            '{"query": "\\ud800 hi", "session_id": "s"}',
            "application/json",
            400,
            "'query' contains a lone",
        ),
        (
            '{"query": "hi", "session_id": "\\udfff"}',
            "application/json",
            400,
            "'session_id' contains a lone",
        ),
        (
            '{"query": "hi", "context": ["ok", "\\ud800"]}',
            "application/json",
            400,
            "lone surrogate",
        ),
        ('{"query": "hi"}', "text/plain", 200, None),  # JSON is accepted whatever the label
    ],
)
def test_bad_input_gets_4xx_json(client, data, content_type, status, message):
    res = client.post("/api/chat", data=data, content_type=content_type)
    assert res.status_code == status
    if message:
        assert message in res.get_json()["error"]


def test_oversized_body_is_413(client):
    res = client.post(
        "/api/chat", data=json.dumps({"query": "x" * 40000}), content_type="application/json"
    )
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
    used = [
        client.post("/api/chat", json=body).get_json()["context_turns"]
        for body in (
            {"query": "什么时候发货", "session_id": "alice"},
            {"query": "可以包邮吗", "session_id": "bob"},
            {"query": "怎么退货", "session_id": "alice"},
            {"query": "怎么退货", "context": ["explicit"]},
            {"query": "有赠品吗", "session_id": "alice"},
            {"query": "有赠品吗"},
        )
    ]
    assert seen[0] == [] and seen[1] == []
    assert seen[2][0] == "什么时候发货" and "可以包邮吗" not in seen[2]
    assert seen[3] == ["explicit"]
    # engine.context_turns = 3: the last 3 of alice's 4 stored turns
    assert seen[4] == seen[2][1:] + ["怎么退货", seen[4][-1]] and len(seen[4]) == 3
    assert used == [0, 0, 2, 1, 3, 0] == [len(c) for c in seen]


def test_context_turns_zero_gives_the_model_no_history(bot, tmp_path):
    config = dataclasses.replace(bot.config, engine=EngineConfig(context_turns=0))
    client = create_app(config, bot=bot).test_client()
    client.post("/api/chat", json={"query": "什么时候发货", "session_id": "s"})
    body = client.post("/api/chat", json={"query": "怎么退货", "session_id": "s"}).get_json()
    assert body["context_turns"] == 0


def metric_values(text):
    """{(sample name, sorted labels): value} from Prometheus exposition text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_health_ready_metrics_and_page(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    assert ready["kb_pairs"] == 20 and ready["model"] is None and ready["sessions"] == "sqlite"
    client.post("/api/chat", json={"query": "发什么快递"})
    client.post("/api/chat", json={"query": ""})
    values = metric_values(client.get("/metrics").get_data(as_text=True))
    chat = (("endpoint", "alime.chat"),)
    assert values[("alime_http_requests_total", chat + (("status", "200"),))] == 1
    assert values[("alime_http_errors_total", chat + (("status", "400"),))] == 1
    assert ("alime_http_errors_total", chat + (("status", "200"),)) not in values
    assert values[("alime_replies_total", (("source", "retrieval"),))] == 1
    assert values[("alime_kb_pairs", ())] == 20
    assert values[("alime_stage_seconds_count", (("stage", "retrieve"),))] == 1
    assert values[("alime_http_request_seconds_count", chat)] == 2
    page = client.get("/")
    assert page.status_code == 200 and "alime" in page.get_data(as_text=True)
    with client.get("/static/chat.js") as script:
        assert script.status_code == 200 and "textContent" in script.get_data(as_text=True)


def test_healthz_answers_while_the_bot_loads(tiny_config, tiny_tsv, bot, monkeypatch):
    """Built in the background: liveness, metrics and the page answer at once; readiness, chat and
    the admin API say 503 "starting" until the bot is built, then everything works."""
    monkeypatch.setenv("ALIME_ADMIN_TOKEN", "s3cret-token")
    release, announced = threading.Event(), threading.Event()

    def slow_builder(config):
        assert release.wait(30)
        return build_bot(config)

    app = create_app(tiny_config, background=True, builder=slow_builder, on_ready=announced.set)
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    for method, path in (("GET", "/readyz"), ("POST", "/api/chat"), ("GET", "/api/kb")):
        res = client.open(path, method=method, json={"query": "发什么快递"}, headers=AUTH)
        assert res.status_code == 503 and res.get_json()["error"] == "starting", path
        assert res.headers["Retry-After"]
    assert client.get("/metrics").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/nope").status_code == 404
    assert not announced.is_set()
    release.set()
    assert announced.wait(30)
    assert client.get("/readyz").get_json()["status"] == "ready"
    assert (
        client.post("/api/chat", json={"query": "发什么快递"}).get_json()["answer"]
        == "默认 发 中通 快递 哦"
    )
    assert client.get("/api/kb", headers=AUTH).status_code == 200


def test_a_failed_build_is_reported(tiny_config):
    failures = []

    def broken(config):
        raise FileNotFoundError("no model at /nowhere")

    app = create_app(tiny_config, background=True, builder=broken, on_failure=failures.append)
    client = app.test_client()
    for _ in range(200):
        if failures:
            break
        threading.Event().wait(0.05)
    assert isinstance(failures[0], FileNotFoundError)
    res = client.get("/readyz")
    assert res.status_code == 503 and "no model at /nowhere" in res.get_json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_unreachable_session_store_is_503_json(bot):
    serve = ServeConfig(sessions="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0")
    client = create_app(dataclasses.replace(bot.config, serve=serve), bot=bot).test_client()
    res = client.post("/api/chat", json={"query": "发什么快递", "session_id": "s"})
    assert res.status_code == 503 and res.get_json()["error"] == "session store unavailable"
    assert (
        client.post("/api/chat", json={"query": "发什么快递"}).status_code == 200
    )  # no session: fine


def test_chat_body_is_the_bytes_jsonify_would_send(client):
    """/api/chat writes its JSON without Flask's provider; the bytes are what ``jsonify`` makes
    of the same body (sorted keys, compact, non-ASCII kept, final newline)."""
    from flask import jsonify

    res = client.post("/api/chat", json={"query": "你们发什么快递？", "session_id": "bytes"})
    assert res.status_code == 200 and res.mimetype == "application/json"
    with client.application.app_context():
        expected = jsonify(res.get_json()).get_data()
    assert res.get_data() == expected
