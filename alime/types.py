"""The result types every path returns, and the small interfaces the engine depends on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


@dataclass(frozen=True)
class QAPair:
    """One knowledge-base entry: a primary ``question``, other ways to ask the same thing
    (``phrasings``, never containing ``question`` itself) and one answer."""

    id: int
    question: str
    answer: str
    tags: tuple[str, ...] = ()
    created_at: float = 0.0
    updated_at: float = 0.0
    phrasings: tuple[str, ...] = ()

    @property
    def questions(self) -> tuple[str, ...]:
        """The primary question, then every phrasing."""
        return (self.question, *self.phrasings)


@dataclass(frozen=True)
class Hit:
    """A retrieval result: a KB id and its retrieval score (higher is better)."""

    id: int
    score: float


@dataclass(frozen=True)
class Candidate:
    """A KB answer considered for a reply. ``rerank_score`` is None when no reranker ran;
    ``routing_score`` is None when the engine has no router (see ``alime.routing``).
    ``phrasings`` are the entry's other questions (the routing features match all of them);
    ``tags`` the entry's KB tags (the routing score reads ``unreviewed``)."""

    id: int
    question: str
    answer: str
    retrieval_score: float
    rerank_score: float | None = None
    routing_score: float | None = None
    phrasings: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def questions(self) -> tuple[str, ...]:
        """The primary question, then every phrasing."""
        return (self.question, *self.phrasings)

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "question": self.question,
            "phrasings": list(self.phrasings),
            "answer": self.answer,
            "retrieval_score": self.retrieval_score,
            "rerank_score": self.rerank_score,
            "routing_score": self.routing_score,
        }


class Source(str, Enum):
    """Where a reply came from."""

    RETRIEVAL = "retrieval"
    GENERATION = "generation"
    FALLBACK = "fallback"
    CHITCHAT = "chitchat"  # the chit-chat KB (greetings, thanks, small talk), not the FAQ


class Rule(str, Enum):
    """The rule that decided a reply, in the order the engine applies them (docs/http-api.md)."""

    COMPLAINT = "complaint"  # a complaint (投诉, 差评, 12315 ...): hand-off
    PERSON = "person"  # an explicit request for a person (转人工, 找你们老板 ...): hand-off
    ORDER_STATUS = "order_status"  # one order's status or an order number: hand-off
    GIBBERISH = "gibberish"  # keyboard mash, emoji/punctuation/digits only: "please rephrase"
    FAQ = "faq"  # the FAQ KB's best decision score reached T
    CHITCHAT = "chitchat"  # the chit-chat KB's best match reached its threshold
    GENERATION = "generation"  # the generated answer's score reached G
    LOW_CONFIDENCE = "low_confidence"  # nothing reached its bar: fallback and hand-off
    TIME_BUDGET = "time_budget"  # generation skipped, it would overrun the request's budget


@dataclass(frozen=True)
class RuleMatch:
    """A rule applied before retrieval matched: what to answer, and why (``evidence``: the
    lexicon phrase or gibberish kind that matched)."""

    rule: Rule
    answer: str
    handoff: bool
    evidence: str


@dataclass(frozen=True)
class ChitChatMatch:
    """The chit-chat KB's best entry for a query and its match score in [0, 1]."""

    question: str
    answer: str
    score: float


@dataclass(frozen=True)
class Reply:
    """What the engine answers, and why.

    ``rule`` names the rule that decided; ``score`` and ``threshold`` are the numbers that rule
    compared (a KB answer: its decision score against T; a chit-chat answer: its match score
    against the chit-chat threshold; a generated answer: its score against G; a low-confidence
    fallback: the FAQ's best score against T). Both are None for the rules applied before
    retrieval (they match phrases, not scores), and ``score`` is None for a fallback with nothing
    scored. ``evidence`` says what a rule matched (a phrase, a gibberish kind, the chit-chat
    question), else None.
    """

    answer: str
    source: Source
    score: float | None
    threshold: float | None
    candidates: tuple[Candidate, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    handoff: bool = False
    rule: Rule = field(kw_only=True)
    evidence: str | None = field(default=None, kw_only=True)

    def to_json(self) -> dict:
        return {
            "answer": self.answer,
            "source": self.source.value,
            "rule": self.rule.value,
            "score": self.score,
            "threshold": self.threshold,
            "evidence": self.evidence,
            "handoff": self.handoff,
            "candidates": [c.to_json() for c in self.candidates],
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }


class Retriever(Protocol):
    """Finds KB entries for a query."""

    def search(self, query: str, k: int) -> list[Hit]: ...


class Scorer(Protocol):
    """Scores candidate answers for a query and its recent context (higher is better)."""

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]: ...


class Router(Protocol):
    """Scores how surely each candidate's answer answers the query (higher is surer)."""

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]: ...


@dataclass(frozen=True)
class Generated:
    """One generated answer and its score (the same scale as the Scorer's)."""

    text: str
    score: float


class Generator(Protocol):
    """Generates answers for a query and its context, best first."""

    def generate(self, query: str, context: Sequence[str]) -> list[Generated]: ...


class Guard(Protocol):
    """The rules applied before retrieval (complaints, requests for a person, ...)."""

    def check(self, query: str) -> RuleMatch | None: ...


class ChitChat(Protocol):
    """A small second KB of small talk, searched when the FAQ does not answer (and first when
    the query *is* one of its questions)."""

    def best(self, query: str, minimum: float = 0.0) -> ChitChatMatch | None:
        """The best match; None when nothing matches (or, where the KB can tell cheaply, when
        nothing reaches ``minimum``)."""
        ...

    def exact(self, query: str) -> ChitChatMatch | None:
        """The entry whose question ``query`` asks word for word (score 1), or None."""
        ...

    def same(self, query: str, question: str) -> bool:
        """Whether ``query`` asks ``question`` word for word (as this KB compares texts)."""
        ...
