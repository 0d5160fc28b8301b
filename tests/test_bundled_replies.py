"""The bundled artifacts answer exactly as recorded: the same answer, source and rule (and the
decision score to 3 places) for a fixed list of mixed queries, with the int8 and the fp32
bundled model. The fixture is written by ``tests/bundled_replies.py --regen``; regenerate it
(and review the diff) only when the bundled KB, rules or model change on purpose."""

import json

import pytest

from tests.bundled_replies import FIXTURE, MODELS, QUERIES, record_all


@pytest.fixture(scope="module")
def replies():
    return record_all()


def test_fixture_covers_every_query_and_model():
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert set(expected) == set(MODELS)
    for model in MODELS:
        assert [r["query"] for r in expected[model]] == list(QUERIES), model
    # The list is mixed: every kind of decision is exercised.
    rules = {r["rule"] for r in expected["model-int8"]}
    assert {"faq", "chitchat", "low_confidence", "complaint", "person", "gibberish"} <= rules


@pytest.mark.parametrize("model", MODELS)
def test_bundled_bot_answers_as_recorded(replies, model):
    expected = json.loads(FIXTURE.read_text(encoding="utf-8"))[model]
    for got, want in zip(replies[model], expected, strict=True):
        assert (got["query"], got["answer"], got["source"], got["rule"]) == (
            want["query"],
            want["answer"],
            want["source"],
            want["rule"],
        )
        if want["score"] is None:
            assert got["score"] is None, want["query"]
        else:
            assert got["score"] == pytest.approx(want["score"], abs=1.5e-3), want["query"]
