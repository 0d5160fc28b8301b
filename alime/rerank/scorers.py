"""Candidate-answer scorers over a loaded seq2seq model (``alime.types.Scorer``).

Every scorer runs one encoder pass per query and teacher-forces all candidate answers in one
batch (``InferenceModel.answer_log_probs``). Scores are per-token averages, so long and short
answers are comparable; each answer's EOS counts as a token.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

from alime.config import AppConfig
from alime.seq2seq.data import encode_query, encode_target
from alime.seq2seq.model_dir import LoadedModel, ScorerKind
from alime.text import TextPipeline
from pluto.choices import parse_choice


def mean_prob(cond: np.ndarray) -> float:
    """AliMe's rerank score: mean per-token probability of the answer given the query."""
    return float(np.mean(np.exp(cond)))


def mean_log_prob(cond: np.ndarray) -> float:
    """Mean per-token log-probability (of the answer given the query, or of its prior)."""
    return float(np.mean(cond))


def pmi(cond: np.ndarray, prior: np.ndarray, weight: float) -> float:
    """``mean log p(a | q) - weight * mean log p(a)``: discounts answers that fit any query."""
    return float(np.mean(cond) - weight * np.mean(prior))


class _ModelScorer:
    """Shared text-to-ids plumbing.

    Args:
        model: a model directory loaded with ``load_model_dir``.
        pipeline: the shared text pipeline (default: the app's default text config, as in training).
    """

    def __init__(self, model: LoadedModel, pipeline: TextPipeline | None = None) -> None:
        self.model = model
        self.pipeline = pipeline or TextPipeline(AppConfig().text)

    def _targets(self, answers: Sequence[str]) -> list[list[int]]:
        m = self.model
        return [encode_target(self.pipeline.tokenize(a), m.vocab, m.config) for a in answers]

    def _source(self, query: str, context: Sequence[str]) -> list[int]:
        m = self.model
        return encode_query(query, context, self.pipeline.tokenize, m.vocab, m.config)

    def conditional_log_probs(
        self, query: str, context: Sequence[str], answers: Sequence[str]
    ) -> list[np.ndarray]:
        """log p(token | earlier tokens, query, context) for each answer's tokens and EOS."""
        return self.model.inference.answer_log_probs(
            self._source(query, context), self._targets(answers)
        )

    def prior_log_probs(self, answers: Sequence[str]) -> list[np.ndarray]:
        """log p(token | earlier tokens) with an empty source: the answer's typicality alone."""
        return self.model.inference.answer_log_probs([], self._targets(answers))


class PriorCache:
    """The answer prior ``log p(answer)`` per answer, computed once: it does not depend on the
    query, and a KB's answers recur across queries, so the second decoder pass of a PMI score
    is usually a lookup. Bounded (least recently used out), shared by threads.

    Args:
        compute: answers -> per-token prior log-probs (one batch for all misses).
        size: the most answers kept.
    """

    def __init__(
        self, compute: Callable[[Sequence[str]], list[np.ndarray]], size: int = 4096
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.compute = compute
        self.size = size
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __call__(self, answers: Sequence[str]) -> list[np.ndarray]:
        with self._lock:
            found = {a: self._rows[a] for a in answers if a in self._rows}
            for a in found:
                self._rows.move_to_end(a)
        missing = list(dict.fromkeys(a for a in answers if a not in found))
        if missing:
            computed = dict(zip(missing, self.compute(missing), strict=True))
            found.update(computed)
            with self._lock:
                self._rows.update(computed)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        return [found[a] for a in answers]


class MeanProbScorer(_ModelScorer):
    """AliMe's score: the mean per-token probability of the answer given the query, in (0, 1]."""

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [mean_prob(lp) for lp in self.conditional_log_probs(query, context, answers)]


class MeanLogProbScorer(_ModelScorer):
    """Mean per-token log-probability of the answer given the query (<= 0)."""

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [mean_log_prob(lp) for lp in self.conditional_log_probs(query, context, answers)]


class PriorScorer(_ModelScorer):
    """Context-free baseline: mean per-token log-probability of the answer with an empty source.

    The query and context are ignored; the score says how typical the reply is on its own.
    """

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        return [mean_log_prob(lp) for lp in self.prior_log_probs(answers)]


class PMIScorer(_ModelScorer):
    """PMI-style score: ``mean log p(answer | query) - weight * mean log p(answer)``.

    Subtracting the prior discounts stock replies that fit any query. The prior is cached per
    answer (``PriorCache``), so a query costs one decoder pass for answers seen before.

    Args:
        weight: the prior's weight (lambda); 0 gives ``MeanLogProbScorer``, 1 full PMI.
    """

    def __init__(
        self, model: LoadedModel, pipeline: TextPipeline | None = None, weight: float = 0.5
    ) -> None:
        super().__init__(model, pipeline)
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.weight = weight
        self.priors = PriorCache(super().prior_log_probs)

    def prior_log_probs(self, answers: Sequence[str]) -> list[np.ndarray]:
        """The answer prior (see ``_ModelScorer``), each distinct answer computed once."""
        return self.priors(answers)

    def score(self, query: str, context: Sequence[str], answers: Sequence[str]) -> list[float]:
        cond = self.conditional_log_probs(query, context, answers)
        prior = self.prior_log_probs(answers) if self.weight else [np.zeros(1)] * len(cond)
        return [pmi(c, p, self.weight) for c, p in zip(cond, prior, strict=True)]


def stacked_scorer(model: LoadedModel, pipeline: TextPipeline | None = None):
    """The stacked score of ``MODEL_DIR/stacking.json`` (``alime.rerank.stacking``).

    Raises:
        ValueError: the model directory has no (valid) stacking weights.
    """
    from alime.rerank.stacking import StackedScorer

    return StackedScorer(model, pipeline)


SCORERS: dict[ScorerKind, Callable[..., object]] = {
    ScorerKind.MEAN_PROB: MeanProbScorer,
    ScorerKind.MEAN_LOG_PROB: MeanLogProbScorer,
    ScorerKind.PRIOR: PriorScorer,
    ScorerKind.PMI: PMIScorer,
    ScorerKind.STACKED: stacked_scorer,
}


def make_scorer(
    kind: ScorerKind | str, model: LoadedModel, pipeline: TextPipeline | None = None, **options
):
    """Build a scorer by name.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    kind = parse_choice(ScorerKind, kind, "scorer")
    return SCORERS[kind](model, pipeline, **options)
