"""No rerank work the decision does not use: a routing model without the ``rerank`` feature
reranks only the candidates tied at the top routing score, with the same replies; the PMI
score's answer prior is computed once per answer."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from alime.engine import HybridEngine, Thresholds
from alime.rerank.scorers import PriorCache
from alime.types import Candidate, Hit, QAPair


class _Retriever:
    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits

    def search(self, query: str, k: int) -> list[Hit]:
        return self.hits[:k]


class _CountingScorer:
    """Scores an answer by a fixed table and records every answer it was asked about."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.asked: list[str] = []

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        self.asked.extend(answers)
        return [self.table[a] for a in answers]


class _Router:
    def __init__(self, table: dict[str, float], uses_rerank: bool) -> None:
        self.table = table
        self.uses_rerank = uses_rerank

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        if self.uses_rerank:
            assert all(c.rerank_score is not None for c in candidates)
        return [self.table[c.question] for c in candidates]


PAIRS = {i: QAPair(i, f"q{i}", f"a{i}") for i in range(5)}
HITS = [Hit(i, 5.0 - i) for i in range(5)]
RERANK = {"a0": 0.1, "a1": 0.5, "a2": 0.9, "a3": 0.7, "a4": 0.3}


def _engine(routing: dict[str, float], uses_rerank: bool, scorer: _CountingScorer) -> HybridEngine:
    return HybridEngine(
        _Retriever(HITS),
        lambda ids: {i: PAIRS[i] for i in ids},
        Thresholds(0.5, 0.0),
        scorer=scorer,
        router=_Router(routing, uses_rerank),
    )


def test_a_unique_top_routing_score_skips_the_rerank():
    scorer = _CountingScorer(RERANK)
    routing = {"q0": 0.2, "q1": 0.9, "q2": 0.4, "q3": 0.4, "q4": 0.1}
    reply = _engine(routing, False, scorer).reply("query")
    assert scorer.asked == []
    assert reply.answer == "a1" and reply.score == pytest.approx(0.9)
    assert "rerank" not in reply.timings_ms


def test_tied_top_candidates_are_reranked_and_only_they():
    scorer = _CountingScorer(RERANK)
    routing = {"q0": 0.8, "q1": 0.2, "q2": 0.8, "q3": 0.8, "q4": 0.8}
    cheap = _engine(routing, False, scorer).candidates("query")
    assert sorted(scorer.asked) == ["a0", "a2", "a3", "a4"]
    # The same order as reranking every candidate first: rerank order within the tie.
    full = _engine(routing, True, _CountingScorer(RERANK)).candidates("query")
    assert [c.id for c in cheap] == [c.id for c in full] == [2, 3, 4, 0, 1]
    assert cheap[-1].rerank_score is None  # the one outside the tie was not scored
    assert [c.rerank_score for c in cheap[:4]] == [c.rerank_score for c in full[:4]]


def test_a_router_that_reads_the_rerank_score_gets_every_candidate_reranked():
    scorer = _CountingScorer(RERANK)
    routing = {"q0": 0.2, "q1": 0.9, "q2": 0.4, "q3": 0.4, "q4": 0.1}
    candidates = _engine(routing, True, scorer).candidates("query")
    assert sorted(scorer.asked) == sorted(RERANK)
    assert all(c.rerank_score is not None for c in candidates)


def test_prior_cache_computes_each_answer_once_and_matches_the_uncached_values():
    calls: list[list[str]] = []

    def compute(answers):
        calls.append(list(answers))
        return [np.array([-float(len(a)), -1.0]) for a in answers]

    cache = PriorCache(compute, size=3)
    first = cache(["ab", "c", "ab"])
    assert calls == [["ab", "c"]]
    np.testing.assert_array_equal(first[0], [-2.0, -1.0])
    np.testing.assert_array_equal(first[2], first[0])
    cache(["c", "dddd"])
    assert calls[-1] == ["dddd"]
    cache(["eee"])  # evicts the least recently used ("ab")
    assert len(cache) == 3
    cache(["ab"])
    assert calls[-1] == ["ab"]
    with pytest.raises(ValueError, match="size"):
        PriorCache(compute, size=0)


# Real parts from here: the bundled int8 model, KB and routing model.

FIXED_QUERIES = [
    "什么时候发货？",
    "发什么快递",
    "能便宜点吗",
    "你好",
    "这个怎么用啊亲",
    "有没有赠品",
    "质量怎么样",
    "衣服洗了会缩水吗",
    "怎么退货",
    "可以开发票吗",
    "在吗",
    "包邮吗",
    "尺码怎么选",
    "多久到货",
    "会掉色吗",
    "有优惠券吗",
]


class _ReadsRerank:
    """The same routing model, declared to read the rerank score: the engine reranks all."""

    def __init__(self, router) -> None:
        self.router = router
        self.uses_rerank = True

    def score(self, query, candidates):
        return self.router.score(query, candidates)


class _Counting:
    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.answers = 0

    def score(self, query, context, answers):
        self.answers += len(answers)
        return self.scorer.score(query, context, answers)


@pytest.fixture(scope="module")
def bundled_bot(tmp_path_factory):
    from alime.bot import build_bot
    from alime.config import AppConfig

    mp = pytest.MonkeyPatch()
    mp.setenv("ALIME_HOME", str(tmp_path_factory.mktemp("home")))
    try:
        import dataclasses

        # The bundled G turns generation off; G = 0 so the fixed queries also generate.
        config = AppConfig()
        config = dataclasses.replace(
            config, engine=dataclasses.replace(config.engine, generation_threshold=0.0)
        )
        bot = build_bot(config)
        yield bot
        bot.kb.close()
    finally:
        mp.undo()


def test_bundled_routing_decides_without_the_rerank(bundled_bot):
    from alime.routing import Feature

    router = bundled_bot.engine.router
    assert Feature.RERANK not in router.model.features  # the shipped routing.json
    assert router.uses_rerank is False


def test_bundled_replies_are_identical_with_and_without_the_full_rerank(bundled_bot):
    engine = bundled_bot.engine
    router, scorer = engine.router, engine.scorer
    runs = {}
    try:
        for name, wrapped in (("ties", router), ("full", _ReadsRerank(router))):
            engine.router = wrapped
            engine.scorer = _Counting(scorer)
            runs[name] = ([engine.reply(q) for q in FIXED_QUERIES], engine.scorer.answers)
    finally:
        engine.router, engine.scorer = router, scorer
    (cheap, cheap_work), (full, full_work) = runs["ties"], runs["full"]
    for q, a, b in zip(FIXED_QUERIES, cheap, full, strict=True):
        assert (a.answer, a.source, a.rule, a.handoff, a.threshold) == (
            b.answer,
            b.source,
            b.rule,
            b.handoff,
            b.threshold,
        ), q
        assert a.score == pytest.approx(b.score, abs=1e-12), q
        assert [c.id for c in a.candidates[:1]] == [c.id for c in b.candidates[:1]], q
    assert {r.rule.value for r in cheap} >= {"faq", "generation"}
    assert cheap_work < full_work / 2  # most queries have no tie at the top
