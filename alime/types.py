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
    ``phrasings`` are the entry's other questions (the routing features match all of them)."""

    id: int
    question: str
    answer: str
    retrieval_score: float
    rerank_score: float | None = None
    routing_score: float | None = None
    phrasings: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class Reply:
    """What the engine answers. ``score`` is None only for a fallback with nothing scored."""

    answer: str
    source: Source
    score: float | None
    threshold: float
    candidates: tuple[Candidate, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    handoff: bool = False

    def to_json(self) -> dict:
        return {
            "answer": self.answer,
            "source": self.source.value,
            "score": self.score,
            "threshold": self.threshold,
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
