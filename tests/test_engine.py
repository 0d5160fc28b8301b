"""The hybrid policy with stub stages (the real stages are tested in their own packages)."""

import pytest

from alime.engine import HybridEngine, Thresholds
from alime.types import ChitChatMatch, Generated, Hit, QAPair, Rule, RuleMatch, Source

PAIRS = {i: QAPair(i, f"q{i}", f"a{i}") for i in range(1, 6)}


class StubRetriever:
    def __init__(self, hits):
        self.hits = hits

    def search(self, query, k):
        return self.hits[:k]


class StubScorer:
    def __init__(self, table):
        self.table = table
        self.seen_context = None

    def score(self, query, context, answers):
        self.seen_context = list(context)
        return [self.table[a] for a in answers]


class StubGenerator:
    def __init__(self, outputs):
        self.outputs = outputs

    def generate(self, query, context):
        return self.outputs


def lookup(ids):
    return {i: PAIRS[i] for i in ids if i in PAIRS}


def make(hits, scores=None, generated=None, t=0.5, gen_t=0.3, k=10):
    return HybridEngine(
        StubRetriever(hits),
        lookup,
        Thresholds(t, gen_t),
        scorer=StubScorer(scores) if scores is not None else None,
        generator=StubGenerator(generated) if generated is not None else None,
        k=k,
        fallback_reply="转人工",
    )


def test_rerank_reorders_and_answers_from_kb_at_threshold():
    engine = make([Hit(1, 9.0), Hit(2, 5.0)], scores={"a1": 0.2, "a2": 0.5})
    reply = engine.reply("q", ["earlier turn"])
    assert reply.source is Source.RETRIEVAL and reply.answer == "a2" and reply.score == 0.5
    assert [c.id for c in reply.candidates] == [2, 1]
    assert reply.candidates[0].retrieval_score == 5.0 and reply.candidates[0].rerank_score == 0.5
    assert engine.scorer.seen_context == ["earlier turn"]
    assert {"retrieve", "rerank", "total"} <= set(reply.timings_ms)


def test_below_threshold_generates():
    engine = make([Hit(1, 9.0)], scores={"a1": 0.49}, generated=[Generated("生成的回答", 0.31)])
    reply = engine.reply("q")
    assert (
        reply.source is Source.GENERATION and reply.answer == "生成的回答" and reply.score == 0.31
    )
    assert reply.candidates[0].rerank_score == 0.49 and not reply.handoff


def test_unsure_generation_falls_back_with_handoff():
    engine = make([Hit(1, 9.0)], scores={"a1": 0.1}, generated=[Generated("嗯", 0.29)])
    reply = engine.reply("q")
    assert reply.source is Source.FALLBACK and reply.answer == "转人工" and reply.handoff
    assert reply.score == 0.1  # the real best rerank score, never a fake one


def test_no_candidates_no_generator_is_fallback_without_score():
    reply = make([], scores={}).reply("q")
    assert reply.source is Source.FALLBACK and reply.score is None and reply.candidates == ()


def test_retrieval_only_uses_retrieval_score():
    reply = make([Hit(3, 2.5), Hit(4, 1.0)], t=0.0).reply("q")
    assert reply.source is Source.RETRIEVAL and reply.answer == "a3" and reply.score == 2.5
    assert reply.candidates[0].rerank_score is None


def test_deleted_pair_between_search_and_lookup_is_dropped():
    reply = make([Hit(99, 3.0), Hit(2, 1.0)], t=0.0).reply("q")
    assert [c.id for c in reply.candidates] == [2]


def test_reply_json_shape():
    body = make([Hit(1, 9.0)], scores={"a1": 0.9}).reply("q").to_json()
    assert set(body) == {
        "answer",
        "source",
        "rule",
        "score",
        "threshold",
        "evidence",
        "candidates",
        "timings_ms",
        "handoff",
    }
    assert body["source"] == "retrieval" and body["rule"] == "faq" and body["evidence"] is None
    assert set(body["candidates"][0]) == {
        "id",
        "question",
        "phrasings",
        "answer",
        "retrieval_score",
        "rerank_score",
        "routing_score",
    }


def test_time_budget_skips_generation_when_it_would_overrun():
    import time

    class SlowGenerator:
        def generate(self, query, context):
            time.sleep(0.05)
            return [Generated("慢", 0.9)]

    engine = HybridEngine(
        StubRetriever([Hit(1, 9.0)]),
        lookup,
        Thresholds(0.5, 0.3),
        scorer=StubScorer({"a1": 0.1}),
        generator=SlowGenerator(),
    )
    assert engine.reply("q", budget_s=10.0).source is Source.GENERATION  # learns it takes ~50 ms
    reply = engine.reply("q", budget_s=0.01)
    assert reply.source is Source.FALLBACK and reply.handoff and "generate" not in reply.timings_ms


class StubGuards:
    def __init__(self, matches):
        self.matches = matches

    def check(self, query):
        return self.matches.get(query)


class StubChitChat:
    def __init__(self, table):
        self.table = table
        self.asked = []

    def best(self, query, minimum=0.0):
        self.asked.append(query)
        return self.table.get(query)

    def exact(self, query):
        match = self.table.get(query)
        return match if match is not None and match.question == query else None

    def same(self, query, question):
        return query == question


class CountingRetriever(StubRetriever):
    calls = 0

    def search(self, query, k):
        self.calls += 1
        return super().search(query, k)


def full(hits, scores, generated=None, guards=None, chitchat=None, t=0.5, gen_t=0.3, chat_t=0.8):
    return HybridEngine(
        CountingRetriever(hits),
        lookup,
        Thresholds(t, gen_t, chat_t),
        scorer=StubScorer(scores),
        generator=StubGenerator(generated) if generated is not None else None,
        fallback_reply="转人工",
        guards=guards,
        chitchat=chitchat,
    )


def test_a_rule_before_retrieval_decides_without_retrieving():
    guards = StubGuards(
        {
            "我要投诉": RuleMatch(Rule.COMPLAINT, "已转人工", True, "投诉"),
            "asdf": RuleMatch(Rule.GIBBERISH, "请换个说法", False, "keyboard"),
        }
    )
    engine = full([Hit(1, 9.0)], {"a1": 0.9}, guards=guards, chitchat=StubChitChat({}))
    reply = engine.reply("我要投诉")
    assert (reply.source, reply.rule, reply.answer, reply.handoff, reply.evidence) == (
        Source.FALLBACK,
        Rule.COMPLAINT,
        "已转人工",
        True,
        "投诉",
    )
    assert reply.score is None and reply.threshold is None and reply.candidates == ()
    assert engine.retriever.calls == 0 and engine.chitchat.asked == []
    assert set(reply.timings_ms) == {"rules", "total"}
    gib = engine.reply("asdf")
    assert gib.rule is Rule.GIBBERISH and not gib.handoff and gib.answer == "请换个说法"
    passed = engine.reply("q")  # no rule matched: the FAQ answers
    assert passed.rule is Rule.FAQ and passed.answer == "a1" and engine.retriever.calls == 1
    assert "rules" in passed.timings_ms


def test_faq_answers_first_unless_the_query_is_word_for_word_small_talk():
    chat = StubChitChat({"q": ChitChatMatch("你好", "您好", 1.0)})
    reply = full([Hit(1, 9.0)], {"a1": 0.5}, chitchat=chat).reply("q")
    assert reply.rule is Rule.FAQ and reply.source is Source.RETRIEVAL
    # only the exact lookup ran, not the best-match scan
    assert reply.score == 0.5 and reply.threshold == 0.5 and chat.asked == []


def test_word_for_word_small_talk_beats_a_passing_faq_score():
    chat = StubChitChat({"收到": ChitChatMatch("收到", "好的亲", 1.0)})
    reply = full([Hit(1, 9.0)], {"a1": 0.99}, chitchat=chat).reply("收到")
    assert reply.rule is Rule.CHITCHAT and reply.answer == "好的亲"
    assert reply.evidence == "收到" and [c.id for c in reply.candidates] == [1]


def test_small_talk_that_is_also_word_for_word_the_faq_question_goes_to_the_faq():
    chat = StubChitChat({"q1": ChitChatMatch("q1", "chat", 1.0)})
    reply = full([Hit(1, 9.0)], {"a1": 0.99}, chitchat=chat).reply("q1")  # PAIRS[1] asks q1
    assert reply.rule is Rule.FAQ and reply.answer == "a1"


@pytest.mark.parametrize("match_score, used", [(0.8, True), (0.7999999, False)])
def test_chitchat_when_the_faq_does_not_answer_at_its_threshold(match_score, used):
    chat = StubChitChat({"q": ChitChatMatch("你好", "您好", match_score)})
    engine = full([Hit(1, 9.0)], {"a1": 0.49}, generated=[Generated("生成", 0.31)], chitchat=chat)
    reply = engine.reply("q")
    if used:
        assert (reply.source, reply.rule, reply.answer, reply.evidence) == (
            Source.CHITCHAT,
            Rule.CHITCHAT,
            "您好",
            "你好",
        )
        assert reply.score == match_score and reply.threshold == 0.8 and not reply.handoff
        assert reply.candidates[0].rerank_score == 0.49  # the FAQ's candidates stay visible
        assert "generate" not in reply.timings_ms and "chitchat" in reply.timings_ms
    else:
        assert reply.source is Source.GENERATION and reply.rule is Rule.GENERATION


def test_generated_reply_reports_its_score_against_g_not_t():
    reply = full(
        [Hit(1, 9.0)],
        {"a1": 0.1},
        generated=[Generated("生成的回答", 0.3)],
        chitchat=StubChitChat({}),
    ).reply("q")
    assert reply.rule is Rule.GENERATION and reply.score == 0.3 and reply.threshold == 0.3
    body = reply.to_json()
    assert body["rule"] == "generation" and body["threshold"] == 0.3  # G, while T is 0.5


def test_low_confidence_reports_the_faq_score_against_t():
    chat = StubChitChat({"q": ChitChatMatch("你好", "您好", 0.5)})
    reply = full(
        [Hit(1, 9.0)], {"a1": 0.1}, generated=[Generated("嗯", 0.29)], chitchat=chat
    ).reply("q")
    assert (reply.source, reply.rule, reply.handoff) == (Source.FALLBACK, Rule.LOW_CONFIDENCE, True)
    assert reply.score == 0.1 and reply.threshold == 0.5 and reply.answer == "转人工"


def test_time_budget_names_its_rule():
    import time

    class SlowGenerator:
        def generate(self, query, context):
            time.sleep(0.05)
            return [Generated("慢", 0.9)]

    engine = HybridEngine(
        StubRetriever([Hit(1, 9.0)]),
        lookup,
        Thresholds(0.5, 0.3),
        scorer=StubScorer({"a1": 0.1}),
        generator=SlowGenerator(),
    )
    assert engine.reply("q", budget_s=10.0).rule is Rule.GENERATION
    reply = engine.reply("q", budget_s=0.01)
    assert reply.rule is Rule.TIME_BUDGET and reply.handoff and reply.threshold == 0.5


class CountingGenerator(StubGenerator):
    calls = 0

    def generate(self, query, context):
        self.calls += 1
        return super().generate(query, context)


@pytest.mark.parametrize("gen_t, calls", [(1.0, 1), (1.0001, 0), (1.704, 0)])
def test_generation_runs_only_when_its_threshold_is_reachable(gen_t, calls):
    """A generated score is a mean token probability (<= 1): with G above 1 (the bundled
    decision's way of turning generation off) the generator is not run; the reply is the same
    fallback it would have been."""
    gen = CountingGenerator([Generated("生成", 1.0)])
    engine = HybridEngine(
        CountingRetriever([Hit(1, 9.0)]),
        lookup,
        Thresholds(0.5, gen_t),
        scorer=StubScorer({"a1": 0.1}),
        generator=gen,
        fallback_reply="转人工",
    )
    reply = engine.reply("q", budget_s=0.0 if calls == 0 else None)  # no time-budget rule either
    assert gen.calls == calls
    if calls:
        assert reply.rule is Rule.GENERATION and reply.answer == "生成"
    else:
        assert (
            reply.rule is Rule.LOW_CONFIDENCE
            and reply.handoff
            and "generate" not in reply.timings_ms
        )
