"""The scorers ``alime evaluate select`` compares, chosen by name from one table.

Each is an ``alime.types.Scorer`` (``score(query, context, answers) -> list[float]``, higher is
better). Model-based scores share one cached pass per group: the answers' per-token
log-probabilities given the context (``cond``) and with an empty source (``prior``), as computed
by the seq2seq rerank scorers; the named scores are the rerank scores' own formulas
(``alime.rerank.scorers``) applied to those two arrays, and ``ScorerSpec.engine`` says which
evaluation scorer computes which of the engine's rerank scores (``rerank.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from alime.evaluation.metrics import rank_of_true
from alime.rerank.scorers import mean_log_prob, mean_prob, pmi
from alime.seq2seq.model_dir import ScorerKind
from alime.types import Scorer
from pluto.choices import parse_choice

Analyzer = Callable[[str], list[str]]
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al., 2009)


class LogProbSource(Protocol):
    """What the seq2seq rerank scorers expose (``alime.rerank.scorers._ModelScorer``)."""

    def conditional_log_probs(
        self, query: str, context: Sequence[str], answers: Sequence[str]
    ) -> list[np.ndarray]: ...

    def prior_log_probs(self, answers: Sequence[str]) -> list[np.ndarray]: ...


class CachedLogProbs:
    """Remembers the last group's log-probabilities so several scores cost one model pass."""

    def __init__(self, source: LogProbSource) -> None:
        self.source = source
        self._key: tuple | None = None
        self._cond: list[np.ndarray] = []
        self._prior: list[np.ndarray] | None = None

    def _refresh(self, query: str, context: Sequence[str], answers: Sequence[str]) -> None:
        key = (query, tuple(context), tuple(answers))
        if key != self._key:
            self._key, self._cond, self._prior = key, [], None
            self._cond = self.source.conditional_log_probs(query, context, answers)

    def conditional(
        self, query: str, context: Sequence[str], answers: Sequence[str]
    ) -> list[np.ndarray]:
        self._refresh(query, context, answers)
        return self._cond

    def prior(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[np.ndarray]:
        self._refresh(query, context, answers)
        if self._prior is None:
            self._prior = self.source.prior_log_probs(answers)
        return self._prior


GroupFn = Callable[[CachedLogProbs, str, Sequence[str], Sequence[str]], list[float]]


def on_conditional(fn: Callable[[np.ndarray], float]) -> GroupFn:
    """Apply ``fn`` to each answer's conditional log-probabilities."""
    return lambda cache, q, c, a: [fn(x) for x in cache.conditional(q, c, a)]


def on_prior(fn: Callable[[np.ndarray], float]) -> GroupFn:
    """Apply ``fn`` to each answer's context-free log-probabilities."""
    return lambda cache, q, c, a: [fn(x) for x in cache.prior(q, c, a)]


def on_both(fn: Callable[[np.ndarray, np.ndarray], float]) -> GroupFn:
    """Apply ``fn`` to each answer's conditional and context-free log-probabilities."""
    return lambda cache, q, c, a: [
        fn(x, y) for x, y in zip(cache.conditional(q, c, a), cache.prior(q, c, a), strict=True)
    ]


class ModelScore:
    """A Scorer over a group's cached log-probabilities (built with ``on_conditional`` etc.)."""

    def __init__(self, cache: CachedLogProbs, run: GroupFn) -> None:
        self.cache = cache
        self.run = run

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return self.run(self.cache, query, context, answers)


class BM25Scorer:
    """BM25 of each candidate response against the query and its context.

    The index holds every distinct response of the evaluated file (not only the group's ten),
    so idf and the average length are corpus statistics, as in retrieval.

    Args:
        responses: all responses of the evaluated file.
        analyze: text to BM25 terms.
        query_turns: the last turns (query included) that form the BM25 query.
    """

    def __init__(self, responses: Sequence[str], analyze: Analyzer, query_turns: int = 3) -> None:
        from alime.retrieval.bm25 import BM25Index

        self.analyze = analyze
        self.query_turns = query_turns
        self.ids = {r: i for i, r in enumerate(dict.fromkeys(responses))}
        self.index = BM25Index.build([analyze(r) for r in self.ids], list(self.ids.values()))

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        terms = self.analyze(" ".join([*context, query][-self.query_turns :]))
        return self.index.scores_for(terms, [self.ids[a] for a in answers]).tolist()


class ShorterScorer:
    """Baseline 'the shorter reply wins': minus the number of tokens."""

    def __init__(self, tokenize: Callable[[str], list[str]]) -> None:
        self.tokenize = tokenize

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [-float(len(self.tokenize(a))) for a in answers]


def ranks_within(scores: Sequence[float]) -> list[int]:
    """Each candidate's 1-based rank in ``scores``, ties counted against it (as in evaluation)."""
    return [rank_of_true(scores, i) for i in range(len(scores))]


class FusedScorer:
    """Reciprocal rank fusion of several scorers within a group: ``sum 1 / (RRF_K + rank)``."""

    def __init__(self, parts: Sequence[Scorer]) -> None:
        if not parts:
            raise ValueError("fusion needs at least one scorer")
        self.parts = list(parts)

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        total = np.zeros(len(answers))
        for part in self.parts:
            total += 1.0 / (RRF_K + np.asarray(ranks_within(part.score(query, context, answers))))
        return total.tolist()


@dataclass
class ScorerEnv:
    """What scorers are built from; heavy parts are made on first use.

    Attributes:
        responses: every response of the evaluated file (the BM25 corpus).
        analyze: text to BM25 terms.
        tokenize: text to tokens (for lengths).
        log_probs: the model's log-probability source, or None without a model.
        pmi_weight: lambda of the PMI score.
        query_turns: turns of context in the BM25 query.
        stacking_dir: the model directory whose ``stacking.json`` ``stacked`` applies, or None.
    """

    responses: Sequence[str]
    analyze: Analyzer
    tokenize: Callable[[str], list[str]]
    log_probs: LogProbSource | None = None
    pmi_weight: float = 0.5
    query_turns: int = 3
    stacking_dir: Path | None = None
    built: dict[str, Scorer] = field(default_factory=dict)
    _cache: CachedLogProbs | None = None

    def cache(self) -> CachedLogProbs:
        if self.log_probs is None:
            raise ValueError("this scorer needs a model: give --model DIR (or bundle data/model)")
        if self._cache is None:
            self._cache = CachedLogProbs(self.log_probs)
        return self._cache

    def stacked(self) -> Scorer:
        if self.stacking_dir is None:
            raise ValueError("the stacked scorer needs a model directory with stacking.json")
        from alime.rerank.stacking import StackingWeights, stacked_scores

        weights = StackingWeights.load(self.stacking_dir)
        return ModelScore(
            self.cache(),
            lambda cache, q, c, a: stacked_scores(
                weights, q, c, a, cache.conditional(q, c, a), cache.prior(q, c, a), self.analyze
            ),
        )

    def get(self, name: ScorerName) -> Scorer:
        if name.value not in self.built:
            self.built[name.value] = SCORERS[name].build(self)
        return self.built[name.value]


class ScorerName(str, Enum):
    """Scorer names for ``--scorers``."""

    BM25 = "bm25"
    SEQ2SEQ = "seq2seq"
    PRIOR = "prior"
    MEAN_LOGPROB = "mean_logprob"
    PMI = "pmi"
    SHORTER = "shorter"
    FUSED = "fused"
    FUSED_PMI = "fused_pmi"
    STACKED = "stacked"


@dataclass(frozen=True)
class ScorerSpec:
    """How to build one scorer, what it needs and what it is."""

    build: Callable[[ScorerEnv], Scorer]
    needs_model: bool
    description: str
    engine: ScorerKind | None = None  # the engine's rerank score this one computes, if any
    needs_stacking: bool = False  # the model directory's stacking.json


SCORERS: dict[ScorerName, ScorerSpec] = {
    ScorerName.BM25: ScorerSpec(
        lambda env: BM25Scorer(env.responses, env.analyze, env.query_turns),
        False,
        "BM25 of the response against the last turns, over all responses of the file",
    ),
    ScorerName.SEQ2SEQ: ScorerSpec(
        lambda env: ModelScore(env.cache(), on_conditional(mean_prob)),
        True,
        "the engine's rerank score: mean per-token probability of the response given the context",
        engine=ScorerKind.MEAN_PROB,
    ),
    ScorerName.PRIOR: ScorerSpec(
        lambda env: ModelScore(env.cache(), on_prior(mean_log_prob)),
        True,
        "context-free: mean per-token log-probability of the response with an empty source",
        engine=ScorerKind.PRIOR,
    ),
    ScorerName.MEAN_LOGPROB: ScorerSpec(
        lambda env: ModelScore(env.cache(), on_conditional(mean_log_prob)),
        True,
        "mean per-token log-probability of the response given the context",
        engine=ScorerKind.MEAN_LOG_PROB,
    ),
    ScorerName.PMI: ScorerSpec(
        lambda env: ModelScore(env.cache(), on_both(lambda c, p: pmi(c, p, env.pmi_weight))),
        True,
        "mean log p(r|c) - lambda * mean log p(r)",
        engine=ScorerKind.PMI,
    ),
    ScorerName.SHORTER: ScorerSpec(
        lambda env: ShorterScorer(env.tokenize), False, "context-free: the shorter reply wins"
    ),
    ScorerName.FUSED: ScorerSpec(
        lambda env: FusedScorer([env.get(ScorerName.SEQ2SEQ), env.get(ScorerName.BM25)]),
        True,
        "reciprocal rank fusion of seq2seq and bm25",
    ),
    ScorerName.FUSED_PMI: ScorerSpec(
        lambda env: FusedScorer([env.get(ScorerName.PMI), env.get(ScorerName.BM25)]),
        True,
        "reciprocal rank fusion of pmi and bm25",
    ),
    ScorerName.STACKED: ScorerSpec(
        lambda env: env.stacked(),
        True,
        "the model's stacking.json: a score over mean_logprob, prior, their sums, length and "
        "context overlap (and their products), fitted on training-side groups",
        engine=ScorerKind.STACKED,
        needs_stacking=True,
    ),
}


def parse_scorer_names(
    text: str | None, have_model: bool, have_stacking: bool = False
) -> list[ScorerName]:
    """Scorer names from a comma-separated list; default all that the model (and its stacking
    weights) allow.

    Raises:
        ValueError: an unknown name (the valid ones are listed), or a model scorer without a model.
    """
    if not text:
        return [
            n
            for n in ScorerName
            if (have_model or not SCORERS[n].needs_model)
            and (have_stacking or not SCORERS[n].needs_stacking)
        ]
    names = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        names.append(parse_choice(ScorerName, part, "scorer"))
    missing = [n.value for n in names if SCORERS[n].needs_model and not have_model]
    if missing:
        raise ValueError(f"scorer(s) {missing} need a model: give --model DIR")
    return list(dict.fromkeys(names))


def describe(names: Sequence[ScorerName]) -> Mapping[str, Any]:
    """Name -> one-line description, for reports."""
    return {n.value: SCORERS[n].description for n in names}


def for_engine_score(kind: ScorerKind) -> ScorerName:
    """The evaluation scorer that computes the engine's rerank score ``kind``."""
    return next(n for n, spec in SCORERS.items() if spec.engine is kind)
