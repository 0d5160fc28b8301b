import pytest

from alime.config import ServeConfig
from alime.serving.validation import BadRequest, parse_chat, parse_json_body

LIMITS = ServeConfig(max_query_chars=10, max_context_turns=2)


@pytest.mark.parametrize(
    "body, message, status",
    [
        ([], "JSON object", 400),
        ({}, "'query' is required", 400),
        ({"query": 5}, "'query' must be a string", 400),
        ({"query": "  "}, "must not be empty", 400),
        ({"query": "x" * 11}, "longer than 10", 413),
        ({"query": "hi", "session_id": 3}, "session_id", 400),
        ({"query": "hi", "context": "a"}, "list of strings", 400),
        ({"query": "hi", "context": ["a", "b", "c"]}, "more than 2", 400),
        ({"query": "hi", "extra": 1}, "unknown field", 400),
    ],
)
def test_bad_requests_name_the_problem(body, message, status):
    with pytest.raises(BadRequest, match=message) as info:
        parse_chat(body, LIMITS)
    assert info.value.status == status


def test_good_request():
    req = parse_chat({"query": " 发货 ", "session_id": "s1", "context": ["a"]}, LIMITS)
    assert req.query == "发货" and req.session_id == "s1" and req.context == ("a",)


@pytest.mark.parametrize(
    "data, message",
    [
        (
            b"[" * 1000 + b"]" * 1000,
            "request body is nested deeper than 5 levels",
        ),  # past the parser's recursion
        (b'{"query": [[[[["x"]]]]]}', "request body is nested deeper than 5 levels"),
        (b"not json", "valid JSON"),
        (b"\xff\xfe\x00", "valid JSON"),
        (
            b'{"query": "ab\\ud800"}',
            "field 'query' contains a lone surrogate U+D800 at character 3",
        ),
        (
            '{"query": "ab\ud800"}'.encode("utf-8", "surrogatepass"),
            "field 'query' contains a lone surrogate",
        ),
        (
            b'{"pairs": [{"question": "q"}, {"question": "\\udc00"}]}',
            "field 'pairs[1].question' contains a lone surrogate U+DC00 at character 1",
        ),
        (
            b'{"content": "q\\ta\\nq\\ud800"}',
            "field 'content' contains a lone surrogate U+D800 at character 6 (line 2, character 2)",
        ),
        (b'{"q\\ud800": 1}', "a field name contains a lone surrogate U+D800 at character 2"),
        (b'"\\ud800"', "request body contains a lone surrogate"),
    ],
)
def test_json_bodies_that_cannot_be_handled_are_400(data, message):
    with pytest.raises(BadRequest) as info:
        parse_json_body(data, max_depth=5)
    assert message in str(info.value) and info.value.status == 400


def test_json_body_within_the_limits():
    body = parse_json_body('{"query": [[[["问"]]]], "a": "😀"}'.encode(), max_depth=5)
    assert body == {"query": [[[["问"]]]], "a": "😀"}


def test_max_json_depth_must_be_positive():
    with pytest.raises(ValueError, match="serve.max_json_depth"):
        ServeConfig(max_json_depth=0)


# -- issue 12 over HTTP: /api/chat --------------------------------------------------------------
def test_chat_deeply_nested_body_is_400(client):
    res = client.post("/api/chat", data="[" * 1000 + "]" * 1000, content_type="application/json")
    assert res.status_code == 400
    assert res.get_json()["error"] == "request body is nested deeper than 20 levels"
    res = client.post(
        "/api/chat", data='{"query": ' + "{" * 100_000, content_type="application/json"
    )
    assert res.status_code in (400, 413)  # over max_body_bytes: refused before parsing


def test_chat_lone_surrogate_is_400(client):
    res = client.post(
        "/api/chat",
        data='{"query": "发货\\ud800", "context": ["a", "\\udfff"]}',
        content_type="application/json",
    )
    assert res.status_code == 400
    assert (
        res.get_json()["error"] == "field 'query' contains a lone surrogate U+D800 at character 3"
    )
    res = client.post(
        "/api/chat",
        data='{"query": "发货", "session_id": "s\\ud800"}',
        content_type="application/json",
    )
    assert res.status_code == 400 and "field 'session_id'" in res.get_json()["error"]
