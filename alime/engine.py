"""The hybrid engine: rules, retrieve, rerank, decide, chit-chat, and generate when no KB has
anything good.

The engine receives its stages (a Retriever, optional Scorer, Router, Generator, rules and
chit-chat KB) and a way to look up QA pairs, so each stage can be replaced or stubbed. Every
reply names the ``Rule`` that decided it, with the score and threshold that rule compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from alime.decision import (
    Decision,
    accept_chitchat,
    accept_generation,
    decide,
    generation_reachable,
)
from alime.types import (
    Candidate,
    ChitChat,
    ChitChatMatch,
    Generator,
    Guard,
    QAPair,
    Reply,
    Retriever,
    Router,
    Rule,
    Scorer,
    Source,
)


@dataclass(frozen=True)
class Thresholds:
    """T for KB answers, the bar a generated answer must reach before it is used instead of
    the fallback (G), and the chit-chat KB's bar on its match score. T applies to the decision
    score: the router's score when the engine has a router, else the rerank score (the
    retrieval score with no reranker)."""

    answer: float
    generation: float
    chitchat: float = 0.8


class HybridEngine:
    """rules -> retrieve -> rerank -> route -> FAQ | chit-chat | generate | fallback."""

    def __init__(
        self,
        retriever: Retriever,
        lookup: Callable[[Iterable[int]], dict[int, QAPair]],
        thresholds: Thresholds,
        scorer: Scorer | None = None,
        generator: Generator | None = None,
        k: int = 10,
        fallback_reply: str = "",
        router: Router | None = None,
        guards: Guard | None = None,
        chitchat: ChitChat | None = None,
    ) -> None:
        if k < 1:
            raise ValueError("k must be >= 1")
        self.retriever = retriever
        self.lookup = lookup
        self.thresholds = thresholds
        self.scorer = scorer
        self.generator = generator
        self.k = k
        self.fallback_reply = fallback_reply
        self.router = router
        self.guards = guards
        self.chitchat = chitchat
        self._generate_s = 0.0  # moving average of generation time, for the time budget

    def reply(
        self, query: str, context: Sequence[str] = (), budget_s: float | None = None
    ) -> Reply:
        """Answer ``query`` given the conversation's recent ``context`` (oldest first).

        In order (the first that applies decides, and is the reply's ``rule``): the rules
        before retrieval (complaint, person, order_status, gibberish); the chit-chat entry the
        query asks word for word, unless it asks the FAQ's best candidate word for word too
        (chitchat, :meth:`small_talk_first`); the FAQ's best candidate when its decision score
        reaches T (faq); the chit-chat KB's best match when it reaches
        its threshold (chitchat); a generated answer whose score reaches G (generation); else
        the fallback with hand-off (low_confidence). With ``budget_s``, generation is skipped
        (fallback with hand-off, time_budget) when the time already spent plus the usual
        generation time would overrun the budget.
        """
        timings: dict[str, float] = {}
        started = time.perf_counter()
        if self.guards is not None:
            matched = self.guards.check(query)
            _lap(timings, "rules", started)
            if matched is not None:
                return self._reply(
                    matched.answer,
                    Source.FALLBACK,
                    None,
                    None,
                    (),
                    timings,
                    matched.handoff,
                    matched.rule,
                    matched.evidence,
                )
        candidates = self.candidates(query, context, timings)
        clock = time.perf_counter()
        small_talk = self.small_talk_first(query, candidates)
        if small_talk is not None:
            _lap(timings, "chitchat", clock)
            return self._chitchat_reply(small_talk, candidates, timings)
        best = _best_score(candidates)
        threshold = self.thresholds.answer
        if decide(best, threshold) is Decision.ANSWER_FROM_KB:
            return self._reply(
                candidates[0].answer,
                Source.RETRIEVAL,
                best,
                threshold,
                candidates,
                timings,
                rule=Rule.FAQ,
            )

        if self.chitchat is not None:
            match = self.chitchat.best(query, self.thresholds.chitchat)
            clock = _lap(timings, "chitchat", clock)
            if match is not None and accept_chitchat(match.score, self.thresholds.chitchat):
                return self._chitchat_reply(match, candidates, timings)

        rule = Rule.LOW_CONFIDENCE
        generate = self.generator is not None and generation_reachable(self.thresholds.generation)
        if generate and not self._fits_budget(started, budget_s):
            rule = Rule.TIME_BUDGET
        elif generate:
            generated = self.generator.generate(query, context)
            before = clock
            clock = _lap(timings, "generate", clock)
            self._generate_s = (
                0.8 * self._generate_s + 0.2 * (clock - before)
                if self._generate_s
                else clock - before
            )
            if generated and accept_generation(generated[0].score, self.thresholds.generation):
                top = generated[0]
                return self._reply(
                    top.text,
                    Source.GENERATION,
                    top.score,
                    self.thresholds.generation,
                    candidates,
                    timings,
                    rule=Rule.GENERATION,
                )
        # Nothing reached its bar: the FAQ's best score against T says how far off the KB was.
        return self._reply(
            self.fallback_reply, Source.FALLBACK, best, threshold, candidates, timings, True, rule
        )

    def small_talk_first(self, query: str, candidates: Sequence[Candidate]) -> ChitChatMatch | None:
        """The chit-chat entry ``query`` asks word for word, unless the FAQ's best candidate
        is asked word for word too (None: the FAQ decides first, as usual).

        Exact small talk comes before the FAQ because short talk shares characters with FAQ
        questions (收到 with 收到了能换吗, 你多大了 with 多大的), so the routing score can pass T
        on the shared characters alone; no threshold is involved, so T, G and C sweeps are
        unaffected.
        """
        if self.chitchat is None:
            return None
        match = self.chitchat.exact(query)
        if match is None:
            return None
        if candidates and any(self.chitchat.same(query, q) for q in candidates[0].questions):
            return None
        return match

    def candidates(
        self, query: str, context: Sequence[str] = (), timings: dict[str, float] | None = None
    ) -> list[Candidate]:
        """Retrieve, rerank and route: the candidates, the one the engine would answer first.

        Order: by routing score with a router, else by rerank score, else retrieval order.
        With a router that does not read the rerank score, only the candidates tied at the top
        routing score are reranked (the others keep ``rerank_score`` None and their routing
        order): the first candidate, hence the reply's answer and decision, is the same as with
        every candidate reranked.
        """
        timings = {} if timings is None else timings
        clock = time.perf_counter()
        hits = self.retriever.search(query, self.k)
        pairs = self.lookup([h.id for h in hits])
        candidates = [
            Candidate(
                h.id,
                pairs[h.id].question,
                pairs[h.id].answer,
                h.score,
                phrasings=pairs[h.id].phrasings,
                tags=pairs[h.id].tags,
            )
            for h in hits
            if h.id in pairs  # a pair deleted between search and lookup is simply dropped
        ]
        clock = _lap(timings, "retrieve", clock)

        # A router whose model does not read the rerank score leaves the rerank only the order of
        # the candidates tied at its top score: then only those are scored, after routing.
        rerank_all = self.router is None or getattr(self.router, "uses_rerank", True)
        if self.scorer is not None and candidates and rerank_all:
            candidates = self._rerank(query, context, candidates)
            clock = _lap(timings, "rerank", clock)

        if self.router is not None and candidates:
            scores = self.router.score(query, candidates)
            candidates = [
                replace(c, routing_score=float(s)) for c, s in zip(candidates, scores, strict=True)
            ]
            candidates.sort(
                key=lambda c: c.routing_score, reverse=True
            )  # stable: rerank order on ties
            clock = _lap(timings, "route", clock)
            tied = sum(c.routing_score == candidates[0].routing_score for c in candidates)
            if self.scorer is not None and not rerank_all and tied > 1:
                candidates = self._rerank(query, context, candidates[:tied]) + candidates[tied:]
                _lap(timings, "rerank", clock)
        return candidates

    def _rerank(
        self, query: str, context: Sequence[str], candidates: list[Candidate]
    ) -> list[Candidate]:
        """``candidates`` with their rerank scores, best first (stable on ties)."""
        scores = self.scorer.score(query, context, [c.answer for c in candidates])
        ranked = [
            replace(c, rerank_score=float(s)) for c, s in zip(candidates, scores, strict=True)
        ]
        ranked.sort(key=lambda c: c.rerank_score, reverse=True)
        return ranked

    def _fits_budget(self, started: float, budget_s: float | None) -> bool:
        if budget_s is None:
            return True
        return time.perf_counter() - started + self._generate_s <= budget_s

    def _chitchat_reply(
        self, match: ChitChatMatch, candidates: Sequence[Candidate], timings: dict[str, float]
    ) -> Reply:
        """The chit-chat KB's answer, its score against C and the question it matched."""
        return self._reply(
            match.answer,
            Source.CHITCHAT,
            match.score,
            self.thresholds.chitchat,
            candidates,
            timings,
            rule=Rule.CHITCHAT,
            evidence=match.question,
        )

    @staticmethod
    def _reply(
        answer: str,
        source: Source,
        score: float | None,
        threshold: float | None,
        candidates: Sequence[Candidate],
        timings: dict[str, float],
        handoff: bool = False,
        rule: Rule = Rule.LOW_CONFIDENCE,
        evidence: str | None = None,
    ) -> Reply:
        timings["total"] = sum(timings.values())
        return Reply(
            answer=answer,
            source=source,
            score=score,
            threshold=threshold,
            candidates=tuple(candidates),
            timings_ms=timings,
            handoff=handoff,
            rule=rule,
            evidence=evidence,
        )


def _best_score(candidates: list[Candidate]) -> float | None:
    if not candidates:
        return None
    top = candidates[0]
    for score in (top.routing_score, top.rerank_score):
        if score is not None:
            return score
    return top.retrieval_score


def _lap(timings: dict[str, float], name: str, since: float) -> float:
    now = time.perf_counter()
    timings[name] = (now - since) * 1000.0
    return now
