import pytest

from alime.config import ServeConfig
from alime.serving.validation import BadRequest, parse_chat

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
