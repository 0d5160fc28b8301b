"""Random and malformed bodies never produce a 5xx (hypothesis)."""

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kb.test_formats import alias_bomb
from tests.serving.conftest import AUTH

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
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
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


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
        "format": st.one_of(
            st.sampled_from(["tsv", "jsonl", "ecommerce", "chatterbot", "x"]), json_values
        ),
        "content": st.one_of(st.text(max_size=200), json_values),
        "skip_bad": json_values,
    },
)
admin_calls = st.tuples(
    st.sampled_from(
        [
            "POST /api/kb",
            "PUT /api/kb/1",
            "PATCH /api/kb/999",
            "DELETE /api/kb/5",
            "POST /api/kb/import",
            "GET /api/kb",
        ]
    ),
    st.one_of(st.binary(max_size=200), kb_like.map(lambda v: json.dumps(v).encode())),
)


@FUZZ
@given(call=admin_calls)
def test_admin_never_5xx(client, call):
    (method, path), body = call[0].split(" "), call[1]
    res = client.open(path, method=method, data=body, content_type="application/json", headers=AUTH)
    assert res.status_code < 500, res.get_data(as_text=True)


# -- issue 12: hostile input (deep nesting, huge ids, lone surrogates, YAML alias bombs) -----------
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
# Text with lone surrogates mixed in; json.dumps escapes them as "\\ud800", as a client would send.
surrogate_text = st.lists(
    st.one_of(st.characters(codec="utf-8"), surrogates), min_size=1, max_size=12
).map("".join)


def nested(depth: int, kind: str, leaf: str = "1") -> str:
    if kind == "list":
        return "[" * depth + leaf + "]" * depth
    return '{"a": ' * depth + leaf + "}" * depth


# Shallow (around the limit of 20) and past the parser's recursion limit (~1,000), both often.
depths = st.one_of(st.integers(1, 40), st.integers(990, 3000))
deep_json = st.builds(nested, depths, st.sampled_from(["list", "object"]))
deep_bodies = st.one_of(
    deep_json,
    st.builds(
        lambda d, k: '{"query": ' + nested(d, k, '"x"') + "}",
        depths,
        st.sampled_from(["list", "object"]),
    ),
    st.builds(
        lambda d: '{"query": "q", "context": ' + nested(d, "list", '"x"') + "}", st.integers(1, 60)
    ),
    st.builds(lambda d: '{"pairs": [' + nested(d, "object") + "]}", depths),
)
surrogate_bodies = st.one_of(
    st.fixed_dictionaries(
        {"query": surrogate_text},
        optional={"session_id": surrogate_text, "context": st.lists(surrogate_text, max_size=3)},
    ),
    st.fixed_dictionaries(
        {"question": surrogate_text, "answer": st.one_of(surrogate_text, st.just("答"))},
        optional={"tags": st.lists(surrogate_text, max_size=3)},
    ),
    st.dictionaries(surrogate_text, st.just("x"), min_size=1, max_size=2),
).map(json.dumps)
raw_surrogate_bodies = st.builds(  # UTF-8-encoded surrogates: json.loads(bytes) decodes them too
    lambda text: json.dumps({"query": text}, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    surrogate_text,
)

ids = st.one_of(
    st.integers(min_value=2**63, max_value=2**200),
    st.integers(max_value=0, min_value=-(2**70)),
    st.integers(1, 40),
    st.just(2**63 - 1),
    st.text(min_size=1, max_size=25).filter(lambda t: t not in (".", "..")),
).map(
    lambda v: (
        quote(str(v), safe="")
        if not isinstance(v, str)
        else quote(v.encode("utf-8", "surrogatepass"), safe="")
    )
)


def yaml_alias_variants(levels: int, name: str) -> str:
    return alias_bomb(levels).replace("l", name[0])  # renamed anchors: l0 -> x0, ...


import_contents = st.one_of(
    st.builds(lambda n: {"format": "chatterbot", "content": alias_bomb(n)}, st.integers(1, 9)),
    st.builds(
        lambda n, name: {"format": "chatterbot", "content": yaml_alias_variants(n, name)},
        st.integers(2, 9),
        st.sampled_from("abcxyz"),
    ),
    st.builds(
        lambda d: {
            "format": "chatterbot",
            "content": "conversations:\n- - " + nested(d, "list") + "\n  - x\n",
        },
        depths,
    ),
    st.builds(
        lambda d, skip: {
            "format": "jsonl",
            "skip_bad": skip,
            "content": '{"question": "q", "answer": "a"}\n' + nested(d, "list") + "\n",
        },
        depths,
        st.booleans(),
    ),
    st.builds(
        lambda q, fmt, skip: {"format": fmt, "content": q + "\t" + q + "\n", "skip_bad": skip},
        surrogate_text,
        st.sampled_from(["tsv", "jsonl", "ecommerce", "chatterbot"]),
        st.booleans(),
    ),
).map(lambda body: json.dumps(body).encode())

hostile_admin_calls = st.one_of(
    st.tuples(
        st.sampled_from(["GET", "HEAD", "DELETE", "PUT", "PATCH"]),
        ids.map(lambda i: f"/api/kb/{i}"),
        st.one_of(
            st.just('{"answer": "新 答案"}'.encode()),
            surrogate_bodies.map(str.encode),
            deep_bodies.map(str.encode),
        ),
    ),
    st.tuples(
        st.just("POST"),
        st.just("/api/kb"),
        st.one_of(surrogate_bodies, deep_bodies).map(str.encode),
    ),
    st.tuples(
        st.just("POST"),
        st.just("/api/kb/import"),
        st.one_of(import_contents, deep_bodies.map(str.encode), surrogate_bodies.map(str.encode)),
    ),
)


@FUZZ
@given(
    body=st.one_of(
        deep_bodies.map(str.encode), surrogate_bodies.map(str.encode), raw_surrogate_bodies
    )
)
def test_chat_hostile_bodies_are_4xx(client, body):
    res = client.post("/api/chat", data=body, content_type="application/json")
    assert res.status_code < 500, res.get_data(as_text=True)
    payload = res.get_json()
    assert ("error" in payload) == (res.status_code >= 400)


@FUZZ
@given(call=hostile_admin_calls)
def test_admin_hostile_calls_are_4xx_and_change_nothing(client, call):
    method, path, body = call
    kb = client.application.extensions["alime"].bot.kb
    before = (kb.count(), kb.revision())
    res = client.open(path, method=method, data=body, content_type="application/json", headers=AUTH)
    assert res.status_code < 500, res.get_data(as_text=True)
    if res.status_code >= 400:
        assert (kb.count(), kb.revision()) == before, res.get_data(as_text=True)
        if method != "HEAD":
            assert "error" in res.get_json()
