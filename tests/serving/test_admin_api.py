import tempfile
import time

import pytest

from alime.serving.app import create_app
from tests.kb.test_formats import alias_bomb
from tests.serving.conftest import AUTH


def test_admin_needs_the_token(client):
    assert client.post("/api/kb", json={"question": "q", "answer": "a"}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/api/kb", headers=wrong).status_code == 401
    assert client.get("/api/kb", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    assert client.get("/api/kb", headers=AUTH).status_code == 200


def test_admin_disabled_without_a_configured_token(bot, monkeypatch):
    monkeypatch.delenv("ALIME_ADMIN_TOKEN", raising=False)
    client = create_app(bot=bot).test_client()
    res = client.get("/api/kb", headers=AUTH)
    assert res.status_code == 403 and "disabled" in res.get_json()["error"]


def test_changes_are_visible_to_the_next_chat(client):
    before = client.post("/api/chat", json={"query": "支持货到付款吗"}).get_json()
    assert before["answer"] != "支持 货到付款"
    res = client.post(
        "/api/kb", json={"question": "支持 货到付款 吗", "answer": "支持 货到付款"}, headers=AUTH
    )
    assert res.status_code == 201
    new_id = res.get_json()["id"]
    after = client.post("/api/chat", json={"query": "支持货到付款吗"}).get_json()
    assert after["answer"] == "支持 货到付款" and after["candidates"][0]["id"] == new_id

    res = client.put(f"/api/kb/{new_id}", json={"answer": "暂不支持 货到付款"}, headers=AUTH)
    assert res.status_code == 200
    assert (
        client.post("/api/chat", json={"query": "支持货到付款吗"}).get_json()["answer"]
        == "暂不支持 货到付款"
    )

    assert client.delete(f"/api/kb/{new_id}", headers=AUTH).status_code == 200
    gone = client.post("/api/chat", json={"query": "支持货到付款吗"}).get_json()
    assert all(c["id"] != new_id for c in gone["candidates"])
    assert client.get(f"/api/kb/{new_id}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/kb/{new_id}", headers=AUTH).status_code == 404


def test_bulk_import_is_all_or_nothing(client):
    total = client.get("/api/kb", headers=AUTH).get_json()["total"]
    bad = {"pairs": [{"question": "q1", "answer": "a1"}, {"question": "q2"}]}
    res = client.post("/api/kb/import", json=bad, headers=AUTH)
    assert res.status_code == 400 and "pairs[1]" in res.get_json()["error"]
    assert client.get("/api/kb", headers=AUTH).get_json()["total"] == total
    res = client.post("/api/kb/import", json={**bad, "skip_bad": True}, headers=AUTH)
    assert res.get_json()["imported"] == 1 and len(res.get_json()["skipped"]) == 1
    tsv = {"format": "tsv", "content": "能 开 专票 吗\t可以 开 专票\nbroken line\n"}
    res = client.post("/api/kb/import", json=tsv, headers=AUTH)
    assert res.status_code == 400 and "line 2" in res.get_json()["error"]
    res = client.post("/api/kb/import", json={**tsv, "skip_bad": True}, headers=AUTH)
    assert res.status_code == 201
    assert (
        client.post("/api/chat", json={"query": "能开专票吗"}).get_json()["answer"]
        == "可以 开 专票"
    )


def test_admin_bad_input(client):
    assert client.post("/api/kb", data="x", headers=AUTH).status_code == 400
    assert (
        client.post("/api/kb", json={"question": "q", "answer": 3}, headers=AUTH).status_code == 400
    )
    assert client.patch("/api/kb/1", json={}, headers=AUTH).status_code == 400
    assert client.get("/api/kb?limit=abc", headers=AUTH).status_code == 400
    assert client.get("/api/kb?limit=0", headers=AUTH).status_code == 400
    res = client.post("/api/kb/import", json={"format": "xml", "content": "x"}, headers=AUTH)
    assert res.status_code == 400 and "valid:" in res.get_json()["error"]


# -- issue 12: bad input is a 4xx naming the problem, and changes nothing ------------------------
def kb_state(client):
    kb = client.application.extensions["alime"].bot.kb
    return kb.count(), kb.revision()


BEYOND_INT64 = "9" * 20


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE", "PUT", "PATCH"])
@pytest.mark.parametrize("raw_id", [BEYOND_INT64, str(2**63), "0", "-1", "abc", "1.5", "١"])
def test_bad_ids_are_400(client, method, raw_id):
    before = kb_state(client)
    res = client.open(f"/api/kb/{raw_id}", method=method, json={"answer": "新 答案"}, headers=AUTH)
    assert res.status_code == 400
    if method != "HEAD":
        assert (
            res.get_json()["error"]
            == f"id must be an integer from 1 to {2**63 - 1}, got {raw_id!r}"
        )
    assert kb_state(client) == before


def test_largest_id_is_valid_and_absent(client):
    assert client.get(f"/api/kb/{2**63 - 1}", headers=AUTH).status_code == 404
    assert client.delete(f"/api/kb/{2**63 - 1}", headers=AUTH).status_code == 404
    assert client.get("/api/kb/1", headers=AUTH).get_json()["id"] == 1


def test_lone_surrogate_in_a_question_is_400(client):
    before = kb_state(client)
    res = client.post(
        "/api/kb", data='{"question": "能 开 发票\\ud800 吗", "answer": "可以"}', headers=AUTH
    )
    assert res.status_code == 400
    assert (
        res.get_json()["error"]
        == "field 'question' contains a lone surrogate U+D800 at character 7"
    )
    res = client.put("/api/kb/1", data='{"tags": ["ok", "\\udfff"]}', headers=AUTH)
    assert res.status_code == 400 and "field 'tags[1]'" in res.get_json()["error"]
    res = client.post(
        "/api/kb/import", data='{"pairs": [{"question": "q", "answer": "\\ud800"}]}', headers=AUTH
    )
    assert res.status_code == 400 and "field 'pairs[0].answer'" in res.get_json()["error"]
    assert kb_state(client) == before


def test_lone_surrogate_in_import_content_is_400_and_leaves_no_file(client, tmp_path, monkeypatch):
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # any temporary file would land here
    before = kb_state(client)
    for skip_bad in (False, True):
        body = (
            '{"format": "tsv", "content": "能 开 专票 吗\\t可以\\n坏\\ud800\\t答\\n", '
            '"skip_bad": %s}'
        )
        res = client.post("/api/kb/import", data=body % str(skip_bad).lower(), headers=AUTH)
        assert res.status_code == 400
        assert res.get_json()["error"] == (
            "field 'content' contains a lone surrogate U+D800 at character 14 (line 2, character 2)"
        )
    assert kb_state(client) == before
    assert list(temp.iterdir()) == []


def test_alias_bomb_import_is_400(client):
    before = kb_state(client)
    started = time.perf_counter()
    res = client.post(
        "/api/kb/import", json={"format": "chatterbot", "content": alias_bomb()}, headers=AUTH
    )
    assert res.status_code == 400
    assert (
        res.get_json()["error"] == "line 2: YAML aliases are not allowed (*l0): write the text out"
    )
    assert time.perf_counter() - started < 5  # expanded, it was 72M characters
    assert kb_state(client) == before


def test_huge_line_and_deep_jsonl_over_http(client):
    before = kb_state(client)
    content = (
        "能 开 专票 吗\t可以\n" + "问" * 1_000_000 + "\t答\n"
    )  # 3 MB line: over the 256 KiB limit
    res = client.post("/api/kb/import", json={"format": "tsv", "content": content}, headers=AUTH)
    assert (
        res.status_code == 400
        and res.get_json()["error"] == f"line 2: line is longer than {256 * 1024} bytes"
    )
    long_field = {"question": "问" * 10_001, "answer": "答"}
    res = client.post("/api/kb", json=long_field, headers=AUTH)
    assert res.status_code == 413 and "longer than 10000 characters" in res.get_json()["error"]
    deep = '{"question": "q", "answer": "a"}\n' + "[" * 5000 + "]" * 5000 + "\n"
    res = client.post("/api/kb/import", json={"format": "jsonl", "content": deep}, headers=AUTH)
    assert (
        res.status_code == 400
        and res.get_json()["error"] == "line 2: JSON nested deeper than 20 levels"
    )
    assert kb_state(client) == before
    res = client.post(
        "/api/kb/import", json={"format": "jsonl", "content": deep, "skip_bad": True}, headers=AUTH
    )
    assert res.status_code == 201
    assert res.get_json()["skipped"] == ["line 2: JSON nested deeper than 20 levels"]
    assert kb_state(client)[0] == before[0] + 1


def test_deeply_nested_admin_body_is_400(client):
    before = kb_state(client)
    res = client.post(
        "/api/kb/import", data='{"pairs": ' + "[" * 1000 + "]" * 1000 + "}", headers=AUTH
    )
    assert (
        res.status_code == 400
        and res.get_json()["error"] == "request body is nested deeper than 20 levels"
    )
    assert kb_state(client) == before


def test_phrasings_through_the_admin_api(client):
    body = {"question": "支持 数字人民币 吗", "answer": "支持", "phrasings": ["能 用 e-CNY 吗"]}
    res = client.post("/api/kb", json=body, headers=AUTH)
    assert res.status_code == 201 and res.get_json()["phrasings"] == ["能 用 e-CNY 吗"]
    new_id = res.get_json()["id"]
    chat = client.post("/api/chat", json={"query": "e-CNY"}).get_json()
    assert chat["candidates"][0]["id"] == new_id  # found by its phrasing alone
    assert chat["candidates"][0]["phrasings"] == ["能 用 e-CNY 吗"]
    res = client.patch(f"/api/kb/{new_id}", json={"phrasings": ["数币 能 付 吗"]}, headers=AUTH)
    assert res.status_code == 200 and res.get_json()["phrasings"] == ["数币 能 付 吗"]
    assert client.get(f"/api/kb/{new_id}", headers=AUTH).get_json()["phrasings"] == [
        "数币 能 付 吗"
    ]
    chat = client.post("/api/chat", json={"query": "e-CNY"}).get_json()
    assert all(c["id"] != new_id for c in chat["candidates"])  # the old phrasing is gone
    res = client.post(
        "/api/kb/import",
        json={"pairs": [{"question": "开 发票 吗", "answer": "可以", "phrasings": ["有 发票 吗"]}]},
        headers=AUTH,
    )
    imported = client.get(f"/api/kb/{res.get_json()['first_id']}", headers=AUTH).get_json()
    assert imported["phrasings"] == ["有 发票 吗"]
    for bad in ("有 发票 吗", ["ok", ""], [3], ["x"] * 101):
        res = client.post(
            "/api/kb", json={"question": "q", "answer": "a", "phrasings": bad}, headers=AUTH
        )
        assert res.status_code == 400 and "phrasings" in res.get_json()["error"], bad
