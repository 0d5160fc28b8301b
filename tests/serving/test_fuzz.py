"""Random and malformed bodies never produce a 5xx (hypothesis)."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import AUTH

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
chat_like = st.fixed_dictionaries(
    {},
    optional={
        "query": st.one_of(st.text(max_size=600), json_values),
        "session_id": st.one_of(st.text(max_size=200), json_values),
        "context": st.one_of(st.lists(st.text(max_size=50), max_size=12), json_values),
    },
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    chat_like.map(lambda v: json.dumps(v).encode()),
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=bodies)
def test_chat_never_5xx(client, body):
    res = client.post("/api/chat", data=body, content_type="application/json")
    assert res.status_code < 500, res.get_data(as_text=True)
    payload = res.get_json()
    assert ("error" in payload) == (res.status_code >= 400)


kb_like = st.fixed_dictionaries(
    {},
    optional={
        "question": st.one_of(st.text(max_size=80), json_values),
        "answer": st.one_of(st.text(max_size=80), json_values),
        "tags": st.one_of(st.lists(st.text(max_size=5), max_size=25), json_values),
        "pairs": st.one_of(st.lists(json_values, max_size=4), json_values),
        "format": st.one_of(st.sampled_from(["tsv", "jsonl", "ecommerce", "chatterbot", "x"]), json_values),
        "content": st.one_of(st.text(max_size=200), json_values),
        "skip_bad": json_values,
    },
)
admin_calls = st.tuples(
    st.sampled_from(["POST /api/kb", "PUT /api/kb/1", "PATCH /api/kb/999", "DELETE /api/kb/5",
                     "POST /api/kb/import", "GET /api/kb"]),
    st.one_of(st.binary(max_size=200), kb_like.map(lambda v: json.dumps(v).encode())),
)


@FUZZ
@given(call=admin_calls)
def test_admin_never_5xx(client, call):
    (method, path), body = call[0].split(" "), call[1]
    res = client.open(path, method=method, data=body, content_type="application/json", headers=AUTH)
    assert res.status_code < 500, res.get_data(as_text=True)
