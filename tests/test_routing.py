"""The routing score: features on hand-computed cases, the logistic fit, routing.json, and the
engine answering from the KB iff the routing score reaches T."""

import json
import math

import numpy as np
import pytest

from alime.engine import HybridEngine, Thresholds
from alime.routing import (
    CandidateFeatures,
    Feature,
    FeatureRouter,
    LogisticRouting,
    RoutingChoice,
    char_overlap_f1,
    fit_logistic,
    read_routing,
    weighted_overlap_f1,
    write_routing,
)
from alime.types import Candidate, Hit, QAPair, Source


def test_weighted_overlap_f1_by_hand():
    idf = {"发货": 2.0, "什么": 1.0, "时候": 1.0, "快递": 3.0}.get
    # common {什么, 时候} = 2; query {什么, 时候, 发货} = 4; question {什么, 时候, 快递} = 5
    assert weighted_overlap_f1(
        ["什么", "时候", "发货"], ["什么", "时候", "快递"], idf
    ) == pytest.approx(2 * 2 / (4 + 5))
    assert weighted_overlap_f1(["发货"], ["发货"], idf) == 1.0
    assert weighted_overlap_f1(["发货"], ["快递"], idf) == 0.0
    assert weighted_overlap_f1([], ["快递"], idf) == 0.0


def test_weighted_overlap_f1_with_synonyms_by_hand():
    idf = {"给": 0.5, "折扣": 0.0, "能": 1.0, "便宜": 2.0, "点": 1.0, "快递": 3.0}.get
    groups = {"折扣": ("便宜",), "便宜": ("折扣",)}
    syn = lambda t: groups.get(t, ())  # noqa: E731
    # query {给 0.5, 折扣 0 (not in the KB)}; question {能 1, 便宜 2, 点 1}
    # matched: query 折扣 (0) via 便宜; question 便宜 (2) via 折扣 -> (0 + 2) / (0.5 + 4)
    assert weighted_overlap_f1(["给", "折扣"], ["能", "便宜", "点"], idf, syn) == pytest.approx(
        2 / 4.5
    )
    assert weighted_overlap_f1(["给", "折扣"], ["能", "便宜", "点"], idf) == 0.0  # no synonyms
    # without synonyms in play it is the plain F1
    plain = weighted_overlap_f1(["能", "快递"], ["能", "便宜"], idf)
    assert weighted_overlap_f1(["能", "快递"], ["能", "便宜"], idf, syn) == pytest.approx(plain)
    assert plain == pytest.approx(2 * 1 / (4 + 3))


def test_core_overlap_f1_by_hand():
    from alime.routing import core_overlap_f1

    # 写好评送钱吗 -> 写好评送钱 (吗 dropped); 好评返现吗 -> 好评返现: common 好评 = 2 of 5 and 4
    assert core_overlap_f1("写好评送钱吗", "好评返现吗") == pytest.approx(2 * 2 / (5 + 4))
    assert char_overlap_f1("写好评送钱吗", "好评返现吗") == pytest.approx(2 * 3 / (6 + 5))
    assert core_overlap_f1("有货吗？", "有 货 吗") == 1.0
    assert core_overlap_f1("是不是吗", "货") == 0.0  # nothing but function characters


def test_known_is_the_share_of_query_terms_the_kb_has():
    idf = {"发货": 2.0, "什么": 0.5}.get
    feats = CandidateFeatures(lambda t: t.split(), lambda t: idf(t) or 0.0)
    cands = [Candidate(1, "什么 时候 发货", "a", 1.0), Candidate(2, "发货", "b", 0.5)]
    out = feats("什么 电影 发货 好看", cands, (Feature.KNOWN,))
    assert out[Feature.KNOWN].tolist() == [0.5, 0.5]  # 什么, 发货 known; 电影, 好看 not
    assert feats("", cands, (Feature.KNOWN,))[Feature.KNOWN].tolist() == [0.0, 0.0]


def test_character_features_compare_standardized_texts():
    std = {"咋存": "怎么存", "怎么存": "怎么存"}.get
    cands = [Candidate(1, "怎么存", "a", 1.0)]
    wanted = (Feature.CORE, Feature.CHARS)
    plain = CandidateFeatures(lambda t: [t], lambda t: 1.0)("咋存", cands, wanted)
    standard = CandidateFeatures(lambda t: [t], lambda t: 1.0, standardize=std)(
        "咋存", cands, wanted
    )
    # 咋存 vs 怎么存 (么 is a function character): core 咋存 vs 怎存, 存 shared: 2 x 1 / (2 + 2);
    # standardized, the texts are equal
    assert plain[Feature.CORE].tolist() == [pytest.approx(0.5)]
    assert standard[Feature.CORE].tolist() == [1.0] and standard[Feature.CHARS].tolist() == [1.0]


def test_char_overlap_f1_by_hand():
    assert char_overlap_f1("什么 时候 发货", "什么时候发货") == 1.0
    # "发货吗" vs "发货": common 2 chars, 3 and 2 -> 4 / 5
    assert char_overlap_f1("发货吗", "发货") == pytest.approx(0.8)
    assert char_overlap_f1("猫", "发货") == 0.0


def test_candidate_features_columns():
    idf = {"发货": 2.0, "快递": 3.0}.get

    def embed(texts):
        table = {"发货": [1.0, 0.0], "快递": [0.6, 0.8]}
        return np.array([table[t] for t in texts])

    feats = CandidateFeatures(lambda t: t.split(), lambda t: idf(t) or 0.0, embed)
    cands = [Candidate(1, "发货", "a", 1.0, -0.5), Candidate(2, "快递", "b", 0.5, None)]
    out = feats("发货", cands)
    assert out[Feature.MATCH].tolist() == [1.0, 0.0]
    assert out[Feature.CHARS].tolist() == [1.0, 0.0]
    assert out[Feature.DENSE] == pytest.approx([1.0, 0.6])
    assert out[Feature.RERANK][0] == -0.5 and math.isnan(out[Feature.RERANK][1])


def test_logistic_probabilities_by_hand():
    m = LogisticRouting((Feature.MATCH, Feature.RERANK), (2.0, -1.0), 0.5, (0.5, 0.0), (0.25, 2.0))
    x = np.array([[0.75, 2.0], [0.5, np.nan]])
    # row 0: 0.5 + 2 * 1 - 1 * 1 = 1.5; row 1: NaN rerank counts as its mean -> 0.5
    assert m.probabilities(x) == pytest.approx([1 / (1 + math.exp(-1.5)), 1 / (1 + math.exp(-0.5))])
    with pytest.raises(ValueError):
        LogisticRouting((Feature.MATCH,), (1.0,), 0.0, (0.0,), (0.0,))
    with pytest.raises(ValueError):
        LogisticRouting(("colour",), (1.0,), 0.0, (0.0,), (1.0,))


def test_fit_logistic_separates_and_orders():
    rng = np.random.default_rng(0)
    good = rng.normal(1.0, 0.3, 200)
    bad = rng.normal(0.0, 0.3, 200)
    noise = rng.normal(0.0, 1.0, 400)
    x = np.column_stack([np.concatenate([good, bad]), noise])
    y = np.concatenate([np.ones(200), np.zeros(200)])
    m = fit_logistic(x, y, (Feature.MATCH, Feature.DENSE))
    assert m.weights[0] > 2.0 and abs(m.weights[1]) < 0.5 * m.weights[0]
    p = m.probabilities(x)
    assert ((p >= 0.5) == (y == 1)).mean() > 0.9


def test_routing_file_round_trip_and_errors(tmp_path):
    m = LogisticRouting((Feature.CHARS,), (2.5,), -1.0, (0.3,), (0.2,))
    write_routing(tmp_path, RoutingChoice(m, 0.42, "words", 0.01), {"note": "test"})
    back = read_routing(tmp_path)
    assert back == RoutingChoice(m, 0.42, "words", 0.01)
    assert read_routing(tmp_path / "missing") is None
    data = json.loads((tmp_path / "routing.json").read_text())
    for bad in (
        {**data, "score": "mlp"},
        {**data, "threshold": "high"},
        {**data, "features": ["colour"]},
        {k: v for k, v in data.items() if k != "bias"},
    ):
        (tmp_path / "routing.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match="routing.json"):
            read_routing(tmp_path)


# -- the engine with a router ----------------------------------------------------------------
PAIRS = {1: QAPair(1, "什么 时候 发货", "今天 发货"), 2: QAPair(2, "您好", "您好")}


class Retriever:
    def search(self, query, k):
        return [Hit(2, 3.0), Hit(1, 2.0)]


class Scorer:  # the rerank score prefers the stock reply, whatever the question
    def score(self, query, context, answers):
        return [{"您好": -0.5, "今天 发货": -2.0}[a] for a in answers]


class TableRouter:
    def __init__(self, table):
        self.table = table

    def score(self, query, candidates):
        return [self.table[c.id] for c in candidates]


def engine(router, t):
    return HybridEngine(
        Retriever(),
        lambda ids: {i: PAIRS[i] for i in ids},
        Thresholds(t, 0.0),
        scorer=Scorer(),
        router=router,
        fallback_reply="转人工",
    )


def test_engine_answers_with_the_best_routed_candidate_iff_score_reaches_t():
    router = TableRouter({1: 0.7, 2: 0.2})
    reply = engine(router, 0.7).reply("什么时候发货")
    assert reply.source is Source.RETRIEVAL and reply.answer == "今天 发货"
    assert reply.score == 0.7 and reply.threshold == 0.7
    assert [c.id for c in reply.candidates] == [1, 2]  # routing order, not rerank order
    assert reply.candidates[0].rerank_score == -2.0 and reply.candidates[0].routing_score == 0.7
    assert reply.candidates[0].retrieval_score == 2.0
    below = engine(router, 0.7000001).reply("什么时候发货")
    assert below.source is Source.FALLBACK and below.handoff and below.score == 0.7


def test_engine_without_router_keeps_the_rerank_rule():
    reply = engine(None, -0.5).reply("x")
    assert reply.source is Source.RETRIEVAL and reply.answer == "您好" and reply.score == -0.5
    assert reply.candidates[0].routing_score is None


def test_feature_router_scores_candidates():
    m = LogisticRouting((Feature.CHARS,), (4.0,), 0.0, (0.5,), (0.5,))
    router = FeatureRouter(CandidateFeatures(lambda t: t.split(), lambda t: 1.0), m)
    p = router.score("发货", [Candidate(1, "发货", "a", 1.0), Candidate(2, "猫", "b", 1.0)])
    assert p == pytest.approx([1 / (1 + math.exp(-4.0)), 1 / (1 + math.exp(4.0))])
    assert router.score("发货", []) == []


def test_feature_router_computes_only_the_features_its_model_uses():
    """A chars-only model must not tokenize or embed (they cost per candidate, per request)."""

    def fail(*_):
        raise AssertionError("an unused feature was computed")

    m = LogisticRouting((Feature.CHARS,), (1.0,), 0.0, (0.0,), (1.0,))
    router = FeatureRouter(CandidateFeatures(fail, fail, fail), m)
    assert len(router.score("发货", [Candidate(1, "发货", "a", 1.0)])) == 1
    with pytest.raises(AssertionError):
        CandidateFeatures(fail, fail, fail)("发货", [Candidate(1, "发货", "a", 1.0)])


def test_match_and_chars_take_the_best_phrasing():
    """Hand-computed, query 发货 时间 (idf: 发货 2, 时间 1, 什么 0.5, others 0).

    match (idf-weighted term F1): primary 什么 发货 -> 2*2 / (3 + 2.5) = 0.7273; phrasing
    发 货时 间 -> 0 (no common term); phrasing 时间 发货 哦 亲 -> 2*3 / (3 + 3) = 1.0. Best 1.0.
    chars (character F1): 什么发货 -> 2*2/8 = 0.5; 发货时间 -> 1.0; 时间发货哦亲 -> 2*4/10 = 0.8.
    Best 1.0, from another phrasing than match's best.
    """
    idf = {"发货": 2.0, "时间": 1.0, "什么": 0.5}
    features = CandidateFeatures(lambda t: t.split(), lambda t: idf.get(t, 0.0))
    plain = Candidate(1, "什么 发货", "a", 1.0)
    phrased = Candidate(1, "什么 发货", "a", 1.0, phrasings=("发 货时 间", "时间 发货 哦 亲"))
    only_y = Candidate(1, "什么 发货", "a", 1.0, phrasings=("时间 发货 哦 亲",))
    out = features("发货 时间", [plain, phrased, only_y], (Feature.MATCH, Feature.CHARS))
    assert out[Feature.MATCH] == pytest.approx([2 * 2 / 5.5, 1.0, 1.0])
    assert out[Feature.CHARS] == pytest.approx([0.5, 1.0, 0.8])


def test_engine_candidates_carry_the_entrys_phrasings():
    pairs = {1: QAPair(1, "什么 时候 发货", "今天 发货", phrasings=("几时 发货",)), 2: PAIRS[2]}
    eng = HybridEngine(Retriever(), lambda ids: {i: pairs[i] for i in ids}, Thresholds(0.0, 0.0))
    by_id = {c.id: c for c in eng.candidates("几时发货")}
    assert by_id[1].phrasings == ("几时 发货",) and by_id[2].phrasings == ()
    assert by_id[1].to_json()["phrasings"] == ["几时 发货"]


def test_unreviewed_marks_entries_curate_grouped_from_chat_logs():
    feats = CandidateFeatures(lambda t: t.split(), lambda t: 1.0)
    cands = [
        Candidate(1, "发货", "a", 1.0, tags=("ecommerce", "unreviewed")),
        Candidate(2, "发货", "b", 1.0, tags=("faq",)),
        Candidate(3, "发货", "c", 1.0),  # a shop's own entry: no tags at all
    ]
    out = feats("发货", cands, (Feature.UNREVIEWED,))
    assert out[Feature.UNREVIEWED].tolist() == [1.0, 0.0, 0.0]


def test_engine_candidates_carry_the_entrys_tags():
    pairs = {1: QAPair(1, "什么 时候 发货", "今天 发货", tags=("unreviewed",)), 2: PAIRS[2]}
    eng = HybridEngine(Retriever(), lambda ids: {i: pairs[i] for i in ids}, Thresholds(0.0, 0.0))
    by_id = {c.id: c for c in eng.candidates("什么时候发货")}
    assert by_id[1].tags == ("unreviewed",) and by_id[2].tags == ()


def test_question_terms_and_vectors_are_computed_once_and_give_the_same_features():
    calls = {"terms": [], "embed": []}
    table = {"发货": [1.0, 0.0], "快递": [0.6, 0.8], "几时 发货": [0.8, 0.6]}

    def terms(text):
        calls["terms"].append(text)
        return text.split()

    def embed(texts):
        calls["embed"].append(list(texts))
        return np.array([table[t] for t in texts])

    feats = CandidateFeatures(terms, lambda t: 1.0, embed)
    cands = [
        Candidate(1, "发货", "a", 1.0, phrasings=("几时 发货",)),
        Candidate(2, "快递", "b", 1.0),
    ]
    first = feats("几时 发货", cands, (Feature.MATCH, Feature.DENSE))
    again = feats("几时 发货", cands, (Feature.MATCH, Feature.DENSE))
    assert first[Feature.MATCH].tolist() == again[Feature.MATCH].tolist() == [1.0, 0.0]
    assert first[Feature.DENSE] == pytest.approx([0.8, 0.96]) and again[Feature.DENSE] == (
        pytest.approx([0.8, 0.96])
    )
    # the query is tokenized and embedded on every call; each KB question (the phrasing
    # 几时 发货 too) once
    assert sorted(calls["terms"]) == sorted(["几时 发货"] * 3 + ["发货", "快递"])
    assert calls["embed"] == [["几时 发货", "发货", "快递"], ["几时 发货"]]


def _plain_weighted_f1(query, question, weight, synonyms=None):
    """The formula of ``weighted_overlap_f1`` written out plainly (its reference)."""
    q, d = set(query), set(question)
    w = {t: max(weight(t), 0.0) for t in q | d}
    wq, wd = sum(w[t] for t in q), sum(w[t] for t in d)
    if synonyms is None:
        common = sum(w[t] for t in q & d)
        return 0.0 if common <= 0 or wq <= 0 or wd <= 0 else 2 * common / (wq + wd)

    def matched(side, other):
        return sum(w[t] for t in side if t in other or any(s in other for s in synonyms(t)))

    return 0.0 if wq + wd <= 0 or not wq or not wd else (matched(q, d) + matched(d, q)) / (wq + wd)


def test_query_match_equals_weighted_overlap_f1_on_random_texts():
    """The per-query fast path gives the plainly written formula's value for every pair."""
    import random

    from alime.routing import QueryMatch

    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(12)]
    idf = {t: rng.choice([0.0, 0.3, 1.0, 2.5, -0.5]) for t in vocab}
    groups = [("w1", "w2", "w3"), ("w4", "w5")]
    syn = {t: tuple(o for g in groups if t in g for o in g if o != t) for t in vocab}
    for _ in range(300):
        query = rng.sample(vocab, rng.randint(0, 5))
        for synonyms in (None, lambda t: syn[t]):
            match = QueryMatch(query, idf.get, synonyms)
            for _ in range(5):
                question = rng.sample(vocab, rng.randint(0, 6))
                want = _plain_weighted_f1(query, question, idf.get, synonyms)
                assert match.f1(question) == pytest.approx(want, abs=1e-12), (query, question)
